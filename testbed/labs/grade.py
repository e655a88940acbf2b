"""Grading a class: every submission re-derived, re-run and checked; the gradebook written.

Nothing in a submission is trusted. Each one is read under the limits of
:func:`testbed.labs.workspace.read_submission` (no link followed, every file bounded), its
student's instance is derived again from the class key, and it is checked in a process of its
own (``testbed lab grade-one``) with a time limit: the tasks that need no student-written
scenario first, then each build task alone, the results written after each stage, so a
scenario that runs too long costs its own task and the ones after it, never the class. One bad
submission becomes one line of the gradebook with its reason.

A submission's result is kept in ``OUT/.grading/`` under a digest of everything it depends
on (the lab file, the class key's fingerprint, the submission, the testbed's version), so a
grading run killed half-way resumes where it stopped, and a new submission from one student
is graded again while the others are not. The outputs are published together
(:class:`~testbed.results.publish.StagedOutput`):

- ``gradebook.csv``: one row per submission, a column per task (cells neutralised for
  spreadsheets);
- ``index.html`` and ``feedback/STUDENT.html``: the class page and each student's feedback;
- ``gradescope/STUDENT/results.json``: Gradescope's autograder results format;
- ``junit.xml``: a test suite per student, a case per task (GitHub Classroom and CI).
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ConfigError, ScenarioError
from ..results.output import atomic_write_text, csv_cell
from ..results.publish import StagedOutput, process_alive
from ..text import escape
from .check import Status, TaskResult, build_file, check
from .instance import derive
from .loader import LoadedLab
from .model import Build, Explain
from .pages import render_class, render_feedback
from .workspace import INSTANCE, SUBMISSION, SubmissionError, read_submission

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "OWNED",
    "Graded",
    "grade_class",
    "grade_one",
    "gradebook_csv",
    "gradescope_json",
    "junit_xml",
    "key_fingerprint",
    "submissions_in",
]

DEFAULT_TIMEOUT_S = 120.0
"""Time one submission may take to check, by default."""
MAX_SUBMISSIONS = 2000
STATE = ".grading"
OWNED = frozenset({"gradebook.csv", "index.html", "feedback", "gradescope", "junit.xml"})
"""The entries of the output folder a grading run writes (others, the state, are kept)."""


def key_fingerprint(class_key: bytes) -> str:
    """A public name of the class key (it cannot be turned back into the key)."""
    return hmac.new(class_key, b"testbed-lab-v1\0class key", hashlib.sha256).hexdigest()[:16]


@dataclass
class Graded:
    """One submission's grade."""

    entry: str
    """The submission's name in the submissions folder."""
    student: str
    results: list[TaskResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    """Free-text answers, for the teacher."""
    answers: dict[str, str] = field(default_factory=dict)
    """Every other answer as the submission gave it (a short excerpt), for the teacher."""
    error: str = ""
    """Why nothing could be graded (the submission gets zero)."""

    @property
    def score(self) -> float:
        return round(sum(r.points for r in self.results), 2)

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "student": self.student,
                "results": [r.to_json() for r in self.results], "notes": self.notes,
                "texts": self.texts, "answers": self.answers, "error": self.error}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Graded:
        return cls(doc["entry"], doc["student"],
                   [TaskResult(r["task"], r["kind"], r["points"], r["max_points"], r["status"],
                               r["message"], tuple(r["details"]), bool(r.get("manual")))
                    for r in doc["results"]],
                   list(doc["notes"]), dict(doc["texts"]), dict(doc.get("answers") or {}),
                   doc["error"])


def submissions_in(folder: Path) -> list[Path]:
    """The submissions in ``folder``: the folder itself when it is one student's folder or
    holds nothing but ``submission.json``, else each folder and ``*.json`` file in it (hidden
    ones skipped)."""
    if (folder / INSTANCE).exists():
        return [folder]
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot read: {exc.strerror or exc}") from None
    found = [Path(e.path) for e in entries if not e.name.startswith(".")
             and (e.is_dir(follow_symlinks=False) or e.name.endswith(".json") or e.is_symlink())]
    if [p.name for p in found] == [SUBMISSION]:  # one student's submission on its own
        return [folder]
    if len(found) > MAX_SUBMISSIONS:
        raise ConfigError(f"{folder}: {len(found)} submissions; at most {MAX_SUBMISSIONS}")
    return found


def _task_zero(task: Any, message: str) -> TaskResult:
    manual = isinstance(task, Explain) and not task.checked
    return TaskResult(task.id, task.kind, 0.0, task.points, Status.ERROR, message, (), manual)


def grade_one(loaded: LoadedLab, class_key: bytes, submission_file: Path, out: Path,
              entry: str) -> None:
    """Check one normalised submission (``submission.json`` form) and write its
    :class:`Graded` to ``out`` after each stage (see the module)."""
    submission = read_submission(submission_file, loaded.lab)
    lab = loaded.lab
    graded = Graded(entry, submission.student)
    instance = derive(lab, submission.student, class_key, loaded.bases)
    for why in dict.fromkeys(submission.answers.problems.values()):
        graded.notes.append(why)
    if submission.fingerprint != instance.fingerprint:
        graded.notes.append("made on another instance (a practice one, or another "
                            "student's): checked against this student's own")
    for task in lab.tasks:
        value = submission.answers.values.get(task.id)
        if isinstance(task, Explain) and not task.checked and isinstance(value, str):
            graded.texts[task.id] = value
        elif isinstance(task, Build) and task.id in submission.answers.builds:
            lines = submission.answers.builds[task.id].count("\n") + 1
            graded.answers[task.id] = f"{build_file(task.id)} ({lines} lines)"
        elif isinstance(value, dict):  # a prediction: as the student wrote it, in order
            graded.answers[task.id] = escape(", ".join(f"{k}: {v}" for k, v in value.items()),
                                             200)
        elif value is not None:
            graded.answers[task.id] = escape(str(value), 200)
    builds = [t.id for t in lab.tasks if isinstance(t, Build)]
    stages = [{t.id for t in lab.tasks if t.id not in builds}, *({b} for b in builds)]
    done: dict[str, TaskResult] = {}
    for stage in stages:
        if not stage:
            continue
        for r in check(instance, submission.answers, only=stage):
            done[r.task] = r
        graded.results = [done[t.id] for t in lab.tasks if t.id in done]
        atomic_write_text(out, json.dumps(graded.to_json()) + "\n")


def _digest(loaded: LoadedLab, fingerprint: str, doc: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for part in (loaded.text, fingerprint, json.dumps(doc, sort_keys=True), __version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _run_child(loaded: LoadedLab, key_file: Path, normalised: Path, result: Path, entry: str,
               timeout_s: float, children: set[subprocess.Popen[bytes]],
               lock: threading.Lock) -> str:
    """Grade one submission in a child process; returns why it failed ("" when it did not)."""
    # -P and a private working folder: nothing in the folder the teacher grades from (a
    # student's "testbed/" folder) can stand in for the package.
    command = [sys.executable, "-P", "-m", "testbed", "lab", "grade-one",
               "--lab", os.path.abspath(loaded.path), "--class-key", os.path.abspath(key_file),
               "--submission", os.path.abspath(normalised), "--result",
               os.path.abspath(result), "--entry", entry]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env,
                            cwd=normalised.parent)
    with lock:
        children.add(proc)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        return f"time limit of {timeout_s:g} s exceeded"
    finally:
        with lock:
            children.discard(proc)
    if proc.returncode != 0:
        last = output.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return f"the check failed ({escape(last[0], 300)})"
    return ""


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _finish(loaded: LoadedLab, result: Path, entry: str, student: str, why: str
            ) -> tuple[Graded, bool]:
    """The grade from a child's result file, and whether it is complete; tasks the child did
    not reach get zero, with ``why``."""
    try:
        graded = Graded.from_json(json.loads(result.read_text(encoding="utf-8")))
        graded.entry, graded.student = entry, student  # as the parent read them
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        graded = Graded(entry, student)
    reached = {r.task for r in graded.results}
    if not why and reached != {t.id for t in loaded.lab.tasks}:
        why = "the check did not finish every task"
    message = why or "not checked"
    graded.results = [next(r for r in graded.results if r.task == t.id) if t.id in reached
                      else _task_zero(t, message) for t in loaded.lab.tasks]
    if why:
        graded.notes.append(why)
    return graded, not why


def _entry_name(path: Path) -> str:
    """A submission's name in the folder, as text that can be written anywhere (a name that
    is not UTF-8 shows its bytes escaped)."""
    return os.fsencode(path.name).decode("utf-8", "backslashreplace")


def _zero(loaded: LoadedLab, entry: str, student: str, error: str, why: str) -> Graded:
    return Graded(entry, student, error=escape(error, 300),
                  results=[_task_zero(t, why) for t in loaded.lab.tasks])


def grade_class(loaded: LoadedLab, class_key: bytes, key_file: Path, folder: Path,
                out_dir: Path, jobs: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S,
                progress: Callable[[str, bool], None] | None = None,
                total: Callable[[int], None] | None = None) -> list[Graded]:
    """Grade every submission in ``folder`` and publish the outputs in ``out_dir`` (see the
    module). ``progress`` is called with each submission's name once graded (``True``: its
    result was kept from an earlier run)."""
    entries = submissions_in(folder)
    out = StagedOutput(out_dir, OWNED)
    out.prepare()
    try:
        state = Path(os.path.abspath(out_dir)) / STATE
        state.mkdir(parents=True, exist_ok=True)
        _clear_stale(state)
        scratch = Path(tempfile.mkdtemp(prefix=f".normalised-{os.getpid()}-", dir=state))
        try:
            if total is not None:
                total(len(entries))
            graded = _grade_entries(loaded, class_key, key_file, entries, state, scratch, jobs,
                                    timeout_s, progress)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        _duplicates(graded)
        _publish(out, loaded, graded)
    except BaseException:
        out.discard()
        raise
    return graded


def _clear_stale(state: Path) -> None:
    """Remove the scratch folders of grading runs that were killed (their process is gone)."""
    for stale in state.glob(".normalised-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and process_alive(int(pid)):
            continue
        shutil.rmtree(stale, ignore_errors=True)


def _grade_entries(loaded: LoadedLab, class_key: bytes, key_file: Path, entries: list[Path],
                   state: Path, scratch: Path, jobs: int, timeout_s: float,
                   progress: Callable[[str, bool], None] | None) -> list[Graded]:
    fingerprint = key_fingerprint(class_key)
    graded: list[Graded | None] = [None] * len(entries)
    todo: list[tuple[int, str, Path, str, str]] = []
    for i, path in enumerate(entries):
        entry = _entry_name(path)
        try:
            sub = read_submission(path, loaded.lab)
        except (SubmissionError, ScenarioError, ConfigError) as exc:
            message = exc.one_line() if isinstance(exc, ScenarioError) else str(exc)
            graded[i] = _zero(loaded, entry, "", message, "submission unreadable")
        except Exception as exc:  # one submission never stops the others
            graded[i] = _zero(loaded, entry, "", f"submission unreadable ({type(exc).__name__})",
                              "submission unreadable")
        else:
            if sub.lab != loaded.lab.id:
                graded[i] = _zero(loaded, entry, sub.student, f"a submission for lab "
                                  f"{escape(sub.lab, 64)}, not {loaded.lab.id}", "another lab")
            else:
                doc = sub.to_json()
                digest = _digest(loaded, fingerprint, doc)
                kept = _kept(state / f"{digest}.json", entry, sub.student)
                if kept is not None:
                    graded[i] = kept
                    if progress:
                        progress(entry, True)
                    continue
                normalised = scratch / f"{i}.json"
                normalised.write_text(json.dumps(doc), encoding="utf-8")
                todo.append((i, entry, normalised, sub.student, digest))
                continue
        if progress:
            progress(entry, False)
    _grade_todo(loaded, key_file, todo, graded, state, scratch, jobs, timeout_s, progress)
    return [g for g in graded if g is not None]


def _kept(path: Path, entry: str, student: str) -> Graded | None:
    """The grade an earlier run kept at ``path``, if any (a damaged one is dropped)."""
    if not path.is_file():
        return None
    try:
        g = Graded.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        path.unlink(missing_ok=True)
        return None
    g.entry, g.student = entry, student
    return g


def _grade_todo(loaded: LoadedLab, key_file: Path, todo: list[tuple[int, str, Path, str, str]],
                graded: list[Graded | None], state: Path, scratch: Path, jobs: int,
                timeout_s: float, progress: Callable[[str, bool], None] | None) -> None:
    children: set[subprocess.Popen[bytes]] = set()
    lock = threading.Lock()

    def one(item: tuple[int, str, Path, str, str]) -> tuple[int, Graded, str]:
        i, entry, normalised, student, digest = item
        result = scratch / f"{i}.result.json"
        why = _run_child(loaded, key_file, normalised, result, entry, timeout_s, children,
                         lock)
        graded, complete = _finish(loaded, result, entry, student, why)
        # A grade the check did not finish is not kept: a later run tries again.
        return i, graded, digest if complete else ""

    pool = cf.ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = [pool.submit(one, item) for item in todo]
        for future in cf.as_completed(futures):
            i, g, digest = future.result()
            graded[i] = g
            if digest:
                atomic_write_text(state / f"{digest}.json", json.dumps(g.to_json()) + "\n")
            if progress:
                progress(g.entry, False)
    except BaseException:
        with lock:
            for proc in list(children):
                _kill(proc)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _duplicates(graded: list[Graded]) -> None:
    seen: dict[str, list[Graded]] = {}
    for g in graded:
        if g.student:
            seen.setdefault(g.student, []).append(g)
    for student, copies in seen.items():
        if len(copies) > 1:
            names = ", ".join(escape(c.entry, 80) for c in copies)
            for c in copies:
                c.notes.append(f"{len(copies)} submissions claim student {student} ({names}): "
                               "check which is theirs")


def gradebook_csv(lab: Any, graded: list[Graded]) -> str:
    """The gradebook as CSV text."""
    tasks = [t.id for t in lab.tasks]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(["student", "submission", "points", "max_points", "percent", *tasks,
                     "to_read", "notes"])
    for g in sorted(graded, key=lambda g: (g.student, g.entry)):
        points = {r.task: r.points for r in g.results}
        manual = sum(r.status == Status.MANUAL for r in g.results)
        notes = "; ".join(([g.error] if g.error else []) + g.notes)
        writer.writerow([csv_cell(c) for c in (
            g.student, g.entry, g.score, lab.max_points,
            round(100 * g.score / lab.max_points, 1) if lab.max_points else 0.0,
            *(points.get(t, 0.0) for t in tasks), manual, notes)])
    return buffer.getvalue()


def gradescope_json(lab: Any, g: Graded) -> str:
    """One submission in Gradescope's autograder ``results.json`` format."""
    tests = [{"name": f"{r.task} ({r.kind})", "score": r.points, "max_score": r.max_points,
              **({} if r.manual else
                 {"status": "passed" if r.status == Status.PASSED else "failed"}),
              "output": r.message + "".join(f"\n- {d}" for d in r.details)}
             for r in g.results]
    doc = {"score": g.score, "output": "; ".join(([g.error] if g.error else []) + g.notes),
           "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def junit_xml(lab: Any, graded: list[Graded]) -> str:
    """A test suite per submission, a case per task: a task short of its points fails, an
    unreadable answer errors, free text for the teacher is skipped."""
    root = ET.Element("testsuites", {"name": f"lab {lab.id}"})
    for g in sorted(graded, key=lambda g: (g.student, g.entry)):
        name = g.student or g.entry
        failures = sum(r.status in (Status.FAILED, Status.PARTIAL, Status.MISSING)
                       for r in g.results)
        errors = sum(r.status == Status.ERROR for r in g.results)
        skipped = sum(r.status == Status.MANUAL for r in g.results)
        suite = ET.SubElement(root, "testsuite", {
            "name": escape(name, 200), "tests": str(len(g.results)), "failures": str(failures),
            "errors": str(errors), "skipped": str(skipped)})
        for r in g.results:
            case = ET.SubElement(suite, "testcase", {"classname": f"{lab.id}.{escape(name, 200)}",
                                                     "name": r.task})
            message = escape(r.message, 500)
            if r.status == Status.ERROR:
                ET.SubElement(case, "error", {"message": message, "type": r.status})
            elif r.status in (Status.FAILED, Status.PARTIAL, Status.MISSING):
                ET.SubElement(case, "failure", {"message": message, "type": r.status}).text = \
                    f"{r.points:g} of {r.max_points} points"
            elif r.status == Status.MANUAL:
                ET.SubElement(case, "skipped", {"message": "for the teacher to read"})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _page_name(g: Graded, taken: set[str], shared: bool) -> str:
    """The name of a submission's pages: its student's id, or, when several submissions
    claim that student (``shared``), the id and the submission's own name for each of them
    (none takes the student's pages), unique whatever the letter case."""
    entry = re.sub(r"[^A-Za-z0-9._@+-]", "_", g.entry.removesuffix(".json"))[:64] or "entry"
    first = [] if shared else [g.student]
    for name in (*first, f"{g.student}--{entry}",
                 *(f"{g.student}--{entry}-{n}" for n in range(2, 10_000))):
        if name.lower() not in taken:
            taken.add(name.lower())
            return name
    raise AssertionError("no free page name")


def _publish(out: StagedOutput, loaded: LoadedLab, graded: list[Graded]) -> None:
    lab = loaded.lab
    try:
        staging = out.staging
        atomic_write_text(staging / "gradebook.csv", gradebook_csv(lab, graded))
        atomic_write_text(staging / "junit.xml", junit_xml(lab, graded))
        rows = []
        taken: set[str] = set()
        claims = Counter(g.student.lower() for g in graded if g.student)
        for g in sorted(graded, key=lambda g: (g.student, g.entry)):
            notes = ([g.error] if g.error else []) + g.notes
            page = ""
            if g.student:
                name = _page_name(g, taken, claims[g.student.lower()] > 1)
                page = f"feedback/{name}.html"
                atomic_write_text(staging / page, render_feedback(
                    lab, g.student, g.results, g.texts, notes, g.answers))
                atomic_write_text(staging / "gradescope" / name / "results.json",
                                  gradescope_json(lab, g))
            rows.append({"student": g.student or f"(unreadable: {escape(g.entry, 100)})",
                         "page": page, "score": f"{g.score:g}", "note": "; ".join(notes),
                         "to_read": str(sum(r.status == Status.MANUAL for r in g.results)
                                        or "")})
        atomic_write_text(staging / "index.html", render_class(lab, rows))
        with out.lock():
            out.publish()
    except BaseException:
        out.discard()
        raise

