"""The lab schema: a lab file becomes a frozen :class:`Lab`, and nothing else travels further.

A lab names the scenarios its students run (shipped ones by id, changed with ``set:``, or
written inline), the values that differ per student (``vary:``), and ordered tasks of five
kinds:

- ``predict``: the outcome the student expects under each engine, checked against the run;
- ``measure``: a number or text read from the student's own run, within a stated tolerance;
- ``build``: a scenario the student writes, checked by running it against stated rules;
- ``tune``: a setting's value at the edge of a target, checked by running it and its
  neighbour among the allowed values;
- ``explain``: free text for the teacher, or a multiple choice that is checked.

Checking is in :mod:`testbed.labs.check`; nothing here runs anything.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..scenarios.model import EngineName, field_error
from ..types import Outcome

__all__ = [
    "MAX_TASKS",
    "Build",
    "BuildRules",
    "Explain",
    "Lab",
    "LabScenario",
    "Measure",
    "Predict",
    "Target",
    "Task",
    "Tune",
    "choice_digest",
    "placeholders",
    "variable",
]

MAX_TASKS = 30
"""Most tasks one lab may have."""

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
VarName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Text = Annotated[str, StringConstraints(max_length=4000)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Dotted = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z0-9_-]+){0,7}$")]
Scalar = int | float | str | bool
OutcomeName = Annotated[Outcome, Field(strict=False)]

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]{0,31})\}")


def choice_digest(lab: str, task: str, index: int, fingerprint: str) -> str:
    """The digest of choice ``index`` of a task for one instance (a student's copy of the lab
    holds the right one's, never its index)."""
    text = f"testbed-lab-v1\0choice\0{lab}\0{task}\0{index}\0{fingerprint}"
    return hashlib.sha256(text.encode()).hexdigest()


def variable(value: Any) -> str | None:
    """The variable a ``set:`` value stands for (``"{name}"``), or ``None``."""
    whole = _PLACEHOLDER.fullmatch(value) if isinstance(value, str) else None
    return whole.group(1) if whole else None


def _variables(value: Any) -> set[str]:
    """The variables a ``set:`` value uses as a whole value, at any depth."""
    if isinstance(value, dict):
        return set().union(*(_variables(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_variables(v) for v in value))
    name = variable(value)
    return {name} if name else set()


def placeholders(text: str) -> set[str]:
    """The ``{name}`` placeholders of a lab's text."""
    return set(_PLACEHOLDER.findall(text))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LabScenario(_Strict):
    """A scenario of the lab: a shipped one (``use``) or one written here (``scenario``),
    with settings changed by ``set`` (dotted paths; a value ``"{name}"`` is the student's
    value of the lab's variable ``name``, and ``{name}`` inside a longer text is replaced by
    it)."""

    use: Id | None = Field(None, description="a shipped scenario's id")
    scenario: dict[str, Any] | None = Field(None, description="a whole scenario, inline")
    id: Id | None = Field(None, description="the id in this lab (default: the scenario's)")
    set: dict[Dotted, Any] = Field(default_factory=dict, max_length=20)

    @model_validator(mode="after")
    def _one_source(self) -> LabScenario:
        if (self.use is None) == (self.scenario is None):
            raise field_error("use", "give either use: (a shipped scenario's id) or "
                              "scenario: (one written out here)")
        return self


class _Task(_Strict):
    id: Id
    points: int = Field(1, ge=0, le=100)
    prompt: Text
    hints: list[Text] = Field(default_factory=list, max_length=5)
    feedback: Text = Field("", description="shown after a wrong answer; explains without "
                           "giving the answer away")


class Predict(_Task):
    """The outcome the student expects under each engine, before running."""

    kind: Literal["predict"]
    scenario: Id
    engines: list[EngineName] = Field(default_factory=list, max_length=16,
                                      description="default: every engine of the scenario")

    @model_validator(mode="after")
    def _once(self) -> Predict:
        if len(set(self.engines)) != len(self.engines):
            raise field_error("engines", "each engine once")
        return self


class Measure(_Task):
    """A value read from the student's run of ``scenario`` under ``engine``."""

    kind: Literal["measure"]
    scenario: Id
    engine: EngineName
    value: Dotted = Field(description="metrics.NAME[.INDEX] or evidence.NAME of the result")
    decode: Literal["number", "text", "hex"] = Field(
        "number", description="number; text (evidence bytes as ASCII, padding dropped); hex")
    drop_prefix: Annotated[str, StringConstraints(max_length=32)] = ""
    tolerance: float = Field(0.0, ge=0, description="how far a number may be off")
    relative: bool = Field(False, description="tolerance is a fraction of the value")

    @model_validator(mode="after")
    def _source(self) -> Measure:
        head = self.value.split(".")[0]
        if head not in ("metrics", "evidence") or "." not in self.value:
            raise field_error("value", "must be metrics.NAME (optionally .INDEX) or "
                              "evidence.NAME")
        if self.decode == "number" and head == "evidence":
            raise field_error("decode", "evidence is bytes: decode it as text or hex")
        return self


class BuildRules(_Strict):
    """What a student's scenario must do."""

    outcomes: dict[EngineName, list[OutcomeName]] = Field(
        min_length=1, max_length=8, description="engine: the outcomes accepted under it")
    attack: str | None = Field(None, description="the attack it must use (program: steps)")
    threat_only: list[str] | None = Field(None, max_length=8, description="a program may "
                                          "declare these capabilities and no others")
    max_guesses: int | None = Field(None, ge=0, le=10**9)
    max_steps: int | None = Field(None, ge=1, le=256)


class Build(_Task):
    """A scenario the student writes in ``build/ID.yaml``."""

    kind: Literal["build"]
    require: BuildRules
    starter: LongText = Field("", description="the file the student starts from")


class Target(_Strict):
    """What must hold at the tuned value: the outcome under one engine."""

    engine: EngineName
    outcome: list[OutcomeName] = Field(min_length=1, max_length=8)


class Tune(_Task):
    """The value of ``setting`` at the edge of ``holds`` among ``values``."""

    kind: Literal["tune"]
    scenario: Id
    setting: Dotted
    values: list[int | float] = Field(min_length=2, max_length=64)
    want: Literal["largest", "smallest"]
    holds: Target

    @model_validator(mode="after")
    def _sorted(self) -> Tune:
        if list(self.values) != sorted(set(self.values)):
            raise field_error("values", "must be distinct and in increasing order")
        return self


class Explain(_Task):
    """A question for the teacher (free text), or a multiple choice that is checked."""

    kind: Literal["explain"]
    choices: list[ShortText] = Field(default_factory=list, max_length=8)
    answer: int | None = Field(None, ge=0, description="index of the right choice")
    answer_digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="in a student's copy of the lab: the right choice as a digest "
        "(:func:`choice_digest`), so that the copy does not tell it")

    @model_validator(mode="after")
    def _answer(self) -> Explain:
        given = self.answer is not None or self.answer_digest is not None
        if self.choices and (not given or (self.answer or 0) >= len(self.choices)):
            raise field_error("answer", f"a multiple choice needs answer: the index (0 to "
                              f"{len(self.choices) - 1}) of the right choice")
        if not self.choices and given:
            raise field_error("answer", "only a multiple choice (choices:) has an answer")
        return self

    @property
    def checked(self) -> bool:
        """Whether the answer is checked (a multiple choice) or read by the teacher."""
        return bool(self.choices)


Task = Annotated[Predict | Measure | Build | Tune | Explain, Field(discriminator="kind")]


class Lab(_Strict):
    """One lab: the handout, the scenarios, what differs per student, and the tasks."""

    id: Id
    title: ShortText
    goals: list[Text] = Field(min_length=1, max_length=10)
    handout: LongText
    vary: dict[VarName, list[Scalar]] = Field(default_factory=dict, max_length=10)
    scenarios: list[LabScenario] = Field(min_length=1, max_length=20)
    tasks: list[Task] = Field(min_length=1, max_length=MAX_TASKS)

    @model_validator(mode="after")
    def _references(self) -> Lab:
        for name, values in self.vary.items():
            if not 2 <= len(values) <= 16:
                raise field_error(f"vary.{name}", "give 2 to 16 values, one of which each "
                                  "student gets")
        ids: set[str] = set()
        for i, s in enumerate(self.scenarios):
            sid = s.id or s.use or str((s.scenario or {}).get("id", ""))
            if sid in ids:
                raise field_error(f"scenarios.{i}.id", f"{sid!r} is already a scenario of this "
                                  "lab; give this one another id:")
            ids.add(sid)
            for key, value in s.set.items():
                for name in _variables(value) - set(self.vary):
                    raise field_error(f"scenarios.{i}.set.{key}", f"{{{name}}} is not one of "
                                      f"the lab's variables (vary: "
                                      f"{', '.join(self.vary) or 'none'})")
        tasks: set[str] = set()
        for i, task in enumerate(self.tasks):
            if task.id in tasks:
                raise field_error(f"tasks.{i}.id", f"duplicate task id {task.id!r}")
            tasks.add(task.id)
            scenario = getattr(task, "scenario", None)
            if scenario is not None and scenario not in ids:
                raise field_error(f"tasks.{i}.scenario", f"{scenario!r} is not a scenario of "
                                  f"this lab ({', '.join(sorted(ids))})")
        return self

    def scenario_id(self, index: int) -> str:
        """The id in this lab of the scenario at ``index``."""
        s = self.scenarios[index]
        return s.id or s.use or str((s.scenario or {}).get("id", ""))

    @property
    def max_points(self) -> int:
        """The points checked here (free-text answers, read by the teacher, not counted)."""
        return sum(t.points for t in self.tasks if not _manual(t))

    @property
    def manual_points(self) -> int:
        """The points of free-text answers, which the teacher awards."""
        return sum(t.points for t in self.tasks if _manual(t))


def _manual(task: Any) -> bool:
    return isinstance(task, Explain) and not task.checked
