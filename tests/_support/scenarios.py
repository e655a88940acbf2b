"""Small builders shared by the tests."""

from __future__ import annotations

from typing import Any

from testbed.results import ResultRow
from testbed.scenarios import Job, Scenario, run_job
from testbed.scenarios.model import EngineName


def scenario(attack: str, **fields: Any) -> Scenario:
    """A minimal valid scenario for ``attack`` with ``fields`` overriding the defaults."""
    doc: dict[str, Any] = {
        "id": f"t-{attack}",
        "title": f"test {attack}",
        "attack": attack,
        "teaching": {"summary": "test"},
    }
    doc.update(fields)
    return Scenario.model_validate(doc)


def run(attack: str, engine: EngineName, seed: int = 7, **fields: Any) -> ResultRow:
    """Run ``attack`` under ``engine`` and return the judged row."""
    return run_job(Job(scenario(attack, **fields), "<test>", engine, seed))
