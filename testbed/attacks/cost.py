"""What one run of an attack costs, estimated from its parameters before anything runs.

Accepted means it finishes: the scenario loader asks the attack's parameter model for the work
of one run (:meth:`~testbed.attacks.AttackParams.work`), multiplies it by the scenario's
trials and refuses the scenario when a job, one scenario under one engine with all its
trials, would take more than :data:`JOB_LIMIT_UNITS`.

Work is counted in *work units*. Each kind of operation a run performs (a block captured on the
bus, a key rotation, a page fault, a scheduler step, an engine call) is charged a fixed number
of units: the most it took, over the built-in engines and both XTS mask backends (NumPy and
llvmlite), on the reference machine, with a margin. There one unit is about one microsecond
(:data:`UNIT_SECONDS`). The reference machine is the 2-core development machine of the README's
*Speed* section (AMD EPYC with VAES and AVX-512). An estimate is an upper bound for the
built-in engines, not a prediction: most runs take a fraction of it. The tests check that on a
sample of parameter sets (``tests/attacks/test_work_estimates.py``).

An attack that does not estimate its work (``work`` returns ``None``, as a plugin's
parameters do unless they say otherwise) is accepted without a bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..platform import EngineOptions, Mitigations

__all__ = [
    "BOOT_UNITS",
    "JOB_LIMIT_UNITS",
    "LIMIT_TEXT",
    "PAGE_BOOT_UNITS",
    "RUN_UNITS",
    "UNIT_SECONDS",
    "MachineShape",
    "Work",
    "boot_units",
    "run_part",
    "units_text",
]

UNIT_SECONDS = 1e-6
"""Seconds one work unit takes, at most, on the reference machine."""
JOB_LIMIT_UNITS = 120_000_000
"""The work one job (one scenario under one engine, every trial) may take: 2 minutes on the
reference machine."""
LIMIT_TEXT = "2 minutes per scenario and engine on the reference machine"
""":data:`JOB_LIMIT_UNITS` in words."""

RUN_UNITS = 5_000
"""Every run: its random streams, the context, the judgement, the result row."""
BOOT_UNITS = 500
"""Building a machine (an engine and its first keys, the allocator, the direct map)..."""
PAGE_BOOT_UNITS = 0.15
"""...and per frame of its memory."""


def boot_units(memory_pages: int) -> float:
    """Work units to build (or reboot) a machine of ``memory_pages`` frames."""
    return BOOT_UNITS + PAGE_BOOT_UNITS * memory_pages


def run_part(machine: MachineShape) -> tuple[str, float]:
    """The part of every run's work that does not depend on the attack: the run itself and
    building its machine."""
    return (f"the run and its {machine.memory_pages}-frame machine",
            RUN_UNITS + boot_units(machine.memory_pages))


@dataclass(frozen=True)
class MachineShape:
    """What a run's work depends on besides the attack's parameters: the machine a scenario
    builds for it. The engine is not part of it: an estimate holds for every built-in one."""

    memory_pages: int = 256
    options: EngineOptions = field(default_factory=EngineOptions)
    mitigations: Mitigations = field(default_factory=Mitigations)
    secretmem_reserve_pages: int = 0


@dataclass(frozen=True)
class Work:
    """An estimate of one run's work: what it is spent on, each part in work units.

    Attributes:
        parts: ``(what, units)`` pairs; ``what`` says what is counted ("262,144 key
            rotations of 1 page each").
        hint: which parameters make it smaller, for the loader's message.
    """

    parts: tuple[tuple[str, float], ...]
    hint: str = ""

    @property
    def units(self) -> float:
        """The whole estimate."""
        return sum(units for _, units in self.parts)

    def largest(self) -> str:
        """What most of the work goes to."""
        return max(self.parts, key=lambda part: part[1])[0] if self.parts else "nothing"


def units_text(units: float) -> str:
    """``units`` for a message: the count and the time it stands for on the reference machine."""
    seconds = units * UNIT_SECONDS
    if seconds >= 120:
        time = f"{seconds / 60:,.0f} minutes"
    elif seconds >= 1:
        time = f"{seconds:,.0f} s"
    else:
        time = f"{seconds * 1000:,.0f} ms"
    return f"{units:,.0f} work units (about {time} on the reference machine)"
