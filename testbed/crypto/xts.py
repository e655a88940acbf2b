"""Batched AES-XTS-128 (IEEE 1619) over cache lines, with the physical address as tweak.

Each 64-byte line is one XTS data unit of four AES blocks. The data-unit sequence number is the
line's physical address, encoded as a 16-byte little-endian integer, as in IEEE 1619. A batch of
lines at arbitrary addresses costs two OpenSSL calls per chunk: one AES-ECB call encrypts every
tweak with the tweak key, NumPy derives the per-block masks by doubling in GF(2^128), and one
AES-ECB call encrypts (or decrypts) all the masked data. Chunks are sized to stay in the CPU
cache, and OpenSSL writes into preallocated buffers (``update_into``): no per-line Python work.

The result is identical, line for line, to OpenSSL's own XTS (``modes.XTS``); the tests check it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

from ..errors import ConfigError
from ._gf128 import mask_block
from ._lines import as_addresses, as_lines

__all__ = ["XTS_KEY_SIZE", "XtsLineCipher"]

XTS_KEY_SIZE = 32
"""AES-XTS-128 takes two 128-bit keys: data key then tweak key."""
_BLOCK = 16
_CHUNK_LINES = 4096
"""Lines per inner step: 256 KiB of data, so that every pass stays in the L2 cache."""


class XtsLineCipher:
    """AES-XTS-128 over 64-byte lines, tweak = physical address.

    Args:
        key: 32 bytes, data key (first half) then tweak key (second half). The halves must
            differ: OpenSSL refuses XTS keys with equal halves (a weak-key check), and so does this.

    Raises:
        ConfigError: the key has the wrong size or equal halves.
    """

    label = "AES-XTS-128"
    reduced_width = False
    blocks_per_line = 4

    def __init__(self, key: bytes) -> None:
        if len(key) != XTS_KEY_SIZE:
            raise ConfigError(f"XTS key: expected {XTS_KEY_SIZE} bytes, got {len(key)}")
        data_key, tweak_key = key[:16], key[16:]
        if data_key == tweak_key:
            raise ConfigError("XTS key: the data and tweak halves must differ")
        self._enc = Cipher(algorithms.AES(data_key), modes.ECB()).encryptor()
        self._dec = Cipher(algorithms.AES(data_key), modes.ECB()).decryptor()
        self._tweak = Cipher(algorithms.AES(tweak_key), modes.ECB()).encryptor()

    def _apply(self, addrs: object, lines: object, *, encrypt: bool) -> NDArray[np.uint8]:
        addr_arr = as_addresses(addrs)
        line_arr = as_lines(lines, addr_arr.shape[0])
        count = line_arr.shape[0]
        out = np.empty_like(line_arr)
        if count == 0:
            return out
        ctx = self._enc if encrypt else self._dec
        if count > 1 and bool((addr_arr == addr_arr[0]).all()):
            return self._apply_one_address(int(addr_arr[0]), line_arr, ctx)
        step = min(count, _CHUNK_LINES)
        # OpenSSL's update_into wants room for one extra block.
        tweaks = np.zeros((step, 2), dtype="<u8")
        encrypted = np.empty(step * _BLOCK + _BLOCK, dtype=np.uint8)
        masks = np.empty((step, 4, 2), dtype="<u8")
        work = np.empty((step, 4, 2), dtype="<u8")
        core = np.empty(step * 64 + _BLOCK, dtype=np.uint8)
        words = line_arr.view("<u8").reshape(count, 4, 2)
        result = out.view("<u8").reshape(count, 4, 2)
        for start in range(0, count, step):
            m = min(step, count - start)
            tweaks[:m, 0] = addr_arr[start : start + m]
            self._tweak.update_into(tweaks[:m].data.cast("B"), encrypted.data)
            first = encrypted[: m * _BLOCK].view("<u8").reshape(m, 2)
            mask_block(first, masks[:m])
            np.bitwise_xor(words[start : start + m], masks[:m], out=work[:m])
            ctx.update_into(work[:m].data.cast("B"), core.data)
            done = core[: m * 64].view("<u8").reshape(m, 4, 2)
            np.bitwise_xor(done, masks[:m], out=result[start : start + m])
        return out

    def _apply_one_address(
        self, addr: int, lines: NDArray[np.uint8], ctx: Any
    ) -> NDArray[np.uint8]:
        """Many lines at one address (a dictionary attack): masks once, and a block that is the
        same in every line is encrypted once. Exactly the result of the general path."""
        count = lines.shape[0]
        tweak = np.array([[addr, 0]], dtype="<u8")
        first = np.frombuffer(self._tweak.update(tweak.tobytes()), dtype="<u8").reshape(1, 2)
        masks = np.empty((1, 4, 2), dtype="<u8")
        mask_block(first, masks)
        words = lines.view("<u8").reshape(count, 4, 2)
        out = np.empty_like(lines)
        result = out.view("<u8").reshape(count, 4, 2)
        for j in range(4):
            column = words[:, j, :]
            if bool((column == column[0]).all()):
                block = np.frombuffer(ctx.update((column[0] ^ masks[0, j]).tobytes()), "<u8")
                result[:, j, :] = block ^ masks[0, j]
                continue
            work = np.bitwise_xor(column, masks[0, j])
            core = np.empty(count * _BLOCK + _BLOCK, dtype=np.uint8)
            ctx.update_into(work.data.cast("B"), core.data)
            np.bitwise_xor(core[: count * _BLOCK].view("<u8").reshape(count, 2), masks[0, j],
                           out=result[:, j, :])
        return out

    def encrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]:
        """Encrypt ``lines[i]`` (64 bytes) as the data unit at physical address ``addrs[i]``.

        Args:
            addrs: one address or an array of ``n`` addresses.
            lines: ``n * 64`` bytes, or a ``(n, 64)`` uint8 array.

        Returns:
            Ciphertext as a ``(n, 64)`` uint8 array.
        """
        return self._apply(addrs, lines, encrypt=True)

    def decrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]:
        """Inverse of :meth:`encrypt`."""
        return self._apply(addrs, lines, encrypt=False)
