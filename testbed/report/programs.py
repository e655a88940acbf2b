"""A scenario written as an attack program, shown as its steps.

Each step shows its number, its actor, the operation with its arguments, the capability the
actor needs for it (as declared in the step registry) and the name it binds; under it, what the
step produced under each engine the program applies to (engines that got the same are one
line), or that the platform refused it there and the run stopped. The values come from the row's
:class:`~testbed.programs.ProgramMetrics`: ``produced`` (one ``"I op: summary"`` per step
carried out) and ``refused_step``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..programs import OPS, Program, ProgramMetrics, goal_op
from ..results.model import ResultRow
from ..scenarios.model import Scenario
from ..text import escape
from ..types import Outcome
from .evidence import EvidenceLabels, labels_for

__all__ = ["ProgramStepView", "ProgramView", "evidence_labels", "program_view", "threat_text"]

_PRODUCED = re.compile(r"(\d+) ([a-z_]+): (.*)", re.S)
SHOWN_METRICS = frozenset({"produced"})
"""Metrics of a program that its steps show already (left out of the metrics table)."""
ARG_CHARS = 120
"""Characters of a step's arguments shown; the scenario file has them all."""


@dataclass(frozen=True)
class ProgramStepView:
    number: int
    """1-based, as a reader counts."""
    actor: str
    op: str
    args: str
    capability: str
    """What the actor needs for the step (``""``: nothing, it is housekeeping)."""
    binds: str
    """The name its result is bound to (``""``: none)."""
    outcomes: tuple[tuple[str, str, str], ...]
    """``(engines, what, kind)`` per group of engines: ``kind`` is ``done``, ``refused`` or
    ``skipped`` (not reached, or the program does not apply there)."""


@dataclass(frozen=True)
class ProgramView:
    threat: tuple[str, ...]
    goal: str
    steps: tuple[ProgramStepView, ...]
    not_applicable: tuple[str, ...]
    """Engines the program does not apply to: none of its steps ran there."""


def _value_text(value: Any) -> str:
    """An argument as a scenario file writes it (``true``, ``[a, b]``), without braces."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + ")"
    return str(value)


def _args_text(args: Mapping[str, Any]) -> str:
    """A step's arguments on one line, control and bidi characters written out."""
    return escape(", ".join(f"{k}: {_value_text(v)}" for k, v in args.items()), ARG_CHARS)


def _goal_text(program: Program) -> str:
    goal = program.goal.model_dump(exclude_defaults=True, exclude_none=True)
    return _args_text(goal) or "(none)"


def _produced(metrics: ProgramMetrics) -> dict[int, str]:
    out: dict[int, str] = {}
    for entry in metrics.produced:
        match = _PRODUCED.fullmatch(entry)
        if match:
            out[int(match.group(1))] = match.group(3)
    return out


def _step_outcomes(index: int, runs: Sequence[tuple[str, ResultRow]]
                   ) -> tuple[tuple[str, str, str], ...]:
    groups: dict[tuple[str, str], list[str]] = {}
    for engine, row in runs:
        metrics = row.metrics
        if not isinstance(metrics, ProgramMetrics):
            what, kind = "no record of the steps (the run failed)", "skipped"
        elif index in (done := _produced(metrics)):
            what, kind = done[index], "done"
        elif metrics.refused_step == index:
            what, kind = "refused by the platform: the run stopped here", "refused"
        else:
            what, kind = "not reached", "skipped"
        groups.setdefault((what, kind), []).append(engine)
    return tuple((", ".join(engines), what, kind) for (what, kind), engines in groups.items())


def threat_text(scenario: Scenario) -> str:
    """What the matrix says of a scenario's attack: its kind, or a program's capabilities."""
    program = scenario.params
    if isinstance(program, Program):
        return f"program: {', '.join(program.threat) or 'no capability'}"
    return scenario.attack


def evidence_labels(scenario: Scenario) -> EvidenceLabels:
    """What a scenario's evidence buffers are: its attack's labels, or for a program, what
    its steps and goal make of them (a system step's goal: that step's attack's)."""
    program = scenario.params
    if not isinstance(program, Program):
        return labels_for(scenario.attack)
    kind = program.goal.kind
    system = goal_op(kind)
    if system is not None and system.attack:
        return labels_for(system.attack)
    ops = {step.op for step in program.steps}
    if "capture" in ops:
        captured = "Ciphertext the attacker captured on the memory bus"
    elif "hv_read" in ops:
        captured = "What the hypervisor read of the guest's page"
    else:
        captured = "DRAM at the secret's address when the attack began: what the memory chips hold"
    if kind == "recovered":
        return EvidenceLabels("Secret: what the victim stored", captured,
                              f"The attacker's ${program.goal.name}: what it ended up with")
    return EvidenceLabels(f"The value ${program.goal.name}: what the attack wants read back",
                          captured, "What the page's owner read back there",
                          secret_name=f"${program.goal.name}")


def program_view(scenario: Scenario, indexed: Mapping[tuple[str, str], ResultRow],
                 engines: Sequence[str]) -> ProgramView | None:
    """The steps of ``scenario``'s program (``None`` when it names a built-in attack)."""
    program = scenario.params
    if not isinstance(program, Program):
        return None
    rows = [(e, indexed[(scenario.id, e)]) for e in engines if (scenario.id, e) in indexed]
    runs = [(e, r) for e, r in rows if r.outcome is not Outcome.NOT_APPLICABLE]
    steps = []
    for i, step in enumerate(program.steps):
        needs = OPS[step.op].actors.get(step.by, ())
        steps.append(ProgramStepView(
            number=i + 1, actor=step.by, op=step.op,
            args=_args_text(step.args.model_dump(exclude_defaults=True, by_alias=True)),
            capability=", ".join(needs), binds=step.as_ or "",
            outcomes=_step_outcomes(i, runs)))
    return ProgramView(tuple(program.threat), _goal_text(program), tuple(steps),
                       tuple(e for e, r in rows if r.outcome is Outcome.NOT_APPLICABLE))
