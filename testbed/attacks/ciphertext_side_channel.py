"""Ciphertext side channel (CipherLeaks).

Threat: memory encryption with a fixed per-address tweak and no freshness (XEX or XTS keyed by
the physical address) encrypts the same 16 bytes at the same address to the same ciphertext
every time. An observer who reads the ciphertext of one fixed guest address over time sees
when its value repeats; once it has seen which ciphertext goes with which known value, it
reads the secret-dependent values the location takes, one per step. The guest here runs a
constant-time Montgomery ladder over its secret scalar, most significant bit first, and at
every iteration stores its swap flag (the scalar's bit xor the previous bit, as in OpenSSL's
``ec_scalar_mul_ladder``) at one fixed address; the observer decodes each flag and undoes the
xor, recovering the scalar bit by bit. Constant-time code does not help: the addresses and the
timing are the same for every secret, only the ciphertext differs.
Source: M. Li, Y. Zhang, H. Wang, K. Li, Y. Cheng, "CipherLeaks: Breaking Constant-time
Cryptography on AMD SEV via the Ciphertext Side Channel", USENIX Security 2021 (the hypervisor
reads the ciphertext of the guest's encrypted register save area at each exit and builds a
dictionary of ciphertexts of known values); AMD's SEV-SNP ciphertext hiding (the firmware's
ciphertext-hiding option: software outside the guest reads guest pages as a fixed value, here
0xff, as the SNP engine models it); DDR bus interposer results published in 2025 (the TEE.fail
and WireTap disclosures by researchers at Georgia Tech and Purdue University: an interposer
between the DIMM and the CPU reads the deterministic ciphertext on the bus, below the CPU,
where ciphertext hiding does not apply, on Intel SGX/TDX and AMD SEV-SNP servers alike; the
model takes only that observation point from them, not their targets).
Preconditions: observer ``hypervisor`` needs capability ``malicious_hypervisor`` and an engine
that protects guests from the hypervisor (elsewhere the hypervisor is trusted and the threat
is out of scope); observer ``bus`` needs ``bus_interposer`` and an engine that encrypts (with
plaintext DRAM the interposer reads the flag itself, no side channel needed). The observer
reads after every ladder iteration (CipherLeaks interrupts the guest there, with page faults
on the ladder's code pages); the observer knows the address of the flag (from the guest's
image) and the offset of its 16-byte block.

The two observers take two paths through the machine. The hypervisor's: the guest stores
through its nested page table (:meth:`~testbed.platform.Machine.guest_write`, SEV-SNP checks
the RMP) and the hypervisor reads the frame through its own mapping
(:meth:`~testbed.platform.Machine.hypervisor_read`, where ciphertext hiding applies). The bus
observer's: the guest's stores go to the engine in one batch by physical address
(:meth:`~testbed.platform.Machine.write_sequence`), which skips the guest's nested page table
and the RMP check. The frame is the guest's own, mapped by its own entry, so a real guest's
stores would pass both and put the same ciphertext on the bus; what the shortcut leaves out is
only a check that cannot fail here.

Choices of the model, where the source leaves the detail to the target: the flag is a 64-bit
little-endian word at the start of a 64-byte line, followed in its 16-byte block by 8 bytes
that stay the same during the ladder (``beside_flag: counter`` puts there a counter that grows
with every iteration instead: then the block never repeats and the attack, with these
parameters, does not work); the rest of the line stays the same. The known-value phase is the
same ladder run first over a public scalar of ``calibration_bits`` bits (in the paper, values
the hypervisor knows at known points of the guest's execution): the observer records which
ciphertext goes with flag 0 and which with flag 1 (when the public scalar showed one value
only, a new ciphertext is the other). A ciphertext the dictionary ties to both values (what
ciphertext hiding returns for every read), or a new one when both values are known, tells
nothing: the observer guesses that flag at random. A flag guessed wrong turns
every later bit over, as the xor chain carries it.

The outcome compares the recovered scalar bits with the secret's only (the judge of
:func:`~testbed.attacks.dirty_page_leak.judge_bits`): all right is ``succeeded``; clearly
better than coin flips (beyond the chance margin of 2^-32) is ``partial``; a result coin
flips reach more often than that (a short scalar) is ``inconclusive``. A failure is weighed
against the control run without the defence (README, *Outcomes*): ``mitigated`` where the
control succeeded, ``ineffective`` where the attack does not work even there, ``inconclusive``
where the control is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, TypedDict

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from ..platform import Domain, Engine, Machine
from ..results import Line, LinePlot, PlotData
from ..types import LINE_SIZE, PAGE_SIZE, PhysAddr
from ._base import Actor, Attack, AttackContext, BaseMetrics, SecretParams, Verdict, plant_secret
from .cost import MachineShape, Work, run_part
from .dirty_page_leak import chance_probability, judge_bits

__all__ = [
    "CiphertextRun",
    "CiphertextSideChannel",
    "CiphertextSideChannelMetrics",
    "CiphertextSideChannelParams",
    "Observer",
    "judge_ciphertext_leak",
    "ladder_flags",
    "observe_ladder",
    "state_line",
]

Observer = Literal["hypervisor", "bus"]

MAX_LEAK_BYTES = 128
"""Longest secret scalar: one ladder iteration per bit, 1024 iterations."""
BLOCK = 16
"""Bytes of one cipher block: the unit whose ciphertext repeats."""
TRACE_LIMIT = 48
"""Iterations kept in the plotted trace and in the captured evidence."""
STEP_UNITS = 120
"""Work units per ladder iteration: the guest's store of one line through the engine, the
observer's read of it and the dictionary lookup (:mod:`testbed.attacks.cost`)."""
SETUP_UNITS = 1_500
"""Work units of the guest's set-up: its domain and key, two pages, the secret stored."""
NEIGHBOUR = bytes.fromhex("c0ffee0ddba11000")
"""The 8 bytes beside the flag in its block (a saved pointer, the model's choice): constant
during the ladder, so that the block's ciphertext depends on the flag alone."""

_CAPABILITY: dict[str, str] = {"hypervisor": "malicious_hypervisor", "bus": "bus_interposer"}


class CiphertextSideChannelParams(SecretParams):
    """The secret scalar is processed one bit per ladder iteration: at most 128 bytes. Observer
    hypervisor needs malicious_hypervisor, observer bus needs bus_interposer."""

    observer: Observer = Field(
        "hypervisor", description="who reads the flag's ciphertext: the hypervisor through its "
        "own mapping (ciphertext hiding applies) or a DDR interposer on the memory bus (it does "
        "not)")
    calibration_bits: int = Field(
        16, ge=2, le=256, description="bits of the public scalar of the known-value phase, "
        "whose flags the observer knows")
    beside_flag: Literal["constant", "counter"] = Field(
        "constant", description="what the 8 bytes beside the flag in its block hold: a constant "
        "(the block's ciphertext follows the flag alone) or a counter that grows with every "
        "iteration (the block never repeats)")

    @model_validator(mode="after")
    def _bounded(self) -> CiphertextSideChannelParams:
        if self.secret_size > MAX_LEAK_BYTES:
            raise ValueError(f"the scalar is processed one bit per ladder iteration: at most "
                             f"{MAX_LEAK_BYTES} bytes, got {self.secret_size}")
        return self

    def work(self, machine: MachineShape) -> Work:
        """One guest store and one observer read per iteration, both phases."""
        steps = self.calibration_bits + 8 * self.secret_size
        return Work((run_part(machine), ("the victim's set-up", SETUP_UNITS),
                     (f"{steps:,} ladder iterations observed", STEP_UNITS * steps)),
                    hint="use a shorter secret or fewer params.calibration_bits")


@dataclass(frozen=True)
class CiphertextSideChannelMetrics(BaseMetrics):
    observer: str
    """Who read the flag's ciphertext: ``hypervisor`` or ``bus``."""
    reads: int
    """Observations of the flag's block (a read, or a write snooped on the bus), both phases."""
    bits_total: int
    bits_recovered: int
    """Secret bits the observer decoded right."""
    bit_accuracy: float
    chance_probability: float
    """Probability that coin flips get at least as many bits right."""
    distinct_ciphertexts: int
    """Different ciphertexts of the flag's block seen during the secret phase (2 for a
    deterministic cipher and a binary flag; 1 when every read returns the same bytes)."""
    dictionary_entries: int
    """Ciphertexts the known-value phase tied to a flag value."""
    ambiguous_steps: int
    """Secret iterations whose ciphertext the dictionary could not decode (the flag was
    guessed)."""
    flag_trace: tuple[int, ...]
    """The first flags the guest stored."""
    ciphertext_trace: tuple[int, ...]
    """For the same iterations, the ciphertext seen, numbered in order of first appearance."""

    def plots(self) -> tuple[PlotData, ...]:
        if not self.flag_trace:
            return ()
        xs = tuple(float(i) for i in range(len(self.flag_trace)))
        return (LinePlot(
            title="The flag's ciphertext over the ladder's iterations",
            x_label="ladder iteration (secret phase)",
            y_label="value",
            lines=(Line("swap flag the guest stored", xs, tuple(map(float, self.flag_trace))),
                   Line("ciphertext seen (number of first appearance)", xs,
                        tuple(map(float, self.ciphertext_trace)))),
            caption=(f"First {len(xs)} iterations as the {self.observer} saw them: the "
                     "ciphertext's number changes exactly when the flag does (the numbers are "
                     "in order of first appearance, so the two lines may mirror each other), "
                     "so the ciphertext tells the flag."),
        ),)


@dataclass(frozen=True)
class CiphertextRun:
    """What one observation achieved.

    Attributes:
        truth: the scalar's bits, as the guest holds them.
        recovered: the observer's bit for each iteration.
        secret: the scalar the victim planted.
    """

    truth: NDArray[np.uint8]
    recovered: NDArray[np.uint8]
    secret: bytes


def ladder_flags(bits: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The swap flag of each Montgomery-ladder iteration over ``bits`` (most significant
    first): the bit xor the bit before it, the first against 0."""
    previous = np.concatenate(([0], bits[:-1])).astype(np.uint8)
    return (bits ^ previous).astype(np.uint8)


def judge_ciphertext_leak(run: CiphertextRun) -> Verdict:
    """The recovered bits against the scalar's (:func:`judge_bits`)."""
    return judge_bits(run.truth, run.recovered, secret=run.secret,
                      channel="the flag's ciphertext")


class _Bound(TypedDict):
    """The class variables a bound attack sets for its parameters (its instance attributes:
    the object pickles with them)."""

    capabilities: tuple[str, ...]
    control_engine: str


class CiphertextSideChannel(Attack[CiphertextSideChannelParams]):
    kind = "ciphertext-side-channel"
    title = "Ciphertext side channel (CipherLeaks)"
    capabilities: ClassVar[tuple[str, ...]] = ("malicious_hypervisor", "bus_interposer")
    """One of them, by the observer: a scenario's bound attack carries its observer's only."""
    Params = CiphertextSideChannelParams
    Metrics = CiphertextSideChannelMetrics
    control_engine = "sev"
    platform_settings = frozenset({"ciphertext_hiding"})

    def bound(self, params: CiphertextSideChannelParams,
              engines: Sequence[type[Engine]]) -> CiphertextSideChannel:
        attack = type(self)()
        control = next((e.name for e in engines if _engine_problem(params.observer, e) is None),
                       "none")
        bound: _Bound = {"capabilities": (_CAPABILITY[params.observer],),
                         "control_engine": control}
        vars(attack).update(bound)
        return attack

    def run_key(self) -> object:
        # Everything that differs between bound objects is in the parameters.
        return type(self), self.kind

    def precondition(self, machine: Machine, params: CiphertextSideChannelParams) -> str | None:
        return _engine_problem(params.observer, type(machine.engine))

    def run(self, ctx: AttackContext, params: CiphertextSideChannelParams) -> Verdict:
        return judge_ciphertext_leak(observe_ladder(ctx, params))


def _engine_problem(observer: str, engine: type[Engine]) -> str | None:
    if observer == "hypervisor" and not engine.isolates_guests:
        return (f"engine {engine.name} does not protect guests from the hypervisor: the "
                "hypervisor is trusted there, so a malicious one is out of scope")
    if observer == "bus" and not engine.encrypts:
        return (f"engine {engine.name} keeps DRAM in plaintext: the interposer reads the flag "
                "itself, there is no ciphertext side channel to measure")
    return None


def state_line(flag: int, beside: bytes = NEIGHBOUR) -> bytes:
    """The 64-byte line holding the flag: the flag (64-bit little-endian), the 8 bytes beside
    it, then state that stays the same."""
    return flag.to_bytes(8, "little") + beside + bytes(range(LINE_SIZE - BLOCK))


_LINES = (state_line(0), state_line(1))


def _gpn(guest: Domain, pa: PhysAddr) -> int:
    return next(g for g, f in guest.npt.items() if f == pa // PAGE_SIZE)


class _Observer:
    """Runs the guest's ladder over ``flags`` and reads the flag's block after each iteration.

    The hypervisor reads memory between the guest's stores, one iteration at a time. The
    interposer snoops the stores themselves on the bus: all the lines the guest writes go to
    the engine in one batch (:meth:`~testbed.platform.Machine.write_sequence`), which returns
    what each write put on the bus; that path writes the frame by its physical address and
    skips the guest's nested page table and the RMP (see the module's docstring).
    """

    def __init__(self, ctx: AttackContext, guest: Domain, state: PhysAddr, who: str,
                 counter: bool) -> None:
        self.m, self.log = ctx.machine, ctx.log
        self.guest, self.state, self.who = guest, state, who
        self.gpa = _gpn(guest, state) * PAGE_SIZE
        self.counter = counter
        self.reads = 0
        self.iterations = 0

    def _lines(self, flags: NDArray[np.uint8]) -> list[bytes]:
        first = self.iterations + 1
        self.iterations += int(flags.size)
        if not self.counter:
            return [_LINES[flag] for flag in flags.tolist()]
        return [state_line(flag, (first + i).to_bytes(8, "little"))
                for i, flag in enumerate(flags.tolist())]

    def run(self, flags: NDArray[np.uint8]) -> list[bytes]:
        lines = self._lines(flags)
        self.reads += len(lines)
        if self.who == "bus":
            batch = np.frombuffer(b"".join(lines), dtype=np.uint8).reshape(-1, LINE_SIZE)
            with self.log.victim_acts():
                on_bus = self.m.write_sequence(self.guest, self.state, batch)
            return [row[:BLOCK].tobytes() for row in on_bus]
        seen: list[bytes] = []
        for line in lines:
            with self.log.victim_acts():
                self.m.guest_write(self.guest, self.gpa, line)
            seen.append(self.m.hypervisor_read(self.state, BLOCK))
        return seen


def _dictionary(seen: list[bytes], flags: NDArray[np.uint8]) -> dict[bytes, set[int]]:
    table: dict[bytes, set[int]] = {}
    for block, flag in zip(seen, flags.tolist(), strict=True):
        table.setdefault(block, set()).add(flag)
    return table


def _decode(block: bytes, table: dict[bytes, set[int]]) -> int | None:
    """The flag a ciphertext shows, or ``None`` when the dictionary cannot tell."""
    values = table.get(block)
    if values is not None:
        return next(iter(values)) if len(values) == 1 else None
    known = {v for vs in table.values() if len(vs) == 1 for v in vs}
    ambiguous = any(len(vs) > 1 for vs in table.values())
    if len(known) == 1 and not ambiguous:
        return 1 - next(iter(known))  # a new ciphertext: the flag's other value
    return None


def observe_ladder(ctx: AttackContext, params: CiphertextSideChannelParams) -> CiphertextRun:
    """A guest plants its scalar and runs the ladder, first over a public scalar, then over
    its own, storing each swap flag at one address; the observer reads that address's
    ciphertext after every iteration and decodes the scalar. The metrics go to ``ctx.log``.
    """
    m, log = ctx.machine, ctx.log
    guest, pa, secret = plant_secret(ctx, params, "guest")
    state = m.alloc_page(guest)
    log.step(Actor.VICTIM, "keeps its ladder state on a page of its own: the swap flag at "
             "offset 0", address=state,
             detail=f"flag, then 8 bytes ({params.beside_flag}), in the line's first "
             f"{BLOCK}-byte block")
    observer = _Observer(ctx, guest, state, params.observer, params.beside_flag == "counter")
    capability = _CAPABILITY[params.observer]
    reader = ("through its own mapping" if params.observer == "hypervisor"
              else "on the memory bus (DDR interposer)")

    log.begin_attack()
    public = ctx.rng.integers(0, 2, params.calibration_bits).astype(np.uint8)
    known = ladder_flags(public)
    calibration = observer.run(known)
    table = _dictionary(calibration, known)
    log.step(Actor.ATTACKER, f"reads the flag's ciphertext {reader} after each iteration of "
             "the ladder over a public scalar, and records which ciphertext goes with which "
             "flag", capability, state,
             detail=f"{params.calibration_bits} iterations; {len(table)} distinct ciphertexts")

    with log.victim_acts():
        held = m.guest_read(guest, _gpn(guest, pa) * PAGE_SIZE + pa % PAGE_SIZE, len(secret))
    truth = np.unpackbits(np.frombuffer(held, dtype=np.uint8))
    flags = ladder_flags(truth)
    log.step(Actor.VICTIM, "runs the constant-time ladder over its secret scalar: each "
             "iteration stores its swap flag at the same address", address=state,
             detail=f"{truth.size} iterations")
    seen = observer.run(flags)

    decoded = np.zeros_like(flags)
    ambiguous = 0
    for i, block in enumerate(seen):
        flag = _decode(block, table)
        if flag is None:
            ambiguous += 1
            flag = int(ctx.rng.integers(2))
        decoded[i] = flag
    recovered = (np.bitwise_xor.accumulate(decoded) & 1).astype(np.uint8)
    log.step(Actor.ATTACKER, f"reads the flag's ciphertext {reader} after each iteration, "
             "looks it up and undoes the xor chain", capability, state,
             detail=f"{ambiguous} of {truth.size} iterations needed a guess")

    numbers: dict[bytes, int] = {}
    trace = tuple(numbers.setdefault(block, len(numbers)) for block in seen[:TRACE_LIMIT])
    log.captured = b"".join(seen[:TRACE_LIMIT])
    log.recovered = np.packbits(recovered).tobytes()
    correct = int(np.count_nonzero(truth == recovered))
    log.metrics = CiphertextSideChannelMetrics(
        observer=params.observer,
        reads=observer.reads,
        bits_total=int(truth.size),
        bits_recovered=correct,
        bit_accuracy=correct / truth.size,
        chance_probability=chance_probability(correct, int(truth.size)),
        distinct_ciphertexts=len(set(seen)),
        dictionary_entries=sum(len(v) == 1 for v in table.values()),
        ambiguous_steps=ambiguous,
        flag_trace=tuple(flags[:TRACE_LIMIT].tolist()),
        ciphertext_trace=trace,
    )
    return CiphertextRun(truth, recovered, secret)
