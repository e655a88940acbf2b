"""Attack programs for the tests: the YAML files under ``tests/programs/``, and runners.

A program travels as the ``params`` of a scenario whose attack is ``program`` (what a
scenario file's top-level ``threat``, ``program`` and ``goal`` become).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import yaml

from _support.paths import TESTS
from testbed.attacks import AttackContext
from testbed.platform import KeySource, Machine, Mitigations, make_engine
from testbed.programs import Program
from testbed.results import ResultRow
from testbed.scenarios import Job, Scenario, run_job, run_trials

SHIPPED_AS_PROGRAMS = frozenset({"kernel-map-leak", "freed-data-leak", "cross-domain-replay",
                                 "capture-compare", "hypervisor-replay"})
"""Built-in attacks whose shipped scenarios are written as programs (each program checked equal
to its built-in in ``tests/programs/test_program_equivalence.py``)."""

__all__ = ["PROGRAMS", "SHIPPED_AS_PROGRAMS", "context", "load", "program", "raw", "run",
           "scenario"]

PROGRAMS = TESTS / "programs"


def load(name: str) -> dict[str, Any]:
    """The data of ``tests/programs/NAME.yaml``."""
    data = yaml.safe_load((PROGRAMS / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def program(name: str) -> Program:
    return Program.model_validate(load(name))


def scenario(prog: Program, id: str = "t-program", **fields: Any) -> Scenario:
    """A minimal valid scenario running ``prog``."""
    doc: dict[str, Any] = {"id": id, "title": "test program", "attack": "program",
                           "params": prog, "teaching": {"summary": "test"}, **fields}
    return Scenario.model_validate(doc)


def _job(prog: Program, engine: str, seed: int, id: str, fields: dict[str, Any]) -> Job:
    return Job(scenario(prog, id, **fields), "<test>", engine, seed)


def run(prog: Program, engine: str, seed: int = 7, id: str = "t-program",
        **fields: Any) -> ResultRow:
    """Run ``prog`` under ``engine`` and return the row judged against its control."""
    return run_job(_job(prog, engine, seed, id, fields))


def raw(prog: Program, engine: str, seed: int = 7, id: str = "t-program",
        **fields: Any) -> ResultRow:
    """The row of ``prog`` under ``engine`` without a control (its own trials only)."""
    return run_trials(_job(prog, engine, seed, id, fields))


def context(engine: str = "tme", seed: int = 1, pages: int = 64,
            mitigations: Mitigations | None = None, *,
            ciphertext_hiding: bool = False) -> AttackContext:
    """An attack context on a fresh machine (for driving the interpreter directly); a reboot
    builds a new one from the same key source, so it gets new keys."""
    keys = KeySource(np.random.default_rng(seed))

    def build() -> Machine:
        return Machine(make_engine(engine, keys, ciphertext_hiding=ciphertext_hiding), pages,
                       mitigations)

    return AttackContext(build(), np.random.default_rng(seed + 1), build)
