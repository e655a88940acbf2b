"""Capture and delayed compare (dictionary attack on a low-entropy secret).

Threat: an interposer captures the ciphertext of a victim's PIN at a known physical address;
once the attacker owns that address it writes candidate plaintexts until the ciphertext on the
bus equals the captured one. XTS ties ciphertext to key and address only, so with a shared key
each candidate is a test. Secrets with little entropy fall fast.
Source: K. Shutemov, "[PATCH, RFC 58/62] x86/mktme: Document the MKTME provided security
mitigations" (linux-kernel, 8 May 2019), section "Cross-Domain Capture and Delayed Compare Attack".
Preconditions: capabilities ``bus_interposer`` and ``chosen_plaintext``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from ..errors import AttackError
from ..results import DictionaryPlot, PlotData, omitted_when_none
from ..types import LINE_SIZE, PAGE_SIZE
from ._base import Actor, Attack, AttackContext, AttackParams, BaseMetrics, Verdict, judge_bytes
from .cost import MachineShape, Work, run_part

__all__ = [
    "CaptureCompare",
    "CaptureCompareMetrics",
    "CaptureCompareParams",
    "first_match",
    "pin_blocks",
    "pin_lines",
]

PREFIX = b"PIN:"
MAX_DIGITS = 8
MAX_BATCHES = 10_000
CANDIDATE_UNITS = 0.02
"""Work units per candidate written and compared (:mod:`testbed.attacks.cost`)."""
CALL_UNITS = 240
"""Work units per engine call (a batch of candidates)."""


class CaptureCompareParams(AttackParams):
    """At most 10,000 engine calls: 10^pin_digits / batch."""

    victim: Literal["process", "guest"] = Field("guest", description="who holds the secret")
    attacker: Literal["process", "guest"] = Field(
        "guest", description="the domain the attacker owns")
    pin_digits: int = Field(4, ge=1, le=MAX_DIGITS, description="decimal digits of the PIN")
    batch: int = Field(65536, ge=1, le=1 << 20, description="candidates per engine call")

    @model_validator(mode="after")
    def _bounded_calls(self) -> CaptureCompareParams:
        calls = -(-(10**self.pin_digits) // self.batch)
        if calls > MAX_BATCHES:
            raise ValueError(f"10^{self.pin_digits} candidates in batches of {self.batch} is "
                             f"{calls} engine calls; the limit is {MAX_BATCHES} (raise batch)")
        return self

    def best_chance_log2(self, *, block_bits: int = 128) -> float | None:
        """One PIN of ``pin_digits`` digits: 1 in 10^digits."""
        return -self.pin_digits * math.log2(10)

    def work(self, machine: MachineShape) -> Work:
        """The whole dictionary, written in batches (a key of its own leaves nothing to
        match, so nothing stops it early)."""
        space = 10**self.pin_digits
        calls = -(-space // self.batch)
        return Work((run_part(machine),
                     (f"{space:,} candidates", CANDIDATE_UNITS * space),
                     (f"{calls:,} engine calls of {min(space, self.batch):,} candidates",
                      CALL_UNITS * calls)),
                    hint="lower params.pin_digits or raise params.batch")


_DIGITS3 = np.array([[ord(c) for c in f"{i:03d}"] for i in range(1000)], dtype=np.uint8)
_BLOCK = 16
_WORD = 8
_HEAD_DIGITS = _WORD - len(PREFIX)
"""Digits that share the first 8-byte word of the block with ``PIN:``."""


def pin_lines(first: int, count: int, digits: int) -> NDArray[np.uint8]:
    """Lines ``PIN:<digits>`` zero-padded to 64 bytes for candidates ``first .. first+count-1``."""
    values = np.arange(first, first + count, dtype=np.int64)
    lines = np.zeros((count, LINE_SIZE), dtype=np.uint8)
    lines[:, : len(PREFIX)] = np.frombuffer(PREFIX, dtype=np.uint8)
    end = len(PREFIX) + digits
    while end > len(PREFIX):  # three digits at a time, from the right, by table lookup
        take = min(3, end - len(PREFIX))
        lines[:, end - take : end] = _DIGITS3[values % 1000, 3 - take :]
        values //= 1000
        end -= take
    return lines


@functools.cache
def _word_tables(digits: int) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """The two 8-byte words of a candidate's first block, by the digits each one holds.

    The first word is ``PIN:`` and the leading (up to) four digits; the second holds the rest.
    Returns ``(head, tail)``: ``head[v // 10**t]`` and ``tail[v % 10**t]`` with ``t`` the number
    of tail digits, so that consecutive candidates are runs of ``head`` and cycles of ``tail``.
    """
    lead = min(digits, _HEAD_DIGITS)
    rest = digits - lead
    head = [PREFIX + f"{h:0{lead}d}".encode() for h in range(10**lead)]
    tail = [f"{t:0{rest}d}".encode() if rest else b"" for t in range(10**rest)]
    head_words = [int.from_bytes(w.ljust(_WORD, b"\0"), "little") for w in head]
    tail_words = [int.from_bytes(w.ljust(_WORD, b"\0"), "little") for w in tail]
    return np.array(head_words, dtype=np.uint64), np.array(tail_words, dtype=np.uint64)


def pin_blocks(first: int, count: int, digits: int) -> NDArray[np.uint8]:
    """The first 16-byte block of :func:`pin_lines` (the only one a PIN touches), built by
    repeating and tiling two small tables instead of dividing every candidate."""
    if digits > _HEAD_DIGITS + _WORD:
        raise AttackError(f"a {digits}-digit PIN does not fit in one block")
    head, tail = _word_tables(digits)
    period = tail.shape[0]
    skip = first % period
    rows = np.empty((count, 2), dtype="<u8")
    start, stop = first // period, (first + count - 1) // period + 1
    rows[:, 0] = np.repeat(head[start:stop], period)[skip : skip + count]
    rows[:, 1] = np.tile(tail, stop - start)[skip : skip + count]
    return rows.view(np.uint8).reshape(count, _BLOCK)


def first_match(
    template: NDArray[np.uint8], blocks: NDArray[np.uint8], captured: NDArray[np.uint8]
) -> int | None:
    """Index of the first write whose line on the bus equals ``captured``.

    Every write's line is ``template`` with its first block replaced by ``blocks[i]``: the rest
    must equal the capture, then the first block decides (an 8-byte screen, then all 16).
    """
    if not np.array_equal(template[_BLOCK:], captured[_BLOCK:]):
        return None
    words = blocks.view("<u8")
    target = captured[:_BLOCK].view("<u8")
    for i in np.flatnonzero(words[:, 0] == target[0]):
        if bool((words[i] == target).all()):
            return int(i)
    return None


@dataclass(frozen=True)
class CaptureCompareMetrics(BaseMetrics):
    dictionary_size: int
    """Candidates in the dictionary (10^digits)."""
    entropy_bits: float
    """log2 of the dictionary size."""
    guesses: int | None = omitted_when_none()
    """Candidate writes made (the whole dictionary when nothing matched)."""

    def plots(self) -> tuple[PlotData, ...]:
        if self.guesses is None:
            return ()
        return (DictionaryPlot(self.dictionary_size, self.entropy_bits, self.guesses),)


class CaptureCompare(Attack[CaptureCompareParams]):
    kind = "capture-compare"
    title = "Capture and delayed compare (dictionary)"
    capabilities = ("bus_interposer", "chosen_plaintext")
    Params = CaptureCompareParams
    Metrics = CaptureCompareMetrics
    platform_settings = frozenset()

    def run(self, ctx: AttackContext, params: CaptureCompareParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        digits = params.pin_digits
        space = 10**digits
        pin = int(ctx.rng.integers(0, space))
        secret_line = pin_lines(pin, 1, digits)[0]
        secret = secret_line[: len(PREFIX) + digits].tobytes()
        victim = m.create_domain(params.victim, "victim")
        pa = m.alloc_page(victim)
        m.write(victim, pa, secret_line.tobytes())
        log.secret, log.address = secret, pa
        log.step(Actor.VICTIM, f"stores a {digits}-digit PIN at a known address", address=pa)
        captured = np.frombuffer(m.bus.read(pa, LINE_SIZE), dtype=np.uint8)
        log.captured = captured.tobytes()
        log.begin_attack()
        log.step(Actor.ATTACKER, "captures the PIN's ciphertext line", "bus_interposer", pa)
        with log.victim_acts():
            m.destroy_domain(victim)
        attacker = m.create_domain(params.attacker, "attacker")
        frame = m.alloc_page(attacker)
        metrics = CaptureCompareMetrics(dictionary_size=space,
                                        entropy_bits=digits * math.log2(10))
        log.metrics = metrics
        if frame != pa - pa % PAGE_SIZE:
            raise AttackError(f"the attacker did not get frame {pa // PAGE_SIZE} back "
                              f"(got {frame // PAGE_SIZE})")
        log.step(Actor.ATTACKER, "owns the address; writes candidates and watches the bus",
                 "chosen_plaintext", pa, f"{attacker.kind.value} with key slot {attacker.slot}")
        guesses = 0
        template = bytes(LINE_SIZE)  # a PIN line past its first block: zeros
        for first in range(0, space, params.batch):
            count = min(params.batch, space - first)
            candidates = pin_blocks(first, count, digits)
            head, on_bus = m.write_varying(attacker, pa, template, 0, candidates)
            hit = first_match(head, on_bus, captured)
            if hit is not None:
                guesses += hit + 1
                log.recovered = candidates[hit, : len(secret)].tobytes()
                break
            guesses += count
        log.metrics = replace(metrics, guesses=guesses)
        found = "a match" if log.recovered is not None else "no match"
        log.step(Actor.ATTACKER, f"compared {guesses} candidate ciphertexts: {found}",
                 "bus_interposer", pa)
        return judge_bytes(secret, log.recovered, "PIN", space_log2=digits * math.log2(10))
