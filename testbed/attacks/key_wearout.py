"""Key wear-out: an internal collision of the tweakable cipher enables a controlled modification.

Threat: the attacker makes the victim encrypt many known blocks under one key (for example
network data the victim stores) and captures the ciphertexts with an interposer. Two blocks at
tweaks T1, T2 collide inside the cipher when ``P1 xor D1 == P2 xor D2``; this shows as
``P1 xor P2 == C1 xor C2`` and reveals ``delta = D1 xor D2``. The attacker then has the victim
store ``V xor delta`` at T1 and writes that ciphertext, xored with ``delta``, at T2: the victim
reads ``V``, a value of the attacker's choosing.
Source: K. Shutemov, "[PATCH, RFC 58/62] x86/mktme: Document the MKTME provided security
mitigations" (linux-kernel, 8 May 2019), section "Key Wear-out Attack", which cites P. Rogaway,
"Efficient Instantiations of Tweakable Blockciphers and Refinements to Modes OCB and PMAC"
(ASIACRYPT 2004).
Preconditions: capabilities ``bus_interposer`` and ``chosen_plaintext`` under the victim's key.
At 128-bit blocks a collision needs about 2^64 blocks, so the shipped scenarios use the
*reduced-width* cipher (:mod:`testbed.crypto.narrow`) and extrapolate to n = 128.
Mitigations: key rotation well before the bound (MKTME rotates at run time), per-domain keys.

The trials are :func:`wear_out` and their outcome :func:`judge_wearout`, which the attack
programs' ``wear_out`` step and ``modified`` goal share.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from ..platform import Domain, Engine, Machine
from ..results import (
    CurvePoint,
    PlotData,
    TrialStats,
    WearoutPlot,
    chance_text,
    log2_tail,
    omitted_when_none,
)
from ..text import plural
from ..types import LINE_SIZE, PAGE_SIZE, Outcome, PhysAddr
from ._base import (
    Actor,
    Attack,
    AttackContext,
    AttackLog,
    AttackParams,
    BaseMetrics,
    Verdict,
)
from .cost import MachineShape, Work, boot_units, run_part

__all__ = [
    "KeyWearout",
    "KeyWearoutMetrics",
    "KeyWearoutParams",
    "WearoutRun",
    "WearoutTrial",
    "birthday_probability",
    "engine_problem",
    "judge_wearout",
    "wear_out",
]

SECONDS_PER_YEAR = 365.25 * 24 * 3600
MAX_TOTAL_PAIRS = 1 << 22
BLOCK_UNITS = 2.0
"""Work units per block captured: drawn, stored and looked up (:mod:`testbed.attacks.cost`)."""
WRITE_UNITS = 130
"""Work units per victim write and bus read of a packet..."""
LINE_UNITS = 3.0
"""...and per line it holds."""
CANDIDATE_UNITS = 300
"""Work units per candidate collision checked: two writes and two bus reads."""
ROTATION_UNITS = 150
"""Work units per key rotation: a new key..."""
ROTATION_PAGE_UNITS = 450
"""...and per page of the domain, decrypted and encrypted again."""
STOP_MARGIN = 12
"""A trial that can confirm a collision ends at its first one. The estimate charges it one page
of blocks (a collision of the attacker's own key needs a second page) and ``STOP_MARGIN`` x
2^(n/2) blocks more: at n bits, q blocks hold no collision with a chance of about
exp(-q^2 / 2^(n+1)), below e^-36 that far even when only half of the pairs count."""


class KeyWearoutParams(AttackParams):
    """max_pairs x trials at most 2^22; wear_domain attacker needs buffer_pages >= 2."""

    max_pairs: int = Field(1 << 15, ge=16, le=1 << 22, description="blocks captured per trial")
    trials: int = Field(8, ge=1, le=64, description="independent trials (each after a reboot)")
    buffer_pages: int = Field(1, ge=1, le=64, description="victim pages receiving the data")
    packet_lines: int = Field(16, ge=1, le=64, description="lines per victim write")
    bandwidth_gb_s: float = Field(100.0, gt=0, le=1e6, description="for the n=128 extrapolation")
    wear_domain: Literal["victim", "attacker"] = Field(
        "victim", description="whose key the attacker wears out: the victim's, or its own "
        "(then it hands the colliding page to the victim)")

    def pages_needed(self) -> int:
        return self.buffer_pages + 1

    @model_validator(mode="after")
    def _bounded_work(self) -> KeyWearoutParams:
        if self.max_pairs * self.trials > MAX_TOTAL_PAIRS:
            raise ValueError(f"max_pairs x trials = {self.max_pairs * self.trials}; the limit is "
                             f"{MAX_TOTAL_PAIRS}")
        return self

    @model_validator(mode="after")
    def _two_pages_to_hand_over(self) -> KeyWearoutParams:
        if self.wear_domain == "attacker" and self.buffer_pages < 2:
            raise ValueError("wear_domain 'attacker' needs buffer_pages >= 2 (one page is handed "
                             "to the victim, the other stays the attacker's)")
        return self

    def best_chance_log2(self, *, block_bits: int = 128) -> float | None:
        """The chosen value lands in every trial: 1 in 2^block_bits per trial."""
        return -float(block_bits) * self.trials

    def work(self, machine: MachineShape) -> Work:
        """Per trial: a reboot, the blocks captured, the candidate collisions among them
        (each checked with two writes) and the key rotations of the writes.

        A trial stops at its first confirmed collision, which comes after about 2^(n/2)
        blocks (:data:`STOP_MARGIN`), unless there is none to find: at 128 bits, or when the
        key is rotated before one can appear. Then every trial captures ``max_pairs`` blocks.
        """
        width = machine.options.reduced_width_bits
        per_line = LINE_SIZE // (16 if width is None else 4)
        page_blocks = PAGE_SIZE // LINE_SIZE * per_line
        rotate = machine.mitigations.key_rotation_blocks
        blocks = self.max_pairs
        if width is not None:
            tail = page_blocks + STOP_MARGIN * 2.0 ** (width / 2)
            wear = tail + 2 * _candidates(tail, width) * per_line + page_blocks
            if not rotate or rotate >= wear:  # one key holds all those blocks
                blocks = min(blocks, math.ceil(tail))
        candidates = 0.0
        if width is not None:
            expected = _candidates(blocks, width)
            candidates = expected + 4 * math.sqrt(expected) + 8  # with room for chance
        lines = -(-blocks // per_line)  # written a packet at a time, never across a page
        page_lines = PAGE_SIZE // LINE_SIZE
        writes = (lines // page_lines * -(-page_lines // self.packet_lines)
                  + -(-(lines % page_lines) // self.packet_lines))
        rotations = 0.0
        if rotate:
            wear_blocks = blocks + 2 * candidates * per_line + self.packet_lines * per_line
            rotations = min(writes + 2 * candidates + 2, wear_blocks // rotate + 1)
        n = self.trials
        each = f"{n} trials x " if n > 1 else ""
        parts = [
            run_part(machine),
            (f"{n} boot(s) of the machine", n * boot_units(machine.memory_pages)),
            (f"{each}{blocks:,} blocks captured in {writes:,} writes of "
             f"{self.packet_lines} line(s)",
             n * (BLOCK_UNITS * blocks + WRITE_UNITS * writes + LINE_UNITS * lines)),
        ]
        if candidates:
            parts.append((f"{each}about {candidates:,.0f} candidate collisions checked",
                          n * CANDIDATE_UNITS * candidates))
        if rotations:
            parts.append((f"{each}{rotations:,.0f} key rotations of {self.buffer_pages} "
                          "page(s)", n * rotations * (ROTATION_UNITS
                                                      + ROTATION_PAGE_UNITS * self.buffer_pages)))
        hint = "lower params.max_pairs or params.trials, raise params.packet_lines"
        if rotate:
            hint += ", or raise mitigations.key_rotation_blocks"
        return Work(tuple(parts), hint=hint)


def _candidates(blocks: float, bits: int) -> float:
    """Expected blocks among ``blocks`` whose ``P xor C`` repeats an earlier one, at n bits:
    the blocks less the distinct values, ``q - 2^n (1 - (1 - 2^-n)^q)``."""
    space = 2.0**bits
    return max(0.0, blocks + space * math.expm1(blocks * math.log1p(-1 / space)))


def birthday_probability(pairs: float, bits: int) -> float:
    """The birthday bound ``q^2 / 2^(n+1)``, capped at 1."""
    return min(1.0, pairs * pairs / 2.0 ** (bits + 1))


@dataclass
class _Blocks:
    """How a line splits into cipher blocks under this engine."""

    width: int  # bytes per block
    bits: int  # block size in bits
    reduced: bool

    @classmethod
    def of(cls, machine: Machine) -> _Blocks:
        bits = machine.engine.cipher_kind.reduced_width_bits
        return cls(4, bits, True) if bits else cls(16, 128, False)

    def random(self, rng: np.random.Generator, count: int) -> NDArray[np.uint8]:
        if self.reduced:
            words = rng.integers(0, 1 << self.bits, size=count, dtype=np.uint32)
            return words.astype("<u4").view(np.uint8).reshape(count, 4)
        return np.frombuffer(rng.bytes(16 * count), dtype=np.uint8).reshape(count, 16).copy()


def _packets(pages: list[PhysAddr], packet_lines: int) -> Iterator[tuple[PhysAddr, int]]:
    """Where each victim write goes: ``packet_lines`` lines at a time, cycling over the buffer
    pages, never crossing a page boundary. Endless; the caller stops."""
    per_page = PAGE_SIZE // LINE_SIZE
    while True:
        for page in pages:
            for first in range(0, per_page, packet_lines):
                yield PhysAddr(page + first * LINE_SIZE), min(packet_lines, per_page - first)


class _PairStore:
    """Captured (plaintext, address) blocks, and the candidate collisions among them.

    A candidate is a new block whose ``P xor C`` equals an earlier block's at another address
    (with ``distinct_pages``: on another page, since the second page is handed over).
    """

    def __init__(self, capacity: int, width: int, *, distinct_pages: bool) -> None:
        self.plain = np.zeros((capacity, width), dtype=np.uint8)
        self.addrs = np.zeros(capacity, dtype=np.uint64)
        self.count = 0
        self._width = width
        self._seen: dict[bytes, int] = {}
        self._distinct_pages = distinct_pages

    def add(
        self, start: int, plain: NDArray[np.uint8], cipher: NDArray[np.uint8]
    ) -> Iterator[tuple[int, int]]:
        """Store one packet; yield ``(earlier, new)`` index pairs of candidate collisions."""
        base, n, w = self.count, plain.shape[0], self._width
        self.plain[base : base + n] = plain
        self.addrs[base : base + n] = start + np.arange(n, dtype=np.uint64) * np.uint64(w)
        self.count += n
        z = (plain ^ cipher).tobytes()
        for k in range(n):
            first = self._seen.setdefault(z[k * w : (k + 1) * w], base + k)
            a, b = int(self.addrs[first]), int(self.addrs[base + k])
            if first == base + k or a == b:
                continue
            if self._distinct_pages and a // PAGE_SIZE == b // PAGE_SIZE:
                continue
            yield first, base + k

    def delta(self, first: int, second: int) -> tuple[NDArray[np.uint8], PhysAddr, PhysAddr]:
        """``P1 xor P2`` and the two addresses of a candidate."""
        return (self.plain[first] ^ self.plain[second], PhysAddr(int(self.addrs[first])),
                PhysAddr(int(self.addrs[second])))


@dataclass
class WearoutTrial:
    """One trial: the blocks it captured, where it confirmed a collision, whether the victim
    then read the attacker's value."""

    pairs: int = 0
    collision_at: int | None = None
    candidates: int = 0
    success: bool = False
    target: str | None = None
    """The value the attacker wanted the victim to read (hex), once it tried."""


@dataclass(frozen=True)
class KeyWearoutMetrics(BaseMetrics):
    block_bits: int
    """Block size n of the cipher worn out."""
    reduced_width: bool
    """Whether that is the deliberately weak reduced-width cipher."""
    trials: int
    successes: int
    success_rate: float
    success_low: float
    """Lower bound of the success rate's 95 % Wilson interval over the trials."""
    success_high: float
    pairs_to_collision: tuple[int | None, ...]
    """Per trial, blocks captured when a collision was confirmed (``None``: none was)."""
    candidate_collisions: int
    blocks_captured: int
    max_pairs: int
    pairs_for_50pct: float
    """Blocks for a 50 % chance of a collision at this width: sqrt(2 ln 2 * 2^n)."""
    key_rotations: int
    curve: tuple[CurvePoint, ...]
    extrapolated_blocks_for_50pct_n128: float
    extrapolated_years_for_50pct_n128: float
    extrapolated_years_for_2pow64_blocks: float
    bandwidth_gb_s: float
    attacker_target: str | None = omitted_when_none()
    """What the attacker wanted the victim to read in the first trial (hex)."""

    def plots(self) -> tuple[PlotData, ...]:
        if not self.curve:
            return ()
        return (WearoutPlot(self.curve, self.block_bits, self.reduced_width),)


@dataclass(frozen=True)
class WearoutRun:
    """What the trials of one key wear-out achieved, and the machine the last one ran on.

    Attributes:
        trials: each trial, in order.
        rotations: key rotations over all trials.
        block_bits: block size n of the cipher worn out.
        reduced: whether that is the reduced-width cipher.
        max_pairs: blocks each trial could capture.
        machine: the machine of the last trial (each trial after the first reboots).
    """

    trials: tuple[WearoutTrial, ...]
    rotations: int
    block_bits: int
    reduced: bool
    max_pairs: int
    machine: Machine

    @property
    def target(self) -> bytes | None:
        """The value the attacker wanted the victim to read in the first trial (``None``: it
        confirmed no collision to use)."""
        first = self.trials[0].target if self.trials else None
        return None if first is None else bytes.fromhex(first)


def engine_problem(engine: type[Engine]) -> str | None:
    """Why the wear-out means nothing on ``engine`` (``None``: it does)."""
    if not engine.encrypts:
        return f"engine {engine.name} does not encrypt: there is no key to wear out"
    return None


def wear_out(ctx: AttackContext, params: KeyWearoutParams) -> WearoutRun:
    """Run every trial on ``ctx.machine``, the later ones each after a reboot; the metrics
    (:class:`KeyWearoutMetrics`) go to ``ctx.log`` after every trial, the one the platform
    refused included (with the collision it found before the refusal), so a ``blocked`` row
    keeps them."""
    trials: list[WearoutTrial] = []
    rotations = 0
    blocks = _Blocks.of(ctx.machine)
    machine = ctx.machine
    for number in range(params.trials):
        if number:
            ctx.log.begin_setup()  # a new victim on a rebooted machine
        machine = ctx.machine if number == 0 else ctx.reboot()
        trial = WearoutTrial()
        trials.append(trial)
        try:
            _trial(machine, ctx, params, blocks, trial, record=number == 0)
        finally:  # a refused trial counts with what it found (its collision, its blocks)
            rotations += machine.rotations
            ctx.log.metrics = _metrics(params, blocks, trials, rotations)
    return WearoutRun(tuple(trials), rotations, blocks.bits, blocks.reduced, params.max_pairs,
                      machine)


class KeyWearout(Attack[KeyWearoutParams]):
    kind = "key-wearout"
    title = "Key wear-out"
    capabilities = ("bus_interposer", "chosen_plaintext")
    Params = KeyWearoutParams
    Metrics = KeyWearoutMetrics
    platform_settings = frozenset({"reduced_width_bits"})
    """The reduced-width cipher, whose collisions come within seconds."""
    control_engine = "tme"
    """The threat needs a cipher to wear out; ``tme`` has no defence against it."""

    def precondition(self, machine: Machine, params: KeyWearoutParams) -> str | None:
        return engine_problem(type(machine.engine))

    def run(self, ctx: AttackContext, params: KeyWearoutParams) -> Verdict:
        return judge_wearout(wear_out(ctx, params))


# -- one trial ----------------------------------------------------------------------------
def _trial(
    m: Machine, ctx: AttackContext, p: KeyWearoutParams, blocks: _Blocks, trial: WearoutTrial,
    record: bool,
) -> None:
    """One trial; what it finds goes to ``trial`` as it goes (a refusal keeps it)."""
    log, rng = ctx.log, ctx.rng
    victim = m.create_domain("guest", "victim")
    if p.wear_domain == "victim":
        source = victim
        pages = [m.alloc_page(source) for _ in range(p.buffer_pages)]
        log.begin_attack()  # the victim's buffer is set up; from here on the attacker drives
    else:
        log.begin_attack()  # the attacker's own guest and pages are the attacker's steps
        source = m.create_domain("guest", "attacker")
        pages = [m.alloc_page(source) for _ in range(p.buffer_pages)]
    store = _PairStore(p.max_pairs + PAGE_SIZE, blocks.width,
                       distinct_pages=source is not victim)
    if record:
        who = Actor.VICTIM if source is victim else Actor.ATTACKER
        log.step(who, f"stores attacker-chosen data in {plural(p.buffer_pages, 'page')} of its "
                 "guest",
                 detail=f"key slot {source.slot}; cipher {m.engine.cipher_label}")
    for start, count in _packets(pages, p.packet_lines):
        if trial.pairs >= p.max_pairs:
            break
        data = blocks.random(rng, count * (LINE_SIZE // blocks.width))
        m.write(source, start, data.tobytes())
        ct = m.bus.read_lines(start, count * LINE_SIZE).reshape(-1, blocks.width)
        for first, second in store.add(start, data, ct):
            trial.candidates += 1
            delta, ai, aj = store.delta(first, second)
            if not _confirm(m, source, rng, blocks, ai, aj, delta):
                continue
            trial.pairs, trial.collision_at = store.count, second + 1
            if record:
                log.step(Actor.ATTACKER, f"finds an internal collision after {second + 1} "
                         "captured blocks and confirms it", "bus_interposer", aj,
                         f"delta = {delta.tobytes().hex()}")
            if source is victim or _hand_over(m, log, source, victim, aj):
                trial.success = _modify(m, source, victim, ctx, blocks, ai, aj, delta, trial,
                                        record)
            return
        trial.pairs = store.count
    if record:
        log.step(Actor.ATTACKER, f"captured {trial.pairs} blocks: {trial.candidates} candidate"
                 " collisions, none confirmed under the current key", "bus_interposer")


def _block_at(m: Machine, addr: int, w: int) -> NDArray[np.uint8]:
    line = addr - addr % LINE_SIZE
    raw = np.frombuffer(m.bus.read(line, LINE_SIZE), dtype=np.uint8)
    return raw[addr - line : addr - line + w].copy()


def _confirm(
    m: Machine, victim: Domain, rng: np.random.Generator, blocks: _Blocks,
    ai: PhysAddr, aj: PhysAddr, delta: NDArray[np.uint8],
) -> bool:
    probe = blocks.random(rng, 1)[0]
    m.write(victim, ai, probe.tobytes())
    ci = _block_at(m, ai, blocks.width)
    m.write(victim, aj, (probe ^ delta).tobytes())
    cj = _block_at(m, aj, blocks.width)
    return bool(((ci ^ delta) == cj).all())


def _hand_over(m: Machine, log: AttackLog, attacker: Domain, victim: Domain, addr: int) -> bool:
    """The attacker frees the frame holding ``addr``; the victim's next page is that frame."""
    frame = addr // PAGE_SIZE
    m.free_page(attacker, PhysAddr(frame * PAGE_SIZE))
    with log.victim_acts():
        return m.alloc_page(victim) == frame * PAGE_SIZE


def _modify(
    m: Machine, writer: Domain, victim: Domain, ctx: AttackContext, blocks: _Blocks,
    ai: PhysAddr, aj: PhysAddr, delta: NDArray[np.uint8], trial: WearoutTrial, record: bool,
) -> bool:
    w = blocks.width
    own, wanted = blocks.random(ctx.rng, 2)
    while (own == wanted).all():
        wanted = blocks.random(ctx.rng, 1)[0]
    with ctx.log.victim_acts():
        m.write(victim, aj, own.tobytes())
    m.write(writer, ai, (wanted ^ delta).tobytes())
    ci = _block_at(m, ai, w)
    line = aj - aj % LINE_SIZE
    raw = np.frombuffer(m.bus.read(line, LINE_SIZE), dtype=np.uint8).copy()
    raw[aj - line : aj - line + w] = ci ^ delta
    m.bus.write(line, raw.tobytes())
    with ctx.log.victim_acts():
        seen = np.frombuffer(m.read(victim, aj, w), dtype=np.uint8)
    if record:
        log = ctx.log
        log.secret, log.captured, log.recovered = own.tobytes(), ci.tobytes(), seen.tobytes()
        log.address = aj
        trial.target = wanted.tobytes().hex()
        log.step(Actor.VICTIM, "stores its own value at the second address", address=aj)
        log.step(Actor.ATTACKER, f"has the {'victim' if writer is victim else 'attacker'} "
                 "store target xor delta at the first address", "chosen_plaintext", ai)
        log.step(Actor.ATTACKER, "writes that ciphertext xor delta at the second address",
                 "bus_interposer", aj)
        log.step(Actor.VICTIM, "reads the second address", address=aj,
                 detail=f"reads {seen.tobytes().hex()}, "
                 f"attacker wanted {wanted.tobytes().hex()}")
    return bool((seen == wanted).all())


# -- the verdict --------------------------------------------------------------------------
def _metrics(
    p: KeyWearoutParams, blocks: _Blocks, trials: list[WearoutTrial], rotations: int
) -> KeyWearoutMetrics:
    wins = sum(t.success for t in trials)
    n = blocks.bits
    q50 = math.sqrt(2 * math.log(2) * 2.0**n)
    q50_128 = math.sqrt(2 * math.log(2)) * 2.0**64
    bytes_per_s = p.bandwidth_gb_s * 1e9
    top = min(p.max_pairs, int(4 * q50))
    points = sorted({max(1, top * k // 24) for k in range(1, 25)})
    hits = [t.collision_at for t in trials]
    stats = TrialStats.of(wins, len(trials))
    curve = tuple(
        CurvePoint(pairs=q,
                   measured=sum(h is not None and h <= q for h in hits) / len(trials),
                   bound=birthday_probability(q, n))
        for q in points
    )
    return KeyWearoutMetrics(
        block_bits=n,
        reduced_width=blocks.reduced,
        trials=len(trials),
        successes=wins,
        success_rate=wins / len(trials),
        success_low=round(stats.low, 4),
        success_high=round(stats.high, 4),
        pairs_to_collision=tuple(hits),
        candidate_collisions=sum(t.candidates for t in trials),
        blocks_captured=sum(t.pairs for t in trials),
        max_pairs=p.max_pairs,
        pairs_for_50pct=q50,
        key_rotations=rotations,
        curve=curve,
        extrapolated_blocks_for_50pct_n128=q50_128,
        extrapolated_years_for_50pct_n128=q50_128 * 16 / bytes_per_s / SECONDS_PER_YEAR,
        extrapolated_years_for_2pow64_blocks=2.0**64 * 16 / bytes_per_s / SECONDS_PER_YEAR,
        bandwidth_gb_s=p.bandwidth_gb_s,
        attacker_target=trials[0].target,
    )


def judge_wearout(run: WearoutRun) -> Verdict:
    """The outcome of ``run``'s trials: in how many the victim read the attacker's value."""
    trials, n = run.trials, run.block_bits
    wins = sum(t.success for t in trials)
    hits = [t.collision_at for t in trials]
    stats = TrialStats.of(wins, len(trials))
    width = f"{n}-bit {'reduced-width ' if run.reduced else ''}blocks"
    # A blind write of the victim's block reads as the chosen value 1 time in 2^n.
    odds = log2_tail(len(trials), wins, 2.0**-n)
    # The rule of scenario trials (testbed.results.verdicts): succeeded when the 95 %
    # interval of the success rate lies at or above one half.
    if wins and stats.low >= 0.5:
        return Verdict(Outcome.SUCCEEDED, f"in {wins} of {len(trials)} trials an internal "
                       f"collision ({width}) let the attacker set the victim's value "
                       f"({stats.text()}; by chance {chance_text(odds)})", odds)
    if wins:
        return Verdict(Outcome.PARTIAL, f"the controlled modification worked in {wins} of "
                       f"{len(trials)} trials ({width}; {stats.text()}; by chance "
                       f"{chance_text(odds)})", odds)
    found = sum(h is not None for h in hits)
    if run.rotations:
        why = (f"the key was rotated {run.rotations} times, so no collision held under the "
               "current key")
    elif found:
        why = (f"collisions were confirmed in {found} trials, but the victim read garbage: "
               "its data is under another key than the one worn out")
    else:
        why = f"no internal collision within {run.max_pairs} blocks"
    return Verdict(Outcome.MITIGATED, f"0 of {len(trials)} trials succeeded ({width}): {why}",
                   odds)
