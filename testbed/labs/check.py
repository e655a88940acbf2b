"""Checking a student's answers against their own instance, by running it.

:func:`check` reads nothing from disk: it takes the instance and the answers (parsed from the
student's ``answers.yaml`` and ``build/`` files by :mod:`testbed.labs.workspace`), plans every
run the tasks need, runs them in one batch (:func:`testbed.scenarios.run_jobs`, each with its
control), and scores each task:

- ``predict``: a share of the points per engine predicted right;
- ``measure``: all points when the value is within the tolerance of the run's;
- ``build``: a share per rule met (a scenario that does not load meets none);
- ``tune``: all points when the target holds at the answer and fails at its neighbour among
  the allowed values (the next one for ``largest``, the previous for ``smallest``);
- ``explain``: a multiple choice is checked; free text is left to the teacher (``manual``).

Messages say what is wrong without giving the answer: which engines were predicted wrong, not
their outcomes; that a value is off, not by how much.

:func:`answer_key` runs what the key needs and gives each task's expected answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..errors import ScenarioError
from ..results import ResultRow
from ..scenarios import Job, Scenario, run_jobs
from ..scenarios.loader import read_document, validate_document
from ..text import excerpt
from ..types import Outcome
from .instance import Instance
from .loader import tuned
from .model import Build, Explain, Measure, Predict, Task, Tune, choice_digest

__all__ = [
    "CHOICE_LETTERS",
    "OUTCOME_NAMES",
    "Answers",
    "KeyEntry",
    "Status",
    "TaskResult",
    "answer_key",
    "build_file",
    "check",
    "measured",
    "total",
]

_GROUPED = re.compile(r"[-+]?\d{1,3}(?:([, ])\d{3})(?:\1\d{3})*(?:\.\d+)?\Z")
"""A number with its thousands grouped by commas or spaces (one kind in one number)."""
CHOICE_LETTERS = "abcdefgh"
"""How a multiple choice's options are named."""
MAX_BUILD_BYTES = 64 * 1024
"""Largest build file read."""


def build_file(task_id: str) -> str:
    """Where a build task's scenario is, in a student's folder."""
    return f"build/{task_id}.yaml"


class Status:
    """What a task's check found."""

    PASSED = "passed"
    PARTIAL = "partial"
    FAILED = "failed"
    MISSING = "missing"
    """No answer yet."""
    MANUAL = "manual"
    """Free text: the teacher reads it."""
    ERROR = "error"
    """The answer could not be checked (a file that does not load, a run that failed)."""


@dataclass(frozen=True)
class Answers:
    """A student's answers: each task's value from ``answers.yaml`` (``None``: left empty),
    each build task's file text, and the problems found reading them."""

    values: dict[str, Any] = field(default_factory=dict)
    builds: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    """Task id -> why its answer could not be read (a malformed value, a refused file)."""


@dataclass(frozen=True)
class TaskResult:
    """The check of one task."""

    task: str
    kind: str
    points: float
    max_points: int
    status: str
    message: str
    details: tuple[str, ...] = ()
    manual: bool = False
    """Free text: the teacher awards its points (not counted in :func:`total`)."""

    @property
    def auto(self) -> bool:
        """Whether the task is checked here (not left to the teacher)."""
        return not self.manual

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "kind": self.kind, "points": self.points,
                "max_points": self.max_points, "status": self.status,
                "message": self.message, "details": list(self.details),
                "manual": self.manual}


def total(results: list[TaskResult]) -> tuple[float, int]:
    """Points earned and points possible among the tasks checked here (free text, which the
    teacher reads, is not counted)."""
    return (round(sum(r.points for r in results), 2),
            sum(r.max_points for r in results if r.auto))


class _Runs:
    """The runs a check needs, each once, run in one batch."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.jobs: dict[tuple[str, str], Job] = {}
        self.rows: dict[tuple[str, str], ResultRow] = {}

    def need(self, scenario: Scenario, engine: str, source: str = "lab") -> tuple[str, str]:
        key = (repr(scenario), engine)
        if key not in self.jobs:
            self.jobs[key] = Job(scenario, source, engine, self.seed)
        return key

    def run(self, workers: int, progress: Callable[[ResultRow], None] | None) -> None:
        keys = list(self.jobs)
        rows = run_jobs([self.jobs[k] for k in keys], workers, progress)
        self.rows.update(zip(keys, rows, strict=True))

    def count(self) -> int:
        return len(self.jobs)


# -- reading one answer ----------------------------------------------------------------------
class _Bad(Exception):
    """An answer that cannot be read as its task needs."""


OUTCOME_NAMES = tuple(o.value for o in Outcome if o is not Outcome.ERROR)
"""The outcomes a prediction may name (an ``error`` is no outcome of an attack)."""


def _outcome(value: Any) -> Outcome:
    names = ", ".join(OUTCOME_NAMES)
    if not isinstance(value, str):
        raise _Bad(f"an outcome is one of {names}")
    try:
        return Outcome(value.strip().lower())
    except ValueError:
        raise _Bad(f"{excerpt(value)} is not an outcome; one of {names}") from None


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad("expected a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().replace("_", "")
        if _GROUPED.match(text):  # as the report prints it: 6,710 or 1 048 576
            text = text.replace(",", "").replace(" ", "")
        try:
            number = float(text)
        except (ValueError, OverflowError):
            raise _Bad(f"expected a number (got {excerpt(value)})") from None
    else:
        raise _Bad("expected a number")
    if not math.isfinite(number):
        raise _Bad("expected a finite number")
    return number


def _choice(task: Explain, value: Any) -> int:
    if isinstance(value, str):
        text = value.strip()
        letter = text.lower().rstrip(")").rstrip(".")
        if len(letter) == 1 and letter in CHOICE_LETTERS[: len(task.choices)]:
            return CHOICE_LETTERS.index(letter)
        for i, choice in enumerate(task.choices):
            if text == choice:
                return i
    letters = ", ".join(CHOICE_LETTERS[: len(task.choices)])
    raise _Bad(f"answer with the letter of one choice ({letters})")


# -- the value a measure task reads ------------------------------------------------------------
def measured(task: Measure, row: ResultRow) -> float | str | None:
    """The value ``task`` reads from ``row`` (``None``: the run has no such value)."""
    data: Any = row.to_json()
    for part in task.value.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    if task.decode == "number":
        if isinstance(data, bool) or not isinstance(data, int | float):
            return None
        return float(data)
    if not isinstance(data, str):
        return None
    if task.decode == "hex":
        return data.lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(data)
    except ValueError:
        return None
    text = raw.rstrip(b"\0").decode("ascii", errors="replace")
    return text.removeprefix(task.drop_prefix)


def _matches(task: Measure, answer: Any, actual: float | str) -> bool:
    if isinstance(actual, float):
        given = _number(answer)
        allowed = task.tolerance * abs(actual) if task.relative else task.tolerance
        # Beyond the tolerance, only the rounding of a decimal answer is forgiven.
        return abs(given - actual) <= allowed or math.isclose(given, actual, rel_tol=1e-12)
    if not isinstance(answer, str | int) or isinstance(answer, bool):
        raise _Bad("expected text")
    text = str(answer).strip()
    if task.decode == "hex":
        return text.lower().removeprefix("0x").replace(" ", "") == actual
    # The value as the report shows it is right too: with the prefix the task drops.
    return text == actual or bool(task.drop_prefix) and text == task.drop_prefix + actual


# -- checking ----------------------------------------------------------------------------------
@dataclass
class _Plan:
    task: Task
    result: TaskResult | None = None
    keys: list[tuple[str, str]] = field(default_factory=list)
    extra: Any = None


def _done(task: Task, status: str, message: str, points: float = 0.0,
          details: tuple[str, ...] = ()) -> TaskResult:
    manual = isinstance(task, Explain) and not task.checked
    return TaskResult(task.id, task.kind, round(float(points), 2), task.points, status, message,
                      details, manual)


def _share(task: Task, right: int, out_of: int) -> float:
    return float(Fraction(task.points * right, out_of)) if out_of else 0.0


def _plan(instance: Instance, task: Task, answers: Answers, runs: _Runs) -> _Plan:
    plan = _Plan(task)
    if task.id in answers.problems:
        plan.result = _done(task, Status.ERROR, answers.problems[task.id])
        return plan
    value = answers.values.get(task.id)
    try:
        if isinstance(task, Predict):
            scenario = instance.scenarios[task.scenario]
            engines = task.engines or list(scenario.engines)
            if not isinstance(value, dict) or all(value.get(e) is None for e in engines):
                plan.result = _done(task, Status.MISSING, "no prediction yet: give an outcome "
                                    f"under each of {', '.join(engines)}")
                return plan
            unknown = sorted(set(value) - set(engines))
            if unknown:
                raise _Bad(f"{', '.join(map(str, unknown))}: not an engine of this task "
                           f"({', '.join(engines)})")
            plan.extra = {e: _outcome(value.get(e)) if value.get(e) is not None else None
                          for e in engines}
            plan.keys = [runs.need(scenario, e) for e in engines]
        elif isinstance(task, Measure):
            if value is None or value == "":
                plan.result = _done(task, Status.MISSING, "no answer yet")
                return plan
            plan.extra = value
            plan.keys = [runs.need(instance.scenarios[task.scenario], task.engine)]
        elif isinstance(task, Tune):
            if value is None or value == "":
                plan.result = _done(task, Status.MISSING, "no answer yet")
                return plan
            number = _number(value)
            if number not in task.values:
                raise _Bad(f"{excerpt(value)} is not one of the values to choose from "
                           f"({', '.join(f'{v:g}' for v in task.values)})")
            at = task.values.index(number)
            near = at + 1 if task.want == "largest" else at - 1
            doc = instance.documents[task.scenario]
            points = [task.values[at]] + ([task.values[near]]
                                          if 0 <= near < len(task.values) else [])
            plan.extra = points
            plan.keys = [runs.need(tuned(doc, task.setting, v), task.holds.engine)
                         for v in points]
        elif isinstance(task, Build):
            text = answers.builds.get(task.id)
            if text is None or not text.strip() or text.strip() == task.starter.strip():
                plan.result = _done(task, Status.MISSING, f"{build_file(task.id)} is not "
                                    "written yet")
                return plan
            built, refused = _build_scenario(task, text)
            if built is None:
                plan.result = _done(task, Status.ERROR, refused[0], details=tuple(refused[1:]))
                return plan
            plan.extra = (built, refused)
            plan.keys = [runs.need(built, e, build_file(task.id))
                         for e in task.require.outcomes]
        elif isinstance(task, Explain):
            if value is None or (isinstance(value, str) and not value.strip()):
                plan.result = _done(task, Status.MISSING, "no answer yet")
                return plan
            if not task.checked:
                if not isinstance(value, str):
                    raise _Bad("expected text")
                plan.result = _done(task, Status.MANUAL, "for your teacher to read")
                return plan
            pick = _choice(task, value)
            right = (pick == task.answer if task.answer is not None else
                     choice_digest(instance.lab.id, task.id, pick, instance.fingerprint)
                     == task.answer_digest)
            plan.result = _done(task, Status.PASSED if right else Status.FAILED,
                                "right" if right else "not this one",
                                task.points if right else 0.0)
    except _Bad as exc:
        plan.result = _done(task, Status.ERROR, str(exc))
    except Exception as exc:  # one answer that breaks a check costs its task, nothing more
        plan.result = _done(task, Status.ERROR, f"could not be checked ({type(exc).__name__}: "
                            f"{excerpt(str(exc))})")
    return plan


def _build_scenario(task: Build, text: str) -> tuple[Scenario | None, list[str]]:
    """The student's scenario and the rules it breaks without running (or ``None`` and why
    it does not load)."""
    name = build_file(task.id)
    raw = text.encode("utf-8")
    if len(raw) > MAX_BUILD_BYTES:
        return None, [f"{name} is {len(raw)} bytes; the limit is {MAX_BUILD_BYTES}"]
    try:
        data, lines = read_document(name, raw=raw)
        scenario = validate_document(Scenario, data, lines)
    except ScenarioError as exc:
        return None, [f"{name} does not load: {exc.one_line()}",
                      *(e.one_line() for e in exc.more[:4])]
    rules = task.require
    broken = []
    if rules.attack is not None and scenario.attack != rules.attack:
        broken.append(f"must use attack {rules.attack} (it uses {scenario.attack})")
    params: Any = scenario.params
    if rules.threat_only is not None:
        threat = [str(getattr(t, "value", t)) for t in getattr(params, "threat", None) or []]
        extra = sorted(set(threat) - set(rules.threat_only))
        if scenario.attack != "program":
            broken.append("must be written as a program (threat:, program:, goal:)")
        elif extra:
            broken.append(f"declares {', '.join(extra)}; only "
                          f"{', '.join(rules.threat_only)} allowed")
    if rules.max_steps is not None:
        steps = len(getattr(params, "steps", None) or [])
        if steps > rules.max_steps:
            broken.append(f"has {steps} steps; at most {rules.max_steps}")
    return scenario, broken


def _evaluate(plan: _Plan, runs: _Runs) -> TaskResult:
    if plan.result is not None:
        return plan.result
    task = plan.task
    rows = [runs.rows[k] for k in plan.keys]
    if isinstance(task, Predict):
        wrong, right, empty = [], 0, []
        for (engine, guess), row in zip(plan.extra.items(), rows, strict=True):
            if guess is None:
                empty.append(engine)
            elif guess is row.outcome:
                right += 1
            else:
                wrong.append(engine)
        n = len(rows)
        details = tuple(f"{label}: {', '.join(engines)}" for label, engines in
                        (("wrong under", wrong), ("no prediction under", empty)) if engines)
        status = Status.PASSED if right == n else Status.PARTIAL if right else Status.FAILED
        return _done(task, status, f"{right} of {n} predictions right", _share(task, right, n),
                     details)
    if isinstance(task, Measure):
        row = rows[0]
        actual = measured(task, row)
        if actual is None:
            return _done(task, Status.ERROR, f"your run under {task.engine} has no {task.value} "
                         f"(its outcome: {row.outcome.value}); tell your teacher")
        try:
            ok = _matches(task, plan.extra, actual)
        except _Bad as exc:
            return _done(task, Status.ERROR, str(exc))
        tolerance = "" if not task.tolerance else (
            f" (within {task.tolerance:g}{' of it, as a fraction' if task.relative else ''})")
        return _done(task, Status.PASSED if ok else Status.FAILED,
                     "matches your run" + tolerance if ok else
                     f"does not match your run under {task.engine}{tolerance}",
                     task.points if ok else 0.0)
    if isinstance(task, Tune):
        holds = [row.outcome in task.holds.outcome for row in rows]
        want = "/".join(o.value for o in task.holds.outcome)
        at = plan.extra[0]
        if not holds[0]:
            return _done(task, Status.FAILED, f"at {at:g} the outcome under {task.holds.engine} "
                         f"is {rows[0].outcome.value}, not {want}")
        if len(holds) > 1 and holds[1]:
            further = "larger" if task.want == "largest" else "smaller"
            return _done(task, Status.FAILED, f"{want} holds at {at:g}, and also at "
                         f"{plan.extra[1]:g}: look {further}")
        return _done(task, Status.PASSED, f"{want} under {task.holds.engine} at {at:g}, and "
                     "not beyond", task.points)
    if isinstance(task, Build):
        _scenario, limits = plan.extra
        rules = task.require
        missed = [f"under {engine} it is {row.outcome.value}, not "
                  f"{'/'.join(o.value for o in accepted)}"
                  for (engine, accepted), row in zip(rules.outcomes.items(), rows, strict=True)
                  if row.outcome not in accepted]
        limits = list(limits)
        if rules.max_guesses is not None:
            most = max((_guesses(row) for row in rows), default=0)
            if most > rules.max_guesses:
                limits.append(f"needs {most} guesses; at most {rules.max_guesses}")
        n = _rule_count(task)
        # The limits (capabilities, steps, guesses) are worth nothing on their own: an attack
        # that does not do what was asked meets them by doing nothing.
        right = (len(rules.outcomes) - len(missed) if missed
                 else n - len(limits))
        broken = missed + limits
        status = Status.PASSED if not broken else Status.PARTIAL if right else Status.FAILED
        withheld = n - len(rules.outcomes)
        message = f"{right} of {n} rules met" + (
            f" (the {withheld} limit{'s' if withheld != 1 else ''} count once every outcome "
            "rule is met)" if missed and withheld else "")
        warning = _built_warning(plan.extra[0])
        return _done(task, status, message, _share(task, right, n),
                     tuple(broken) + ((warning,) if warning and missed else ()))
    raise AssertionError(f"unplanned task {task.id}")


def _built_warning(scenario: Scenario) -> str | None:
    """The loader's warning that a scenario can never succeed beyond chance, if it applies."""
    try:
        warning = scenario.evidence_warning()
    except Exception:  # a warning is help, never a reason for the check to fail
        return None
    return None if warning is None else f"note: {warning}"


def _guesses(row: ResultRow) -> int:
    metrics = row.to_json().get("metrics") or {}
    value = metrics.get("guesses", 0)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _rule_count(task: Build) -> int:
    rules = task.require
    return (len(rules.outcomes) + (rules.attack is not None) + (rules.threat_only is not None)
            + (rules.max_guesses is not None) + (rules.max_steps is not None))


def check(instance: Instance, answers: Answers, workers: int = 1,
          progress: Callable[[ResultRow], None] | None = None,
          planned: Callable[[int], None] | None = None,
          only: set[str] | None = None) -> list[TaskResult]:
    """Every task of ``instance`` (or those named in ``only``) checked against ``answers``
    (see the module). Never raises for a bad answer: it becomes that task's result."""
    runs = _Runs(instance.seed)
    plans = [_plan(instance, task, answers, runs) for task in instance.lab.tasks
             if only is None or task.id in only]
    if planned is not None:
        planned(runs.count())
    if runs.count():
        runs.run(workers, progress)
    return [_evaluate_safely(plan, runs) for plan in plans]


def _evaluate_safely(plan: _Plan, runs: _Runs) -> TaskResult:
    try:
        return _evaluate(plan, runs)
    except Exception as exc:  # as in _plan: the task's own error
        return _done(plan.task, Status.ERROR, f"could not be checked ({type(exc).__name__}: "
                     f"{excerpt(str(exc))})")


@dataclass(frozen=True)
class KeyEntry:
    """A task's expected answer, as the answer key shows it."""

    task: str
    kind: str
    answer: Any
    """What ``answers.yaml`` would hold (``None`` for build tasks and free text)."""
    shown: str
    """The answer in words."""


def answer_key(instance: Instance, solutions: dict[str, str], workers: int = 1,
               progress: Callable[[ResultRow], None] | None = None) -> list[KeyEntry]:
    """The expected answer of every task of ``instance`` (tune tasks run every allowed
    value)."""
    runs = _Runs(instance.seed)
    wanted: list[tuple[Task, list[tuple[str, str]]]] = []
    for task in instance.lab.tasks:
        keys: list[tuple[str, str]] = []
        if isinstance(task, Predict):
            scenario = instance.scenarios[task.scenario]
            keys = [runs.need(scenario, e) for e in task.engines or scenario.engines]
        elif isinstance(task, Measure):
            keys = [runs.need(instance.scenarios[task.scenario], task.engine)]
        elif isinstance(task, Tune):
            doc = instance.documents[task.scenario]
            keys = [runs.need(tuned(doc, task.setting, v), task.holds.engine)
                    for v in task.values]
        wanted.append((task, keys))
    runs.run(workers, progress)
    out = []
    for task, keys in wanted:
        rows = [runs.rows[k] for k in keys]
        if isinstance(task, Predict):
            scenario = instance.scenarios[task.scenario]
            engines = task.engines or list(scenario.engines)
            answer: Any = {e: r.outcome.value for e, r in zip(engines, rows, strict=True)}
            shown = ", ".join(f"{e}: {o}" for e, o in answer.items())
        elif isinstance(task, Measure):
            value = measured(task, rows[0])
            answer = (int(value) if isinstance(value, float) and value.is_integer()
                      else value)
            shown = "(no value: the run has none)" if value is None else str(answer)
        elif isinstance(task, Tune):
            holding = [v for v, r in zip(task.values, rows, strict=True)
                       if r.outcome in task.holds.outcome]
            pick = (max(holding) if task.want == "largest" else min(holding)) if holding \
                else None
            answer = pick
            shown = "(none of the values: the target never holds)" if pick is None else \
                f"{pick:g}"
        elif isinstance(task, Build):
            answer = None
            shown = ("reference solution below" if task.id in solutions
                     else "no reference solution: check by running")
        else:
            assert isinstance(task, Explain)
            if task.checked and task.answer is not None:
                answer = CHOICE_LETTERS[task.answer]
                shown = f"{answer}) {task.choices[task.answer]}"
            else:
                answer, shown = None, "free text, read by the teacher"
        out.append(KeyEntry(task.id, task.kind, answer, shown))
    return out
