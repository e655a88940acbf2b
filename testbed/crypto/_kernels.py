"""The one place that chooses how the XTS mask passes run, and their checked entry points.

Two implementations give the same bytes: ``_masks_numpy`` (the reference, always there) and
``_masks_llvm`` (compiled by llvmlite, the optional ``fast`` extra). The accelerator is used
when llvmlite imports, its JIT compiles the passes, and they give the reference's bytes on a
small batch; otherwise the NumPy passes are used and one info line on the ``testbed`` logger
says why. ``TESTBED_ACCEL=0`` in the environment chooses NumPy without trying llvmlite. The
choice is made once per process, on first use.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from . import _masks_numpy
from ._masks_numpy import NumpyPasses

__all__ = [
    "ACCEL_ENV",
    "KernelError",
    "MaskPasses",
    "address_blocks",
    "mask_backend",
    "mask_passes",
    "xts_mask_lines",
]

ACCEL_ENV = "TESTBED_ACCEL"
"""Set to ``0`` to use the NumPy passes even where llvmlite works."""

BackendName = Literal["llvmlite", "numpy"]
_H = TypeVar("_H")


class KernelError(ValueError):
    """An array handed to a kernel has the wrong dtype, shape or layout."""


class MaskPasses(Protocol[_H]):
    """The mask passes as the XTS engine's inner loop calls them, unchecked.

    A handle stands for a C-contiguous uint64 array (the array itself, or its address); every
    argument comes with the row it starts at. Line arrays are ``(n, 8)``, tweak and address
    block arrays ``(n, 2)``, address arrays ``(n,)``.
    """

    @property
    def name(self) -> BackendName: ...

    def handle(self, arr: NDArray[np.uint64]) -> _H: ...

    def address_blocks(self, addrs: _H, first: int, out: _H, n: int) -> None:
        """``out[k] = (addrs[first + k], 0)`` for ``k < n``."""
        ...

    def mask_lines(self, src: _H, s: int, tweaks: _H, t: int, dst: _H, d: int,
                   n: int) -> None:
        """``dst[d + k] = src[s + k] ^ masks(tweaks[t + k])`` for ``k < n``; in place allowed."""
        ...

    def mask_pair(self, src1: _H, s1: int, tweaks1: _H, t1: int, dst1: _H, d1: int, n1: int,
                  src2: _H, s2: int, tweaks2: _H, t2: int, dst2: _H, d2: int,
                  n2: int) -> None:
        """Two :meth:`mask_lines` calls, in order, in one call."""
        ...


_log = logging.getLogger("testbed")
_active: MaskPasses[Any] | None = None
_backend_lock = threading.Lock()


def _after_fork() -> None:
    global _backend_lock
    _backend_lock = threading.Lock()  # a forked child has none of the threads that held it


os.register_at_fork(after_in_child=_after_fork)


def _self_check(passes: MaskPasses[Any]) -> bool:
    """Whether ``passes`` give the NumPy reference's bytes on a small batch: an odd number of
    lines, tweaks with the top bits set (the reduction), addresses at both ends of 64 bits, and
    a pair call whose halves are of different sizes."""
    rng = np.random.default_rng(1619)
    n = 7
    src = rng.integers(0, 2**64, (n, 8), dtype=np.uint64, endpoint=False)
    tweaks = rng.integers(0, 2**64, (n, 2), dtype=np.uint64, endpoint=False)
    tweaks[:3, 1] |= np.uint64(0xE000_0000_0000_0000)
    addrs = np.array([0, 1, 2**63, 2**64 - 1, 64, 4096, 2**40 + 7], dtype=np.uint64)
    want_lines = np.empty_like(src)
    _masks_numpy.mask_lines(src, tweaks, want_lines)
    want_blocks = np.empty((n, 2), dtype=np.uint64)
    _masks_numpy.address_blocks(addrs, want_blocks)
    lines = np.zeros_like(src)
    pair = np.zeros_like(src)
    blocks = np.zeros((n, 2), dtype=np.uint64)
    h_src, h_tw, h_lines, h_pair = (passes.handle(a) for a in (src, tweaks, lines, pair))
    passes.mask_lines(h_src, 0, h_tw, 0, h_lines, 0, n)
    passes.mask_pair(h_src, 0, h_tw, 0, h_pair, 0, 3, h_src, 3, h_tw, 3, h_pair, 3, n - 3)
    passes.address_blocks(passes.handle(addrs), 0, passes.handle(blocks), n)
    return bool(np.array_equal(lines, want_lines) and np.array_equal(pair, want_lines)
                and np.array_equal(blocks, want_blocks))


def _choose() -> tuple[MaskPasses[Any], str]:
    """The passes to use, and why the NumPy ones when they are chosen (else "")."""
    if os.environ.get(ACCEL_ENV, "").strip() == "0":
        return NumpyPasses(), f"{ACCEL_ENV}=0 is set"
    try:
        from ._masks_llvm import LlvmPasses
    except ImportError as exc:
        return NumpyPasses(), f"llvmlite is not installed ({exc})"
    try:
        passes = LlvmPasses()
        ok = _self_check(passes)
    except Exception as exc:  # whatever the JIT raises, the reference takes over
        return NumpyPasses(), f"llvmlite's JIT failed ({type(exc).__name__}: {exc})"
    if not ok:
        return NumpyPasses(), "llvmlite's JIT gave wrong bytes in the self-check"
    return passes, ""


def mask_passes() -> MaskPasses[Any]:
    """The passes this process uses, chosen on first call (see the module docstring)."""
    global _active
    if _active is None:
        with _backend_lock:
            if _active is None:
                passes, why = _choose()
                if why:
                    _log.info("XTS mask passes: NumPy, because %s", why)
                _active = passes
    return _active


def mask_backend() -> BackendName:
    """Which implementation runs the XTS mask passes in this process: ``"llvmlite"`` (the
    compiled accelerator, ``pip install memcrypt-testbed[fast]``) or ``"numpy"`` (the
    reference; also chosen by ``TESTBED_ACCEL=0``)."""
    return mask_passes().name


def _checked(arr: NDArray[Any], name: str, rows: int, width: int, writable: bool = False) -> None:
    if arr.dtype != np.uint64 or arr.ndim != 2 or arr.shape[1] != width \
            or arr.shape[0] < rows or not arr.flags.c_contiguous:
        raise KernelError(f"{name}: expected a C-contiguous uint64 array of at least "
                          f"({rows}, {width}), got {arr.dtype} {arr.shape}")
    if writable and not arr.flags.writeable:
        raise KernelError(f"{name}: the array is read-only")


def xts_mask_lines(
    src: NDArray[np.uint64], tweaks: NDArray[np.uint64], dst: NDArray[np.uint64]
) -> None:
    """``dst[k]`` = ``src[k]`` XOR the masks of line ``k``, for every row of ``tweaks``.

    Line ``k``'s block ``j`` is masked with ``tweaks[k] * alpha**j``. ``src`` and ``dst`` are
    ``(n, 8)`` uint64 (four blocks of a 64-byte line); ``tweaks`` is ``(n, 2)``; all
    C-contiguous. ``dst`` may be ``src``.

    Raises:
        KernelError: an array has the wrong dtype, shape or layout.
    """
    _checked(tweaks, "tweaks", 0, 2)
    n = tweaks.shape[0]
    _checked(src, "src", n, 8)
    _checked(dst, "dst", n, 8, True)
    passes = mask_passes()
    passes.mask_lines(passes.handle(src), 0, passes.handle(tweaks), 0, passes.handle(dst), 0, n)


def address_blocks(addrs: NDArray[np.uint64], out: NDArray[np.uint64]) -> None:
    """``out[k]`` = ``(addrs[k], 0)``: each 64-bit address as a little-endian 128-bit block.
    ``addrs`` is ``(n,)`` and ``out`` ``(n, 2)``, both uint64 and C-contiguous.

    Raises:
        KernelError: an array has the wrong dtype, shape or layout.
    """
    if addrs.dtype != np.uint64 or addrs.ndim != 1 or not addrs.flags.c_contiguous:
        raise KernelError(f"addrs: expected a C-contiguous 1-D uint64 array, got "
                          f"{addrs.dtype} {addrs.shape}")
    n = addrs.shape[0]
    _checked(out, "out", n, 2, True)
    passes = mask_passes()
    passes.address_blocks(passes.handle(addrs), 0, passes.handle(out), n)
