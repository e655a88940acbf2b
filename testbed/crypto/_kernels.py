"""Compiled loops for the XTS masks: GF(2^128) multiplication by alpha fused with the XOR.

No AES here: every AES call is OpenSSL's. These loops do only what lies between the OpenSSL
calls, the per-block masks ``T * alpha**j`` of IEEE 1619 and the XOR with them. They are
written in LLVM IR with 512-bit vectors (one 64-byte line per vector) and compiled by
llvmlite for the CPU this process runs on; LLVM splits the vectors to whatever width the CPU
has. They are called through ctypes, which releases the GIL, so batches split across threads
run in parallel.

Blocks are ``uint64`` pairs ``(lo, hi)``: the little-endian 128-bit value ``hi * 2**64 + lo``.
Multiplying by alpha shifts it left by one bit and, when bit 127 falls off, XORs 0x87 into
``lo`` (the reduction polynomial x^128 + x^7 + x^2 + x + 1). For ``j <= 3`` the product by
``alpha**j`` has a closed form, which is what lets one vector compute a line's four masks:
``lo' = (lo << j) ^ t ^ (t << 1) ^ (t << 2) ^ (t << 7)`` and ``hi' = (hi << j) | (lo >> (64 - j))``
with ``t = hi >> (64 - j)``, the ``j`` bits that fell off.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any

import llvmlite.binding as llvm
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "KernelError",
    "Library",
    "address_blocks",
    "compiled",
    "xts_mask_lines",
]


class KernelError(ValueError):
    """An array handed to a kernel has the wrong dtype, shape or layout."""


_V8 = "<8 x i64>"


def _v8(*values: int) -> str:
    return "<" + ", ".join(f"i64 {v}" for v in values) + ">"


_IR = f"""
; dst[k] = src[k] ^ [t, t*a, t*a^2, t*a^3] with t = tweaks[k], for k < n.
; src/dst: n lines of 8 x i64; tweaks: n blocks of 2 x i64. dst may be src.
define void @mask_lines(ptr %src, ptr %tweaks, ptr %dst, i64 %n) nounwind {{
entry:
  %none = icmp eq i64 %n, 0
  br i1 %none, label %done, label %line
line:
  %k = phi i64 [0, %entry], [%next, %line]
  %tp = getelementptr <2 x i64>, ptr %tweaks, i64 %k
  %t = load <2 x i64>, ptr %tp, align 1
  ; self: (lo, hi) in every block; other: (hi, lo), the word whose top bits shift in.
  %self = shufflevector <2 x i64> %t, <2 x i64> poison,
          <8 x i32> <i32 0, i32 1, i32 0, i32 1, i32 0, i32 1, i32 0, i32 1>
  %other = shufflevector <2 x i64> %t, <2 x i64> poison,
           <8 x i32> <i32 1, i32 0, i32 1, i32 0, i32 1, i32 0, i32 1, i32 0>
  ; the top j bits of other (j = block index), as two shifts so that j = 0 gives 0.
  %half = lshr {_V8} %other, {_v8(*[1] * 8)}
  %fell = lshr {_V8} %half, {_v8(63, 63, 62, 62, 61, 61, 60, 60)}
  %f1 = shl {_V8} %fell, {_v8(1, 0, 1, 0, 1, 0, 1, 0)}
  %f2 = shl {_V8} %fell, {_v8(2, 0, 2, 0, 2, 0, 2, 0)}
  %f7 = shl {_V8} %fell, {_v8(7, 0, 7, 0, 7, 0, 7, 0)}
  %f12 = xor {_V8} %f1, %f2
  %f127 = xor {_V8} %f12, %f7
  %folds = and {_V8} %f127, {_v8(-1, 0, -1, 0, -1, 0, -1, 0)}
  %carry = xor {_V8} %folds, %fell
  %shifted = shl {_V8} %self, {_v8(0, 0, 1, 1, 2, 2, 3, 3)}
  %mask = xor {_V8} %shifted, %carry
  %sp = getelementptr {_V8}, ptr %src, i64 %k
  %s = load {_V8}, ptr %sp, align 1
  %x = xor {_V8} %s, %mask
  %dp = getelementptr {_V8}, ptr %dst, i64 %k
  store {_V8} %x, ptr %dp, align 1
  %next = add i64 %k, 1
  %end = icmp eq i64 %next, %n
  br i1 %end, label %done, label %line
done:
  ret void
}}

; Two mask_lines calls in one: the engine finishes one chunk and starts the next with one
; call into native code instead of two.
define void @mask_pair(ptr %src1, ptr %tweaks1, ptr %dst1, i64 %n1,
                       ptr %src2, ptr %tweaks2, ptr %dst2, i64 %n2) nounwind {{
  call void @mask_lines(ptr %src1, ptr %tweaks1, ptr %dst1, i64 %n1)
  call void @mask_lines(ptr %src2, ptr %tweaks2, ptr %dst2, i64 %n2)
  ret void
}}

; out[k] = (addrs[k], 0), for k < n: 64-bit addresses as little-endian 128-bit blocks.
; Four at a time, then one at a time.
define void @address_blocks(ptr %addrs, ptr %out, i64 %n) nounwind {{
entry:
  %quads = lshr i64 %n, 2
  %noquad = icmp eq i64 %quads, 0
  br i1 %noquad, label %tail, label %quad
quad:
  %q = phi i64 [0, %entry], [%qnext, %quad]
  %ap = getelementptr <4 x i64>, ptr %addrs, i64 %q
  %a = load <4 x i64>, ptr %ap, align 1
  %wide = shufflevector <4 x i64> %a, <4 x i64> zeroinitializer,
          <8 x i32> <i32 0, i32 4, i32 1, i32 4, i32 2, i32 4, i32 3, i32 4>
  %op = getelementptr {_V8}, ptr %out, i64 %q
  store {_V8} %wide, ptr %op, align 1
  %qnext = add i64 %q, 1
  %qend = icmp eq i64 %qnext, %quads
  br i1 %qend, label %tail, label %quad
tail:
  %first = shl i64 %quads, 2
  %notail = icmp eq i64 %first, %n
  br i1 %notail, label %done, label %one
one:
  %k = phi i64 [%first, %tail], [%knext, %one]
  %a1p = getelementptr i64, ptr %addrs, i64 %k
  %a1 = load i64, ptr %a1p, align 1
  %w1 = insertelement <2 x i64> zeroinitializer, i64 %a1, i32 0
  %o1p = getelementptr <2 x i64>, ptr %out, i64 %k
  store <2 x i64> %w1, ptr %o1p, align 1
  %knext = add i64 %k, 1
  %end = icmp eq i64 %knext, %n
  br i1 %end, label %done, label %one
done:
  ret void
}}
"""

_MaskFn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, ctypes.c_int64)
_PairFn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, ctypes.c_int64,
                           *[ctypes.c_void_p] * 3, ctypes.c_int64)
_BlocksFn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 2, ctypes.c_int64)


class Library:
    """The compiled loops as ctypes functions taking raw addresses, unchecked: for callers
    that own their buffers and have checked them (the engine's inner loop). The JIT engine
    must outlive every call into it, so it is kept here."""

    def __init__(self) -> None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = llvm.parse_assembly(_IR)
        module.verify()
        try:
            features = llvm.get_host_cpu_features().flatten()
        except RuntimeError:  # not every platform reports them: LLVM's defaults for the CPU
            features = ""
        machine = llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=features, opt=3,
        )
        self.engine: Any = llvm.create_mcjit_compiler(module, machine)
        self.engine.finalize_object()
        self.mask_lines = _MaskFn(self.engine.get_function_address("mask_lines"))
        self.mask_pair = _PairFn(self.engine.get_function_address("mask_pair"))
        self.address_blocks = _BlocksFn(self.engine.get_function_address("address_blocks"))


_library: Library | None = None
_library_lock = threading.Lock()


def _after_fork() -> None:
    global _library_lock
    _library_lock = threading.Lock()  # a forked child has none of the threads that held it


os.register_at_fork(after_in_child=_after_fork)


def compiled() -> Library:
    """The loops, compiled on first use (a few milliseconds) for this process's CPU."""
    global _library
    if _library is None:
        with _library_lock:
            if _library is None:
                _library = Library()
    return _library


def _checked(arr: NDArray[Any], name: str, rows: int, width: int, writable: bool = False) -> int:
    if arr.dtype != np.uint64 or arr.ndim != 2 or arr.shape[1] != width \
            or arr.shape[0] < rows or not arr.flags.c_contiguous:
        raise KernelError(f"{name}: expected a C-contiguous uint64 array of at least "
                          f"({rows}, {width}), got {arr.dtype} {arr.shape}")
    if writable and not arr.flags.writeable:
        raise KernelError(f"{name}: the array is read-only")
    return int(arr.ctypes.data)


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
    tw = _checked(tweaks, "tweaks", 0, 2)
    n = tweaks.shape[0]
    compiled().mask_lines(_checked(src, "src", n, 8), tw, _checked(dst, "dst", n, 8, True), n)


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
    compiled().address_blocks(int(addrs.ctypes.data), _checked(out, "out", n, 2, True), n)
