"""What one run produced: structured evidence, not log text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Outcome

__all__ = ["FORMAT_VERSION", "Evidence", "ResultRow", "RunInfo", "Step", "metric_value"]

FORMAT_VERSION = 1

MetricValue = int | float | str | bool | list[Any] | dict[str, Any] | None


def metric_value(value: Any) -> MetricValue:
    """Normalise a metric to plain JSON types (NumPy scalars become Python numbers)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        return metric_value(value.item())
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, (list, tuple)):
        return [metric_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): metric_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return str(value)


@dataclass(frozen=True)
class Step:
    """One thing an actor did during the attack (for the report's timeline)."""

    actor: str
    action: str
    capability: str = ""
    address: int | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
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
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    evidence: Evidence = field(default_factory=Evidence)
    steps: tuple[Step, ...] = ()

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
            "metrics": {k: metric_value(v) for k, v in sorted(self.metrics.items())},
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

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "testbed_version": self.testbed_version,
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "profiles": list(self.profiles),
            "jobs": self.jobs,
        }
