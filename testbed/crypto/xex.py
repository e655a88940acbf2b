"""Batched AES-128 XEX with a physical-address tweak: the SEV memory-encryption model.

AMD does not publish the exact tweak function. This model follows the XEX construction: every
16-byte block at physical address ``a`` is masked with ``T = AES_K(a)`` (``a`` as a 16-byte
little-endian integer) before and after encryption under the same per-ASID key ``K``. The same
plaintext at two addresses therefore encrypts differently, and there is no integrity: any
ciphertext written back at its own address decrypts again.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..types import LINE_SIZE
from ._lines import (
    as_addresses,
    as_blocks,
    as_lines,
    ecb_via_xts,
    fork_safe_lock,
    masked_ecb_column,
)
from .grid import BlockGrid, masked_ecb_search, search_line

__all__ = ["XEX_KEY_SIZE", "XexLineCipher"]

XEX_KEY_SIZE = 16
_BLOCK = 16
_PER_LINE = LINE_SIZE // _BLOCK
_CHUNK_LINES = 4096
"""Lines per step: 256 KiB of data, one OpenSSL call each for tweaks and data."""


class XexLineCipher:
    """AES-128 XEX over 64-byte lines; each block's tweak is its own physical address.

    Args:
        key: 16 bytes (one SEV guest key).

    Safe to share between threads: calls take turns on the cipher's OpenSSL contexts.
    """

    label = "AES-128-XEX"
    reduced_width = False
    blocks_per_line = _PER_LINE

    def __init__(self, key: bytes) -> None:
        if len(key) != XEX_KEY_SIZE:
            raise ConfigError(f"XEX key: expected {XEX_KEY_SIZE} bytes, got {len(key)}")
        # AES-ECB under the guest key, through OpenSSL's faster XTS code (see ecb_via_xts).
        self._enc = ecb_via_xts(key, encrypt=True)
        self._dec = ecb_via_xts(key, encrypt=False)
        self._lock = fork_safe_lock(self)

    def _masks(self, addrs: NDArray[np.uint64]) -> NDArray[np.uint64]:
        offsets = np.arange(_PER_LINE, dtype=np.uint64) * np.uint64(_BLOCK)
        tweaks = np.zeros((addrs.shape[0] * _PER_LINE, 2), dtype="<u8")
        tweaks[:, 0] = (addrs[:, None] + offsets[None, :]).reshape(-1)
        out = np.frombuffer(self._enc.update(tweaks.tobytes()), dtype="<u8")
        return out.reshape(-1, _PER_LINE, 2)

    def _apply(self, addrs: object, lines: object, *, encrypt: bool) -> NDArray[np.uint8]:
        addr_arr = as_addresses(addrs)
        line_arr = as_lines(lines, addr_arr.shape[0])
        out = np.empty_like(line_arr)
        with self._lock:
            self._apply_locked(addr_arr, line_arr, out, encrypt)
        return out

    def _apply_locked(self, addr_arr: NDArray[np.uint64], line_arr: NDArray[np.uint8],
                      out: NDArray[np.uint8], encrypt: bool) -> None:
        ctx = self._enc if encrypt else self._dec
        for start in range(0, line_arr.shape[0], _CHUNK_LINES):
            stop = min(line_arr.shape[0], start + _CHUNK_LINES)
            masks = self._masks(addr_arr[start:stop])
            masked = (line_arr[start:stop].view("<u8").reshape(masks.shape) ^ masks).tobytes()
            core = np.frombuffer(ctx.update(masked), dtype="<u8").reshape(masks.shape)
            out[start:stop] = (core ^ masks).view(np.uint8).reshape(stop - start, LINE_SIZE)

    def encrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]:
        """Encrypt ``n`` lines at ``n`` physical addresses; returns ``(n, 64)`` uint8."""
        return self._apply(addrs, lines, encrypt=True)

    def decrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]:
        """Inverse of :meth:`encrypt`."""
        return self._apply(addrs, lines, encrypt=False)

    def encrypt_varying(
        self, addr: int, template: object, offset: int, blocks: object
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """``n`` lines at ``addr`` that differ only in the 16-byte block at ``offset``: the
        template's ciphertext once, and the ciphertext of each line's ``offset`` block (each
        block is masked with its own address's tweak, so the others never change)."""
        line, column = as_blocks(template, offset, blocks)
        head = self._apply(addr, line, encrypt=True)[0]
        with self._lock:
            body = masked_ecb_column(self._enc, *self._block_mask(addr + offset), column)
        return head, body

    def search_varying(
        self, addr: int, template: object, offset: int, grid: BlockGrid, target: bytes
    ) -> tuple[int | None, NDArray[np.uint8]]:
        """Write the lines of :meth:`encrypt_varying` with the blocks of ``grid``, in order, up
        to the first whose ciphertext is ``target`` (:func:`~.grid.masked_ecb_search`).
        Returns its index (``None``: none matched) and the last line written, ``(64,)``."""
        line, _ = as_blocks(template, offset, np.zeros((0, _BLOCK), dtype=np.uint8))
        head = self._apply(addr, line, encrypt=True)[0]

        def search(want: bytes | None) -> tuple[int | None, NDArray[np.uint8]]:
            with self._lock:
                return masked_ecb_search(self._enc, *self._block_mask(addr + offset), grid, want)

        return search_line(head, offset, target, search)

    def _block_mask(self, block_addr: int) -> tuple[int, int]:
        """The XEX mask ``AES_K(a)`` of the block at ``block_addr``, as two words (the caller
        holds the lock)."""
        mask = int.from_bytes(self._enc.update(block_addr.to_bytes(_BLOCK, "little")), "little")
        return mask & (2**64 - 1), mask >> 64
