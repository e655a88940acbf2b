"""Attack programs for the tests: the YAML files under ``tests/programs/``, and runners.

The scenario loader does not read ``program:`` yet, so a program travels as the ``params`` of
a scenario whose attack is ``program``, registered only while the scenario is built.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import yaml

from _support.paths import TESTS
from testbed import registry
from testbed.attacks import AttackContext
from testbed.platform import KeySource, Machine, Mitigations, make_engine
from testbed.programs import Program, ProgramAttack
from testbed.results import ResultRow
from testbed.scenarios import Job, Scenario, run_job, run_trials

__all__ = [
    "PROGRAMS", "context", "load", "program", "raw", "registered", "run", "scenario",
    "work_estimates",
]

PROGRAMS = TESTS / "programs"


def load(name: str) -> dict[str, Any]:
    """The data of ``tests/programs/NAME.yaml``."""
    data = yaml.safe_load((PROGRAMS / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def program(name: str) -> Program:
    return Program.model_validate(load(name))


@contextlib.contextmanager
def registered() -> Iterator[None]:
    """The ``program`` attack in the registry, for as long as the block lasts."""
    registry.attacks.add(ProgramAttack)
    try:
        yield
    finally:
        registry.attacks.remove(ProgramAttack.kind)


def scenario(prog: Program, id: str = "t-program", **fields: Any) -> Scenario:
    """A minimal valid scenario running ``prog``."""
    doc: dict[str, Any] = {"id": id, "title": "test program", "attack": "program",
                           "params": prog, "teaching": {"summary": "test"}, **fields}
    with registered():
        return Scenario.model_validate(doc)


def _job(prog: Program, engine: str, seed: int, id: str, fields: dict[str, Any]) -> Job:
    attack = ProgramAttack.for_program(prog, registry.engines)
    return Job(scenario(prog, id, **fields), "<test>", engine, seed, attack=attack)


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


def work_estimates() -> ModuleType:
    """``tests/attacks/test_work_estimates.py``, whose ``slowdown`` fixture and ``measured``
    timer the programs' timing tests share: the module pytest collects, or the same file
    loaded under the same name when it has not collected it."""
    name = "test_work_estimates"
    found = sys.modules.get(name)
    if found is None:
        spec = importlib.util.spec_from_file_location(name, TESTS / "attacks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        found = importlib.util.module_from_spec(spec)
        sys.modules[name] = found
        spec.loader.exec_module(found)
    return found
