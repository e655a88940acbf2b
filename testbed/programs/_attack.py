"""Attack programs as an :class:`~testbed.attacks.Attack`: the runner runs one like any other.

Threat: whatever the program's ``threat`` declares; every step needing a capability outside it
was refused when the program was built.
Source: the program itself (a scenario's ``params``, later its ``program:``).
Preconditions: a step that needs something of the engine (an untrusted hypervisor, runtime key
rotation) makes the program not applicable where the engine does not have it.

The control of a program is the first engine, in the order given, on which every step means
something: ``none`` for most programs, the first engine that isolates guests from the
hypervisor for a hypervisor program, the first that encrypts for a key wear-out.
:meth:`ProgramAttack.for_program` makes an attack that carries its program's control engine,
capabilities and platform settings, since the runner asks the attack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..attacks import BUILTIN_ATTACKS
from ..attacks._base import Attack, AttackContext
from ..platform import Engine, Machine
from ..platform.mm.aliasing import alias_problem
from ..results.verdicts import Verdict
from ._interpreter import ProgramMetrics, run_program
from ._program import Program
from ._vocabulary import OPS

__all__ = ["ProgramAttack", "control_engine_for", "engine_problem"]


def engine_problem(program: Program, engine: type[Engine]) -> str | None:
    """Why ``program`` means nothing on ``engine`` (``None``: it does)."""
    for step in program.steps:
        check = OPS[step.op].engine
        why = check(engine) if check is not None else None
        if why is not None:
            return why
    return None


def control_engine_for(program: Program, engines: Iterable[type[Engine]]) -> str:
    """The first of ``engines`` on which ``program`` is applicable (``none`` if there is none)."""
    return next((e.name for e in engines if engine_problem(program, e) is None), "none")


class ProgramAttack(Attack[Program]):
    """Runs the :class:`Program` a scenario gives as its parameters."""

    kind = "program"
    title = "Attack program (steps from the step registry)"
    capabilities = ()
    """A program declares its own (:attr:`Program.threat`); see :meth:`for_program`."""
    Params = Program
    Metrics = ProgramMetrics
    platform_settings = frozenset(name for spec in OPS.values() for name in spec.platform_settings)
    """Every setting some step uses; a program's own are those of its steps (:meth:`bound`)."""

    @classmethod
    def for_program(cls, program: Program, engines: Iterable[type[Engine]]) -> ProgramAttack:
        """An attack whose control engine, capabilities and platform settings are
        ``program``'s (``engines``: the registered engine classes, in display order)."""
        attack = cls()
        attack.__dict__.update(control_engine=control_engine_for(program, engines),
                               capabilities=tuple(program.threat),
                               platform_settings=program.platform_settings_used())
        return attack

    def bound(self, params: Program, engines: Sequence[type[Engine]]) -> ProgramAttack:
        return self.for_program(params, engines)

    def run_key(self) -> object:
        # Everything it does is in its program, which is in the scenario.
        return type(self), self.kind

    def precondition(self, machine: Machine, params: Program) -> str | None:
        """The engine's problem with the program; else, for a program that reboots into an
        aliased DIMM, the alias's problem with this machine; else the first system step's
        built-in attack's precondition (``exhaust_secretmem`` without secret memory, say)."""
        found = engine_problem(params, type(machine.engine))
        if found is not None:
            return found
        if any(step.op == "alias_dimm" for step in params.steps):
            # The machine alias_dimm reboots into is built as this one: the same reservations.
            why = alias_problem(machine.allocator, machine.memory.pages)
            if why is not None:
                return f"step alias_dimm: {why}"
        builtin = {cls.kind: cls for cls in BUILTIN_ATTACKS}  # system steps run built-ins
        for step in params.steps:
            kind = OPS[step.op].attack
            if kind and kind in builtin:
                why = builtin[kind]().precondition(machine, step.args)
                if why is not None:
                    return why
        return None

    def run(self, ctx: AttackContext, params: Program) -> Verdict:
        return run_program(ctx, params)
