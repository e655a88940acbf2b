"""The load-time checks of a program: pure, before anything runs.

Walking the steps in order, with a :class:`~._scope.Scope` of the names bound so far, it checks
that each actor may do its step, that each capability a step needs is in ``threat``, that
every ``$name`` names an earlier result of the right kind (and that the attacker only uses
what it learnt itself), that sizes fit, and that the guess space and the pages allocated stay
within their limits. Then it checks the goal.

Each problem becomes a pydantic error located where it is (``program[3].args.address``), so a
scenario loader can point at its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pydantic_core import InitErrorDetails, PydanticCustomError

from ._scope import Poisoned, Problem, Scope
from ._step import Goal, Step
from ._values import Binding, Kind
from ._vocabulary import OPS, goal_op

__all__ = ["ERROR_TYPE", "STEPS_FIELD", "check"]

ERROR_TYPE = "program"
"""The pydantic error type of every load-time check."""
STEPS_FIELD = "program"
"""The key the steps are given under (the first part of an error's location)."""

_Loc = tuple[str | int, ...]


def _error(loc: _Loc, message: str, value: object) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(ERROR_TYPE, "{message}",
                                                     {"message": message}),
                            loc=loc, input=value)


def check(threat: Sequence[str], steps: Sequence[Step], goal: Goal) -> list[InitErrorDetails]:
    """Every problem of the program, in order (none: it may run)."""
    errors: list[InitErrorDetails] = []
    seen: set[str] = set()
    for i, capability in enumerate(threat):
        if capability in seen:
            errors.append(_error(("threat", i), f"{capability} is listed twice", capability))
        seen.add(capability)
    later: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.as_ is not None:
            later.setdefault(step.as_, i)
    scope = Scope(later)
    for i, step in enumerate(steps):
        errors.extend(_check_step(scope, i, step, seen))
    errors.extend(_check_goal(scope, goal, len(steps)))
    return errors


def _check_step(scope: Scope, i: int, step: Step, threat: set[str]) -> list[InitErrorDetails]:
    spec, here = OPS[step.op], (STEPS_FIELD, i)
    scope.step, scope.who = i, step.by
    if step.by not in spec.actors:
        _poison(scope, step)
        return [_error((*here, "by"), f"{step.op} is done by the "
                       f"{' or the '.join(spec.actors)}, not the {step.by}", step.by)]
    errors = [_error(here, f"step {i} ({step.op} by the {step.by}) needs capability "
                     f"{capability}, which threat does not list", step.op)
              for capability in spec.actors[step.by] if capability not in threat]
    try:
        binding = step.args.bind(scope)
    except Problem as problem:
        field = getattr(step.args, problem.field, None) if problem.field else None
        loc = (*here, "args", problem.field) if problem.field else (*here, "args")
        errors.append(_error(loc, problem.message, field))
        _poison(scope, step)
        return errors
    except Poisoned:
        _poison(scope, step)
        return errors
    if step.as_ is not None:
        if binding is not None and spec.goal:
            binding = replace(binding, system=spec.name)  # what its goal judges
        errors.extend(_bind(scope, i, step, binding))
    return errors


def _bind(scope: Scope, i: int, step: Step, binding: Binding | None) -> list[InitErrorDetails]:
    name, loc = step.as_ or "", (STEPS_FIELD, i, "as")
    if binding is None:
        return [_error(loc, f"{step.op} produces no value to bind", name)]
    if name in scope.bindings or name in scope.poisoned:
        first = scope.later.get(name, i)
        return [_error(loc, f"{name} is already bound by step {first}", name)]
    scope.bindings[name] = binding
    return []


def _poison(scope: Scope, step: Step) -> None:
    if step.as_ is not None and step.as_ not in scope.bindings:
        scope.poisoned.add(step.as_)


def _check_goal(scope: Scope, goal: Goal, end: int) -> list[InitErrorDetails]:
    kind, name = goal.kind, goal.name
    scope.step, scope.who = end, "victim" if kind == "victim_reads" else "attacker"
    want = Kind.ADDRESS if kind == "victim_reads" else Kind.BYTES
    system = goal_op(kind)
    try:
        if system is not None:
            found = scope.get(kind, f"${name}", want)
            if found.system != system.name:
                raise Problem(kind, f"${name} was bound by step {found.step}, not by a "
                              f"{system.name} step: {kind} judges what a {system.name} step did")
            return []
        found = scope.get(kind, f"${name}", want)
        if kind != "victim_reads" and found.side != "attacker":
            raise Problem(kind, f"${name} is what the {found.side} read (step {found.step}), "
                          "not the attacker's")
        if kind == "recovered" and scope.secret is None:
            raise Problem(kind, "no store_secret step: there is no secret to recover")
        if kind == "victim_reads" and found.side != "victim":
            raise Problem(kind, f"${name} is the {found.side}'s; victim_reads names what a "
                          "victim store step bound")
        if goal.at is not None:
            place = scope.place("at", goal.at, goal.page, goal.offset,
                                length=found.size if kind == "victim_reads" else found.max_size)
            if kind == "page_holds" and place.side != "victim":
                raise Problem("at", f"{goal.at} is the {place.side}'s page, not the victim's")
    except Problem as problem:
        return [_error(("goal", problem.field or kind), problem.message, name)]
    except Poisoned:
        return []
    return []
