"""Hostile and odd input against the lab commands, each found once to break something: a
package standing in for the testbed in the folder graded from, text that is not valid
Unicode, deep JSON, huge numbers, a repeated engine, a damaged state file, a download folder
full of ``submission (N).json``, submissions that disagree on their lab, a build that meets
its limits by doing nothing, unquoted hex and PIN answers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from _support.labs import CLASS_KEY, EVERY_KIND, derive_for, fill_folder, read_json
from click.testing import CliRunner

from testbed.cli import main
from testbed.errors import ScenarioError
from testbed.labs import Answers, check, load_lab
from testbed.labs.check import Status
from testbed.labs.grade import submissions_in
from testbed.labs.pages import render_handout
from testbed.labs.workspace import SUBMISSION, read_answers, start

LAB = "direct-map"


def _folder(base: Path, student: str, lab: str | Path = LAB) -> Path:
    loaded = load_lab(lab)
    instance = derive_for(loaded, student)
    folder = base / student
    start(loaded, instance, folder, render_handout(instance, loaded.lab))
    fill_folder(folder, loaded, instance)
    return folder


def _grade(base: Path, folder: str, *args: str, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    key = base / "class.key"
    key.write_bytes(CLASS_KEY)
    # -P: the grading command itself is the installed one (as the testbed command runs it),
    # whatever the folder it is started from holds.
    return subprocess.run([sys.executable, "-P", "-m", "testbed", "lab", "grade",
                           str(base / folder),
                           "--class-key", str(key), "--out", str(base / "grades"), "--jobs", "2",
                           *args], capture_output=True, text=True, timeout=300, check=False,
                          cwd=cwd or base)


def _rows(base: Path) -> dict[str, dict[str, str]]:
    import csv

    with open(base / "grades" / "gradebook.csv", newline="", encoding="utf-8") as handle:
        return {r["submission"]: r for r in csv.DictReader(handle)}


def test_a_package_among_the_submissions_cannot_stand_in_for_the_testbed(tmp_path: Path
                                                                          ) -> None:
    subs = tmp_path / "subs"
    _folder(subs, "alice")
    fake = subs / "testbed"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    leak = tmp_path / "leaked"
    (fake / "__main__.py").write_text(
        "import sys\n"
        f"open({str(leak)!r}, 'w').write(' '.join(sys.argv))\n")
    # Graded from inside the submissions folder: its testbed/ is what -m would find first.
    done = _grade(tmp_path, "subs", "--lab", LAB, cwd=subs)
    assert done.returncode == 0, done.stderr
    assert not leak.exists()
    assert float(_rows(tmp_path)["alice"]["points"]) == load_lab(LAB).lab.max_points


def test_text_that_is_not_valid_unicode_costs_nothing_but_itself(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    alice = _folder(subs, "alice")
    bob = _folder(subs, "bob")
    text = (bob / "answers.yaml").read_text()
    (bob / "answers.yaml").write_text(text.replace("Some written answer.",
                                                   '"\\ud800 and more"'))
    deep = subs / "deep.json"
    deep.write_text("[" * 100_000)
    done = _grade(tmp_path, "subs")
    assert done.returncode == 0, done.stderr
    rows = _rows(tmp_path)
    assert float(rows["alice"]["points"]) == float(rows["bob"]["points"]) == \
        load_lab(LAB).lab.max_points
    assert "not JSON" in rows["deep.json"]["notes"]
    page = (tmp_path / "grades" / "feedback" / "bob.html").read_text(encoding="utf-8")
    assert "\\ud800 and more" in page
    del alice


def test_a_number_too_large_to_compare_is_its_tasks_error(tmp_path: Path) -> None:
    loaded = load_lab(LAB)
    instance = derive_for(loaded, "s1")
    results = check(instance, Answers({"pin": "9" * 400}))
    code = next(r for r in results if r.task == "pin")
    assert code.status in (Status.FAILED, Status.ERROR)
    loaded_every = load_lab(EVERY_KIND)
    every = derive_for(loaded_every, "s1")
    measure = next(t for t in loaded_every.lab.tasks if t.kind == "measure"
                   and t.decode == "number")
    for huge in (10**400, "9" * 400, "1e999"):
        result = check(every, Answers({measure.id: huge}), only={measure.id})
        assert result[0].status in (Status.ERROR, Status.FAILED), (huge, result)
        assert result[0].status == Status.ERROR or huge == "9" * 400, (huge, result)


def test_a_repeated_engine_in_a_prediction_is_refused_when_the_lab_loads(tmp_path: Path
                                                                         ) -> None:
    text = (Path(load_lab(LAB).path)).read_text()
    bad = tmp_path / "lab.yaml"
    bad.write_text(text.replace("    scenario: kernel-map-leak\n    prompt: >\n      Before",
                                "    scenario: kernel-map-leak\n    engines: [tme, tme]\n"
                                "    prompt: >\n      Before", 1))
    with pytest.raises(ScenarioError) as caught:
        load_lab(bad)
    assert "engines" in caught.value.one_line() and "each engine once" in caught.value.one_line()


@pytest.mark.parametrize("state", ['{"pin": {"hints": "x"}}', '{"pin": []}',
                                   '{"pin": {"hints": 7, "tries": -3}}', "[1, 2]", "{"])
def test_a_damaged_state_file_starts_afresh(tmp_path: Path, state: str) -> None:
    folder = _folder(tmp_path, "s1")
    (folder / "answers.yaml").write_text("pin: '000'\n")
    (folder / ".lab" / "state.json").write_text(state)
    done = CliRunner().invoke(main, ["lab", "check", "--dir", str(folder), "--jobs", "1"])
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output
    hinted = CliRunner().invoke(main, ["lab", "hint", "pin", "--dir", str(folder)])
    assert hinted.exit_code == 0 and hinted.output.startswith("hint 1/1: "), hinted.output


def test_the_submission_file_gets_the_mode_of_a_new_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "s1")
    old = os.umask(0o022)
    try:
        CliRunner().invoke(main, ["lab", "check", "--dir", str(folder), "--jobs", "1"])
    finally:
        os.umask(old)
    assert stat.S_IMODE((folder / SUBMISSION).stat().st_mode) == 0o644


def test_a_download_folder_of_submission_files_is_graded_whole(tmp_path: Path) -> None:
    subs = tmp_path / "downloads"
    subs.mkdir()
    for n, student in enumerate(("alice", "bob", "carol")):
        folder = _folder(tmp_path / "work", student)
        CliRunner().invoke(main, ["lab", "check", "--dir", str(folder), "--jobs", "1"])
        name = SUBMISSION if not n else f"submission ({n}).json"
        (subs / name).write_bytes((folder / SUBMISSION).read_bytes())
    assert len(submissions_in(subs)) == 3
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / SUBMISSION).write_bytes((subs / SUBMISSION).read_bytes())
    assert submissions_in(lone) == [lone]


def test_submissions_that_disagree_on_their_lab_need_lab(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    _folder(subs, "alice")
    (subs / "0-mallory.json").write_text(json.dumps({"lab": "replay", "student": "mallory"}))
    done = _grade(tmp_path, "subs")
    assert done.returncode == 1
    assert "several labs" in done.stderr and "--lab" in done.stderr
    assert not (tmp_path / "grades").exists()


def test_a_build_that_does_nothing_earns_nothing_for_its_limits(tmp_path: Path) -> None:
    loaded = load_lab(EVERY_KIND)
    instance = derive_for(loaded, "s1")
    build = next(t for t in loaded.lab.tasks if t.kind == "build")
    idle = ("id: idle\ntitle: Does nothing\nthreat: []\n"
            "program:\n  - {op: create_domain, by: victim, args: {kind: guest}, as: v}\n"
            "goal: {denied: v}\nteaching: {summary: nothing}\n")
    result = check(instance, Answers(builds={build.id: idle}), only={build.id})[0]
    require = build.require
    met = sum(1 for accepted in require.outcomes.values() if "mitigated" in
              {o.value for o in accepted} or "blocked" in {o.value for o in accepted})
    # Only the outcome rules it meets by failing count; no limit does.
    assert result.points <= build.points * met / max(1, len(require.outcomes) + 1), result


def test_unquoted_hex_and_pin_answers_are_read_as_written(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "s1")
    (folder / "answers.yaml").write_text("pin: 0042\nwhy-tme: b\n")
    answers = read_answers(folder, load_lab(LAB).lab)
    assert answers.values["pin"] == "0042"
    (folder / "answers.yaml").write_text("pin: 0x0edf\n")
    assert read_answers(folder, load_lab(LAB).lab).values["pin"] == "0x0edf"


def test_grade_one_ends_when_its_parent_is_gone(tmp_path: Path) -> None:
    """The check a grading run starts watches that run: killed, the run leaves nothing."""
    loaded = load_lab(LAB)
    folder = _folder(tmp_path, "s1")
    CliRunner().invoke(main, ["lab", "check", "--dir", str(folder), "--jobs", "1"])
    key = tmp_path / "class.key"
    key.write_bytes(CLASS_KEY)
    script = (
        "import os, subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'testbed', 'lab', 'grade-one', '--lab', "
        f"{str(loaded.path)!r}, '--class-key', {str(key)!r}, '--submission', "
        f"{str(folder / SUBMISSION)!r}, '--result', {str(tmp_path / 'r.json')!r}, "
        "'--entry', 's1'], start_new_session=True, stdin=subprocess.PIPE)\n"
        "print(p.pid, flush=True)\n"
        "os._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    pid = int(done.stdout.split()[0])
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            if handle.read().split()[2] == "Z":
                return
        time.sleep(0.2)
    os.kill(pid, 9)
    pytest.fail("grade-one outlived its parent by 30 s")


def test_a_kept_grade_is_a_complete_one(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    _folder(subs, "alice")
    done = _grade(tmp_path, "subs")
    assert done.returncode == 0, done.stderr
    kept = list((tmp_path / "grades" / ".grading").glob("*.json"))
    assert len(kept) == 1
    doc = read_json(kept[0])
    assert {r["task"] for r in doc["results"]} == {t.id for t in load_lab(LAB).lab.tasks}
