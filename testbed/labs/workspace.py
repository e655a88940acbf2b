"""A student's working folder: made by ``lab start``, read by ``lab check`` and ``lab grade``.

The folder holds::

    handout.html          the handout, with the student's values
    answers.yaml          one key per task, to fill in
    build/TASK.yaml       the scenario of each build task (a starter to edit)
    scenarios/*.yaml      the student's instance of the lab's scenarios
    .lab/lab.yaml         the lab file (checks run against it)
    .lab/instance.json    who the folder is for, the seed and the values (no class key)
    .lab/state.json       tries and hints seen, per task
    submission.json       written by ``lab check``: what the teacher collects

The folder is made whole in a staging folder beside it and renamed into place, so a kill
leaves no half-made folder. Reading follows no symbolic link and reads regular files only,
each within a size limit: a submission is untrusted (:func:`read_submission`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._version import __version__
from ..errors import ConfigError, ScenarioError
from ..results.output import atomic_write_text
from ..results.publish import set_new_file_mode
from ..scenarios.loader import read_document
from ..text import escape, excerpt
from .check import CHOICE_LETTERS, OUTCOME_NAMES, Answers, build_file
from .instance import Instance, build, check_student
from .loader import LoadedLab
from .model import Build, Explain, Lab, Measure, Predict, Tune, choice_digest

__all__ = [
    "ANSWERS",
    "INSTANCE",
    "LAB_COPY",
    "MAX_FILE_BYTES",
    "SUBMISSION",
    "Submission",
    "answers_template",
    "claimed_lab",
    "read_submission",
    "read_workspace",
    "start",
    "write_submission",
]

ANSWERS = "answers.yaml"
LAB_COPY = ".lab/lab.yaml"
INSTANCE = ".lab/instance.json"
STATE = ".lab/state.json"
SUBMISSION = "submission.json"
MAX_FILE_BYTES = 256 * 1024
"""Largest file of a submission read (a bigger one is refused, not cut)."""
FORMAT = 1


def _engines(lab: Lab, instance: Instance, task: Predict) -> list[str]:
    return task.engines or list(instance.scenarios[task.scenario].engines)


def _comment(text: str, indent: str = "") -> str:
    lines = []
    for para in text.strip().splitlines() or [""]:
        wrapped = textwrap.wrap(para, 92) or [""]
        lines += [f"{indent}# {w}".rstrip() for w in wrapped]
    return "\n".join(lines)


def answers_template(instance: Instance) -> str:
    """The ``answers.yaml`` a student starts from: every task's key, its prompt as a comment."""
    lab = instance.lab
    out = [_comment(f"Lab {lab.id}: {lab.title}"),
           _comment(f"Student {instance.student}."
                    + (" Practice instance (no class key)." if instance.practice else "")),
           _comment("Write each answer after its key, save, then run: testbed lab check"), ""]
    for n, task in enumerate(lab.tasks, 1):
        points = f"{task.points} point{'s' if task.points != 1 else ''}"
        out.append(_comment(f"Task {n} ({task.kind}, {points}): {instance.text(task.prompt)}"))
        if isinstance(task, Predict):
            names = ", ".join(OUTCOME_NAMES)
            out.append(_comment(f"One outcome per engine: {names}."))
            out.append(f"{task.id}:")
            out += [f"  {engine}:" for engine in _engines(lab, instance, task)]
        elif isinstance(task, Measure):
            out.append(_comment(f"A {'number' if task.decode == 'number' else 'text'}, read "
                                f"from your run of {task.scenario} under {task.engine}."))
            out.append(f"{task.id}:")
        elif isinstance(task, Tune):
            values = ", ".join(f"{v:g}" for v in task.values)
            out.append(_comment(f"One of: {values}."))
            out.append(f"{task.id}:")
        elif isinstance(task, Build):
            out.append(_comment(f"Write your scenario in {build_file(task.id)}; nothing to "
                                "fill in here."))
        elif isinstance(task, Explain) and task.checked:
            out += [_comment(f"  {CHOICE_LETTERS[i]}) {c}") for i, c in
                    enumerate(task.choices)]
            out.append(_comment("Answer with one letter."))
            out.append(f"{task.id}:")
        else:
            out.append(f"{task.id}: |")
            out.append("  ")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=92)


def start(loaded: LoadedLab, instance: Instance, folder: Path, handout_html: str) -> None:
    """Make the student's folder (it must not exist), whole or not at all.

    Raises:
        ConfigError: the folder exists or cannot be made.
    """
    target = Path(os.path.abspath(folder))
    if target.exists() or target.is_symlink():
        raise ConfigError(f"{folder}: exists; choose another folder (--dir) or remove it "
                          "(a student's answers are never overwritten)")
    staging = target.parent / f".{target.name}.staging-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        (staging / ".lab").mkdir()
        (staging / "scenarios").mkdir()
        lab = instance.lab
        (staging / LAB_COPY).write_text(student_copy(loaded, instance), encoding="utf-8")
        (staging / INSTANCE).write_text(json.dumps(_instance_json(instance), indent=2) + "\n",
                                        encoding="utf-8")
        (staging / ANSWERS).write_text(answers_template(instance), encoding="utf-8")
        (staging / "handout.html").write_text(handout_html, encoding="utf-8")
        predicted = {t.scenario for t in lab.tasks if isinstance(t, Predict)}
        for n, (sid, doc) in enumerate(instance.documents.items(), 1):
            head = f"# Lab {lab.id}, instance of {instance.student}: run with testbed lab run\n"
            if sid in predicted:  # a prediction is made before the run: no expected outcomes
                doc = {k: v for k, v in doc.items() if k != "expect"}
            (staging / "scenarios" / f"{n:02d}-{sid}.yaml").write_text(head + _dump(doc),
                                                                         encoding="utf-8")
        builds = [t for t in lab.tasks if isinstance(t, Build)]
        if builds:
            (staging / "build").mkdir()
        for task in builds:
            (staging / build_file(task.id)).write_text(task.starter or "", encoding="utf-8")
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"{folder}: cannot make the folder: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def student_copy(loaded: LoadedLab, instance: Instance) -> str:
    """The lab file a student's folder keeps: each multiple choice's right answer replaced by
    its digest for this instance (:func:`~testbed.labs.model.choice_digest`)."""
    data, _lines = read_document(loaded.path, "lab", raw=loaded.text.encode("utf-8"))
    for task in data.get("tasks", []):
        if isinstance(task, dict) and task.get("kind") == "explain" and "answer" in task:
            index = task.pop("answer")
            task["answer_digest"] = choice_digest(loaded.lab.id, str(task.get("id")), index,
                                                  instance.fingerprint)
    head = (f"# Lab {loaded.lab.id}, as the checks of {instance.student}'s folder read it "
            "(the right choices are digests)\n")
    return head + _dump(data)


def _instance_json(instance: Instance) -> dict[str, Any]:
    return {"format": FORMAT, "lab": instance.lab.id, "student": instance.student,
            "practice": instance.practice, "fingerprint": instance.fingerprint,
            "seed": instance.seed, "values": instance.values, "testbed": __version__}


# -- reading, untrusted --------------------------------------------------------------------
class SubmissionError(ConfigError):
    """A submission that cannot be read at all (one line, naming the file)."""


def read_regular(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``, a regular file reached through no symbolic link below its
    submission, at most ``limit`` bytes.

    Raises:
        SubmissionError: a link, not a regular file, too large, or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno in (40,):  # ELOOP: the last component is a symlink
            raise SubmissionError(f"{path}: a symbolic link, not followed") from None
        raise SubmissionError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SubmissionError(f"{path}: not a regular file")
        if info.st_size > limit:
            raise SubmissionError(f"{path}: {info.st_size} bytes; the limit is {limit}")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise SubmissionError(f"{path}: more than {limit} bytes")
        return data
    finally:
        os.close(fd)


def _no_links(root: Path, relative: str) -> Path:
    """``root/relative``, refused when a folder on the way below ``root`` is a link."""
    path = root
    for part in Path(relative).parts[:-1]:
        path = path / part
        if path.is_symlink():
            raise SubmissionError(f"{path}: a symbolic link, not followed")
    return root / relative


@dataclass(frozen=True)
class Submission:
    """What a student hands in: who, for which lab and instance, and the answers."""

    lab: str
    student: str
    fingerprint: str
    practice: bool
    answers: Answers
    seed: int | None = None
    values: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {"format": FORMAT, "lab": self.lab, "student": self.student,
               "fingerprint": self.fingerprint, "practice": self.practice,
               "answers": self.answers.values, "builds": self.answers.builds,
               "testbed": __version__}
        if self.answers.problems:  # why answers were lost reading a folder (grading keeps it)
            doc["problems"] = self.answers.problems
        return doc


def clean_text(value: Any) -> Any:
    """``value`` (from a submission, at any depth) with every text made writable: a lone
    surrogate (``"\\ud800"`` in JSON or YAML) becomes its escape."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    return value


def _answers(lab: Lab, values: Any, builds: dict[str, str], problems: dict[str, str]
             ) -> Answers:
    tasks = {t.id for t in lab.tasks}
    clean = ({k: clean_text(v) for k, v in values.items() if k in tasks}
             if isinstance(values, dict) else {})
    return Answers(clean, {k: clean_text(v) for k, v in builds.items()}, problems)


def read_answers(folder: Path, lab: Lab, strict: bool = False) -> Answers:
    """The answers in a student's folder (``answers.yaml`` and ``build/``). An
    ``answers.yaml`` that cannot be read costs every answer in it (each task's problem says
    why) and nothing more, unless ``strict``: then it is raised (the student's own check says
    it once and stops).

    Raises:
        SubmissionError, ScenarioError: ``strict`` and ``answers.yaml`` is unreadable or not
            YAML.
    """
    builds: dict[str, str] = {}
    problems: dict[str, str] = {}
    try:
        raw = read_regular(_no_links(folder, ANSWERS))
        data, _lines = read_document(folder / ANSWERS, "answers", raw=raw, plain_text=True)
    except (SubmissionError, ScenarioError) as exc:
        if strict:
            raise
        # Every answer of the file is lost, nothing more: build files are read on.
        why = exc.one_line() if isinstance(exc, ScenarioError) else str(exc)
        data = {}
        problems.update({t.id: why for t in lab.tasks if not isinstance(t, Build)})
    for task in lab.tasks:
        if not isinstance(task, Build):
            continue
        try:
            path = _no_links(folder, build_file(task.id))
            if not path.exists() and not path.is_symlink():
                continue
            builds[task.id] = read_regular(path).decode("utf-8")
        except SubmissionError as exc:
            problems[task.id] = str(exc)
        except UnicodeDecodeError:
            problems[task.id] = f"{build_file(task.id)}: not UTF-8 text"
    return _answers(lab, data, builds, problems)


def read_workspace(folder: Path) -> tuple[dict[str, Any], Path]:
    """A student folder's instance record and its lab file.

    Raises:
        ConfigError: the folder is not a lab folder made by ``lab start``.
    """
    try:
        raw = read_regular(_no_links(folder, INSTANCE), 64 * 1024)
        record = json.loads(raw)
    except (SubmissionError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{folder}: not a lab folder ({exc}); make one with testbed lab "
                          "start") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{folder}/{INSTANCE}: not an instance record")
    return record, folder / LAB_COPY


def instance_of(record: dict[str, Any], loaded: LoadedLab) -> Instance:
    """The instance a student's folder records (the student's own check trusts it; the
    teacher's grading derives it again)."""
    try:
        return build(loaded.lab, str(record["student"]), bool(record["practice"]),
                     int(record["seed"]), dict(record["values"]), str(record["fingerprint"]),
                     loaded.bases)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{INSTANCE}: malformed ({exc})") from None


def read_submission(path: Path, lab: Lab) -> Submission:
    """A submission: a student's folder or its ``submission.json``. Untrusted: every field is
    checked, no link followed, every file bounded.

    Raises:
        SubmissionError: it cannot be read; ScenarioError: ``answers.yaml`` is not YAML.
    """
    if path.is_symlink():
        raise SubmissionError(f"{path}: a symbolic link, not followed")
    if path.is_dir():
        if not (path / INSTANCE).exists() and (path / SUBMISSION).exists():
            return read_submission(path / SUBMISSION, lab)
        record, _ = read_workspace(path)
        answers = read_answers(path, lab)
        return _submission(record, answers, path)
    raw = read_regular(path)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SubmissionError(f"{path}: not JSON ({excerpt(str(exc))})") from None
    if not isinstance(doc, dict):
        raise SubmissionError(f"{path}: not a submission")
    builds = doc.get("builds") or {}
    if not isinstance(builds, dict) or not all(isinstance(v, str) for v in builds.values()):
        raise SubmissionError(f"{path}: builds: must map task ids to file text")
    known = {t.id for t in lab.tasks if isinstance(t, Build)}
    problems = doc.get("problems") or {}
    if not isinstance(problems, dict):
        problems = {}
    tasks = {t.id for t in lab.tasks}
    # A problem only ever costs its task: a submission can claim its own answers lost.
    lost = {k: escape(str(v), 300) for k, v in problems.items() if k in tasks}
    answers = _answers(lab, doc.get("answers"), {k: v for k, v in builds.items() if k in known},
                       lost)
    return _submission(doc, answers, path)


def claimed_lab(path: Path) -> str | None:
    """The lab a submission says it is for (``None``: it cannot be read)."""
    try:
        if path.is_symlink():
            return None
        if path.is_dir():
            inner = path / INSTANCE if (path / INSTANCE).exists() else path / SUBMISSION
            raw = read_regular(_no_links(path, str(inner.relative_to(path))), MAX_FILE_BYTES)
        else:
            raw = read_regular(path)
        doc = json.loads(raw)
    except (ConfigError, ValueError, RecursionError):
        return None
    lab = doc.get("lab") if isinstance(doc, dict) else None
    return lab if isinstance(lab, str) else None


def _submission(doc: dict[str, Any], answers: Answers, path: Path) -> Submission:
    student = doc.get("student")
    if not isinstance(student, str):
        raise SubmissionError(f"{path}: no student id")
    try:
        check_student(student)
    except ConfigError as exc:
        raise SubmissionError(f"{path}: {exc}") from None
    lab = doc.get("lab")
    fingerprint = doc.get("fingerprint")
    seed, values = doc.get("seed"), doc.get("values")
    return Submission(str(lab), student, str(fingerprint), bool(doc.get("practice")), answers,
                      seed if isinstance(seed, int) else None,
                      values if isinstance(values, dict) else None)


def write_submission(folder: Path, submission: Submission, results: list[dict[str, Any]]
                     ) -> Path:
    """Write ``submission.json`` (atomically) with the student's own check results, which
    the teacher does not trust but may compare."""
    doc = {**submission.to_json(), "self_check": results}
    path = folder / SUBMISSION
    atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    set_new_file_mode(path)  # a teacher collecting it from a shared drive must read it
    return path


def read_state(folder: Path, lab: Lab) -> dict[str, dict[str, Any]]:
    """Tries and hints seen per task (what cannot be read starts afresh): ``tries`` and
    ``hints`` counts, ``hints`` at most the task's, and the digest of the last answer tried."""
    try:
        doc = json.loads(read_regular(folder / STATE, 64 * 1024))
    except (ConfigError, ValueError, RecursionError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for task in lab.tasks:
        entry = doc.get(task.id) if isinstance(doc, dict) else None
        if not isinstance(entry, dict):
            continue
        tries, hints, last = entry.get("tries"), entry.get("hints"), entry.get("last")
        out[task.id] = {
            "tries": tries if isinstance(tries, int) and tries >= 0 else 0,
            "hints": min(hints, len(task.hints)) if isinstance(hints, int) and hints >= 0
            else 0,
            **({"last": last} if isinstance(last, str) else {})}
    return out


def write_state(folder: Path, state: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(folder / STATE, json.dumps(state, indent=2, sort_keys=True) + "\n")


