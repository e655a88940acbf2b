"""Candidate blocks laid out as a grid, and the search for the first whose ciphertext matches.

A dictionary of consecutive numbers is a grid: the number's high digits change once per run of
its low ones. A 16-byte candidate block ``i`` is then the XOR of two small tables, one row
chosen by ``i // period`` (the high digits, with any text before them) and one by
``i % period`` (the low digits); the bytes of the two never overlap. :class:`BlockGrid`
describes such a set without writing out every block.

:func:`masked_ecb_search` encrypts the blocks of a grid as a tweaked block cipher does,
``AES(b ^ m) ^ m`` with one mask ``m`` for the block's place in the line, in order, and stops
at the first whose ciphertext equals the one wanted. It does per block only what cannot be
shared: the mask is folded into the two tables once per call, each 8-byte word of the AES
input is rebuilt once per period only where the high table reaches it, and the comparison runs
on the ciphertext before the output mask (against the wanted block with the mask applied), as
one scan of the whole output. :func:`search_by_blocks` is the plain way (every block written
out and encrypted through the cipher's ``encrypt_varying``), for ciphers with other block sizes,
and the reference the tests hold the fast search to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..types import LINE_SIZE

__all__ = ["MAX_PERIOD", "BlockGrid", "masked_ecb_search", "search_by_blocks", "search_line"]

_BLOCK = 16
MAX_PERIOD = 1 << 16
"""Rows of a grid's ``inner`` table at most: one period's blocks (1 MiB) are one OpenSSL call."""
_PLAIN_CHUNK = 1 << 16
"""Blocks written out per step of :func:`search_by_blocks`."""


def _words(table: object, name: str) -> NDArray[np.uint64]:
    arr = np.asarray(table)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype != np.dtype("<u8") or not arr.shape[0]:
        raise ConfigError(f"block grid: {name} must be a non-empty (rows, 2) array of "
                          f"little-endian 64-bit words, got {arr.dtype} {arr.shape}")
    if arr.flags.writeable or not arr.flags.c_contiguous:  # a table never changes once given
        arr = np.array(arr, order="C", copy=True)
        arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class BlockGrid:
    """``count`` 16-byte blocks, block ``i`` being ``outer[j // P] ^ inner[j % P]`` for
    ``j = first + i`` and ``P = len(inner)`` (the period), each row two little-endian words.

    The tables are kept read-only: a writable table is copied, a read-only one is kept as it
    is (so that grids over the same tables share what a search prepares from them).

    Raises:
        ConfigError: a table is not ``(rows, 2)`` words, the period exceeds
            :data:`MAX_PERIOD`, or ``first .. first + count - 1`` runs past the outer table.
    """

    outer: NDArray[np.uint64]
    inner: NDArray[np.uint64]
    first: int
    count: int

    def __post_init__(self) -> None:
        outer, inner = _words(self.outer, "outer"), _words(self.inner, "inner")
        object.__setattr__(self, "outer", outer)
        object.__setattr__(self, "inner", inner)
        if inner.shape[0] > MAX_PERIOD:
            raise ConfigError(f"block grid: period {inner.shape[0]} exceeds {MAX_PERIOD}")
        size = outer.shape[0] * inner.shape[0]
        if self.first < 0 or self.count < 0 or self.first + self.count > size:
            raise ConfigError(f"block grid: blocks {self.first}..{self.first + self.count - 1} "
                              f"outside the grid's {size}")

    @property
    def period(self) -> int:
        """Blocks per row of the outer table."""
        return int(self.inner.shape[0])

    def blocks(self, start: int = 0, stop: int | None = None) -> NDArray[np.uint8]:
        """Blocks ``start .. stop - 1`` (of this grid's ``count``) written out, ``(n, 16)``."""
        stop = self.count if stop is None else stop
        if not 0 <= start <= stop <= self.count:
            raise ConfigError(f"block grid: blocks {start}..{stop - 1} outside 0..{self.count - 1}")
        j = np.arange(self.first + start, self.first + stop, dtype=np.int64)
        words = self.outer[j // self.period] ^ self.inner[j % self.period]
        return np.ascontiguousarray(words).view(np.uint8).reshape(stop - start, _BLOCK)


@dataclass
class _Scratch:
    """What a search over one grid's tables under one mask prepares, kept for the next call
    (a dictionary runs batch after batch over the same tables, at the same address)."""

    tables: tuple[NDArray[np.uint64], NDArray[np.uint64]]
    mask: tuple[int, int]
    work: NDArray[np.uint64]
    """The AES input of one period: the inner table with the mask folded in, and the words
    the outer table reaches rebuilt for each period."""
    filled: list[int]
    """Words only the outer table reaches: one value per period."""
    mixed: list[int]
    """Words both tables reach: the inner word XOR the outer one, per period."""
    inner: NDArray[np.uint64]
    core: NDArray[np.uint64]
    seen: NDArray[np.bool_]


_scratch = threading.local()


def _prepare(grid: BlockGrid, lo: int, hi: int) -> _Scratch:
    got: _Scratch | None = getattr(_scratch, "last", None)
    if (got is not None and got.tables[0] is grid.outer and got.tables[1] is grid.inner
            and got.mask == (lo, hi)):
        return got
    mask = np.array([lo, hi], dtype="<u8")
    inner = np.empty_like(grid.inner)
    for j in range(2):  # a column at a time: NumPy is slow to broadcast a row of two words
        np.bitwise_xor(grid.inner[:, j], mask[j], out=inner[:, j])
    outer_used = [bool(grid.outer[:, j].any()) for j in range(2)]
    inner_used = [bool(grid.inner[:, j].any()) for j in range(2)]
    period = grid.period
    got = _Scratch(
        tables=(grid.outer, grid.inner), mask=(lo, hi), work=inner.copy(),
        filled=[j for j in range(2) if outer_used[j] and not inner_used[j]],
        mixed=[j for j in range(2) if outer_used[j] and inner_used[j]], inner=inner,
        core=np.empty(2 * period + 2, dtype="<u8"),  # OpenSSL may ask for a block of room
        seen=np.empty(2 * period, dtype=np.bool_))
    _scratch.last = got
    return got


def masked_ecb_search(ctx: Any, lo: int, hi: int, grid: BlockGrid,
                      want: bytes | None) -> tuple[int | None, NDArray[np.uint8]]:
    """Encrypt the blocks of ``grid`` in order as ``AES(b ^ m) ^ m``, ``m = hi * 2**64 + lo``,
    up to the first whose ciphertext is ``want`` (``None``: nothing is compared).

    ``ctx`` is an OpenSSL context that computes AES-ECB (:func:`~._lines.ecb_via_xts`, or ECB
    itself); one call per period of the grid.

    Returns:
        The index of the matching block (``None``: none matched, all were encrypted) and the
        ciphertext of the last block encrypted (16 bytes; zeros when the grid is empty).
    """
    mask = np.array([lo, hi], dtype="<u8")
    if grid.count == 0:
        return None, np.zeros(_BLOCK, dtype=np.uint8)
    sc = _prepare(grid, lo, hi)
    work, core, seen, inner = sc.work, sc.core, sc.seen, sc.inner
    period = grid.period
    start, stop = grid.first // period, (grid.first + grid.count - 1) // period + 1
    src, dst = work.data.cast("B"), core.data.cast("B")
    target = None if want is None else np.frombuffer(want, dtype="<u8") ^ mask
    n = 0
    for row in range(start, stop):
        o = grid.outer[row]
        for j in sc.filled:  # the inner word is zero: the outer word with the mask
            work[:, j] = o[j] ^ mask[j]
        for j in sc.mixed:  # the inner words already hold the mask
            np.bitwise_xor(inner[:, j], o[j], out=work[:, j])
        a = max(grid.first, row * period) - row * period
        b = min(grid.first + grid.count, (row + 1) * period) - row * period
        ctx.update_into(src[a * _BLOCK : b * _BLOCK], dst)
        n = b - a
        if target is not None:
            # One scan for the first word anywhere, then the rare candidates in full.
            np.equal(core[: 2 * n], target[0], out=seen[: 2 * n])
            if np.count_nonzero(seen[: 2 * n]):
                for k in np.flatnonzero(seen[0 : 2 * n : 2]):
                    if core[2 * k + 1] == target[1]:
                        found = np.ascontiguousarray(core[2 * k : 2 * k + 2] ^ mask)
                        return row * period + a + int(k) - grid.first, found.view(np.uint8)
    return None, np.ascontiguousarray(core[2 * n - 2 : 2 * n] ^ mask).view(np.uint8)


VaryingEncrypt = Callable[[int, NDArray[np.uint8], int, NDArray[np.uint8]],
                          tuple[NDArray[np.uint8], NDArray[np.uint8]]]
"""A cipher's ``encrypt_varying``: (address, template line, offset, blocks) -> (template
ciphertext, the blocks' ciphertexts)."""


def search_by_blocks(encrypt_varying: VaryingEncrypt, addr: int, template: NDArray[np.uint8],
                     offset: int, grid: BlockGrid,
                     target: bytes) -> tuple[int | None, NDArray[np.uint8]]:
    """The search of :func:`search_line` done the plain way: the grid's blocks written out and
    encrypted as whole varying lines by ``encrypt_varying``, a chunk at a time."""
    line = template.reshape(1, LINE_SIZE)
    head, _ = encrypt_varying(addr, line, offset, np.zeros((0, _BLOCK), dtype=np.uint8))
    if grid.count == 0:
        return None, head
    want = _wanted(head, offset, target)
    last = head
    for start in range(0, grid.count, _PLAIN_CHUNK):
        stop = min(grid.count, start + _PLAIN_CHUNK)
        head, body = encrypt_varying(addr, line, offset, grid.blocks(start, stop))
        hits = np.empty(0, dtype=np.intp) if want is None else np.flatnonzero(
            (body == np.frombuffer(want, dtype=np.uint8)).all(axis=1))
        k = int(hits[0]) if hits.size else body.shape[0] - 1
        last = head.copy()
        last[offset : offset + _BLOCK] = body[k]
        if hits.size:
            return start + k, last
    return None, last


def _wanted(head: NDArray[np.uint8], offset: int, target: bytes) -> bytes | None:
    """The ciphertext block a line must show at ``offset`` to equal ``target``, or ``None``
    where the rest of ``head`` (shared by every line) already differs from it."""
    got = np.frombuffer(target, dtype=np.uint8)
    if got.shape != (LINE_SIZE,):
        raise ConfigError(f"search target: expected {LINE_SIZE} bytes, got {got.size}")
    rest = np.ones(LINE_SIZE, dtype=bool)
    rest[offset : offset + _BLOCK] = False
    if not np.array_equal(head[rest], got[rest]):
        return None
    return bytes(target[offset : offset + _BLOCK])


def search_line(head: NDArray[np.uint8], offset: int, target: bytes,
                search: Callable[[bytes | None], tuple[int | None, NDArray[np.uint8]]],
                ) -> tuple[int | None, NDArray[np.uint8]]:
    """Lines that share ``head`` (the template's ciphertext) but for the block at ``offset``:
    ``search`` runs over the varying blocks with the block they must show to equal ``target``
    (``None`` when the shared part already differs). Returns the first matching line's index
    and the last line written, whole."""
    index, block = search(_wanted(head, offset, target))
    last = head.copy()
    last[offset : offset + _BLOCK] = block
    return index, last
