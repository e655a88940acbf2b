"""Torn live patch.

Threat: the kernel rewrites its own text while other CPUs run it (static calls, jump labels,
ftrace, optimised kprobes). When the new bytes are written in place, a CPU fetching the same
instruction may read some bytes before a write and some after it, and execute an instruction
that is neither the old nor the new one: a wrong call target, a jump into the middle of an
instruction, an invalid opcode. Here the "attacker" is the adversarial scheduler: it chooses
the order in which the CPUs and the patcher take their steps, and wins if any CPU executes a
torn instruction. Kernel integrity is the victim.
Source: P. Zijlstra, "[PATCH v3 1/6] x86/alternatives: Teach text_poke_bp() to emulate
instructions" (LKML, 7 October 2019):
the INT3 protocol (INT3 on the first byte of every site, sync, tails, sync, first bytes, sync)
and the INT3 handler that emulates CALL, JMP32, JMP8, NOP2 (as JMP8 +0) and NOP5 (as JMP32 +0).
Preconditions: capability ``concurrent_execution`` (at least two CPUs run the patched text).
Memory encryption plays no part: the CPUs fetch the text through the engine, so the outcome is
the same under every engine. The text lives in a kernel-owned page of the machine; the
interleavings run on a copy of it (:mod:`testbed.platform.kernel_text.livepatch`,
:mod:`testbed.platform.kernel_text.interleavings`), and the patched text is stored back at the end.
Mitigation: ``text_poke_bp`` (the INT3 protocol).

Exhaustive exploration runs one schedule per class of equivalent interleavings (partial-order
reduction, :func:`~testbed.platform.kernel_text.interleavings.explore_all`): schedules that
differ only in the order of steps that commute execute the same instructions. So in the metrics
``interleavings_explored`` and ``torn_interleavings`` count classes, and ``executions`` and
``torn_executions`` sum over one schedule of each class; ``interleavings_total`` is the number
of interleavings an explorer without the reduction runs, and ``por_reduction`` the ratio of the
two. Whether a CPU tears, and which distinct torn instructions it executes, are the same either
way.

The run is :func:`live_patch` and its outcome :func:`judge_patch`, which the attack programs'
``live_patch`` step and ``torn`` goal share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from ..errors import AttackError, ConfigError
from ..platform import (
    INT3,
    MAX_INTERLEAVINGS,
    PATCHER,
    ExecClass,
    Execution,
    Exploration,
    InsnKind,
    LivePatch,
    Patcher,
    TextSegment,
    count_interleavings,
    decode,
    encode,
    explore_all,
    explore_random,
    poke_site,
)
from ..results import omitted_when_none
from ..text import plural
from ..types import PAGE_SIZE, Outcome, PhysAddr
from ._base import Actor, Attack, AttackContext, AttackParams, BaseMetrics, Verdict
from .cost import MachineShape, Work, run_part

__all__ = [
    "PatchRun",
    "TornExecution",
    "TornLivePatch",
    "TornLivePatchMetrics",
    "TornLivePatchParams",
    "build",
    "judge_patch",
    "kernel_text",
    "live_patch",
]

TEXT_BASE = 0xFFFF_FFFF_8100_0000
"""Virtual address of the emulated kernel text page."""
SITE_STRIDE = 16
MAX_RANDOM_STEPS = 2_000_000
"""Scheduler steps one random exploration may take in all (interleavings x steps each)."""
NAIVE_COUNT_LIMIT = 10**18
"""Above this many interleavings, ``interleavings_total`` (and ``por_reduction``) are null."""
INTERLEAVING_UNITS = {"exhaustive": 200.0, "random": 27.0}
"""Work units per interleaving explored (exhaustive: per class), by exploration
(:mod:`testbed.attacks.cost`)..."""
STEP_UNITS = {"exhaustive": 1.0, "random": 3.0}
"""...per step it may take..."""
EXECUTION_UNITS = {"exhaustive": 3.0, "random": 18.0}
"""...and per instruction the CPUs execute in it."""

InsnName = Literal["nop5", "call", "jmp32", "nop2", "jmp8"]


class TornLivePatchParams(AttackParams):
    """old and new have the same length and differ; an exhaustive space over 100,000 classes
    of equivalent interleavings, or a random one over 2,000,000 steps, is refused."""

    cpus: int = Field(2, ge=2, le=8, description="CPUs executing the patched sites")
    sites: int = Field(1, ge=1, le=16, description="sites patched in one batch")
    visits: int = Field(1, ge=1, le=4, description="times each CPU executes each site")
    old: InsnName = Field("nop5", description="instruction at every site before the patch")
    new: InsnName = Field("call", description="instruction the patch writes")
    fetch_chunk: int = Field(2, ge=1, le=8, description="bytes a CPU fetches per step")
    poke_chunk: int = Field(1, ge=1, le=5, description="bytes the patcher writes per step")
    explore: Literal["exhaustive", "random"] = Field(
        "exhaustive",
        description="one interleaving of each class of equivalent ones, or a seeded random sample")
    interleavings: int = Field(
        1000, ge=1, le=MAX_INTERLEAVINGS, description="random: schedules to sample")

    def pages_needed(self) -> int:
        return 1

    @model_validator(mode="after")
    def _patchable(self) -> TornLivePatchParams:
        if len(encode(self.old, 0, 16)) != len(encode(self.new, 0, 16)):
            raise ValueError(f"old ({self.old}) and new ({self.new}) must have the same length")
        if self.old == self.new and self.old in ("nop5", "nop2"):
            raise ValueError(f"old and new are the same instruction ({self.old}): nothing to patch")
        return self

    @model_validator(mode="after")
    def _bounded_work(self) -> TornLivePatchParams:
        for patcher in Patcher:
            run = build(self, patcher)
            if self.explore == "exhaustive":
                try:
                    count_interleavings(run, reduction=True)
                except ConfigError as exc:
                    raise ValueError(f"{exc} (with {patcher.value})") from None
            elif self.interleavings * run.max_steps() > MAX_RANDOM_STEPS:
                raise ValueError(
                    f"interleavings x steps per schedule = {self.interleavings} x "
                    f"{run.max_steps()} with {patcher.value}; the limit is {MAX_RANDOM_STEPS}")
        return self

    def work(self, machine: MachineShape) -> Work:
        """The interleavings explored with the patcher in force (``text_poke_bp`` with the
        INT3 protocol; exhaustive: one per class), each charged by the steps it may take and
        the instructions run."""
        patcher = Patcher.TEXT_POKE_BP if machine.mitigations.text_poke_bp else Patcher.TEXT_POKE
        run = build(self, patcher)
        exhaustive = self.explore == "exhaustive"
        count = count_interleavings(run, reduction=True) if exhaustive else self.interleavings
        steps = run.max_steps()
        executions = self.cpus * self.sites * self.visits
        each = (INTERLEAVING_UNITS[self.explore] + STEP_UNITS[self.explore] * steps
                + EXECUTION_UNITS[self.explore] * executions)
        hint = ("use fewer params.cpus, params.sites or params.visits, or params.explore: random"
                if exhaustive else "lower params.interleavings")
        what = "classes of interleavings" if exhaustive else "random interleavings"
        return Work((run_part(machine),
                     (f"{count:,} {what} of up to {steps} steps with {patcher.value}",
                      count * each)), hint=hint)


def _site(i: int) -> int:
    return TEXT_BASE + SITE_STRIDE * i


def _insn(name: str, site: int, i: int, *, old: bool) -> bytes:
    """``name`` at ``site``: calls and 32-bit jumps go to a function of their own in the page
    (old and new targets differ in two displacement bytes), 8-bit jumps to the end of the site's
    slot (old ones to its middle)."""
    if name == "jmp8":
        return encode(name, site, site + (SITE_STRIDE // 2 if old else SITE_STRIDE))
    return encode(name, site, TEXT_BASE + (0xC90 if old else 0x800) + 0x20 * i)


def kernel_text(params: TornLivePatchParams) -> bytes:
    """One page of kernel text: the old instruction at each site, INT3 padding elsewhere."""
    text = bytearray(INT3 * PAGE_SIZE)
    for i in range(params.sites):
        old = _insn(params.old, _site(i), i, old=True)
        text[SITE_STRIDE * i : SITE_STRIDE * i + len(old)] = old
    return bytes(text)


def build(params: TornLivePatchParams, patcher: Patcher, text: bytes | None = None) -> LivePatch:
    """The live patch of ``params`` (on ``text``, by default :func:`kernel_text`)."""
    sites = [poke_site(_site(i), _insn(params.new, _site(i), i, old=False))
             for i in range(params.sites)]
    return LivePatch(TextSegment(TEXT_BASE, text or kernel_text(params)), sites, patcher=patcher,
                     cpus=params.cpus, visits=params.visits, fetch_chunk=params.fetch_chunk,
                     poke_chunk=params.poke_chunk)


def _origin(e: Execution, old: bytes, new: bytes) -> str:
    """Per byte executed: ``o`` from the old instruction, ``n`` from the new, ``=`` both, ``?``
    neither."""
    out = []
    for i, b in enumerate(e.fetched):
        from_old, from_new = i < len(old) and b == old[i], i < len(new) and b == new[i]
        out.append("=" if from_old and from_new else "o" if from_old else "n" if from_new
                   else "?")
    return "".join(out)


def _what(e: Execution) -> str:
    if e.kind is None:
        return "an invalid opcode (#UD)"
    if e.kind is InsnKind.INT3:
        return "an INT3 the handler did not consume"
    return decode(e.fetched).text(e.address)


@dataclass(frozen=True)
class TornExecution:
    """The first torn instruction found, and the schedule that produced it."""

    schedule: str
    cpu: int
    site: int
    address: str
    executed: str
    decoded: str
    origin: str
    """Per byte executed: ``o`` old, ``n`` new, ``=`` both, ``?`` neither."""
    old: str
    new: str
    fetch_steps: tuple[int, ...]
    timeline: tuple[str, ...]


@dataclass(frozen=True)
class TornLivePatchMetrics(BaseMetrics):
    patcher: str
    exploration: str
    interleavings_explored: int
    """Exhaustive: classes of equivalent interleavings, one schedule run of each; random: the
    schedules sampled."""
    torn_interleavings: int
    """Of those, the ones in which a CPU executed a torn instruction."""
    torn_executions: int
    executions: dict[str, int]
    """Executions per category (old, new, emulated, torn), summed over the schedules run."""
    cpus: int
    sites: int
    interleavings_total: int | None = None
    """Exhaustive: the interleavings an explorer without partial-order reduction runs (null
    above 10**18, and for a random sample)."""
    por_reduction: float | None = None
    """``interleavings_total`` / ``interleavings_explored``: how many times fewer schedules
    the reduction runs."""
    distinct_torn: int = 0
    """Distinct torn instructions (site and bytes executed) over the schedules run."""
    first_torn: TornExecution | None = omitted_when_none()


class TornLivePatch(Attack[TornLivePatchParams]):
    kind = "torn-live-patch"
    title = "Torn live patch"
    capabilities = ("concurrent_execution",)
    Params = TornLivePatchParams
    Metrics = TornLivePatchMetrics
    platform_settings = frozenset()

    def run(self, ctx: AttackContext, params: TornLivePatchParams) -> Verdict:
        return judge_patch(live_patch(ctx, params))


@dataclass(frozen=True)
class PatchRun:
    """What one live patch under the adversarial scheduler showed.

    Attributes:
        exploration: the interleavings explored and what the CPUs executed in them.
        torn: the first torn instruction found (``None``: none).
    """

    exploration: Exploration
    torn: TornExecution | None

    @property
    def executed(self) -> bytes | None:
        """The bytes of the first torn instruction a CPU executed (``None``: none tore)."""
        return None if self.torn is None else bytes.fromhex(self.torn.executed)


def live_patch(ctx: AttackContext, params: TornLivePatchParams) -> PatchRun:
    """The kernel loads its text into a page of ``ctx.machine`` and patches it while the CPUs
    run through it, over the interleavings ``params`` asks for; the patched text is kept in the
    page. The metrics go to ``ctx.log``.

    Raises:
        AttackError: the patch did not complete when finished alone.
    """
    m, log = ctx.machine, ctx.log
    pa = m.alloc_page(m.kernel)
    m.write(m.kernel, pa, kernel_text(params))
    patcher = Patcher.TEXT_POKE_BP if m.mitigations.text_poke_bp else Patcher.TEXT_POKE
    start = build(params, patcher, m.read(m.kernel, pa, PAGE_SIZE))
    old, new = start.old_insn(0).raw, start.sites[0].text
    log.secret, log.address = new, pa
    log.step(Actor.KERNEL, f"loads its text: {plural(params.sites, 'site')} holding {params.old}",
             address=pa, detail=f"virtual {TEXT_BASE:#x}; site 0 holds {old.hex(' ')}")
    log.step(Actor.PATCHER, _patcher_action(patcher, params), address=pa,
             detail=f"{len(start.ops)} patcher steps; site 0 becomes {new.hex(' ')}")
    how = ("one interleaving of each class of equivalent ones" if params.explore == "exhaustive"
           else f"{params.interleavings} seeded random interleavings")
    log.begin_attack()
    log.step(Actor.ATTACKER, f"runs {params.cpus} CPUs through the sites during the patch, "
             f"over {how}", "concurrent_execution", pa,
             f"a CPU fetches {plural(params.fetch_chunk, 'byte')} per step and executes each "
             f"site {plural(params.visits, 'time')}; the patcher writes "
             f"{plural(params.poke_chunk, 'byte')} per step")
    found = (explore_all(start, reduction=True) if params.explore == "exhaustive"
             else explore_random(start, params.interleavings, ctx.rng))
    first_torn = _first_torn(ctx, start, found, pa)
    log.metrics = _metrics(params, patcher, found, first_torn, _naive_count(start, found))
    _store_back(ctx, start, pa)
    return PatchRun(found, first_torn)


def _patcher_action(patcher: Patcher, params: TornLivePatchParams) -> str:
    if patcher is Patcher.TEXT_POKE_BP:
        return (f"patches {plural(params.sites, 'site')} to {params.new} with text_poke_bp: "
                "INT3 on "
                "every first byte, sync, tails, sync, first bytes, sync")
    return (f"patches {plural(params.sites, 'site')} to {params.new} with text_poke, writing "
            "the new "
            "bytes in place")


def _naive_count(start: LivePatch, found: Exploration) -> int | None:
    """The interleavings an exhaustive exploration without the reduction runs (``None``: not
    exhaustive, or over :data:`NAIVE_COUNT_LIMIT`)."""
    if not found.exhaustive:
        return None
    try:
        return count_interleavings(start, NAIVE_COUNT_LIMIT, reduction=False)
    except ConfigError:
        return None


def _metrics(params: TornLivePatchParams, patcher: Patcher, found: Exploration,
             first_torn: TornExecution | None, total: int | None) -> TornLivePatchMetrics:
    return TornLivePatchMetrics(
        patcher=patcher.value,
        exploration="exhaustive" if found.exhaustive else "random",
        interleavings_explored=found.interleavings,
        torn_interleavings=found.torn_interleavings,
        torn_executions=found.counts[ExecClass.TORN],
        executions={c.value: n for c, n in found.counts.items()},
        cpus=params.cpus,
        sites=params.sites,
        interleavings_total=total,
        por_reduction=None if total is None else round(total / found.interleavings, 2),
        distinct_torn=len(found.torn_instructions),
        first_torn=first_torn,
    )

def _first_torn(ctx: AttackContext, start: LivePatch, found: Exploration,
                pa: PhysAddr) -> TornExecution | None:
    """Log what the CPUs executed; the first torn execution found (if any)."""
    log, run = ctx.log, found.first_torn
    if run is None:
        emulated = found.counts[ExecClass.EMULATED]
        if found.first_emulated is not None:
            log.recovered = found.first_emulated.fetched
        log.step(Actor.CPUS, "executed only whole old or new instructions, or the INT3 "
                 "with the new instruction emulated", detail=f"{emulated} INT3 emulations "
                 f"over {_scope(found, every=True)}")
        return None
    e = run.torn()[0]
    old, new = start.old_insn(e.site).raw, start.sites[e.site].text
    schedule = run.schedule_text()
    events = start.replay(run.schedule).events or []
    log.recovered = e.fetched
    first = TornExecution(
        schedule=schedule, cpu=e.cpu, site=e.site, address=f"{e.address:#x}",
        executed=e.fetched.hex(" "), decoded=_what(e), origin=_origin(e, old, new),
        old=old.hex(" "), new=new.hex(" "), fetch_steps=tuple(e.steps),
        timeline=tuple(events[: e.steps[-1] + 1]),
    )
    log.step(Actor.CPU, f"executes a torn instruction at site {e.site}", cpu=e.cpu,
             address=pa + e.address - TEXT_BASE,
             detail=f"{e.fetched.hex(' ')} = {_what(e)} (old {old.hex(' ')}, new "
             f"{new.hex(' ')}); schedule {schedule} (P: a patcher step, k: a step of cpu k); "
             f"fetched at steps {', '.join(map(str, e.steps))}")
    return first


def _scope(found: Exploration, every: bool = False) -> str:
    """What was explored: ``"256 classes of interleavings"``, ``"150 sampled interleavings"``
    (``every``: ``"all 256 ..."`` when exhaustive)."""
    n = found.interleavings
    if not found.exhaustive:
        return f"{n} sampled interleavings"
    what = f"{n} classes of interleavings" if found.reduced else f"{n} interleavings"
    return f"all {what}" if every else what


def judge_patch(run: PatchRun) -> Verdict:
    """``succeeded`` when a CPU executed a torn instruction; no guess, so no chance."""
    found, first = run.exploration, run.torn
    if first is None:
        emulated = found.counts[ExecClass.EMULATED]
        return Verdict(Outcome.MITIGATED,
                       f"no CPU executed a torn instruction in {_scope(found, every=True)}; "
                       f"{emulated} executions hit the INT3 and ran the new instruction "
                       "through the handler")
    return Verdict(Outcome.SUCCEEDED,
                   f"cpu{first.cpu} executed {first.executed} at site {first.site} "
                   f"({first.decoded}): neither the old instruction nor the new one; "
                   f"{found.torn_interleavings} of {_scope(found)} tore "
                   f"({found.counts[ExecClass.TORN]} torn executions)")


def _store_back(ctx: AttackContext, start: LivePatch, pa: PhysAddr) -> None:
    """Finish the patch alone, check it, and keep the patched text in the kernel page."""
    m, log = ctx.machine, ctx.log
    done = start.clone()
    while done.patcher_enabled():
        done.step(PATCHER)
    for s in done.sites:
        if done.text.read(s.address, s.length) != s.text:
            raise AttackError(f"the patch at {s.address:#x} did not complete")
    m.write(m.kernel, pa, done.text.snapshot())
    new = done.sites[0].text
    log.captured = m.dram(pa, len(new))
    held = "the new bytes in plaintext" if log.captured == new else "ciphertext"
    log.step(Actor.KERNEL, "keeps the patched text in its page", address=pa,
             detail=f"DRAM at site 0 holds {held} ({m.engine.name}); the CPUs fetch "
             "through the engine, so it does not change what they execute")
