"""Command line of classroom labs: ``testbed lab list | keygen | start | run | check | hint |
handout | grade``. With :mod:`testbed.cli`, the only modules that print or exit.

Exit status: 0 done (for ``check``: every checked task passed); 2 (``check``) some task is not
passed yet; 1 bad input or a failure, with one line saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from .errors import ConfigError, ScenarioError
from .results.output import atomic_write_text
from .results.publish import OutputError
from .text import escape, plural

__all__ = ["lab"]

EXIT_OK, EXIT_FAILURE, EXIT_NOT_YET = 0, 1, 2
_STYLE = {"passed": "green", "partial": "yellow", "missing": "yellow", "failed": "red",
          "error": "red", "manual": "cyan"}


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {escape(message, 2000)}", err=True)
    sys.exit(EXIT_FAILURE)


def _line(text: str) -> str:
    """Lab text (folded YAML, possibly several lines) as one escaped terminal line."""
    return escape(" ".join(text.split()), 2000)


def _load(name: str | Path) -> Any:
    from .labs import load_lab

    try:
        return load_lab(name)
    except ScenarioError as exc:
        for err in (exc, *exc.more):
            click.echo(f"error: {err.one_line()}", err=True)
        sys.exit(EXIT_FAILURE)
    except ConfigError as exc:
        _fail(str(exc))


def _class_key(path: Path | None) -> bytes | None:
    from .labs import read_class_key

    if path is None:
        return None
    try:
        return read_class_key(path)
    except ConfigError as exc:
        _fail(str(exc))
    return None


@click.group()
def lab() -> None:
    """Classroom labs: handouts, per-student instances, checked answers, a gradebook."""


@lab.command(name="list")
def list_labs() -> None:
    """The shipped labs."""
    from .labs import lab_ids

    try:
        ids = lab_ids()
    except ConfigError as exc:
        _fail(str(exc))
    rows = []
    for lab_id in ids:
        loaded = _load(lab_id)
        kinds = sorted({t.kind for t in loaded.lab.tasks})
        manual = loaded.lab.manual_points
        rows.append((lab_id, loaded.lab.title, f"{len(loaded.lab.tasks)} tasks",
                     f"{loaded.lab.max_points} points"
                     + (f" checked and {manual} read by the teacher" if manual else " checked"),
                     ", ".join(kinds)))
    width = max((len(r[0]) for r in rows), default=0)
    for r in rows:
        click.echo(f"{r[0]:<{width}}  {escape(r[1])}")
        click.echo(f"{'':<{width}}  {r[2]}, {r[3]} ({r[4]})")
    click.echo(f"{len(rows)} labs; start one with: testbed lab start LAB --student ID")


@lab.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def keygen(path: Path) -> None:
    """Write a new class key to PATH (readable by you only). Keep it from students: with it,
    anyone can derive every student's instance."""
    # Written whole beside it, then linked in place: a kill leaves no empty key, and a
    # key already there is never replaced (the link fails).
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as exc:
        _fail(f"{path}: cannot write: {exc.strerror or exc}")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        _fail(f"{path}: exists; a class key is never overwritten (grades depend on it)")
    except OSError as exc:
        _fail(f"{path}: cannot write: {exc.strerror or exc}")
    finally:
        os.unlink(tmp)
    click.echo(f"class key: {path} (keep it private; back it up: grading needs it)")


@lab.command()
@click.argument("lab_name", metavar="LAB")
@click.option("--student", help="The student's id (letters, digits, . _ @ + -).")
@click.option("--class-key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The class key file (without it: a practice instance).")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="The folder to make [default: ./LAB-STUDENT; with --roster: ./LAB, one "
              "folder per student in it].")
@click.option("--roster", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file of student ids, one per line: make every student's folder (for the "
              "teacher to hand out; the class key stays with the teacher).")
def start(lab_name: str, student: str | None, key_path: Path | None, folder: Path | None,
          roster: Path | None) -> None:
    """Make a student's working folder for LAB (a shipped lab's id, or a lab file)."""
    from .labs import derive
    from .labs.pages import render_handout
    from .labs.workspace import start as make

    if (student is None) == (roster is None):
        _fail("give --student ID, or --roster FILE for a whole class")
    loaded = _load(lab_name)
    key = _class_key(key_path)
    if roster is not None:
        _start_roster(loaded, roster, key, folder or Path(loaded.lab.id))
        return
    assert student is not None
    try:
        instance = derive(loaded.lab, student, key, loaded.bases)
        target = folder or Path(f"{loaded.lab.id}-{student}")
        make(loaded, instance, target, render_handout(instance, loaded.lab))
    except ConfigError as exc:
        _fail(str(exc))
    kind = "practice instance (no class key)" if key is None else "instance"
    click.echo(f"{loaded.lab.title}: {kind} for {student} in {target}/")
    click.echo(f"  read {target}/handout.html, fill in {target}/answers.yaml, then:")
    click.echo(f"  cd {target} && testbed lab run && testbed lab check")


def _start_roster(loaded: Any, roster: Path, key: bytes | None, root: Path) -> None:
    """Every student's folder of ``roster`` under ``root``; a folder already there is kept."""
    from .labs import derive
    from .labs.pages import render_handout
    from .labs.workspace import start as make

    try:
        with open(roster, "rb") as handle:
            raw = handle.read(1024 * 1024 + 1)
    except OSError as exc:
        _fail(f"{roster}: cannot read: {exc.strerror or exc}")
    if len(raw) > 1024 * 1024:
        _fail(f"{roster}: a roster is at most 1 MiB")
    ids = [line.strip() for line in raw.decode("utf-8", "replace").splitlines()
           if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        _fail(f"{roster}: no student ids (one per line)")
    if len(set(ids)) != len(ids):
        _fail(f"{roster}: an id is listed twice")
    made = kept = 0
    with click.progressbar(ids, label=f"making {plural(len(ids), 'folder')}",
                           file=sys.stderr) as bar:
        for student in bar:
            target = root / student
            try:
                instance = derive(loaded.lab, student, key, loaded.bases)
                if target.exists():
                    kept += 1
                    continue
                make(loaded, instance, target, render_handout(instance, loaded.lab))
                made += 1
            except ConfigError as exc:
                _fail(f"{roster}: {escape(student, 64)}: {exc}")
    click.echo(f"{plural(made, 'folder')} made in {root}/"
               + (f" ({kept} already there, kept)" if kept else "")
               + "; hand each student their own (never the class key)")


def _workspace(folder: Path) -> tuple[Any, Any]:
    from .labs.workspace import instance_of, read_workspace

    try:
        record, lab_file = read_workspace(folder)
    except ConfigError as exc:
        _fail(str(exc))
    loaded = _load(lab_file)
    try:
        return loaded, instance_of(record, loaded)
    except ConfigError as exc:
        _fail(str(exc))


_DIR = click.option("--dir", "folder", default=".", show_default=True,
                    type=click.Path(file_okay=False, exists=True, path_type=Path),
                    help="The student's lab folder.")
_JOBS = click.option("--jobs", default=0, type=click.IntRange(0, 64),
                     help="Worker processes (0: one per core).")


@lab.command(name="run")
@_DIR
@_JOBS
@click.pass_context
def run_lab(ctx: click.Context, folder: Path, jobs: int) -> None:
    """Run your instance's scenarios; the report goes to report/ in your folder."""
    _loaded, instance = _workspace(folder)
    root = ctx.find_root()
    command = root.command.get_command(root, "run") if isinstance(root.command,
                                                                  click.Group) else None
    if command is None:
        _fail("the run command is not available")
    click.echo(f"running your instance (seed {instance.seed})", err=True)
    ctx.invoke(command, paths=(str(folder / "scenarios"),), profiles=None, seed=instance.seed,
               out_dir=folder / "report", jobs=jobs, junit_path=None, db_path=None)


def _answer_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[
        :16]


@lab.command()
@_DIR
@_JOBS
def check(folder: Path, jobs: int) -> None:
    """Check your answers by running your instance; writes submission.json to hand in."""
    from .labs import check as check_answers
    from .labs.check import Status, total
    from .labs.workspace import (
        Submission,
        SubmissionError,
        read_answers,
        read_state,
        write_state,
        write_submission,
    )

    loaded, instance = _workspace(folder)
    try:
        answers = read_answers(folder, loaded.lab, strict=True)
    except ScenarioError as exc:
        _fail(exc.one_line())
    except SubmissionError as exc:
        _fail(str(exc))
    workers = jobs or os.cpu_count() or 1
    bar: Any = None

    def planned(count: int) -> None:
        nonlocal bar
        if count:
            bar = click.progressbar(length=count, label=f"running {plural(count, 'job')} of "
                                    "your instance", file=sys.stderr, show_pos=True)
            bar.__enter__()

    def progress(_row: Any) -> None:
        if bar is not None:
            bar.update(1)

    t0 = time.perf_counter()
    try:
        results = check_answers(instance, answers, workers, progress, planned)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    state = read_state(folder, loaded.lab)
    tasks = {t.id: t for t in loaded.lab.tasks}
    for n, r in enumerate(results, 1):
        task = tasks[r.task]
        mark = click.style(f"{r.status:>7}", fg=_STYLE.get(r.status))
        click.echo(f"{mark}  {n}. {r.task} ({r.kind}) {r.points:g}/{r.max_points}: "
                   f"{escape(r.message)}")
        for d in r.details:
            click.echo(f"           - {escape(d)}")
        if r.status in (Status.FAILED, Status.PARTIAL):  # an unreadable answer is no try
            entry = state.setdefault(r.task, {"tries": 0, "hints": 0})
            digest = _answer_digest(answers.values.get(r.task) or answers.builds.get(r.task))
            if entry.get("last") != digest:
                entry["tries"] = int(entry.get("tries", 0)) + 1
                entry["last"] = digest
                entry["hints"] = max(int(entry.get("hints", 0)), min(entry["tries"],
                                                                     len(task.hints)))
            if task.feedback:
                click.echo(f"           {_line(instance.text(task.feedback))}")
            shown = int(entry.get("hints", 0))
            if shown:
                click.echo(f"           hint {shown}/{len(task.hints)}: "
                           f"{_line(instance.text(task.hints[shown - 1]))}")
    write_state(folder, state)
    submission = Submission(loaded.lab.id, instance.student, instance.fingerprint,
                            instance.practice, answers)
    path = write_submission(folder, submission, [r.to_json() for r in results])
    points, possible = total(results)
    manual = sum(r.status == Status.MANUAL for r in results)
    click.echo(f"{points:g} of {possible} points checked"
               + (f"; {plural(manual, 'written answer')} for your teacher" if manual else "")
               + f" ({time.perf_counter() - t0:.2f} s)")
    if instance.practice:
        click.echo("practice instance: your teacher checks every measured and tuned answer "
                   "against your own instance (start it with the class's folder)")
    click.echo(f"hand in: {path}")
    if any(r.auto and r.status != Status.PASSED for r in results):
        sys.exit(EXIT_NOT_YET)


@lab.command()
@click.argument("task_id", metavar="TASK")
@_DIR
def hint(task_id: str, folder: Path) -> None:
    """Show the next hint of TASK."""
    from .labs.workspace import read_state, write_state

    loaded, instance = _workspace(folder)
    task = next((t for t in loaded.lab.tasks if t.id == task_id), None)
    if task is None:
        _fail(f"no task {task_id!r}; the tasks: {', '.join(t.id for t in loaded.lab.tasks)}")
    assert task is not None
    if not task.hints:
        click.echo(f"{task.id} has no hints")
        return
    state = read_state(folder, loaded.lab)
    entry = state.setdefault(task.id, {"tries": 0, "hints": 0})
    shown = min(int(entry.get("hints", 0)) + 1, len(task.hints))
    last = int(entry.get("hints", 0)) >= len(task.hints)
    entry["hints"] = shown
    write_state(folder, state)
    click.echo(f"hint {shown}/{len(task.hints)}: {_line(instance.text(task.hints[shown - 1]))}"
               + (" (no more hints)" if last else ""))


@lab.command()
@click.argument("lab_name", metavar="LAB")
@click.option("--student", help="Make the handout of this student's instance.")
@click.option("--class-key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The class key (without it: the student's practice instance).")
@click.option("--key", "with_key", is_flag=True,
              help="Add the answers of the student's instance (for the teacher only).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write [default: LAB-handout.html or LAB-STUDENT-key.html].")
@_JOBS
def handout(lab_name: str, student: str | None, key_path: Path | None, with_key: bool,
            out_path: Path | None, jobs: int) -> None:
    """Write LAB's printable handout (with a student's values, or the answer key)."""
    from .labs import answer_key, derive
    from .labs.pages import render_handout

    loaded = _load(lab_name)
    key = _class_key(key_path)
    if with_key and (student is None or key is None):
        _fail("--key needs --student and --class-key: every student's answers differ, and "
              "the answer key is the teacher's")
    instance = None
    if student is not None:
        try:
            instance = derive(loaded.lab, student, key, loaded.bases)
        except ConfigError as exc:
            _fail(str(exc))
    entries = None
    if with_key and instance is not None:
        entries = answer_key(instance, loaded.solutions, jobs or os.cpu_count() or 1)
    name = f"{loaded.lab.id}-{student}-key.html" if with_key else (
        f"{loaded.lab.id}-{student}-handout.html" if student else f"{loaded.lab.id}-handout.html")
    path = out_path or Path(name)
    engines = None
    if instance is None:
        engines = _engines_of(loaded)
    try:
        atomic_write_text(path, render_handout(instance, loaded.lab, entries, loaded.solutions,
                                               engines))
    except OSError as exc:
        _fail(f"{path}: cannot write: {exc.strerror or exc}")
    click.echo(f"{'answer key' if with_key else 'handout'}: {path}")


def _engines_of(loaded: Any) -> dict[str, list[str]]:
    """Each scenario's engines (they do not depend on a student's values)."""
    from .labs.instance import scenario_documents
    from .scenarios import Scenario

    first = {name: values[0] for name, values in loaded.lab.vary.items()}
    docs = scenario_documents(loaded.lab, first, loaded.bases)
    return {sid: list(Scenario.model_validate(doc).engines) for sid, doc in docs.items()}


@lab.command()
@click.argument("submissions", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--class-key", "key_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The class key file.")
@click.option("--lab", "lab_name", help="The lab (a shipped id or a lab file) [default: the "
              "shipped lab the submissions name].")
@click.option("--out", "out_dir", default="grades", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--jobs", default=0, type=click.IntRange(0, 64),
              help="Submissions checked at once (0: one per core).")
@click.option("--timeout", "timeout_s", default=120.0, show_default=True,
              type=click.FloatRange(1, 3600), help="Seconds one submission may take.")
def grade(submissions: Path, key_path: Path, lab_name: str | None, out_dir: Path, jobs: int,
          timeout_s: float) -> None:
    """Grade every submission in SUBMISSIONS (students' folders or submission.json files)."""
    from .labs.grade import grade_class

    key = _class_key(key_path)
    assert key is not None
    if lab_name is None:
        lab_name = _claimed_lab(submissions)
    loaded = _load(lab_name)
    bar: Any = None
    kept = 0

    def total(count: int) -> None:
        nonlocal bar
        bar = click.progressbar(length=count, label=f"grading {plural(count, 'submission')}",
                                file=sys.stderr, show_pos=True, show_eta=True,
                                item_show_func=lambda e: e and escape(e, 40))
        bar.__enter__()

    def progress(entry: str, was_kept: bool) -> None:
        nonlocal kept
        kept += was_kept
        if bar is not None:
            bar.update(1, entry)

    t0 = time.perf_counter()
    try:
        graded = grade_class(loaded, key, key_path, submissions, out_dir,
                             jobs or os.cpu_count() or 1, timeout_s, progress, total)
    except (ConfigError, OutputError) as exc:
        _fail(str(exc))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    scores = [g.score for g in graded]
    problems = [g for g in graded if g.error or g.notes]
    mean = sum(scores) / len(scores) if scores else 0.0
    click.echo(f"{plural(len(graded), 'submission')} graded in {time.perf_counter() - t0:.1f} s"
               + (f" ({kept} kept from an earlier run)" if kept else "")
               + f"; mean {mean:.1f} of {loaded.lab.max_points} points")
    for g in problems:
        why = "; ".join(([g.error] if g.error else []) + g.notes)
        click.echo(f"  {escape(g.student or g.entry, 80)}: {escape(why, 400)}")
    click.echo(f"gradebook: {out_dir / 'gradebook.csv'}; pages: {out_dir / 'index.html'}; "
               f"Gradescope: {out_dir / 'gradescope'}/; JUnit: {out_dir / 'junit.xml'}")


def _end_with_parent() -> None:
    """End this process when the one that started it is gone (``lab grade`` killed with
    SIGKILL cannot stop its checks: each watches it instead)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(EXIT_FAILURE)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _claimed_lab(folder: Path) -> str:
    """The shipped lab the submissions name (``--lab`` not given); they must agree."""
    from collections import Counter

    from .labs import lab_ids
    from .labs.grade import submissions_in
    from .labs.workspace import claimed_lab

    try:
        entries = submissions_in(folder)
    except ConfigError as exc:
        _fail(str(exc))
    named = Counter(lab for lab in map(claimed_lab, entries) if lab is not None)
    if not named:
        _fail(f"{folder}: no readable submission says its lab; give it with --lab")
    if len(named) > 1:
        shown = ", ".join(f"{escape(lab, 64)} ({n})" for lab, n in named.most_common(5))
        _fail(f"the submissions name several labs: {shown}; give the one to grade with --lab")
    lab = next(iter(named))
    if lab not in lab_ids():
        _fail(f"the submissions are for lab {escape(lab, 64)}, which is not shipped: give it "
              "with --lab FILE")
    return lab


@lab.command(name="grade-one", hidden=True)
@click.option("--lab", "lab_file", required=True, type=click.Path(path_type=Path))
@click.option("--class-key", "key_path", required=True, type=click.Path(path_type=Path))
@click.option("--submission", required=True, type=click.Path(path_type=Path))
@click.option("--result", required=True, type=click.Path(path_type=Path))
@click.option("--entry", required=True)
def grade_one(lab_file: Path, key_path: Path, submission: Path, result: Path,
              entry: str) -> None:
    """Check one submission (run by ``lab grade`` in a process of its own)."""
    from .labs.grade import grade_one as check_one

    _end_with_parent()
    loaded = _load(lab_file)
    key = _class_key(key_path)
    assert key is not None
    try:
        check_one(loaded, key, submission, result, entry)
    except ConfigError as exc:
        _fail(str(exc))
