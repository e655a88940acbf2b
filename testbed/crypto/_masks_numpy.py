"""The XTS mask passes in NumPy: the reference every accelerator is checked against.

No AES here: every AES call is OpenSSL's. These passes do only what lies between the OpenSSL
calls, the per-block masks ``T * alpha**j`` of IEEE 1619 and the XOR with them, vectorised over
the lines of a batch (one NumPy operation per block index, never a Python loop over lines).

Blocks are ``uint64`` pairs ``(lo, hi)``: the little-endian 128-bit value ``hi * 2**64 + lo``.
Multiplying by alpha shifts it left by one bit and, when bit 127 falls off, XORs 0x87 into
``lo`` (the reduction polynomial x^128 + x^7 + x^2 + x + 1).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["NumpyPasses", "address_blocks", "line_masks", "mask_lines"]

_U64 = NDArray[np.uint64]
_BLOCKS_PER_LINE = 4
_ONE = np.uint64(1)
_TOP = np.uint64(63)
_POLY = np.uint64(0x87)


def line_masks(tweaks: _U64) -> _U64:
    """The four masks of each line: row ``k`` of the ``(n, 8)`` result holds
    ``tweaks[k] * alpha**j`` for ``j`` = 0..3, as ``(lo, hi)`` pairs. ``tweaks`` is ``(n, 2)``."""
    lo = np.array(tweaks[:, 0], dtype=np.uint64)
    hi = np.array(tweaks[:, 1], dtype=np.uint64)
    out = np.empty((tweaks.shape[0], 2 * _BLOCKS_PER_LINE), dtype=np.uint64)
    out[:, 0], out[:, 1] = lo, hi
    for j in range(1, _BLOCKS_PER_LINE):
        fold = (hi >> _TOP) * _POLY  # 0x87 where bit 127 falls off, else 0
        hi = (hi << _ONE) | (lo >> _TOP)
        lo = (lo << _ONE) ^ fold
        out[:, 2 * j], out[:, 2 * j + 1] = lo, hi
    return out


def mask_lines(src: _U64, tweaks: _U64, dst: _U64) -> None:
    """``dst[k]`` = ``src[k]`` XOR the masks of line ``k`` (:func:`line_masks`), for every row
    of ``tweaks``. ``src`` and ``dst`` are ``(n, 8)``, ``tweaks`` ``(n, 2)``; ``dst`` may be
    ``src``. Unchecked: the caller has checked shapes and dtypes."""
    n = tweaks.shape[0]
    if n:
        np.bitwise_xor(src[:n], line_masks(tweaks), out=dst[:n])


def address_blocks(addrs: _U64, out: _U64) -> None:
    """``out[k]`` = ``(addrs[k], 0)``: each 64-bit address as a little-endian 128-bit block.
    Unchecked: ``addrs`` is ``(n,)`` and ``out`` at least ``(n, 2)``."""
    n = addrs.shape[0]
    out[:n, 0] = addrs
    out[:n, 1] = 0


class NumpyPasses:
    """The passes as the XTS engine calls them: on arrays (a handle is the array itself), each
    argument with the row it starts at."""

    name: Final = "numpy"

    def handle(self, arr: _U64) -> _U64:
        return arr

    def address_blocks(self, addrs: _U64, first: int, out: _U64, n: int) -> None:
        address_blocks(addrs[first : first + n], out)

    def mask_lines(self, src: _U64, s: int, tweaks: _U64, t: int, dst: _U64, d: int,
                   n: int) -> None:
        mask_lines(src[s : s + n], tweaks[t : t + n], dst[d : d + n])

    def mask_pair(self, src1: _U64, s1: int, tweaks1: _U64, t1: int, dst1: _U64, d1: int,
                  n1: int, src2: _U64, s2: int, tweaks2: _U64, t2: int, dst2: _U64, d2: int,
                  n2: int) -> None:
        self.mask_lines(src1, s1, tweaks1, t1, dst1, d1, n1)
        self.mask_lines(src2, s2, tweaks2, t2, dst2, d2, n2)
