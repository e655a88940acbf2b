"""Compiled loops for the XTS masks: GF(2^128) doubling fused with the XOR into the data.

No AES here: every AES call is OpenSSL's. These loops do only what lies between the OpenSSL
calls, the per-block masks ``T * alpha**j`` of IEEE 1619 and the XOR with them, one pass over
the data each. Numba compiles them to machine code on first use (cached on disk) and releases
the GIL while they run, so batches split across threads run in parallel.

Blocks are ``uint64`` pairs ``(lo, hi)``: the little-endian 128-bit value ``hi * 2**64 + lo``.
Multiplying by alpha shifts it left by one bit and, when bit 127 falls off, XORs 0x87 into
``lo`` (the reduction polynomial x^128 + x^7 + x^2 + x + 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

__all__ = ["xts_chain", "xts_mask_lines"]


def _compiled(fn: Callable[..., None]) -> Any:
    """Compile ``fn`` without the GIL, cached on disk where a cache directory can be written
    (``NUMBA_CACHE_DIR`` chooses one). Without one it compiles anew in each process."""
    try:
        return njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True)(fn)

_ONE = np.uint64(1)
_TOP = np.uint64(63)
_POLY = np.uint64(0x87)


@_compiled
def xts_mask_lines(
    src: np.ndarray, tweaks: np.ndarray, chain: np.ndarray, dst: np.ndarray
) -> None:
    """``dst[k]`` = ``src[k]`` XOR the masks of line ``k``, for every row of ``tweaks``.

    Line ``k``'s block ``j`` is masked with ``(tweaks[k] ^ chain[k]) * alpha**j``. ``src`` and
    ``dst`` are ``(n, 8)`` uint64 (four blocks of a 64-byte line); ``tweaks`` and ``chain`` are
    ``(n, 2)``. ``dst`` may be ``src``.
    """
    for k in range(tweaks.shape[0]):
        lo = tweaks[k, 0] ^ chain[k, 0]
        hi = tweaks[k, 1] ^ chain[k, 1]
        for j in range(4):
            dst[k, 2 * j] = src[k, 2 * j] ^ lo
            dst[k, 2 * j + 1] = src[k, 2 * j + 1] ^ hi
            carry = (hi >> _TOP) * _POLY
            hi = (hi << _ONE) | (lo >> _TOP)
            lo = (lo << _ONE) ^ carry


@_compiled
def xts_chain(lo: np.uint64, hi: np.uint64, stride: int, out: np.ndarray) -> None:
    """``out[k]`` = ``(lo, hi) * alpha**(stride * k)``: where line ``k`` of a chunk starts in
    OpenSSL's own tweak sequence when the chunk is one XTS data unit."""
    for k in range(out.shape[0]):
        out[k, 0] = lo
        out[k, 1] = hi
        for _ in range(stride):
            carry = (hi >> _TOP) * _POLY
            hi = (hi << _ONE) | (lo >> _TOP)
            lo = (lo << _ONE) ^ carry
