"""Attack programs: attacks written as data, a list of steps from a fixed vocabulary.

A program declares the attacker's capabilities (``threat``), lists its steps, each an
operation from the step registry (:data:`OPS`) done by the ``victim``, the ``attacker``, the
``hypervisor`` or the ``kernel``, with typed arguments and an optional ``as: NAME`` binding its
result, and says what success means (``goal``). Values flow by name (``$NAME``); ``slice``,
``xor`` and ``concat`` are the only transforms and ``guess`` the only loop. There are no
expressions, no code and no file paths.

Building a :class:`Program` runs the load-time checks (every reference earlier and of the right
kind, every capability declared, sizes and the guess space within their limits); running it
(:func:`run_program`, or :class:`ProgramAttack` through the scenario runner) performs each step
on the machine and judges the goal from the evidence with the built-in attacks' judge.
"""

from __future__ import annotations

from ._attack import ProgramAttack, control_engine_for, engine_problem
from ._check import ERROR_TYPE
from ._interpreter import ProgramMetrics, run_program
from ._program import Program
from ._reference import reference_markdown
from ._step import GOALS, Goal, Step
from ._values import (
    CAPABILITIES,
    MAX_GUESSES,
    MAX_PAGES,
    MAX_STEPS,
    MAX_VALUE_BYTES,
)
from ._vocabulary import OPS, OpSpec, goal_op, op_names

__all__ = [
    "CAPABILITIES",
    "ERROR_TYPE",
    "GOALS",
    "MAX_GUESSES",
    "MAX_PAGES",
    "MAX_STEPS",
    "MAX_VALUE_BYTES",
    "OPS",
    "Goal",
    "OpSpec",
    "Program",
    "ProgramAttack",
    "ProgramMetrics",
    "Step",
    "control_engine_for",
    "engine_problem",
    "goal_op",
    "op_names",
    "reference_markdown",
    "run_program",
]
