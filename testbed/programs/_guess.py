"""The ``guess`` step: write every candidate at an address, watch the bus for the captured line.

Candidates go to the engine in batches. When each candidate stays inside one 16-byte block of
its line, every write shares the rest of the line, and :meth:`Machine.write_varying` returns
the bus compactly: the shared line's ciphertext once and one block per candidate. A PIN is
handed over as a grid of its digits (:class:`~testbed.crypto.BlockGrid`) to
:meth:`Machine.write_varying_search`, which writes and compares without writing out a single
candidate: the work per candidate is one AES block and a few word operations (10^8 take under
a second). A candidate that crosses a block goes through :meth:`Machine.write_sequence` as
whole lines. The rest of the line the attacker writes is zeros."""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray

from ..crypto import BlockGrid
from ..platform import Domain
from ..types import LINE_SIZE, PhysAddr
from ._args_attack import BATCH, Guess
from ._runtime import Runtime

__all__ = ["BATCH", "candidate_bytes", "guess", "search"]
_BLOCK = 16


def candidate_bytes(args: Guess, first: int, count: int) -> list[bytes] | NDArray[np.uint8]:
    """Candidates ``first .. first+count-1``, prefix included: a ``(count, width)`` array for
    digits and ranges (all one width), a list of bytes for words."""
    head = args.prefix.encode("utf-8")
    if args.words is not None:
        return [head + w.encode("utf-8") for w in args.words[first : first + count]]
    if args.digits is not None:
        return _digit_rows(head, args.digits, first, count)
    assert args.range is not None  # the model gives exactly one generator
    values = np.arange(args.range.start + first, args.range.start + first + count,
                       dtype=np.uint64)
    body = values.astype("<u8").view(np.uint8).reshape(count, 8)[:, : args.range.width]
    out = np.empty((count, len(head) + body.shape[1]), dtype=np.uint8)
    out[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    out[:, len(head) :] = body
    return out


_LOW_DIGITS = 4
"""Digits of a PIN that cycle fastest, taken from one table of their 10^4 texts."""


@functools.cache
def _digit_table(width: int) -> NDArray[np.uint8]:
    """The texts of ``0 .. 10^width - 1``, ``width`` digits each, one row per number."""
    values = np.arange(10**width, dtype=np.int64)
    table = np.empty((10**width, width), dtype=np.uint8)
    for k in range(width):  # the k-th digit from the right
        table[:, width - 1 - k] = ord("0") + (values // 10**k) % 10
    table.setflags(write=False)
    return table


def _digit_rows(head: bytes, digits: int, first: int, count: int) -> NDArray[np.uint8]:
    """``head`` and the ``digits``-digit text of ``first .. first+count-1``, one row each.

    Consecutive numbers are runs of their high digits and cycles of their low ones: both come
    from small tables (10^4 rows at most, for the 8 digits a PIN may have), repeated and tiled,
    instead of dividing every candidate by every power of ten.
    """
    low = min(digits, _LOW_DIGITS)
    high = digits - low
    period = 10**low
    start, stop, skip = first // period, (first + count - 1) // period + 1, first % period
    out = np.empty((count, len(head) + digits), dtype=np.uint8)
    out[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    out[:, len(head) + high :] = np.tile(_digit_table(low), (stop - start, 1))[skip : skip + count]
    if high:
        runs = np.repeat(_digit_table(high)[start:stop], period, axis=0)
        out[:, len(head) : len(head) + high] = runs[skip : skip + count]
    return out


@functools.cache
def _digit_tables(head: bytes, digits: int,
                  column: int) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """A candidate's 16-byte block as the XOR of two rows of 8-byte words (their bytes never
    overlap): one by the number's high digits (with ``head``), one by its low digits."""
    low = min(digits, _LOW_DIGITS)
    high = digits - low
    tables = []
    for width, at, prefix in ((high, column + len(head), head),
                              (low, column + len(head) + high, b"")):
        rows = np.zeros((10**width, _BLOCK), dtype=np.uint8)
        rows[:, column : column + len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        rows[:, at : at + width] = _digit_table(width)
        words = np.ascontiguousarray(rows.view("<u8"))  # (10^width, 2)
        words.setflags(write=False)
        tables.append(words)
    return tables[0], tables[1]


def _digit_grid(head: bytes, digits: int, first: int, count: int, column: int) -> BlockGrid:
    """The 16-byte blocks of candidates ``first .. first+count-1`` with ``head`` and their
    digits at ``column`` of the block (zeros elsewhere), as the grid of the way consecutive
    numbers are written: the high digits change once per cycle of the low ones."""
    outer, inner = _digit_tables(head, digits, column)
    return BlockGrid(outer, inner, first, count)


def _placed(cands: list[bytes] | NDArray[np.uint8], width: int, column: int) -> NDArray[np.uint8]:
    """Each candidate at ``column`` of a zero row ``width`` bytes wide."""
    rows = np.zeros((len(cands), width), dtype=np.uint8)
    if isinstance(cands, np.ndarray):
        rows[:, column : column + cands.shape[1]] = cands
    else:
        for i, c in enumerate(cands):
            rows[i, column : column + len(c)] = np.frombuffer(c, dtype=np.uint8)
    return rows


def _hit_varying(head: NDArray[np.uint8], body: NDArray[np.uint8], block: int,
                 target: NDArray[np.uint8]) -> int | None:
    """The first of the lines ``head`` with ``body[i]`` at ``block`` that equals ``target``."""
    rest = np.ones(LINE_SIZE, dtype=bool)
    rest[block : block + _BLOCK] = False
    if not np.array_equal(head[rest], target[rest]):
        return None  # the shared part of the line already differs: no candidate can match
    hits = np.flatnonzero((body == target[block : block + _BLOCK]).all(axis=1))
    return int(hits[0]) if hits.size else None


def guess(rt: Runtime, args: Guess) -> bytes | None:
    pa, loc = rt.place(args)
    found, tried, space = search(rt, args, loc.domain, pa)
    if tried is None:
        rt.note(f"has no captured line in {args.target} to compare with", pa)
        return None
    result = "a match" if found is not None else "no match"
    rt.note(f"writes candidates and compares {tried} ciphertexts on the bus: {result}", pa,
            f"{space} candidates")
    return found


def search(rt: Runtime, args: Guess, writer: Domain, pa: PhysAddr, *,
           blind: bool = False) -> tuple[bytes | None, int | None, int]:
    """``writer`` writes every candidate of ``args`` at ``pa`` in turn; each ciphertext is
    compared with ``args.target``. ``blind``: what the attacker sees of the lines carries no
    information (a constant, whatever was written): it compares nothing and nothing matches.
    Returns the matching candidate, the candidates compared (``None``: no target to compare
    with) and the candidates there were."""
    line, column = PhysAddr(pa - pa % LINE_SIZE), pa % LINE_SIZE
    captured = rt.data(args.target)
    space = args.guesses()
    rt.guess_space = (rt.guess_space or 0) + space
    if rt.name is not None:
        rt.candidates[rt.name] = space
        rt.known[rt.name] = args.prefix.encode("utf-8")
    if captured is None or len(captured) != LINE_SIZE:
        return None, None, space
    if blind:
        rt.guesses = rt.guesses or 0
        return None, 0, space
    target = np.frombuffer(captured, dtype=np.uint8)
    _, high = args.widths()
    block = column // _BLOCK * _BLOCK
    varying = column + high <= block + _BLOCK
    tried, found = 0, None
    fast = varying and args.digits is not None
    for first in range(0, space, BATCH):
        count = min(BATCH, space - first)
        hit: int | None
        if fast:  # a PIN within one block: its blocks as a grid, searched by the engine
            assert args.digits is not None
            at = column - block
            grid = _digit_grid(args.prefix.encode("utf-8"), args.digits, first, count, at)
            hit = rt.machine.write_varying_search(writer, line, bytes(LINE_SIZE), block, grid,
                                                  captured)
            if hit is not None:
                found = grid.blocks(hit, hit + 1)[0, at : at + high].tobytes()
        else:
            cands = candidate_bytes(args, first, count)
            if varying:
                head, body = rt.machine.write_varying(
                    writer, line, bytes(LINE_SIZE), block, _placed(cands, _BLOCK, column - block))
                hit = _hit_varying(head, body, block, target)
            else:
                lines = rt.machine.write_sequence(writer, line, _placed(cands, LINE_SIZE, column))
                hits = np.flatnonzero((lines == target).all(axis=1))
                hit = int(hits[0]) if hits.size else None
            if hit is not None:
                c = cands[hit]
                found = c if isinstance(c, bytes) else c.tobytes()
        if hit is not None:
            tried += hit + 1
            break
        tried += count
    rt.guesses = (rt.guesses or 0) + tried
    return found, tried, space
