"""``testbed lab grade`` over a small class: right, wrong and practice submissions, and hostile
ones (links out of the submission, a file over the size limit, malformed YAML, a file that is
not JSON, another lab's submission, two submissions for one student, a build scenario over
the cost bound, one that runs past ``--timeout``, cells a spreadsheet would run).

The class is graded once (module-scoped, through the real command, which checks each
submission in a child process); the tests read its outputs: ``gradebook.csv``, ``junit.xml``,
``gradescope/STUDENT/results.json``, ``feedback/STUDENT.html``, ``index.html`` and the kept
results in ``OUT/.grading/``. A grading run killed with SIGKILL and run again must give the
same gradebook.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _support.labs import CLASS_KEY, EVERY_KIND, derive_for, fill_folder, read_json

from testbed.errors import ScenarioError
from testbed.labs import check, load_lab
from testbed.labs.check import build_file
from testbed.labs.model import Explain
from testbed.labs.pages import render_handout
from testbed.labs.workspace import MAX_FILE_BYTES, Submission, read_answers, start
from testbed.labs.workspace import write_submission as write_submission_file
from testbed.scenarios import Scenario
from testbed.scenarios.loader import read_document, validate_document

CLASS = "=class"
"""The submissions folder, relative to the working folder: its name starts like a formula,
so every note naming a file of it must be neutralised in the gradebook."""
FORMULA = ("=", "+", "-", "@", "\t", "\r")
BUILD = "build-leak"
HEAVY_TIMEOUT_S = 4
"""The ``--timeout`` of the timeout test: a right submission is checked in well under it, the
heavy build takes several times as long."""

# A guess through 10^8 PINs in each of three trials: accepted by the cost bound, and seconds
# per engine (the build task runs it under four).
HEAVY = """\
id: heavy
title: A PIN guess over every 8-digit number
threat: [bus_interposer, chosen_plaintext]
program:
  - {op: create_domain, by: victim, args: {kind: guest}, as: victim}
  - {op: alloc_pages, by: victim, args: {domain: $victim}, as: page}
  - {op: store_secret, by: victim, args: {address: $page, digits: 8, prefix: "PIN:", pad_to: 64},
     as: pin}
  - {op: capture, by: attacker, args: {address: $pin, length: 64}, as: line}
  - {op: destroy_domain, by: victim, args: {domain: $victim}}
  - {op: create_domain, by: attacker, args: {kind: guest}, as: attacker}
  - {op: alloc_pages, by: attacker, args: {domain: $attacker, until: $pin}, as: frame}
  - {op: guess, by: attacker, args: {address: $frame, target: $line, prefix: "PIN:", digits: 8},
     as: found}
goal: {recovered: found}
trials: TRIALS
teaching: {summary: Every PIN of eight digits.}
"""
REFUSED = HEAVY.replace("TRIALS", "4")
"""Four trials of the heavy guess: over the cost bound, refused when it loads."""
HEAVY = HEAVY.replace("TRIALS", "3")


@dataclass
class Graded:
    base: Path
    out: Path
    key_file: Path
    entries: list[str]
    students: dict[str, str]
    """Entry -> the student it is for (the one it claims)."""
    rows: dict[str, dict[str, Any]]
    """Entry -> its gradebook row."""
    stdout: str
    max_points: int
    auto_tasks: list[str]


def grade(base: Path, *args: str, folder: str = CLASS, out: str = "grades",
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "testbed", "lab", "grade", folder, "--class-key",
               "class.key", "--out", out, *args]
    done = subprocess.run(command, cwd=base, capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, "MPLCONFIGDIR": str(base / "mpl")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def gradebook(path: Path) -> list[dict[str, Any]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def make_student(folder: Path, student: str, key: bytes | None = CLASS_KEY) -> None:
    loaded = load_lab(EVERY_KIND)
    instance = derive_for(loaded, student, key)
    start(loaded, instance, folder, render_handout(instance, loaded.lab))
    fill_folder(folder, loaded, instance)


def write_submission(folder: Path) -> Path:
    """``submission.json`` of a student's folder, as ``lab check`` writes it."""
    loaded = load_lab(EVERY_KIND)
    record = read_json(folder / ".lab/instance.json")
    instance = derive_for(loaded, record["student"])
    answers = read_answers(folder, loaded.lab)
    results = check(instance, answers)
    submission = Submission(loaded.lab.id, instance.student, instance.fingerprint, False,
                            answers)
    return write_submission_file(folder, submission, [r.to_json() for r in results])


def make_class(base: Path) -> dict[str, str]:
    """The class folder; returns entry -> student claimed."""
    (base / "class.key").write_bytes(CLASS_KEY + b"\n")
    (base / "class.key").chmod(0o600)
    root = base / CLASS
    root.mkdir()
    students = {}
    for student in ("s1", "s2", "s4", "h-link", "h-buildlink", "h-huge", "h-malformed",
                    "h-refused"):
        make_student(root / student, student)
        students[student] = student
    make_student(root / "p1", "p1", None)  # a practice instance, handed in as it is
    students["p1"] = "p1"
    # s3 hands in submission.json only.
    make_student(base / "s3", "s3")
    shutil.copy(write_submission(base / "s3"), root / "s3.json")
    students["s3.json"] = "s3"
    # s4: one wrong answer.
    answers = (root / "s4/answers.yaml").read_text()
    (root / "s4/answers.yaml").write_text(re.sub(r"(?m)^why: .*$", "why: a", answers))
    # Links out of the submission.
    (root / "h-link/answers.yaml").unlink()
    (root / "h-link/answers.yaml").symlink_to("/etc/passwd")
    (root / "h-buildlink" / build_file(BUILD)).unlink()
    (root / "h-buildlink" / build_file(BUILD)).symlink_to("/etc/passwd")
    # A file over the limit, and one that is not YAML.
    answers = (root / "h-huge/answers.yaml").read_text()
    (root / "h-huge/answers.yaml").write_text(
        re.sub(r"(?m)^essay: .*$", "essay: " + "x" * (MAX_FILE_BYTES + 10), answers))
    with open(root / "h-malformed/answers.yaml", "a", encoding="utf-8") as handle:
        handle.write("code: [1\n")
    (root / "h-refused" / build_file(BUILD)).write_text(REFUSED)
    # Files that are not submissions of this lab, and two for one student.
    (root / "notjson.json").write_text("{not json")
    students["notjson.json"] = ""
    other = {"format": 1, "lab": "direct-map", "student": "h-other", "fingerprint": "0" * 16,
             "practice": False, "answers": {}, "builds": {}}
    (root / "otherlab.json").write_text(json.dumps(other))
    students["otherlab.json"] = "h-other"
    s1 = read_json(root / "s1/.lab/instance.json")
    again = {"format": 1, "lab": "every-kind", "student": "s1",
             "fingerprint": s1["fingerprint"], "practice": False, "answers": {"why": "b"},
             "builds": {}}
    (root / "s1-again.json").write_text(json.dumps(again))
    students["s1-again.json"] = "s1"
    formula = {**again, "student": "h-formula",
               "fingerprint": derive_for(load_lab(EVERY_KIND), "h-formula").fingerprint}
    (root / "=1+2.json").write_text(json.dumps(formula))
    students["=1+2.json"] = "h-formula"
    return students


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Graded:
    base = tmp_path_factory.mktemp("class")
    students = make_class(base)
    done = grade(base, "--lab", str(EVERY_KIND), "--jobs", "2")
    out = base / "grades"
    rows = {r["submission"].removeprefix("'"): r for r in gradebook(out / "gradebook.csv")}
    lab = load_lab(EVERY_KIND).lab
    auto = [t.id for t in lab.tasks if not (isinstance(t, Explain) and not t.checked)]
    return Graded(base, out, base / "class.key", sorted(students), students, rows,
                  done.stdout, lab.max_points, auto)


def points(row: dict[str, Any], task: str) -> float:
    return float(row[task])


def max_of(task: str) -> int:
    return next(t.points for t in load_lab(EVERY_KIND).lab.tasks if t.id == task)


def test_one_row_per_submission(graded: Graded) -> None:
    assert sorted(graded.rows) == graded.entries
    assert len(gradebook(graded.out / "gradebook.csv")) == len(graded.entries)
    for entry, row in graded.rows.items():
        assert row["student"] == graded.students[entry], entry
        assert float(row["max_points"]) == graded.max_points
    assert f"{len(graded.entries)} submissions graded" in graded.stdout


@pytest.mark.parametrize(("entry", "expected"), [("s1", 18), ("s2", 18), ("s3.json", 18),
                                                 ("s4", 16)])
def test_the_other_submissions_are_graded_normally(graded: Graded, entry: str,
                                                   expected: float) -> None:
    assert graded.max_points == 18
    row = graded.rows[entry]
    assert float(row["points"]) == expected, row
    assert float(row["to_read"]) == 1  # the essay


WRONG_FOR_ALL = ["predict-leak", "code", "guesses", "smallest-secret", "why"]


@pytest.mark.parametrize(("entry", "zeroed"), [
    ("h-link", WRONG_FOR_ALL),
    ("h-huge", WRONG_FOR_ALL),
    ("h-malformed", WRONG_FOR_ALL),
    ("h-buildlink", [BUILD]),
    ("h-refused", [BUILD]),
    ("s4", ["why"]),
    ("notjson.json", [*WRONG_FOR_ALL, BUILD]),
    ("otherlab.json", [*WRONG_FOR_ALL, BUILD]),
])
def test_a_bad_part_costs_only_its_tasks(graded: Graded, entry: str, zeroed: list[str]) -> None:
    row = graded.rows[entry]
    for task in graded.auto_tasks:
        if task in zeroed:
            assert points(row, task) == 0, (task, row)
        else:
            assert points(row, task) == max_of(task), (task, row)


@pytest.mark.parametrize(("entry", "reason"), [
    ("notjson.json", "not JSON"),
    ("otherlab.json", "for lab direct-map, not every-kind"),
    ("s1", "2 submissions claim student s1"),
    ("s1-again.json", "2 submissions claim student s1"),
    ("p1", "another instance"),
    ("h-link", "symbolic link"),
    ("h-buildlink", "symbolic link"),
    ("h-huge", "the limit is"),
    ("h-malformed", "answers.yaml:"),
])
def test_each_problem_is_noted_for_its_submission(graded: Graded, entry: str,
                                                  reason: str) -> None:
    """The reason is in the submission's gradebook row, or in what its student reads (the
    Gradescope output of the submission or of one of its tasks)."""

    def noted(row_entry: str) -> bool:
        if reason in graded.rows[row_entry]["notes"]:
            return True
        student = graded.students[row_entry]
        results = graded.out / "gradescope" / student / "results.json"
        if not student or not results.is_file():
            return False
        doc = read_json(results)
        return any(reason in text for text in
                   [doc["output"], *(t["output"] for t in doc["tests"])])

    assert noted(entry), graded.rows[entry]
    # No other submission is noted for it, but the other hostile ones (a link in answers.yaml
    # is a link and an answers.yaml problem alike).
    others = [e for e in graded.rows if e != entry and noted(e) and not e.startswith("h-")]
    assert set(others) <= {"s1", "s1-again.json"}, others


def test_a_build_over_the_cost_bound_is_refused_with_its_reason(graded: Graded) -> None:
    result = read_json(graded.out / "gradescope/h-refused/results.json")
    test = next(t for t in result["tests"] if t["name"].startswith(BUILD))
    assert test["score"] == 0
    assert "does not load" in test["output"] and "over the limit" in test["output"]


def test_the_gradebook_neutralises_formula_cells(graded: Graded) -> None:
    raw = (graded.out / "gradebook.csv").read_text(encoding="utf-8")
    for row in csv.reader(io.StringIO(raw)):
        for cell in row:
            assert not cell.startswith(FORMULA), (cell, row)
    assert graded.rows["=1+2.json"]["submission"] == "'=1+2.json"
    assert graded.rows["notjson.json"]["notes"].startswith("'=class/notjson.json: not JSON")


def test_junit_xml_has_a_suite_per_submission_and_a_case_per_task(graded: Graded) -> None:
    root = ET.parse(graded.out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == len(graded.entries)
    tasks = [t.id for t in load_lab(EVERY_KIND).lab.tasks]
    for suite in suites:
        assert [c.get("name") for c in suite.findall("testcase")] == tasks
        assert int(suite.get("tests", "-1")) == len(tasks)
    s1 = next(s for s in suites if s.get("name") == "s1" and s.get("failures") == "0")
    assert s1.get("errors") == "0" and s1.get("skipped") == "1"


def test_gradescope_results_have_the_autograder_keys(graded: Graded) -> None:
    students = {s for s in graded.students.values() if s}
    folders = {p.name for p in (graded.out / "gradescope").iterdir()}
    # Two submissions claim s1: neither takes s1's pages, each has its own name.
    assert folders == (students - {"s1"}) | {"s1--s1", "s1--s1-again"}
    for student in folders:
        result = read_json(graded.out / "gradescope" / student / "results.json")
        assert isinstance(result["score"], int | float)
        assert result["tests"], student
        for test in result["tests"]:
            assert isinstance(test["name"], str) and test["name"]
            assert isinstance(test["score"], int | float)
            assert isinstance(test["max_score"], int | float)
            assert 0 <= test["score"] <= test["max_score"]
        assert result["score"] == pytest.approx(sum(t["score"] for t in result["tests"]))
    s2 = read_json(graded.out / "gradescope/s2/results.json")
    assert s2["score"] == 18


def test_feedback_pages_and_the_class_page(graded: Graded) -> None:
    index = (graded.out / "index.html").read_text(encoding="utf-8")
    for student in {s for s in graded.students.values() if s} - {"s1"}:
        page = graded.out / "feedback" / f"{student}.html"
        assert page.is_file(), student
        assert f'href="feedback/{student}.html"' in index
    assert "<script" not in index
    s4 = (graded.out / "feedback/s4.html").read_text(encoding="utf-8")
    assert "16 of 18 points" in s4


def test_two_submissions_for_one_student_keep_a_page_each(graded: Graded) -> None:
    index = (graded.out / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'href="([^"]+)">s1<', index)
    assert len(links) == 2 and links[0] != links[1], links


def test_the_class_key_is_in_no_grading_output(graded: Graded) -> None:
    secrets = [CLASS_KEY, CLASS_KEY.hex().encode(), CLASS_KEY.upper()]
    files = [p for p in graded.out.rglob("*") if p.is_file()]
    assert any(p.parent.name == ".grading" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not any(s in data for s in secrets), path
    # Nor in what a student hands in.
    assert not any(s in (graded.base / CLASS / "s3.json").read_bytes() for s in secrets)


def test_grading_again_keeps_every_result(graded: Graded) -> None:
    before = (graded.out / "gradebook.csv").read_bytes()
    kept = sorted((graded.out / ".grading").glob("*.json"))
    done = grade(graded.base, "--lab", str(EVERY_KIND), "--jobs", "2")
    assert f"({len(kept)} kept from an earlier run)" in done.stdout, done.stdout
    assert (graded.out / "gradebook.csv").read_bytes() == before
    assert sorted((graded.out / ".grading").glob("*.json")) == kept


def _children_of_run(out: Path) -> list[int]:
    """The ``lab grade-one`` processes that write into ``out`` (found by their arguments)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"grade-one" in args and any(str(out).encode() in a for a in args):
            found.append(int(entry.name))
    return found


@dataclass
class Resumed:
    out: Path
    first: list[Path]
    stdout: str


@pytest.fixture(scope="module")
def resumed(graded: Graded) -> Iterator[Resumed]:
    """A grading run into another folder, killed (SIGKILL) once its first result is kept,
    then run again to the end."""
    out = graded.base / "killed"
    command = [sys.executable, "-m", "testbed", "lab", "grade", CLASS, "--class-key",
               "class.key", "--out", out.name, "--lab", str(EVERY_KIND), "--jobs", "1"]
    proc = subprocess.Popen(command, cwd=graded.base, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "MPLCONFIGDIR": str(graded.base / "mpl")})
    try:
        deadline = time.monotonic() + 120
        while not list((out / ".grading").glob("*.json")):
            assert proc.poll() is None, "the grading run ended before its first result"
            assert time.monotonic() < deadline, "no result kept within 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pid in _children_of_run(out):  # the children live in sessions of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    first = sorted((out / ".grading").glob("*.json"))
    assert not (out / "gradebook.csv").exists(), "killed after it finished"
    done = grade(graded.base, "--lab", str(EVERY_KIND), "--jobs", "2", out=out.name)
    yield Resumed(out, first, done.stdout)


def test_a_killed_grading_resumes_to_the_same_gradebook(graded: Graded,
                                                        resumed: Resumed) -> None:
    assert resumed.first
    assert f"({len(resumed.first)} kept from an earlier run)" in resumed.stdout
    assert (resumed.out / "gradebook.csv").read_bytes() == \
        (graded.out / "gradebook.csv").read_bytes()
    kept = {p.name for p in (resumed.out / ".grading").glob("*.json")}
    assert kept == {p.name for p in (graded.out / ".grading").glob("*.json")}


def test_a_killed_grading_leaves_no_scratch_behind(resumed: Resumed) -> None:
    left = [p.name for p in (resumed.out / ".grading").iterdir() if not p.name.endswith(
        ".json")]
    assert left == []


@pytest.fixture(scope="module")
def timed_out(graded: Graded) -> Graded:
    """Two submissions graded with a small --timeout: a right one, and one whose build runs
    far longer."""
    base = graded.base / "timeout"
    base.mkdir()
    shutil.copy(graded.key_file, base / "class.key")
    shutil.copytree(graded.base / CLASS / "s2", base / "subs" / "s2", symlinks=True)
    make_student(base / "subs" / "h-heavy", "h-heavy")
    (base / "subs" / "h-heavy" / build_file(BUILD)).write_text(HEAVY)
    t0 = time.monotonic()
    done = grade(base, "--lab", str(EVERY_KIND), "--jobs", "2", "--timeout",
                 str(HEAVY_TIMEOUT_S), folder="subs")
    assert time.monotonic() - t0 < 60
    rows = {r["submission"]: r for r in gradebook(base / "grades" / "gradebook.csv")}
    return Graded(base, base / "grades", base / "class.key", sorted(rows),
                  {e: r["student"] for e, r in rows.items()}, rows, done.stdout,
                  graded.max_points, graded.auto_tasks)


def test_a_build_past_the_time_limit_costs_only_the_build(timed_out: Graded) -> None:
    ok, heavy = timed_out.rows["s2"], timed_out.rows["h-heavy"]
    assert float(ok["points"]) == 18, ok
    limit = f"time limit of {HEAVY_TIMEOUT_S:g} s exceeded"
    assert limit in heavy["notes"], heavy
    assert points(heavy, BUILD) == 0
    assert float(heavy["points"]) == 18 - max_of(BUILD), heavy
    result = read_json(timed_out.out / "gradescope/h-heavy/results.json")
    build = next(t for t in result["tests"] if t["name"].startswith(BUILD))
    assert limit in build["output"]
    # A grade the check did not finish is not kept: the next run tries it again.
    assert len(list((timed_out.out / ".grading").glob("*.json"))) == 1


def test_the_heavy_build_is_accepted_by_the_loader() -> None:
    """The timeout test's build is one the cost bound lets through (so the time limit, not
    the loader, stops it), and the refused one is not."""
    heavy = validate_document(Scenario, *read_document("heavy.yaml", raw=HEAVY.encode()))
    assert heavy.job_units() is not None
    with pytest.raises(ScenarioError, match="over the limit"):
        validate_document(Scenario, *read_document("refused.yaml", raw=REFUSED.encode()))


def test_grading_finds_a_shipped_lab_from_the_submissions(tmp_path: Path) -> None:
    """Without --lab, the shipped lab the submissions name is graded."""
    (tmp_path / "class.key").write_bytes(CLASS_KEY)
    loaded = load_lab("direct-map")
    for student in ("d1", "d2"):
        instance = derive_for(loaded, student)
        folder = tmp_path / "subs" / student
        start(loaded, instance, folder, render_handout(instance, loaded.lab))
        fill_folder(folder, loaded, instance)
    done = grade(tmp_path, "--jobs", "2", folder="subs")
    rows = gradebook(tmp_path / "grades" / "gradebook.csv")
    assert [(r["student"], float(r["points"])) for r in rows] == [
        ("d1", loaded.lab.max_points), ("d2", loaded.lab.max_points)]
    assert "2 submissions graded" in done.stdout
