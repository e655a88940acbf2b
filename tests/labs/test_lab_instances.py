"""Every lab end to end, in-process: each student's instance derived from the class key, the
answer key of that instance, and answers checked by running it.

Per lab (every shipped one, and the test lab with a task of every kind): the key's answers
get every checked point; one wrong answer of each kind costs its own task and nothing else;
two students get different instances; the class key is in no file a student gets.

Each lab's answer key is computed once per student (module-scoped). The checks of wrong
answers reuse the runs already made (a run is a function of scenario, engine and seed), so
they cost only the runs their wrong answer adds.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _support.labs import (
    CLASS_KEY,
    KINDS,
    RunCache,
    correct_answers,
    derive_for,
    first_task,
    lab_label,
    lab_names,
    rule_breaking_build,
    wrong_value,
)

from testbed.labs import Answers, Instance, KeyEntry, LoadedLab, answer_key, check, load_lab
from testbed.labs.check import Status, TaskResult, total
from testbed.labs.model import Build
from testbed.labs.pages import render_handout
from testbed.labs.workspace import Submission, start, write_submission

# The module, not the function ``testbed.labs.check`` that the package exports under its name.
check_module = importlib.import_module("testbed.labs.check")
STUDENTS = ("s1", "bob@example.edu")


@dataclass
class Student:
    instance: Instance
    key: list[KeyEntry]
    answers: Answers
    results: list[TaskResult]


@dataclass
class LabCase:
    loaded: LoadedLab
    students: dict[str, Student]
    cache: RunCache


class Cases:
    """Each lab's students, made on first use and kept for the module."""

    def __init__(self) -> None:
        self.made: dict[str, LabCase] = {}

    def get(self, name: str) -> LabCase:
        if name not in self.made:
            self.made[name] = self._make(name)
        return self.made[name]

    @staticmethod
    def _make(name: str) -> LabCase:
        loaded = load_lab(name)
        cache = RunCache({})
        students = {}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(check_module, "run_jobs", cache)  # records, runs everything
            for student in STUDENTS:
                instance = derive_for(loaded, student)
                key = answer_key(instance, loaded.solutions, workers=2)
                answers = correct_answers(loaded, key)
                results = check(instance, answers, workers=2)
                students[student] = Student(instance, key, answers, results)
        cache.replay = True
        return LabCase(loaded, students, cache)


@pytest.fixture(scope="module")
def cases() -> Cases:
    return Cases()


def _kind_params() -> list[Any]:
    """(lab, way to be wrong) for each way that applies to a task of the lab."""
    params = []
    for name in lab_names():
        try:
            loaded = load_lab(name)
        except Exception:  # the lab's own load test says why
            continue
        for kind in KINDS:
            task = first_task(loaded.lab.tasks, kind)
            if task is None:
                continue
            params.append(pytest.param(name, kind, id=f"{lab_label(name)}-{kind}"))
    return params


LABS = [pytest.param(name, id=lab_label(name)) for name in lab_names()]


def test_the_shipped_labs_are_covered() -> None:
    names = lab_names()
    assert "direct-map" in names and len(names) >= 2


@pytest.mark.parametrize("name", LABS)
def test_the_lab_loads_and_every_checked_task_has_an_answer(name: str, cases: Cases) -> None:
    case = cases.get(name)
    lab = case.loaded.lab
    assert lab.max_points > 0
    for student in case.students.values():
        by_task = {e.task: e for e in student.key}
        assert list(by_task) == [t.id for t in lab.tasks]
        for task in lab.tasks:
            entry = by_task[task.id]
            if isinstance(task, Build):
                assert task.id in case.loaded.solutions, f"{task.id}: no reference solution"
            elif task.kind != "explain" or entry.answer is not None:
                assert entry.answer is not None, f"{task.id}: {entry.shown}"


@pytest.mark.parametrize("name", LABS)
def test_the_key_answers_get_every_checked_point(name: str, cases: Cases) -> None:
    case = cases.get(name)
    lab = case.loaded.lab
    for student, s in case.students.items():
        earned, possible = total(s.results)
        assert possible == lab.max_points
        assert earned == lab.max_points, (student, [r for r in s.results
                                                    if r.status != Status.PASSED])
        for r in s.results:
            assert r.status == (Status.MANUAL if r.manual else Status.PASSED), r
            assert r.points == (0.0 if r.manual else r.max_points), r


@pytest.mark.parametrize(("name", "kind"), _kind_params())
def test_one_wrong_answer_costs_its_task_and_no_other(name: str, kind: str, cases: Cases,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    case = cases.get(name)
    student = case.students[STUDENTS[0]]
    task = first_task(case.loaded.lab.tasks, kind)
    assert task is not None
    values = dict(student.answers.values)
    builds = dict(student.answers.builds)
    if kind == "build-starter":
        assert isinstance(task, Build)
        builds[task.id] = task.starter
    elif kind == "build-broken":
        assert isinstance(task, Build)
        builds[task.id] = rule_breaking_build(task)
    else:
        right = next(e.answer for e in student.key if e.task == task.id)
        values[task.id] = wrong_value(task, right)
    monkeypatch.setattr(check_module, "run_jobs", case.cache)
    results = check(student.instance, Answers(values, builds), workers=2)
    before = {r.task: r for r in student.results}
    for r in results:
        if r.task == task.id:
            assert r.points < r.max_points, r
            assert r.status in (Status.FAILED, Status.PARTIAL, Status.MISSING), r
            if kind != "build-broken":  # a broken file may still meet some rules
                assert r.points == 0.0, r
            if kind == "build-starter":
                assert r.status == Status.MISSING, r
        else:
            assert (r.points, r.status) == (before[r.task].points, before[r.task].status), r
    earned, _possible = total(results)
    assert earned < case.loaded.lab.max_points


@pytest.mark.parametrize("name", LABS)
def test_two_students_get_different_instances(name: str, cases: Cases) -> None:
    case = cases.get(name)
    one, two = (case.students[s] for s in STUDENTS)
    assert one.instance.seed != two.instance.seed
    assert one.instance.fingerprint != two.instance.fingerprint
    differ = [a.task for a, b in zip(one.key, two.key, strict=True) if a.answer != b.answer]
    assert differ, "every task has the same expected answer for both students"
    # The same student, again: the same instance (the teacher re-derives the student's).
    again = derive_for(case.loaded, STUDENTS[0])
    assert (again.seed, again.fingerprint, again.values) == (
        one.instance.seed, one.instance.fingerprint, one.instance.values)
    practice = derive_for(case.loaded, STUDENTS[0], None)
    assert practice.practice and not one.instance.practice
    assert practice.fingerprint != one.instance.fingerprint


@pytest.mark.parametrize("name", LABS)
def test_the_class_key_is_in_no_file_a_student_gets(name: str, cases: Cases,
                                                    tmp_path: Path) -> None:
    case = cases.get(name)
    student = case.students[STUDENTS[0]]
    folder = tmp_path / "student"
    instance = student.instance
    start(case.loaded, instance, folder, render_handout(instance, case.loaded.lab))
    submission = Submission(case.loaded.lab.id, instance.student, instance.fingerprint,
                            instance.practice, student.answers)
    path = write_submission(folder, submission, [r.to_json() for r in student.results])
    assert json.loads(path.read_text())["fingerprint"] == instance.fingerprint
    secrets = [CLASS_KEY, CLASS_KEY.hex().encode(), CLASS_KEY.upper()]
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for file in files:
        data = file.read_bytes()
        for secret in secrets:
            assert secret not in data, f"{file.relative_to(folder)} holds the class key"
