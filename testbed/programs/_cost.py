"""What a program's run costs, estimated from its steps before anything runs.

The scenario loader bounds a program the way it bounds a built-in attack
(:meth:`~testbed.attacks.AttackParams.work`, :mod:`testbed.attacks.cost`): each step charges
the work units of what it does on the machine (:meth:`~._args.Args.cost`), the program adds
them up by kind (:func:`program_work`), and a system step (``wear_out``, ``attest``...) is
charged what its built-in attack's own estimate says for the same parameters. The weights
were measured on the reference machine of :mod:`testbed.attacks.cost` with the same margin,
the most a step took over the built-in engines and both XTS mask backends; the tests check
that runs stay under their estimate (``tests/programs/test_program_cost.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..attacks.cost import MachineShape, Work, run_part

__all__ = [
    "ACCESS_UNITS",
    "CALL_UNITS",
    "CANDIDATE_UNITS",
    "DIRECT_MAP_PAGE_UNITS",
    "DOMAIN_UNITS",
    "PAGE_UNITS",
    "ROTATION_PAGE_UNITS",
    "ROTATION_UNITS",
    "STEP_UNITS",
    "WORD_UNITS",
    "Charge",
    "program_work",
]

STEP_UNITS = 150
"""Work units of every step: its lookups, its log entry, the metrics after it."""
DOMAIN_UNITS = 400
"""Work units per domain created or destroyed: its key made, programmed or released."""
PAGE_UNITS = 300
"""Work units per page frame a step allocates: taken, mapped (a guest's nested page table,
SEV-SNP's RMP), out of the direct maps when secret, and later freed, cleared, given back."""
ACCESS_UNITS = 250
"""Work units per step that reads or writes memory: up to a page through the engine."""
ROTATION_UNITS = 150
"""Work units per key rotation: a new key..."""
ROTATION_PAGE_UNITS = 450
"""...and per page it re-encrypts (every page the program allocates, at most)."""
DIRECT_MAP_PAGE_UNITS = 0.1
"""Work units per frame of a kernel direct map made for a KeyID."""
CANDIDATE_UNITS = 0.6
"""Work units per candidate a ``guess`` step writes and compares, as a whole line..."""
WORD_UNITS = 2.0
"""...and per word of a word list, made one by one..."""
CALL_UNITS = 400
"""...and per engine call (a batch of candidates)."""


@dataclass(frozen=True)
class Charge:
    """Some work of one step.

    Attributes:
        what: what is counted ("pages allocated"); charges of the same kind add up.
        count: how many of them (``None``: a part of a system step's estimate, kept apart).
        units: the work units they take.
    """

    what: str
    count: float | None
    units: float


def program_work(charges: Iterable[tuple[int, str, tuple[Charge, ...]]], steps: int,
                 machine: MachineShape, hint: str) -> Work:
    """The estimate of a program's run from each step's charges (step index, operation,
    charges): the run and its machine, every step, then each kind of work in the order it
    first appears, a system step's parts each on their own."""
    totals: dict[str, list[float]] = {}
    parts: list[tuple[str, float]] = [run_part(machine), (f"{steps} steps", STEP_UNITS * steps)]
    for index, op, found in charges:
        for charge in found:
            if charge.count is None:
                parts.append((f"step {index} ({op}): {charge.what}", charge.units))
                continue
            total = totals.setdefault(charge.what, [0.0, 0.0])
            total[0] += charge.count
            total[1] += charge.units
    parts += [(f"{count:,.0f} {what}", units) for what, (count, units) in totals.items()]
    return Work(tuple(parts), hint=hint)
