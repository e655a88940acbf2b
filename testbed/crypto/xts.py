"""Batched AES-XTS-128 (IEEE 1619) over cache lines, with the physical address as tweak.

Each 64-byte line is one XTS data unit of four AES blocks. The data-unit sequence number is the
line's physical address, encoded as a 16-byte little-endian integer, as in IEEE 1619: block ``j``
of the line at address ``a`` is masked with ``T * alpha**j`` where ``T = AES_K2(a)``.

A batch of lines at arbitrary addresses is cut into chunks that stay in the CPU cache. Every
AES call is OpenSSL's, made as AES-ECB through OpenSSL's XTS code (``ecb_via_xts``: an XTS
context whose masks are all zero), which on CPUs with vector AES is several times faster than
its ECB code. Per group of up to 16384 lines:

1. one call encrypts every line's tweak: ``T_k = AES_K2(a_k)``;

then per chunk of up to 4096 lines (256 KiB):

2. one pass XORs block ``j`` of line ``k`` with ``T_k * alpha**j``;
3. one call encrypts (or decrypts) every block with ``K1``, straight into the output;
4. one pass XORs the same masks into the output, in place.

Steps 2 and 4 are the mask passes (``_kernels``: compiled vector loops where llvmlite works,
NumPy otherwise); step 4 of one chunk and step 2 of the next are one call. A cipher made with
``threads`` > 1 splits large batches across threads: every piece of the work releases the GIL
(the compiled passes release it; NumPy releases it for most of its work), and each thread has
its own OpenSSL contexts. The result is identical, line for line, to OpenSSL's XTS with one
call per line; the tests check it against OpenSSL and published vectors, with both passes.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ._kernels import MaskPasses, mask_passes, xts_mask_lines
from ._lines import (
    as_addresses,
    as_blocks,
    as_lines,
    ecb_via_xts,
    fork_safe_lock,
    masked_ecb_column,
)
from .grid import BlockGrid, masked_ecb_search, search_line

__all__ = ["XTS_KEY_SIZE", "XtsLineCipher", "engine_threads"]

XTS_KEY_SIZE = 32
"""AES-XTS-128 takes two 128-bit keys: data key then tweak key."""
_BLOCK = 16
_LINE_WORDS = 8
_CHUNK_LINES = 4096
"""Lines per XTS call on the data: 256 KiB, so that every pass stays in the L2 cache."""
_TWEAK_LINES = 4 * _CHUNK_LINES
"""Lines whose tweaks one XTS call computes (256 KiB of tweaks). Fewer, longer calls matter
when threads share the GIL: every call hands it over, and each handover costs microseconds."""
_PARALLEL_MIN_LINES = 3 * _TWEAK_LINES
"""Smaller batches run on the calling thread: splitting them costs more than it saves. On the
2-CPU machine of the README's speed table two threads broke even at about 32768 lines and,
when the machine let them, gained from 49152 on. Each thread's part is at least half this."""
_MAX_THREADS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _after_fork() -> None:
    global _pool, _pool_lock
    _pool = None  # a forked child has none of the parent's threads
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def engine_threads() -> int:
    """The CPUs this process may run on (at most 8): the most threads worth giving a cipher."""
    return max(1, min(_MAX_THREADS, len(os.sched_getaffinity(0))))


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="xts")
        return _pool


class _Lane:
    """One thread's OpenSSL contexts and scratch buffers, with their handles for the mask
    passes."""

    def __init__(self, key: bytes) -> None:
        self.tweak = ecb_via_xts(key[16:], encrypt=True)
        self.enc = ecb_via_xts(key[:16], encrypt=True)
        self.dec = ecb_via_xts(key[:16], encrypt=False)
        self.addresses = np.empty((_TWEAK_LINES, 2), dtype="<u8")
        self.address_bytes = self.addresses.data.cast("B")
        # cryptography's update_into wants room for one more block than it writes.
        self.tweaks = np.empty(_TWEAK_LINES * _BLOCK + _BLOCK, dtype=np.uint8)
        self.tweaks_out = self.tweaks.data
        self.work = np.empty(_CHUNK_LINES * 64, dtype=np.uint8)
        self.work_bytes = self.work.data
        self._passes: MaskPasses[Any] | None = None
        self._handles: tuple[Any, Any, Any] = (None, None, None)

    def handles(self, passes: MaskPasses[Any]) -> tuple[Any, Any, Any]:
        """The handles of the address blocks, tweaks and work lines for ``passes``."""
        if passes is not self._passes:
            tweaks = self.tweaks[: _TWEAK_LINES * _BLOCK].view("<u8").reshape(_TWEAK_LINES, 2)
            work = self.work.view("<u8").reshape(_CHUNK_LINES, _LINE_WORDS)
            self._handles = (passes.handle(self.addresses), passes.handle(tweaks),
                             passes.handle(work))
            self._passes = passes
        return self._handles


class XtsLineCipher:
    """AES-XTS-128 over 64-byte lines, tweak = physical address.

    Args:
        key: 32 bytes, data key (first half) then tweak key (second half). The halves must
            differ: OpenSSL refuses XTS keys with equal halves (a weak-key check), and so does this.
        threads: the most threads a large batch is split across: from 49152 lines, in parts of
            at least 24576 lines (whole 4096-line chunks). One by default: the scenario runner
            already gives each CPU a worker process, and on small virtual machines the split
            gains nothing as often as it gains (README, "Speed").

    Raises:
        ConfigError: the key has the wrong size or equal halves, or ``threads`` < 1.
    """

    label = "AES-XTS-128"
    reduced_width = False
    blocks_per_line = 4

    def __init__(self, key: bytes, threads: int = 1) -> None:
        if len(key) != XTS_KEY_SIZE:
            raise ConfigError(f"XTS key: expected {XTS_KEY_SIZE} bytes, got {len(key)}")
        data_key, tweak_key = key[:16], key[16:]
        if data_key == tweak_key:
            raise ConfigError("XTS key: the data and tweak halves must differ")
        if threads < 1:
            raise ConfigError(f"XTS threads: must be at least 1, got {threads}")
        self._key = key
        self._threads = threads
        self._lanes: list[_Lane] = []
        self._lock = fork_safe_lock(self)

    def _lane(self, index: int) -> _Lane:
        while len(self._lanes) <= index:
            self._lanes.append(_Lane(self._key))
        return self._lanes[index]

    @staticmethod
    def _run(lane: _Lane, addrs: NDArray[np.uint64], src: NDArray[np.uint64],
             dst: NDArray[np.uint64], dst_bytes: memoryview, encrypt: bool) -> None:
        """Lines ``src`` at ``addrs`` into ``dst`` (all C-contiguous; lines as ``(n, 8)``
        uint64), with ``lane``'s contexts and buffers. ``dst_bytes`` is ``dst``'s memory
        with room for one more block after it, for OpenSSL's output."""
        passes = mask_passes()
        mask, pair, blocks = passes.mask_lines, passes.mask_pair, passes.address_blocks
        h_addrs, h_src, h_dst = (passes.handle(a) for a in (addrs, src, dst))
        h_blocks, h_tweaks, h_work = lane.handles(passes)
        work = lane.work_bytes
        data = lane.enc if encrypt else lane.dec
        count = addrs.shape[0]
        for group in range(0, count, _TWEAK_LINES):
            size = min(_TWEAK_LINES, count - group)
            blocks(h_addrs, group, h_blocks, size)
            lane.tweak.update_into(lane.address_bytes[: size * _BLOCK], lane.tweaks_out)
            due = 0, 0  # (first line, lines) of the chunk whose step 4 is still to do
            for first in range(0, size, _CHUNK_LINES):
                m = min(_CHUNK_LINES, size - first)
                if first == 0:
                    mask(h_src, group, h_tweaks, 0, h_work, 0, m)
                else:
                    at = group + due[0]
                    pair(h_dst, at, h_tweaks, due[0], h_dst, at, due[1],
                         h_src, group + first, h_tweaks, first, h_work, 0, m)
                start = (group + first) * 64
                data.update_into(work[: m * 64], dst_bytes[start : start + m * 64 + _BLOCK])
                due = first, m
            at = group + due[0]
            mask(h_dst, at, h_tweaks, due[0], h_dst, at, due[1])

    def _apply(self, addrs: object, lines: object, *, encrypt: bool) -> NDArray[np.uint8]:
        addr_arr = np.ascontiguousarray(as_addresses(addrs))
        line_arr = as_lines(lines, addr_arr.shape[0])
        count = line_arr.shape[0]
        # OpenSSL writes each chunk's output straight into place; cryptography wants room for
        # one more block after it (never written): the buffer has that room at its end.
        buffer = np.empty(count * 64 + _BLOCK, dtype=np.uint8)
        out = buffer[: count * 64].reshape(count, 64)
        if count == 0:
            return out
        src = line_arr.view("<u8").reshape(count, _LINE_WORDS)
        dst = out.view("<u8").reshape(count, _LINE_WORDS)
        parts = min(self._threads, count // (_PARALLEL_MIN_LINES // 2)) if count >= \
            _PARALLEL_MIN_LINES else 1
        with self._lock:
            if parts <= 1:
                self._run(self._lane(0), addr_arr, src, dst, buffer.data, encrypt)
                return out
            # Whole chunks per thread; the calling thread takes the first part.
            per = -(-count // parts // _CHUNK_LINES) * _CHUNK_LINES
            bounds = [(i * per, min(count, (i + 1) * per)) for i in range(parts)]
            bounds = [(a, b) for a, b in bounds if a < b]
            lanes = [self._lane(i) for i in range(len(bounds))]
            futures: list[Future[None]] = []
            try:
                for i, (a, b) in enumerate(bounds[1:], start=1):
                    futures.append(_thread_pool().submit(
                        self._run, lanes[i], addr_arr[a:b], src[a:b], dst[a:b],
                        buffer.data[a * 64 :], encrypt))
                a, b = bounds[0]
                self._run(lanes[0], addr_arr[a:b], src[a:b], dst[a:b], buffer.data[a * 64 :],
                          encrypt)
            finally:
                wait(futures)  # no lane is still in use when the lock is released
            for future in futures:
                future.result()
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

    def encrypt_varying(
        self, addr: int, template: object, offset: int, blocks: object
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """Encrypt ``n`` lines at one address that differ only in the block at ``offset``.

        Line ``i`` is ``template`` with its 16 bytes at ``offset`` replaced by ``blocks[i]``.
        XTS encrypts each block on its own (under the line's key, address and block index),
        so every line's ciphertext is the template's ciphertext with its ``offset`` block
        replaced by the returned block; only that block costs AES work per line.

        Returns:
            ``(template_ciphertext (64,), block_ciphertexts (n, 16))``.
        """
        line, column = as_blocks(template, offset, blocks)
        head = self.encrypt(addr, line)[0]
        with self._lock:
            lane = self._lane(0)
            body = masked_ecb_column(lane.enc, *self._block_mask(lane, addr, offset), column)
        return head, body

    def search_varying(
        self, addr: int, template: object, offset: int, grid: BlockGrid, target: bytes
    ) -> tuple[int | None, NDArray[np.uint8]]:
        """Write the lines of :meth:`encrypt_varying` with the blocks of ``grid``, in order, up
        to the first whose ciphertext is ``target``; each block costs one AES call's share and
        no line is written out (:func:`~.grid.masked_ecb_search`).

        Returns:
            The index of the first matching line (``None``: none matched) and the ciphertext of
            the last line written (the match, or the grid's last line), ``(64,)``.
        """
        line, _ = as_blocks(template, offset, np.zeros((0, _BLOCK), dtype=np.uint8))
        head = self.encrypt(addr, line)[0]

        def search(want: bytes | None) -> tuple[int | None, NDArray[np.uint8]]:
            with self._lock:
                lane = self._lane(0)
                return masked_ecb_search(lane.enc, *self._block_mask(lane, addr, offset), grid,
                                         want)

        return search_line(head, offset, target, search)

    @staticmethod
    def _block_mask(lane: _Lane, addr: int, offset: int) -> tuple[int, int]:
        """The XTS mask of the block at ``offset`` of the line at ``addr``, as two words."""
        tweak = lane.tweak.update(addr.to_bytes(_BLOCK, "little"))
        masks = np.zeros((1, _LINE_WORDS), dtype="<u8")
        xts_mask_lines(masks, np.frombuffer(tweak, dtype="<u8").reshape(1, 2), masks)
        lo, hi = (int(word) for word in masks[0, offset // 8 : offset // 8 + 2])
        return lo, hi
