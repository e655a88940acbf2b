"""Vectorised arithmetic in GF(2^128) as IEEE 1619 (XTS) defines it.

A 16-byte block is read as a little-endian 128-bit integer; "multiply by alpha" shifts it left
by one bit and, when bit 127 falls off, XORs 0x87 into the lowest byte. Blocks are held as
``uint64`` pairs ``(lo, hi)`` so that a whole batch is doubled with a few NumPy operations.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["mask_block"]

_U64 = np.dtype("<u8")
_POLY = np.uint64(0x87)
_ONE = np.uint64(1)
_SIXTY_THREE = np.uint64(63)


def mask_block(first: NDArray[np.uint64], out: NDArray[np.uint64]) -> None:
    """Fill ``out[:, j]`` with ``first * alpha**j`` (the XTS masks of one data unit per row).

    The doubling runs on contiguous ``lo``/``hi`` vectors; only the final stores are strided.

    Args:
        first: shape ``(n, 2)``, the encrypted tweaks.
        out: shape ``(n, count, 2)``, written.
    """
    lo = np.ascontiguousarray(first[:, 0])
    hi = np.ascontiguousarray(first[:, 1])
    out[:, 0, 0] = lo
    out[:, 0, 1] = hi
    for j in range(1, out.shape[1]):
        carry = (hi >> _SIXTY_THREE) * _POLY
        hi = (hi << _ONE) | (lo >> _SIXTY_THREE)
        lo = (lo << _ONE) ^ carry
        out[:, j, 0] = lo
        out[:, j, 1] = hi
