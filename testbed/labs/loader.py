"""Lab files: YAML in, a validated :class:`~testbed.labs.model.Lab` out, or one
``file:line: field: message`` per problem.

A lab file is read under the same rules and limits as a scenario file
(:func:`testbed.scenarios.loader.read_document`). Loading goes further than the schema: every
scenario the lab uses is built with every value of its variables and validated, every tuned
setting with every allowed value, and every task's engines must be engines of its scenario, so
a lab that loads never fails in front of a student.

A lab is a file, or a folder holding ``lab.yaml`` (and, for the teacher, ``solutions/TASK.yaml``:
a scenario meeting each build task's rules, shown in the answer key); a shipped lab is named
by its id (:func:`find_lab`).
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError, ScenarioError
from ..scenarios.loader import find_scenario_files, read_document, validate_document
from ..scenarios.model import Scenario
from ..shipped import labs_dir, scenarios_dir
from .instance import scenario_documents, set_path
from .model import Build, Lab, Measure, Predict, Tune

__all__ = [
    "LAB_FILE",
    "LoadedLab",
    "find_lab",
    "lab_ids",
    "load_lab",
    "shipped_scenarios",
    "tuned",
]

LAB_FILE = "lab.yaml"
"""The lab file of a lab folder."""
SOLUTIONS = "solutions"
"""The folder of a lab's reference solutions to its build tasks (teachers only)."""


@dataclass(frozen=True)
class LoadedLab:
    """A lab, where it came from, and the plain data of the shipped scenarios it uses."""

    lab: Lab
    path: Path
    text: str
    """The lab file as written (a student's folder keeps a copy)."""
    bases: dict[str, dict[str, Any]]
    solutions: dict[str, str]
    """Reference solutions of build tasks, by task id (teachers only)."""


@functools.cache
def shipped_scenarios() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every shipped scenario by id: its file and its plain data."""
    files, _ = find_scenario_files([scenarios_dir()])
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in files:
        data, _lines = read_document(path)
        sid = data.get("id")
        if isinstance(sid, str):
            out[sid] = (path, data)
    return out


def lab_ids() -> list[str]:
    """The ids of the shipped labs, in order."""
    root = labs_dir()
    return sorted(p.name for p in root.iterdir() if (p / LAB_FILE).is_file())


def find_lab(name: str | Path) -> Path:
    """The lab file ``name`` stands for: a file, a folder with ``lab.yaml``, or a shipped
    lab's id.

    Raises:
        ConfigError: none of these exists.
    """
    path = Path(name)
    if path.is_dir():
        path = path / LAB_FILE
    if path.is_file():
        return path
    shipped = labs_dir() / str(name) / LAB_FILE
    if os.sep not in str(name) and shipped.is_file():
        return shipped
    raise ConfigError(f"no lab {str(name)!r}: not a lab file, a folder with {LAB_FILE}, nor a "
                      f"shipped lab ({', '.join(lab_ids())})")


def load_lab(name: str | Path) -> LoadedLab:
    """Load, validate and check a lab (see the module).

    Raises:
        ScenarioError: the first problem, with file, line and field; the others in ``more``.
        ConfigError: the lab cannot be found.
    """
    path = find_lab(name)
    data, lines = read_document(path, "lab")
    lab = validate_document(Lab, data, lines)
    problems: list[ScenarioError] = []

    def problem(where: tuple[str | int, ...], message: str) -> None:
        field = ".".join(str(p) for p in where)
        problems.append(ScenarioError(str(path), lines.line_at(where), field, message))

    shipped = shipped_scenarios()
    bases: dict[str, dict[str, Any]] = {}
    for i, spec in enumerate(lab.scenarios):
        if spec.use is not None:
            if spec.use not in shipped:
                problem(("scenarios", i, "use"), f"no shipped scenario {spec.use!r}")
            else:
                bases[spec.use] = shipped[spec.use][1]
    if problems:
        _raise(problems)
    built = _check_scenarios(lab, bases, problem)
    for i, task in enumerate(lab.tasks):
        _check_task(lab, i, task, built, bases, problem)
    if problems:
        _raise(problems)
    text = path.read_text(encoding="utf-8")
    return LoadedLab(lab, path, text, bases, _solutions(path.parent, lab))


def _raise(problems: list[ScenarioError]) -> None:
    first, *more = sorted(problems, key=lambda e: e.line)
    first.more = tuple(more)
    raise first


def _check_scenarios(lab: Lab, bases: dict[str, dict[str, Any]], problem: Any
                     ) -> dict[str, Scenario]:
    """Each scenario with each value of each variable it uses (the others at their first),
    validated; returns them with every variable at its first value."""
    first = {name: values[0] for name, values in lab.vary.items()}
    trials = [first] + [{**first, name: v} for name, values in lab.vary.items()
                        for v in values[1:]]
    built: dict[str, Scenario] = {}
    for values in trials:
        try:
            docs = scenario_documents(lab, values, bases)
        except ConfigError as exc:
            problem(("scenarios",), str(exc))
            return built
        for i, (sid, doc) in enumerate(docs.items()):
            try:
                scenario = Scenario.model_validate(doc)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                shown = ", ".join(f"{k}={v}" for k, v in values.items())
                problem(("scenarios", i), f"scenario {sid}{' with ' + shown if shown else ''}: "
                        f"{where}: {err['msg']}")
                continue
            built.setdefault(sid, scenario)
    return built


def _check_task(lab: Lab, i: int, task: Any, built: dict[str, Scenario],
                bases: dict[str, dict[str, Any]], problem: Any) -> None:
    sid = getattr(task, "scenario", None)
    scenario = built.get(sid) if sid is not None else None
    if sid is not None and scenario is None:
        return  # its scenario's own problem is reported
    if isinstance(task, Predict) and scenario is not None:
        for engine in task.engines:
            if engine not in scenario.engines:
                problem(("tasks", i, "engines"), f"{engine} is not an engine of {sid}")
    elif isinstance(task, Measure) and scenario is not None:
        if task.engine not in scenario.engines:
            problem(("tasks", i, "engine"), f"{task.engine} is not an engine of {sid}")
    elif isinstance(task, Tune) and scenario is not None and sid is not None:
        if task.holds.engine not in scenario.engines:
            problem(("tasks", i, "holds", "engine"), f"{task.holds.engine} is not an engine "
                    f"of {sid}")
        doc = scenario_documents(lab, {n: v[0] for n, v in lab.vary.items()}, bases)[sid]
        for value in task.values:
            try:
                tuned(doc, task.setting, value)
            except (ConfigError, ValidationError) as exc:
                message = (exc.errors()[0]["msg"] if isinstance(exc, ValidationError)
                           else str(exc))
                problem(("tasks", i, "values"), f"{task.setting}={value}: {message}")
                return


def tuned(doc: dict[str, Any], setting: str, value: int | float) -> Scenario:
    """The scenario ``doc`` with ``setting`` at ``value``, validated."""
    changed = copy.deepcopy(doc)
    set_path(changed, setting, value)
    return Scenario.model_validate(changed)


def _solutions(folder: Path, lab: Lab) -> dict[str, str]:
    out = {}
    for task in lab.tasks:
        path = folder / SOLUTIONS / f"{task.id}.yaml"
        if isinstance(task, Build) and path.is_file() and not path.is_symlink():
            out[task.id] = path.read_text(encoding="utf-8")
    return out

