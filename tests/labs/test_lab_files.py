"""Lab files that are wrong: each is refused with one ``file:line: field: message`` per
problem, pointing at what is wrong, before any student sees the lab (``load_lab`` and the
``testbed lab`` commands that load one)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed.cli import main
from testbed.errors import ScenarioError
from testbed.labs import load_lab

BASE = """\
id: bad
title: Bad
goals: [Read the errors.]
handout: A handout.
vary:
  digits: [6, 7]
scenarios:
  - use: kernel-map-leak
    set:
      program.2.args: {address: $page, digits: "{digits}"}
tasks:
  - {id: t1, kind: explain, prompt: p}
"""
TASK_LINE = 13
"""The line of the task each case adds."""


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    line: int
    field: tuple[str, ...]
    """The field's path in the file, split at dots and brackets."""
    message: str


def _task(line: str) -> str:
    return BASE + line + "\n"


CASES = [
    Case("unknown-key", _task("  - {id: t2, kind: explain, prompt: p, colour: red}"),
         TASK_LINE, ("tasks", "1", "colour"), "unknown key"),
    Case("missing-scenario", _task("  - {id: t2, kind: predict, prompt: p, scenario: nope}"),
         TASK_LINE, ("tasks", "1", "scenario"), "'nope' is not a scenario of this lab"),
    Case("duplicate-task", _task("  - {id: t1, kind: explain, prompt: q}"), TASK_LINE,
         ("tasks", "1", "id"), "duplicate task id 't1'"),
    Case("undeclared-variable", BASE.replace('"{digits}"', '"{digit}"'), 10,
         ("scenarios", "0", "set"), "{digit} is not one of the lab's variables"),
    Case("tune-value-invalid", _task(
        "  - {id: t2, kind: tune, prompt: p, scenario: kernel-map-leak, setting: trials, "
        "values: [1, 2, 100000], want: largest, holds: {engine: tme, outcome: [succeeded]}}"),
        TASK_LINE, ("tasks", "1", "values"), "trials=100000"),
    Case("measure-evidence-as-number", _task(
        "  - {id: t2, kind: measure, prompt: p, scenario: kernel-map-leak, engine: tme, "
        "value: evidence.recovered, decode: number}"),
        TASK_LINE, ("tasks", "1", "decode"), "evidence is bytes"),
    Case("no-such-shipped-scenario", BASE.replace("use: kernel-map-leak", "use: no-such"), 8,
         ("scenarios", "0", "use"), "no shipped scenario 'no-such'"),
    Case("unknown-top-level-key", BASE.replace("handout: A handout.",
                                               "handout: A handout.\ncolour: red"), 5,
         ("colour",), "unknown key"),
]

def _params() -> list[object]:
    return [pytest.param(c, id=c.name) for c in CASES]


def _refused(case: Case, folder: Path) -> ScenarioError:
    path = folder / f"{case.name}.yaml"
    path.write_text(case.text)
    with pytest.raises(ScenarioError) as caught:
        load_lab(path)
    return caught.value


def _parts(field: str) -> tuple[str, ...]:
    return tuple(p for p in re.split(r"[.\[\]]", field) if p)


def test_the_base_lab_loads(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(BASE)
    loaded = load_lab(path)
    assert [t.id for t in loaded.lab.tasks] == ["t1"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_a_wrong_lab_is_refused_as_file_line_field_message(case: Case, tmp_path: Path) -> None:
    error = _refused(case, tmp_path)
    path = str(tmp_path / f"{case.name}.yaml")
    assert error.path == path
    assert error.line > 0
    assert case.message in error.message
    assert case.field[-1] in _parts(error.field) or case.field[0] in _parts(error.field), error
    assert error.one_line() == f"{path}:{error.line}: {error.field}: {error.message}"
    # The commands say the same, on one line each, and stop.
    result = CliRunner().invoke(main, ["lab", "start", path, "--student", "a", "--dir",
                                       str(tmp_path / "folder")])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: {error.one_line()}"
    assert not (tmp_path / "folder").exists()


@pytest.mark.parametrize("case", _params())
def test_the_error_names_the_offending_line(case: Case, tmp_path: Path) -> None:
    assert _refused(case, tmp_path).line == case.line


@pytest.mark.parametrize("case", _params())
def test_the_error_names_the_field_where_it_is_in_the_file(case: Case, tmp_path: Path) -> None:
    parts = _parts(_refused(case, tmp_path).field)
    assert parts[: len(case.field)] == case.field, parts


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    tune = ("  - {{id: {id}, kind: tune, prompt: p, scenario: kernel-map-leak, setting: trials, "
            "values: [1, {bad}], want: largest, holds: {{engine: tme, outcome: [succeeded]}}}}")
    path = tmp_path / "two.yaml"
    path.write_text(BASE + tune.format(id="t2", bad=100000) + "\n"
                    + tune.format(id="t3", bad=200000) + "\n")
    with pytest.raises(ScenarioError) as caught:
        load_lab(path)
    errors = [caught.value, *caught.value.more]
    assert [(e.line, "trials=" in e.message) for e in errors] == [(13, True), (14, True)]
    result = CliRunner().invoke(main, ["lab", "handout", str(path), "--out",
                                       str(tmp_path / "h.html")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {e.one_line()}" for e in errors]


def test_a_lab_that_is_not_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BASE + "  - {id: t2, kind: explain, prompt: [p\n")
    with pytest.raises(ScenarioError) as caught:
        load_lab(path)
    assert caught.value.line >= TASK_LINE and "YAML" in caught.value.message
