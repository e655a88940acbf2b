"""Batched AES-XTS-128 (IEEE 1619) over cache lines, with the physical address as tweak.

Each 64-byte line is one XTS data unit of four AES blocks. The data-unit sequence number is the
line's physical address, encoded as a 16-byte little-endian integer, as in IEEE 1619: block ``j``
of the line at address ``a`` is masked with ``T * alpha**j`` where ``T = AES_K2(a)``.

A batch of lines at arbitrary addresses is cut into chunks that stay in the CPU cache, and each
chunk costs two OpenSSL calls and two passes over the data. OpenSSL's AES-XTS is its fastest
AES path (several times its ECB on CPUs with vector AES), so both calls are XTS calls that
treat a whole chunk as one data unit at tweak 0, and the per-line differences are XORed in:

1. the line tweaks ``T_k = AES_K2(a_k)``: one XTS call under the swapped key (``K2`` encrypts,
   ``K1`` makes the tweaks) on the blocks ``a_k ^ R_k``, where ``R_k = AES_K1(0) * alpha**k`` is
   that call's own mask for block ``k``. The call returns ``T_k ^ R_k``;
2. one pass XORs each block of line ``k`` with ``D_k * alpha**j``, where ``D_k = T_k ^ S_k``
   and ``S_k = AES_K2(0) * alpha**(4k)``. The constant ``R_k ^ S_k`` is kept per cipher, so
   the pass takes step 1's output as it is;
3. one XTS call under the real key: OpenSSL masks block ``4k+j`` with ``S_k * alpha**j`` (its
   own tweak sequence), so together with step 2 every block gets its own line's mask
   ``T_k * alpha**j``;
4. one pass XORs the same ``D_k * alpha**j`` into OpenSSL's output.

Steps 2 and 4 are compiled vector loops (``_kernels``); the AES work is all OpenSSL's. Large
batches are split across threads: every piece of the work releases the GIL, and each thread has
its own OpenSSL contexts. The result is identical, line for line, to OpenSSL's XTS with one call
per line; the tests check it against OpenSSL and published vectors.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

from ..errors import ConfigError
from ._kernels import compiled, xts_chain
from ._lines import as_addresses, as_blocks, as_lines, masked_ecb_column

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
"""Smaller batches run on the calling thread: splitting them costs more than it saves (on
the 2-CPU machine of the README's speed table, two threads break even at about 32768 lines
and gain from 49152 on)."""
_MAX_THREADS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_forget_pool)


def engine_threads() -> int:
    """Threads a large batch is split across: the CPUs this process may run on (at most 8)."""
    return max(1, min(_MAX_THREADS, len(os.sched_getaffinity(0))))


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="xts")
        return _pool


@functools.cache
def _xts_update_restarts() -> bool:
    """Whether each ``update`` of one OpenSSL XTS context is a fresh data unit at the same
    tweak (OpenSSL's behaviour). If a build ever chains updates instead, every chunk gets a
    context of its own, which is slower but still correct."""
    ctx = Cipher(algorithms.AES(bytes(range(32))), modes.XTS(bytes(16))).encryptor()
    block = bytes(32)
    return ctx.update(block) == ctx.update(block)


@dataclass(frozen=True)
class _Tables:
    """A cipher's constants for chunk position ``k`` (one row per line of a chunk)."""

    offsets: NDArray[np.uint64]
    """``R_k ^ S_k``: turns step 1's output into ``D_k = T_k ^ S_k``."""
    spread: NDArray[np.uint64]
    """``R_k = AES_K1(0) * alpha**k``: the swapped-key call's own mask for block ``k``."""


class _Lane:
    """One thread's OpenSSL contexts and scratch buffers, with their raw addresses for the
    compiled passes."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.tweak_key = key[16:] + key[:16]
        self.tweak = self._xts(self.tweak_key, encrypt=True)
        self.enc = self._xts(key, encrypt=True)
        self.dec = self._xts(key, encrypt=False)
        self.addresses = np.empty((_TWEAK_LINES, 2), dtype="<u8")
        self.address_bytes = self.addresses.data.cast("B")
        # OpenSSL's update_into wants room for one extra block.
        self.tweaks = np.empty(_TWEAK_LINES * _BLOCK + _BLOCK, dtype=np.uint8)
        self.work = np.empty(_CHUNK_LINES * 64, dtype=np.uint8)
        self.work_bytes = self.work.data
        self.core = np.empty(_CHUNK_LINES * 64 + _BLOCK, dtype=np.uint8)
        self.tweaks_out = self.tweaks.data
        self.core_out = self.core.data
        self.addresses_at = int(self.addresses.ctypes.data)
        self.tweaks_at = int(self.tweaks.ctypes.data)
        self.work_at = int(self.work.ctypes.data)
        self.core_at = int(self.core.ctypes.data)

    @staticmethod
    def _xts(key: bytes, *, encrypt: bool) -> Any:
        cipher = Cipher(algorithms.AES(key), modes.XTS(bytes(_BLOCK)))
        return cipher.encryptor() if encrypt else cipher.decryptor()

    def context(self, *, encrypt: bool) -> Any:
        if _xts_update_restarts():
            return self.enc if encrypt else self.dec
        return self._xts(self.key, encrypt=encrypt)

    def tweak_context(self) -> Any:
        if _xts_update_restarts():
            return self.tweak
        return self._xts(self.tweak_key, encrypt=True)


class XtsLineCipher:
    """AES-XTS-128 over 64-byte lines, tweak = physical address.

    Args:
        key: 32 bytes, data key (first half) then tweak key (second half). The halves must
            differ: OpenSSL refuses XTS keys with equal halves (a weak-key check), and so does this.
        threads: how many threads a large batch may use; ``None`` means :func:`engine_threads`.

    Raises:
        ConfigError: the key has the wrong size or equal halves, or ``threads`` < 1.
    """

    label = "AES-XTS-128"
    reduced_width = False
    blocks_per_line = 4

    def __init__(self, key: bytes, threads: int | None = None) -> None:
        if len(key) != XTS_KEY_SIZE:
            raise ConfigError(f"XTS key: expected {XTS_KEY_SIZE} bytes, got {len(key)}")
        data_key, tweak_key = key[:16], key[16:]
        if data_key == tweak_key:
            raise ConfigError("XTS key: the data and tweak halves must differ")
        if threads is not None and threads < 1:
            raise ConfigError(f"XTS threads: must be at least 1, got {threads}")
        self._key = key
        self._threads = threads
        self._ecb = Cipher(algorithms.AES(data_key), modes.ECB())
        self._tweak = Cipher(algorithms.AES(tweak_key), modes.ECB()).encryptor()
        self._lanes: list[_Lane] = []
        self._tables_cache: _Tables | None = None
        self._lock = threading.Lock()

    def _mask(self, addr: int) -> list[tuple[int, int]]:
        """The four block masks ``T * alpha**j`` of the line at ``addr`` as (lo, hi) pairs.
        Called with the lock held: the tweak context is shared."""
        value = int.from_bytes(self._tweak.update(addr.to_bytes(_BLOCK, "little")), "little")
        masks = []
        for _ in range(4):
            masks.append((value & (2**64 - 1), value >> 64))
            value <<= 1
            if value >> 128:
                value ^= (1 << 128) | 0x87
        return masks

    def _tables(self) -> _Tables:
        """The per-cipher constants of a chunk (computed once, with the lock held)."""
        if self._tables_cache is None:
            own = np.empty((_CHUNK_LINES, 2), dtype="<u8")
            lo, hi = self._mask(0)[0]  # S_0 = AES_K2(0)
            xts_chain(lo, hi, 4, own)
            spread = np.empty((_TWEAK_LINES, 2), dtype="<u8")
            r0 = int.from_bytes(self._ecb.encryptor().update(bytes(_BLOCK)), "little")
            xts_chain(r0 & (2**64 - 1), r0 >> 64, 1, spread)  # R_k = AES_K1(0) * alpha**k
            offsets = np.bitwise_xor(np.tile(own, (_TWEAK_LINES // _CHUNK_LINES, 1)), spread)
            self._tables_cache = _Tables(offsets=offsets, spread=spread)
        return self._tables_cache

    def _lane(self, index: int) -> _Lane:
        while len(self._lanes) <= index:
            self._lanes.append(_Lane(self._key))
        return self._lanes[index]

    @staticmethod
    def _run(lane: _Lane, tables: _Tables, addrs: NDArray[np.uint64], src: NDArray[np.uint64],
             dst: NDArray[np.uint64], encrypt: bool) -> None:
        """Lines ``src`` at ``addrs`` into ``dst`` (all C-contiguous; lines as ``(n, 8)``
        uint64), with ``lane``'s contexts and buffers.

        Per group of up to :data:`_TWEAK_LINES` lines: step 1 (one call for the group's
        tweaks), then per chunk of :data:`_CHUNK_LINES` steps 2-4, where one native call does
        step 4 of a chunk and step 2 of the next."""
        kernels = compiled()
        mask, pair, spread = kernels.mask_lines, kernels.mask_pair, kernels.spread_addresses
        addrs_at, src_at, dst_at = (int(a.ctypes.data) for a in (addrs, src, dst))
        offsets_at, spread_at = int(tables.offsets.ctypes.data), int(tables.spread.ctypes.data)
        work_at, core_at, tweaks_at = lane.work_at, lane.core_at, lane.tweaks_at
        count = addrs.shape[0]
        for group in range(0, count, _TWEAK_LINES):
            size = min(_TWEAK_LINES, count - group)
            spread(addrs_at + group * 8, spread_at, lane.addresses_at, size)
            lane.tweak_context().update_into(lane.address_bytes[: size * _BLOCK], lane.tweaks_out)
            done = (0, 0)  # (first line, lines) of the chunk whose step 4 is due
            for first in range(0, size, _CHUNK_LINES):
                m = min(_CHUNK_LINES, size - first)
                if first == 0:
                    mask(src_at + group * 64, tweaks_at, offsets_at, work_at, m)
                else:
                    last, n = done
                    pair(core_at, tweaks_at + last * _BLOCK, offsets_at + last * _BLOCK,
                         dst_at + (group + last) * 64, n,
                         src_at + (group + first) * 64, tweaks_at + first * _BLOCK,
                         offsets_at + first * _BLOCK, work_at, m)
                lane.context(encrypt=encrypt).update_into(lane.work_bytes[: m * 64],
                                                          lane.core_out)
                done = (first, m)
            last, n = done
            mask(core_at, tweaks_at + last * _BLOCK, offsets_at + last * _BLOCK,
                 dst_at + (group + last) * 64, n)

    def _apply(self, addrs: object, lines: object, *, encrypt: bool) -> NDArray[np.uint8]:
        addr_arr = np.ascontiguousarray(as_addresses(addrs))
        line_arr = as_lines(lines, addr_arr.shape[0])
        count = line_arr.shape[0]
        out = np.empty_like(line_arr)
        if count == 0:
            return out
        src = line_arr.view("<u8").reshape(count, _LINE_WORDS)
        dst = out.view("<u8").reshape(count, _LINE_WORDS)
        threads = self._threads or engine_threads()
        parts = min(threads, count // (_PARALLEL_MIN_LINES // 2)) if count >= \
            _PARALLEL_MIN_LINES else 1
        with self._lock:
            tables = self._tables()
            if parts <= 1:
                self._run(self._lane(0), tables, addr_arr, src, dst, encrypt)
                return out
            # Whole chunks per thread; the calling thread takes the first part.
            per = -(-count // parts // _CHUNK_LINES) * _CHUNK_LINES
            bounds = [(i * per, min(count, (i + 1) * per)) for i in range(parts)]
            bounds = [(a, b) for a, b in bounds if a < b]
            lanes = [self._lane(i) for i in range(len(bounds))]
            futures = [
                _thread_pool().submit(self._run, lanes[i], tables, addr_arr[a:b], src[a:b],
                                      dst[a:b], encrypt)
                for i, (a, b) in enumerate(bounds[1:], start=1)
            ]
            a, b = bounds[0]
            try:
                self._run(lanes[0], tables, addr_arr[a:b], src[a:b], dst[a:b], encrypt)
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
            lo, hi = self._mask(addr)[offset // _BLOCK]
            body = masked_ecb_column(self._ecb.encryptor(), lo, hi, column)
        return head, body
