"""Builders for the classroom-lab tests: the labs to cover, a class key, a student's right
answers (from the teacher's answer key), one wrong answer of each kind, and a cache of runs.

The labs covered are every shipped lab (:func:`testbed.labs.lab_ids`, so a lab added to
``labs/`` is covered without a change here) and ``tests/labs/every_kind``, a lab with a task
of every kind for the kinds no shipped lab has yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from _support.paths import TESTS
from testbed.labs import Answers, Instance, KeyEntry, LoadedLab, answer_key, derive, lab_ids
from testbed.labs.check import CHOICE_LETTERS, build_file
from testbed.labs.loader import shipped_scenarios
from testbed.labs.model import Build, BuildRules, Explain, Measure, Predict, Task, Tune
from testbed.results import ResultRow
from testbed.scenarios import Job, run_jobs
from testbed.types import Outcome

__all__ = [
    "CLASS_KEY",
    "EVERY_KIND",
    "FREE_TEXT",
    "KINDS",
    "RunCache",
    "correct_answers",
    "derive_for",
    "fill_folder",
    "first_task",
    "lab_label",
    "lab_names",
    "read_json",
    "rule_breaking_build",
    "wrong_value",
]

EVERY_KIND = TESTS / "labs" / "every_kind"
"""A lab folder with a task of every kind and a reference solution of its build task."""
CLASS_KEY = b"3b0f6c1e9a4d7f2855e1c0b9a8d7e6f5c4b3a29181706f5e4d3c2b1a09f8e7d6"
"""A class key as ``testbed lab keygen`` writes one (64 hex digits), fixed so that a failure
can be reproduced."""
FREE_TEXT = "Some written answer."
KINDS = ("predict", "measure", "tune", "build-starter", "build-broken", "explain")
"""The ways to get one task wrong: ``build`` twice (the starter left as it is, a file that
breaks a rule)."""


def lab_names() -> list[str]:
    """What ``load_lab`` is given for each lab covered: shipped ids, then the test lab."""
    return [*lab_ids(), str(EVERY_KIND)]


def lab_label(name: str) -> str:
    return "every-kind(tests)" if name == str(EVERY_KIND) else name


def correct_answers(loaded: LoadedLab, key: Sequence[KeyEntry]) -> Answers:
    """The answers the key gives (build tasks: the lab's reference solutions; free text: some
    text), as ``answers.yaml`` and ``build/`` would hold them."""
    values: dict[str, Any] = {}
    builds: dict[str, str] = {}
    for entry in key:
        if entry.kind == "build":
            if entry.task in loaded.solutions:
                builds[entry.task] = loaded.solutions[entry.task]
        elif entry.answer is None:
            values[entry.task] = FREE_TEXT
        else:
            values[entry.task] = entry.answer
    return Answers(values, builds)


def fill_folder(folder: Path, loaded: LoadedLab, instance: Instance) -> list[KeyEntry]:
    """Write the right answers into a student's folder made by ``lab start`` (the teacher's
    view: the key of the student's own instance); returns the key."""
    key = answer_key(instance, loaded.solutions)
    answers = correct_answers(loaded, key)
    for task, text in answers.builds.items():
        (folder / build_file(task)).write_text(text, encoding="utf-8")
    (folder / "answers.yaml").write_text(yaml.safe_dump(answers.values, sort_keys=False),
                                         encoding="utf-8")
    return key


def first_task(tasks: Sequence[Task], kind: str) -> Task | None:
    """The first task that can be answered wrong in the way ``kind`` names (an explain task
    only when it is a multiple choice; a build task only when the lab has its solution is
    the caller's business)."""
    base = kind.split("-")[0]
    for task in tasks:
        if task.kind != base:
            continue
        if isinstance(task, Explain) and not task.checked:
            continue
        return task
    return None


def _other_outcome(outcome: Any) -> str:
    return Outcome.BLOCKED.value if outcome != Outcome.BLOCKED.value else \
        Outcome.SUCCEEDED.value


def wrong_value(task: Task, right: Any) -> Any:
    """An answer to ``task`` that is wrong beyond doubt, ``right`` being the key's answer:
    every engine predicted wrong; a number far outside the tolerance, a text that differs; the
    allowed value just beyond the edge; another choice."""
    if isinstance(task, Predict):
        return {engine: _other_outcome(outcome) for engine, outcome in right.items()}
    if isinstance(task, Measure):
        if isinstance(right, int | float) and not isinstance(right, bool):
            allowed = task.tolerance * abs(right) if task.relative else task.tolerance
            return right + 1000 * (allowed + 1) + abs(right)
        return f"{right}0"
    if isinstance(task, Tune):
        values = list(task.values)
        at = values.index(right)
        beyond = at + 1 if task.want == "largest" else at - 1
        if not 0 <= beyond < len(values):
            beyond = at - 1 if task.want == "largest" else at + 1
        return values[beyond]
    if isinstance(task, Explain):
        assert task.answer is not None
        return next(c for i, c in enumerate(CHOICE_LETTERS[: len(task.choices)])
                    if i != task.answer)
    raise AssertionError(f"no wrong value for a {task.kind} task")


def _shipped_text(scenario_id: str) -> str:
    return shipped_scenarios()[scenario_id][0].read_text(encoding="utf-8")


def rule_breaking_build(task: Build) -> str:
    """A scenario file that loads and breaks at least one of ``task``'s rules: another kind of
    attack than the one required (a program where a built-in attack is asked for, a built-in
    attack where a program or its threat list is); else a read that every engine blocks or
    one that succeeds under every engine, whichever some engine's accepted outcomes exclude."""
    rules: BuildRules = task.require
    if rules.attack is not None and rules.attack != "program":
        return _shipped_text("kernel-map-leak")
    if rules.attack == "program" or rules.threat_only is not None:
        return _shipped_text("dirty-page-leak")
    if any(Outcome.BLOCKED not in accepted for accepted in rules.outcomes.values()):
        return _shipped_text("kernel-map-leak-secretmem")
    return _shipped_text("dirty-page-leak")


def _job_key(job: Job) -> tuple[str, str, str, int]:
    return (repr(job.scenario), job.source, job.engine, job.seed)


@dataclass
class RunCache:
    """Stands in for :func:`testbed.scenarios.run_jobs` in :mod:`testbed.labs.check`: records
    every row it runs and, once ``replay`` is set, gives a job already run its recorded row
    instead of running it again (a run is a function of scenario, engine and seed)."""

    rows: dict[tuple[str, str, str, int], ResultRow]
    replay: bool = False

    def __call__(self, jobs: Sequence[Job], workers: int = 1,
                 progress: Callable[[ResultRow], None] | None = None) -> list[ResultRow]:
        keys = [_job_key(j) for j in jobs]
        todo = [i for i, k in enumerate(keys) if not self.replay or k not in self.rows]
        if todo:
            fresh = run_jobs([jobs[i] for i in todo], workers, progress)
            for i, row in zip(todo, fresh, strict=True):
                self.rows[keys[i]] = row
        return [self.rows[k] for k in keys]


def derive_for(loaded: LoadedLab, student: str, key: bytes | None = CLASS_KEY) -> Instance:
    return derive(loaded.lab, student, key, loaded.bases)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
