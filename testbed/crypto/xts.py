"""Batched AES-XTS-128 (IEEE 1619) over cache lines, with the physical address as tweak.

Each 64-byte line is one XTS data unit of four AES blocks. The data-unit sequence number is the
line's physical address, encoded as a 16-byte little-endian integer, as in IEEE 1619: block ``j``
of the line at address ``a`` is masked with ``T * alpha**j`` where ``T = AES_K2(a)``.

A batch of lines at arbitrary addresses is cut into chunks that stay in the CPU cache, and each
chunk costs two OpenSSL calls and two passes over the data:

1. one AES-ECB call encrypts every line's tweak ``T_k`` with the tweak key;
2. one pass XORs each block with ``D_k * alpha**j``, where ``D_k = T_k ^ S_k``;
3. one AES-XTS call treats the whole chunk as a single data unit. OpenSSL masks block ``4k+j``
   with ``S_k * alpha**j`` (``S_k = AES_K2(0) * alpha**(4k)``, its own tweak sequence), so
   together with step 2 every block gets exactly its own line's mask ``T_k * alpha**j``;
4. one pass XORs the same ``D_k * alpha**j`` into OpenSSL's output.

Steps 2 and 4 are compiled loops (``_kernels``); the AES work is all OpenSSL's, and XTS is its
fastest AES path. Large batches are split across threads: every piece of the work releases the
GIL, and each thread has its own OpenSSL contexts. The result is identical, line for line, to
OpenSSL's XTS with one call per line; the tests check it against OpenSSL and published vectors.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

from ..errors import ConfigError
from ._kernels import xts_chain, xts_mask_lines
from ._lines import as_addresses, as_blocks, as_lines, masked_ecb_column

__all__ = ["XTS_KEY_SIZE", "XtsLineCipher", "engine_threads"]

XTS_KEY_SIZE = 32
"""AES-XTS-128 takes two 128-bit keys: data key then tweak key."""
_BLOCK = 16
_LINE_WORDS = 8
_CHUNK_LINES = 4096
"""Lines per inner step: 256 KiB of data, so that every pass stays in the L2 cache."""
_PARALLEL_MIN_LINES = 2 * _CHUNK_LINES
"""Smaller batches run on the calling thread: splitting them costs more than it saves."""
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


class _Lane:
    """One thread's OpenSSL contexts and scratch buffers."""

    def __init__(self, key: bytes, step: int) -> None:
        self.key = key
        self.tweak = Cipher(algorithms.AES(key[16:]), modes.ECB()).encryptor()
        self.enc = self._xts(encrypt=True)
        self.dec = self._xts(encrypt=False)
        # OpenSSL's update_into wants room for one extra block.
        self.addresses = np.zeros((step, 2), dtype="<u8")
        self.tweaks = np.empty(step * _BLOCK + _BLOCK, dtype=np.uint8)
        self.work = np.empty((step, _LINE_WORDS), dtype="<u8")
        self.core = np.empty(step * 64 + _BLOCK, dtype=np.uint8)

    def _xts(self, *, encrypt: bool) -> Any:
        cipher = Cipher(algorithms.AES(self.key), modes.XTS(bytes(_BLOCK)))
        return cipher.encryptor() if encrypt else cipher.decryptor()

    def context(self, *, encrypt: bool) -> Any:
        if _xts_update_restarts():
            return self.enc if encrypt else self.dec
        return self._xts(encrypt=encrypt)


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
        self._chain: NDArray[np.uint64] | None = None
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

    def _chain_for_chunk(self) -> NDArray[np.uint64]:
        """``S_k``: where line ``k`` of a chunk starts in OpenSSL's tweak sequence (IV 0)."""
        if self._chain is None:
            lo, hi = self._mask(0)[0]
            chain = np.empty((_CHUNK_LINES, 2), dtype="<u8")
            xts_chain(np.uint64(lo), np.uint64(hi), 4, chain)
            self._chain = chain
        return self._chain

    def _lane(self, index: int) -> _Lane:
        while len(self._lanes) <= index:
            self._lanes.append(_Lane(self._key, _CHUNK_LINES))
        return self._lanes[index]

    def _run(self, lane: _Lane, chain: NDArray[np.uint64], addrs: NDArray[np.uint64],
             src: NDArray[np.uint64], dst: NDArray[np.uint64], encrypt: bool) -> None:
        """Lines ``src`` at ``addrs`` into ``dst``, chunk by chunk, with ``lane``'s contexts."""
        for start in range(0, addrs.shape[0], _CHUNK_LINES):
            m = min(_CHUNK_LINES, addrs.shape[0] - start)
            lane.addresses[:m, 0] = addrs[start : start + m]
            lane.tweak.update_into(lane.addresses[:m].data.cast("B"), lane.tweaks.data)
            tweaks = lane.tweaks[: m * _BLOCK].view("<u8").reshape(m, 2)
            xts_mask_lines(src[start : start + m], tweaks, chain[:m], lane.work[:m])
            lane.context(encrypt=encrypt).update_into(lane.work[:m].data.cast("B"),
                                                      lane.core.data)
            core = lane.core[: m * 64].view("<u8").reshape(m, _LINE_WORDS)
            xts_mask_lines(core, tweaks, chain[:m], dst[start : start + m])

    def _apply(self, addrs: object, lines: object, *, encrypt: bool) -> NDArray[np.uint8]:
        addr_arr = as_addresses(addrs)
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
            chain = self._chain_for_chunk()
            if parts <= 1:
                self._run(self._lane(0), chain, addr_arr, src, dst, encrypt)
                return out
            # Whole chunks per thread; the calling thread takes the first part.
            per = -(-count // parts // _CHUNK_LINES) * _CHUNK_LINES
            bounds = [(i * per, min(count, (i + 1) * per)) for i in range(parts)]
            bounds = [(a, b) for a, b in bounds if a < b]
            lanes = [self._lane(i) for i in range(len(bounds))]
            futures = [
                _thread_pool().submit(self._run, lanes[i], chain, addr_arr[a:b], src[a:b],
                                      dst[a:b], encrypt)
                for i, (a, b) in enumerate(bounds[1:], start=1)
            ]
            a, b = bounds[0]
            try:
                self._run(lanes[0], chain, addr_arr[a:b], src[a:b], dst[a:b], encrypt)
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
