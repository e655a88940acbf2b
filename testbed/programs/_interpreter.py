"""Runs a checked :class:`~._program.Program` on an attack context, step by step.

Phases follow the attack contract (:mod:`testbed.attacks._base`): victim and kernel steps
before the first attacker or hypervisor step set the victim up; that step begins the attack;
victim and kernel steps after it run inside :meth:`AttackLog.victim_acts`, so a refusal they
meet is a failed run, not the attack blocked. A reboot sets the victim up again. A system
step sets up its own victim and begins the attack itself, as its built-in attack does
(:mod:`._ops_systems`); after it, the program's next attacker step begins the program's own
attack again. A
:class:`~testbed.errors.PlatformRefusal` propagates: the runner turns it into ``blocked`` or
``error`` by phase. Each step leaves its entry in the log, and the metrics say what each step
produced, also when a step is refused; the metrics a system step measured (its built-in
attack's) are kept in them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..attacks._base import AttackContext, BaseMetrics, Phase
from ..errors import PlatformRefusal
from ..platform import Domain
from ..results import DictionaryPlot, PlotData, omitted_when_none
from ..results.verdicts import Verdict
from ..types import PhysAddr
from ._goal import judge
from ._program import Program
from ._runtime import Runtime
from ._values import Location, Value
from ._vocabulary import OPS

__all__ = ["ProgramMetrics", "execute", "run_program", "summary"]


@dataclass(frozen=True)
class ProgramMetrics(BaseMetrics):
    steps: int
    """Steps in the program."""
    steps_run: int
    """Steps carried out (a refused step is not counted)."""
    produced: tuple[str, ...]
    """What each step carried out produced, in short (``3 capture: 64 bytes 1f2e…``)."""
    refused_step: int | None = omitted_when_none()
    """The step the platform refused, where the run stopped."""
    guesses: int | None = omitted_when_none()
    """Candidates the guess steps wrote (all of them when nothing matched)."""
    guess_space: int | None = omitted_when_none()
    """Candidates the guess steps could try."""
    systems: tuple[BaseMetrics, ...] | None = omitted_when_none()
    """What each system step measured, in order: its built-in attack's metrics."""

    def plots(self) -> tuple[PlotData, ...]:
        found = tuple(p for m in self.systems or () for p in m.plots())
        if self.guesses is None or not self.guess_space:
            return found
        return (DictionaryPlot(self.guess_space, math.log2(self.guess_space), self.guesses),
                *found)


def summary(value: Value) -> str:
    """A value in a few words, for metrics and logs."""
    if value is None:
        return "nothing"
    if isinstance(value, Domain):
        return f"{value.kind.value} with key slot {value.slot}"
    if isinstance(value, Location):
        return f"address {value.addrs[0]:#x} ({value.size} bytes)"
    return f"{len(value)} bytes {value[:8].hex()}" + ("…" if len(value) > 8 else "")


def run_program(ctx: AttackContext, program: Program) -> Verdict:
    """Run ``program``; its goal's verdict.

    Raises:
        PlatformRefusal: the platform refused a step (the log says which).
        AttackError: the program could not be carried out as written.
    """
    return judge(execute(ctx, program), program.goal)


def execute(ctx: AttackContext, program: Program) -> Runtime:
    """Carry out the steps of ``program``; the state they leave (values by name)."""
    rt, log = Runtime(ctx), ctx.log
    produced: list[str] = []

    def measure(refused: int | None = None) -> None:
        if log.metrics is not None and not isinstance(log.metrics, ProgramMetrics):
            rt.system_metrics.append(log.metrics)  # what a system step just measured
        log.metrics = ProgramMetrics(len(program.steps), len(produced), tuple(produced),
                                     refused, rt.guesses, rt.guess_space,
                                     tuple(rt.system_metrics) or None)

    measure()
    for i, step in enumerate(program.steps):
        spec = OPS[step.op]
        rt.who, rt.name, rt.op = step.by, step.as_, step.op
        rt.capability = ", ".join(spec.actors[step.by])
        attacking = step.by in ("attacker", "hypervisor")
        if spec.attack:
            log.begin_setup()  # it sets its own victim up, then begins the attack
        elif attacking and log.phase is not Phase.ATTACK:
            _begin_attack(rt)
        before = len(log.steps)
        try:
            if not attacking and log.phase is Phase.ATTACK:
                with log.victim_acts():
                    value = spec.run(rt, step.args)
            else:
                value = spec.run(rt, step.args)
        except PlatformRefusal as exc:
            if len(log.steps) == before:
                rt.note(f"{step.op}: refused", detail=str(exc))
            measure(refused=i)
            raise
        if spec.reboots or spec.attack:
            log.begin_setup()  # the program's own attack begins (again) at its next step
        if step.as_ is not None:
            rt.values[step.as_] = value
        produced.append(f"{i} {step.op}: {summary(value) if spec.binds else 'done'}")
        measure()
    return rt


def _begin_attack(rt: Runtime) -> None:
    """The attacker drives from here; what DRAM holds at the secret is the evidence of what
    it could see, until it captures something itself."""
    log = rt.ctx.log
    log.begin_attack()
    if rt.secret is not None and log.address is not None and not rt.captured:
        log.captured = rt.machine.dram(PhysAddr(log.address), len(rt.secret))
