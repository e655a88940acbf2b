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
from ..attacks.key_wearout import ROTATION_PAGE_UNITS, ROTATION_UNITS

__all__ = [
    "ACCESS_UNITS",
    "CALL_UNITS",
    "CANDIDATE_UNITS",
    "DIRECT_MAP_PAGE_UNITS",
    "DOMAIN_UNITS",
    "NARROW_CANDIDATE_UNITS",
    "NARROW_FACTOR",
    "PAGE_MOVE_UNITS",
    "PAGE_UNITS",
    "PROBE_FRAME_UNITS",
    "REBOOT_FACTOR",
    "ROTATION_PAGE_UNITS",
    "ROTATION_UNITS",
    "STEP_UNITS",
    "WORD_UNITS",
    "Charge",
    "on_narrow_cipher",
    "program_work",
]

STEP_UNITS = 150
"""Work units of every step: its lookups, its log entry, the metrics after it."""
DOMAIN_UNITS = 200
"""Work units per domain created or destroyed: its key made, programmed or released."""
PAGE_UNITS = 300
"""Work units per page frame a step allocates: taken, mapped (a guest's nested page table,
SEV-SNP's RMP), out of the direct maps when secret, and later freed, cleared, given back."""
ACCESS_UNITS = 250
"""Work units per step that reads or writes memory: up to a page through the engine."""
# A key rotation (a new key, and each page re-encrypted: every page the program allocates, at
# most) is charged as the key wear-out charges one: ROTATION_UNITS and ROTATION_PAGE_UNITS,
# from its module.
DIRECT_MAP_PAGE_UNITS = 0.1
"""Work units per frame of a kernel direct map made for a KeyID (``read_keyid_map``)."""
CANDIDATE_UNITS = 0.3
"""Work units per candidate a ``guess`` step writes and compares, as a whole line (the dearer
of its two ways)..."""
NARROW_CANDIDATE_UNITS = 15.0
"""...under the reduced-width cipher, which encrypts a 4-byte block at a time..."""
WORD_UNITS = 2.0
"""...and per word of a word list, made one by one..."""
CALL_UNITS = 400
"""...and per engine call (a batch of candidates)."""
PAGE_MOVE_UNITS = 1500
"""Work units per guest page ``SNP_PAGE_MOVE`` moves: the page decrypted and encrypted again
through the engine, the RMP and the nested page table updated."""
PROBE_FRAME_UNITS = 40
"""Work units per frame the boot-time alias check probes (``alias_dimm``): a marker line
written, read back and cleared."""
REBOOT_FACTOR = 2
"""A ``reboot`` step is charged this many times what building its machine is charged
(:func:`~testbed.attacks.cost.boot_units`): a machine of 65,536 frames was measured building
in up to 1.2 times that on the NumPy mask path."""
NARROW_FACTOR = 6
"""How many times its built-in attack's estimate a system step is charged when the program
runs on the reduced-width cipher and that attack never does (its scenarios refuse the
setting): page writes and clearing there take about three times as long as AES-XTS's."""


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


def on_narrow_cipher(charges: tuple[Charge, ...]) -> tuple[Charge, ...]:
    """A system step's charges where the program runs on the reduced-width cipher and its
    built-in attack never does: :data:`NARROW_FACTOR` times each."""
    return tuple(Charge(f"{c.what} (x{NARROW_FACTOR} on the reduced-width cipher)", c.count,
                        NARROW_FACTOR * c.units) for c in charges)
