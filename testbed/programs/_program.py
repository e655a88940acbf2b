"""A program: the attacker's capabilities, the steps, and the goal.

As data it reads::

    threat: [kernel_read_bug]
    program:
      - {op: create_domain, by: victim, args: {kind: guest}, as: victim}
      - {op: alloc_pages, by: victim, args: {domain: $victim, secret: true}, as: page}
      - {op: store_secret, by: victim, args: {address: $page, size: 32}, as: secret}
      - {op: read_direct_map, by: attacker, args: {address: $secret}, as: leaked}
    goal: {recovered: leaked}

It is the parameter model of :class:`~testbed.programs.ProgramAttack`, so a scenario's
``params`` can hold one. Building it runs every load-time check (:mod:`._check`). Like a
built-in attack's parameters it says what a run costs (:meth:`Program.work`, from its steps:
:mod:`._cost`) and which experiment settings of ``platform:`` it uses
(:meth:`Program.platform_settings_used`).
"""

from __future__ import annotations

import math

from pydantic import ConfigDict, Field, ValidationError, model_validator

from ..attacks._base import AttackParams
from ..attacks.cost import MachineShape, Work
from ..results.chance import byte_chance, informative_matches, log2_tail
from ._args_attack import Guess
from ._args_memory import Store, StoreSecret
from ._check import STEPS_FIELD, check
from ._cost import on_narrow_cipher, program_work
from ._step import Goal, Step
from ._values import CAPABILITIES, MAX_STEPS, Capability
from ._vocabulary import OPS, goal_op

__all__ = ["Program"]


class Program(AttackParams):
    """A list of steps from the fixed vocabulary, the threat they assume, and the goal."""

    model_config = ConfigDict(populate_by_name=True)

    threat: list[Capability] = Field(max_length=len(CAPABILITIES),
                                     description="the attacker's capabilities")
    steps: list[Step] = Field(alias=STEPS_FIELD, min_length=1, max_length=MAX_STEPS,
                              description="the steps, in order")
    goal: Goal = Field(description="what success means")

    @model_validator(mode="after")
    def _checked(self) -> Program:
        errors = check(self.threat, self.steps, self.goal)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def pages_needed(self) -> int:
        """Page frames the steps allocate at most."""
        return sum(step.args.pages_needed() for step in self.steps)

    @property
    def guess_space(self) -> int:
        """Candidates the ``guess`` steps try at most (the program's cost)."""
        return sum(step.args.guesses() for step in self.steps)

    def work(self, machine: MachineShape) -> Work:
        """An upper bound on the work of one run on ``machine``: the run and its machine, then
        every step (its pages, memory accesses, reboots, key rotations, the guess space), a
        system step as its built-in attack estimates it, several times that on the
        reduced-width cipher when the attack itself never runs there (:mod:`._cost`)."""
        pages = self.pages_needed()
        narrow = machine.options.reduced_width_bits is not None
        charges = []
        for i, step in enumerate(self.steps):
            spec, found = OPS[step.op], step.args.cost(machine, pages)
            if spec.attack and narrow and "reduced_width_bits" not in spec.platform_settings:
                found = on_narrow_cipher(found)  # its built-in's estimate does not cover it
            charges.append((i, step.op, found))
        hints = ["use fewer steps, pages or guess candidates"]
        hints += [hint for step in self.steps if OPS[step.op].attack
                  if (hint := _hint(step, machine))]
        return program_work(charges, len(self.steps), machine,
                            "; ".join(dict.fromkeys(hints)))

    def platform_settings_used(self) -> frozenset[str]:
        """The experiment settings of ``platform:`` its steps make use of
        (:attr:`~testbed.attacks.Attack.platform_settings`): the union over its steps."""
        return frozenset(name for step in self.steps for name in OPS[step.op].platform_settings)

    def secret_step(self) -> StoreSecret | None:
        """The arguments of the victim's ``store_secret`` step, if there is one."""
        return next((s.args for s in self.steps if isinstance(s.args, StoreSecret)), None)

    def best_chance_log2(self, *, block_bits: int = 128) -> float | None:
        """The chance of guessing what the goal wants: the secret (text by its alphabet,
        random bytes at 8 bits, a PIN by its digits), the bytes the victim should read, or
        what a system step's goal wants (its built-in attack's parameters say)."""
        if goal_op(self.goal.kind) is not None:
            bound = next(s for s in self.steps if s.as_ == self.goal.name)
            assert isinstance(bound.args, AttackParams)  # the check made sure of the step
            return bound.args.best_chance_log2(block_bits=block_bits)
        if self.goal.recovered is not None:
            secret = self.secret_step()
            if secret is None:
                return None
            if secret.space_log2 is not None:
                best = -secret.space_log2
            elif secret.text is None:
                best = -8.0 * secret.secret_size
            else:
                text = secret.text.encode("utf-8")
                best = log2_tail(len(text), informative_matches(text, text), byte_chance(text))
            guessed = next((s.args.guesses() for s in self.steps if s.as_ == self.goal.recovered
                            and isinstance(s.args, Guess)), None)
            return best if guessed is None else max(best, -math.log2(max(guessed, 1)))
        if self.goal.victim_reads is not None:
            for step in self.steps:
                if step.as_ == self.goal.victim_reads and isinstance(step.args, Store):
                    data = step.args.literal()
                    return None if data is None else -8.0 * len(data)
        return None


def _hint(step: Step, machine: MachineShape) -> str:
    """What to lower in a system step, as its built-in attack says (``params.`` becomes the
    step's ``args.``)."""
    work = step.args.work(machine) if isinstance(step.args, AttackParams) else None
    return "" if work is None else work.hint.replace("params.", f"{step.op} args.")
