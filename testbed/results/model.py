"""What one run produced: structured evidence, not log text."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, TypeVar

from ..types import Outcome
from .metrics import Metrics
from .verdicts import TrialStats

__all__ = ["FORMAT_VERSION", "Actor", "Control", "Evidence", "ResultRow", "RunInfo", "Step"]

FORMAT_VERSION = 3
"""Version 3 adds ``trials`` (successes, rate and 95 % Wilson interval, or ``null`` for a single
run) and ``control`` (the outcome of the same scenario without any defence) to every result
row, the outcomes ``inconclusive`` and ``ineffective``, and the run's ``history_id``. Version 2
added ``chance_log2``."""

M = TypeVar("M", bound=Metrics)


def _log2_json(value: float | None) -> float | str | None:
    """log2 odds for JSON: 3 decimals, ``"-inf"`` for a result no guess reaches."""
    if value is None:
        return None
    return "-inf" if value == float("-inf") else round(value, 3)


class Actor(enum.StrEnum):
    """Who performs a step of an attack's timeline."""

    VICTIM = "victim"
    ATTACKER = "attacker"
    OWNER = "owner"
    """A remote guest owner (attestation)."""
    PSP = "psp"
    """The platform security processor."""
    HOST = "host"
    """The host acting in good faith (setting up devices, loading images)."""
    HYPERVISOR = "hypervisor"
    """A malicious hypervisor acting against its guests (an attack program's step)."""
    KERNEL = "kernel"
    PATCHER = "patcher"
    """The CPU applying a live kernel patch."""
    CPUS = "cpus"
    """Every CPU executing the patched text."""
    CPU = "cpu"
    """One CPU, named with its number (:attr:`Step.cpu`)."""


@dataclass(frozen=True)
class Step:
    """One thing an actor did during the attack (for the report's timeline)."""

    actor: Actor
    action: str
    capability: str = ""
    address: int | None = None
    detail: str = ""
    cpu: int | None = None
    """The CPU's number when :attr:`actor` is :attr:`Actor.CPU`."""

    def __post_init__(self) -> None:
        if not isinstance(self.actor, Actor):
            raise TypeError(f"a step's actor is an Actor, got {self.actor!r}")
        if (self.actor is Actor.CPU) != (self.cpu is not None):
            raise ValueError("a step names a CPU number exactly when its actor is one CPU")

    @property
    def who(self) -> str:
        """The actor as shown: ``cpu1`` for one CPU, else the actor's name."""
        return f"{self.actor.value}{self.cpu}" if self.cpu is not None else self.actor.value

    def to_json(self) -> dict[str, Any]:
        return {
            "actor": self.who,
            "action": self.action,
            "capability": self.capability,
            "address": None if self.address is None else f"{self.address:#x}",
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Evidence:
    """The bytes behind an outcome.

    Attributes:
        secret: what the victim held (the truth).
        captured: what the attacker saw on the bus or in DRAM (usually ciphertext).
        recovered: what the attacker ended up with.
        address: physical address concerned.
    """

    secret: bytes | None = None
    captured: bytes | None = None
    recovered: bytes | None = None
    address: int | None = None

    def to_json(self) -> dict[str, Any]:
        def hx(b: bytes | None) -> str | None:
            return None if b is None else b.hex()

        return {
            "secret": hx(self.secret),
            "captured": hx(self.captured),
            "recovered": hx(self.recovered),
            "address": None if self.address is None else f"{self.address:#x}",
        }


@dataclass(frozen=True)
class Control:
    """The control of a result: the same scenario and seed, the threat present, no defence."""

    profile: str
    """The control's engine (no mitigations are in force)."""
    outcome: Outcome
    reason: str
    chance_log2: float | None = None
    trials: TrialStats | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "chance_log2": _log2_json(self.chance_log2),
            "trials": None if self.trials is None else self.trials.to_json(),
        }


@dataclass(frozen=True)
class ResultRow:
    """One (scenario, profile) pair."""

    scenario: str
    title: str
    attack: str
    profile: str
    engine: str
    mitigations: tuple[str, ...]
    outcome: Outcome
    expected: Outcome | None
    reason: str
    metrics: Metrics | None = None
    chance_log2: float | None = None
    """log2 of the chance that a guess, without the capability, does as well (``None``: the
    result is no guess)."""
    evidence: Evidence = Evidence()
    steps: tuple[Step, ...] = ()
    trials: TrialStats | None = None
    """Successes over the scenario's trials (``None``: one run). Metrics, evidence and steps
    are those of the first trial."""
    control: Control | None = None
    """The control run the outcome was weighed against, shown beside every row (``None``
    where none could run: the attack or its control engine is not registered)."""

    def metrics_as(self, kind: type[M]) -> M:
        """The metrics, as the attack's own type ``kind``.

        Raises:
            TypeError: the row holds no metrics of that type (another attack's, or none
                because the run failed early).
        """
        if not isinstance(self.metrics, kind):
            raise TypeError(f"{self.scenario} under {self.profile}: metrics are "
                            f"{type(self.metrics).__name__}, not {kind.__name__} "
                            f"({self.outcome.value}: {self.reason})")
        return self.metrics

    @property
    def as_expected(self) -> bool | None:
        """``None`` when no expectation was given."""
        return None if self.expected is None else self.expected == self.outcome

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "attack": self.attack,
            "profile": self.profile,
            "engine": self.engine,
            "mitigations": list(self.mitigations),
            "outcome": self.outcome.value,
            "expected": None if self.expected is None else self.expected.value,
            "reason": self.reason,
            "chance_log2": _log2_json(self.chance_log2),
            "trials": None if self.trials is None else self.trials.to_json(),
            "control": None if self.control is None else self.control.to_json(),
            "metrics": {} if self.metrics is None else self.metrics.to_json(),
            "evidence": self.evidence.to_json(),
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass(frozen=True)
class RunInfo:
    """Metadata of one run."""

    seed: int
    testbed_version: str
    started: str
    duration_s: float
    profiles: tuple[str, ...]
    jobs: int
    history_id: int | None = None
    """The run's id in the history it was recorded in (``None``: not recorded)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "testbed_version": self.testbed_version,
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "profiles": list(self.profiles),
            "jobs": self.jobs,
            "history_id": self.history_id,
        }
