"""The ``guess`` step: write every candidate at an address, watch the bus for the captured line.

Candidates go to the engine in batches. When each candidate stays inside one 16-byte block of
its line, every write shares the rest of the line, and :meth:`Machine.write_varying` returns
the bus compactly: the shared line's ciphertext once and one block per candidate (so a 10^6
dictionary takes a fraction of a second). A
candidate that crosses a block goes through :meth:`Machine.write_sequence` as whole lines.
The rest of the line the attacker writes is zeros.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..types import LINE_SIZE, PhysAddr
from ._args_attack import BATCH, Guess
from ._runtime import Runtime

__all__ = ["BATCH", "candidate_bytes", "guess"]
_BLOCK = 16


def candidate_bytes(args: Guess, first: int, count: int) -> list[bytes] | NDArray[np.uint8]:
    """Candidates ``first .. first+count-1``, prefix included: a ``(count, width)`` array for
    digits and ranges (all one width), a list of bytes for words."""
    head = args.prefix.encode("utf-8")
    if args.words is not None:
        return [head + w.encode("utf-8") for w in args.words[first : first + count]]
    if args.digits is not None:
        values = np.arange(first, first + count, dtype=np.int64)
        body = np.empty((count, args.digits), dtype=np.uint8)
        for k in range(args.digits):  # the k-th digit from the right
            body[:, args.digits - 1 - k] = ord("0") + (values // 10**k) % 10
    else:
        assert args.range is not None  # the model gives exactly one generator
        values = np.arange(args.range.start + first, args.range.start + first + count,
                           dtype=np.uint64)
        body = values.astype("<u8").view(np.uint8).reshape(count, 8)[:, : args.range.width]
    out = np.empty((count, len(head) + body.shape[1]), dtype=np.uint8)
    out[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    out[:, len(head) :] = body
    return out


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
    rest = np.ones(LINE_SIZE, dtype=bool)
    rest[block : block + _BLOCK] = False
    if not np.array_equal(head[rest], target[rest]):
        return None  # the shared part of the line already differs: no candidate can match
    words, want = body.view("<u8"), target[block : block + _BLOCK].view("<u8")
    hits = np.flatnonzero((words[:, 0] == want[0]) & (words[:, 1] == want[1]))
    return int(hits[0]) if hits.size else None


def guess(rt: Runtime, args: Guess) -> bytes | None:
    pa, loc = rt.place(args)
    line, column = PhysAddr(pa - pa % LINE_SIZE), pa % LINE_SIZE
    captured = rt.data(args.target)
    space = args.guesses()
    rt.guess_space = (rt.guess_space or 0) + space
    if captured is None or len(captured) != LINE_SIZE:
        rt.note(f"has no captured line in {args.target} to compare with", pa)
        return None
    target = np.frombuffer(captured, dtype=np.uint8)
    _, high = args.widths()
    block = column // _BLOCK * _BLOCK
    varying = column + high <= block + _BLOCK
    tried, found = 0, None
    for first in range(0, space, BATCH):
        cands = candidate_bytes(args, first, min(BATCH, space - first))
        if varying:
            blocks = _placed(cands, _BLOCK, column - block)
            head, body = rt.machine.write_varying(loc.domain, line, bytes(LINE_SIZE), block,
                                                   blocks)
            hit = _hit_varying(head, body, block, target)
        else:
            out = rt.machine.write_sequence(loc.domain, line, _placed(cands, LINE_SIZE, column))
            hits = np.flatnonzero((out == target).all(axis=1))
            hit = int(hits[0]) if hits.size else None
        if hit is not None:
            tried += hit + 1
            c = cands[hit]
            found = c if isinstance(c, bytes) else c.tobytes()
            break
        tried += len(cands)
    rt.guesses = (rt.guesses or 0) + tried
    result = "a match" if found is not None else "no match"
    rt.note(f"writes candidates and compares {tried} ciphertexts on the bus: {result}", pa,
            f"{space} candidates")
    return found
