"""Batched AES-XTS-128 (IEEE 1619) over cache lines, with the physical address as tweak.

Each 64-byte line is one XTS data unit of four AES blocks. The data-unit sequence number is the
line's physical address, encoded as a 16-byte little-endian integer, as in IEEE 1619. A batch of
lines at arbitrary addresses costs two OpenSSL calls: one AES-ECB call encrypts every tweak with
the tweak key, NumPy derives the per-block masks by doubling in GF(2^128), and one AES-ECB call
encrypts (or decrypts) all the masked data.

The result is identical, line for line, to OpenSSL's own XTS (``modes.XTS``); the tests check it.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

from ..errors import ConfigError
from ._gf128 import alpha_powers
from ._lines import as_addresses, as_lines

__all__ = ["XTS_KEY_SIZE", "XtsLineCipher"]

XTS_KEY_SIZE = 32
"""AES-XTS-128 takes two 128-bit keys: data key then tweak key."""
_BLOCK = 16


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
        self._data = Cipher(algorithms.AES(data_key), modes.ECB())
        self._tweak = Cipher(algorithms.AES(tweak_key), modes.ECB()).encryptor()

    def _masks(self, addrs: NDArray[np.uint64], per_line: int) -> NDArray[np.uint64]:
        tweaks = np.zeros((addrs.shape[0], 2), dtype="<u8")
        tweaks[:, 0] = addrs
        encrypted = np.frombuffer(self._tweak.update(tweaks.tobytes()), dtype="<u8")
        return alpha_powers(encrypted.reshape(-1, 2), per_line)

    def _apply(self, addrs: object, lines: object, *, encrypt: bool) -> NDArray[np.uint8]:
        addr_arr = as_addresses(addrs)
        line_arr = as_lines(lines, addr_arr.shape[0])
        if line_arr.shape[0] == 0:
            return line_arr.copy()
        per_line = line_arr.shape[1] // _BLOCK
        masks = self._masks(addr_arr, per_line)
        words = line_arr.view("<u8").reshape(-1, per_line, 2)
        masked = (words ^ masks).tobytes()
        ctx = self._data.encryptor() if encrypt else self._data.decryptor()
        core = np.frombuffer(ctx.update(masked), dtype="<u8").reshape(masks.shape)
        return (core ^ masks).view(np.uint8).reshape(line_arr.shape)

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
