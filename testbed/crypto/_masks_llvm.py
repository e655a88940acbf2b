"""The XTS mask passes compiled by llvmlite: the optional accelerator of ``_masks_numpy``.

The same passes as the NumPy reference (the per-block masks ``T * alpha**j`` of IEEE 1619 and
the XOR with them; no AES), written in LLVM IR with 512-bit vectors (one 64-byte line per
vector) and compiled by llvmlite for the CPU this process runs on; LLVM splits the vectors to
whatever width the CPU has. They are called through ctypes, which releases the GIL, so batches
split across threads run in parallel. ``_kernels`` uses them only after they have given the
reference's bytes on a small batch.

Blocks are ``uint64`` pairs ``(lo, hi)``: the little-endian 128-bit value ``hi * 2**64 + lo``.
Multiplying by alpha shifts it left by one bit and, when bit 127 falls off, XORs 0x87 into
``lo`` (the reduction polynomial x^128 + x^7 + x^2 + x + 1). For ``j <= 3`` the product by
``alpha**j`` has a closed form, which is what lets one vector compute a line's four masks:
``lo' = (lo << j) ^ t ^ (t << 1) ^ (t << 2) ^ (t << 7)`` and ``hi' = (hi << j) | (lo >> (64 - j))``
with ``t = hi >> (64 - j)``, the ``j`` bits that fell off.
"""

from __future__ import annotations

import ctypes
from typing import Any, Final

import llvmlite.binding as llvm
import numpy as np
from numpy.typing import NDArray

__all__ = ["Library", "LlvmPasses"]

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


class LlvmPasses:
    """The passes as the XTS engine calls them: a handle is an array's address, each argument
    comes with the row it starts at. Compiles the loops (a few milliseconds) when made.

    Raises:
        Exception: whatever llvmlite raises when the IR does not compile for this CPU.
    """

    name: Final = "llvmlite"

    def __init__(self) -> None:
        self.library = Library()
        self._mask = self.library.mask_lines
        self._pair = self.library.mask_pair
        self._blocks = self.library.address_blocks

    def handle(self, arr: NDArray[np.uint64]) -> int:
        return int(arr.ctypes.data)

    def address_blocks(self, addrs: int, first: int, out: int, n: int) -> None:
        self._blocks(addrs + 8 * first, out, n)

    def mask_lines(self, src: int, s: int, tweaks: int, t: int, dst: int, d: int,
                   n: int) -> None:
        self._mask(src + 64 * s, tweaks + 16 * t, dst + 64 * d, n)

    def mask_pair(self, src1: int, s1: int, tweaks1: int, t1: int, dst1: int, d1: int,
                  n1: int, src2: int, s2: int, tweaks2: int, t2: int, dst2: int, d2: int,
                  n2: int) -> None:
        self._pair(src1 + 64 * s1, tweaks1 + 16 * t1, dst1 + 64 * d1, n1,
                   src2 + 64 * s2, tweaks2 + 16 * t2, dst2 + 64 * d2, n2)
