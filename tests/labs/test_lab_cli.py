"""The student's and the teacher's commands on the direct-map lab: ``testbed lab keygen``,
``start``, ``check``, ``hint``, ``list``, with their exit statuses (0 done or every checked
task passed, 2 some task not passed yet, 1 bad input with one ``error:`` line)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _support.labs import CLASS_KEY, fill_folder, read_json
from click.testing import CliRunner, Result

from testbed.cli import main
from testbed.errors import ConfigError
from testbed.labs import answer_key, derive, lab_ids, load_lab, read_class_key
from testbed.labs.model import Explain, choice_digest
from testbed.labs.pages import render_handout
from testbed.labs.workspace import start as make_folder

LAB = "direct-map"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_error(result: Result) -> str:
    """The one ``error:`` line of a refused command (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(autouse=True)
def _mpl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "class.key"
    path.write_bytes(CLASS_KEY + b"\n")
    path.chmod(0o600)
    return path


def started(tmp_path: Path, key_file: Path, student: str = "s1") -> Path:
    folder = tmp_path / f"{LAB}-{student}"
    result = invoke("lab", "start", LAB, "--student", student, "--class-key", str(key_file),
                    "--dir", str(folder))
    assert result.exit_code == 0, result.output
    return folder


def test_list_names_every_shipped_lab() -> None:
    result = invoke("lab", "list")
    assert result.exit_code == 0, result.output
    for lab_id in lab_ids():
        assert any(line.startswith(lab_id) for line in result.output.splitlines()), lab_id
    assert f"{len(lab_ids())} labs" in result.output


def test_keygen_writes_a_private_key_and_never_overwrites_one(tmp_path: Path) -> None:
    path = tmp_path / "class.key"
    result = invoke("lab", "keygen", str(path))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_class_key(path)
    assert len(key) == 64 and int(key, 16) >= 0
    before = path.read_bytes()
    line = one_error(invoke("lab", "keygen", str(path)))
    assert "exists" in line and "never overwritten" in line
    assert path.read_bytes() == before
    # Two keys differ.
    other = tmp_path / "other.key"
    assert invoke("lab", "keygen", str(other)).exit_code == 0
    assert read_class_key(other) != key


def test_start_makes_the_whole_folder(tmp_path: Path, key_file: Path) -> None:
    folder = started(tmp_path, key_file)
    loaded = load_lab(LAB)
    instance = derive(loaded.lab, "s1", CLASS_KEY, loaded.bases)
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    scenarios = [f"scenarios/{n:02d}-{sid}.yaml" for n, sid in
                 enumerate(instance.documents, 1)]
    assert names == sorted([".lab/instance.json", ".lab/lab.yaml", "answers.yaml",
                            "handout.html", *scenarios])
    record = read_json(folder / ".lab/instance.json")
    assert record["student"] == "s1" and record["lab"] == LAB and not record["practice"]
    assert (record["seed"], record["fingerprint"], record["values"]) == (
        instance.seed, instance.fingerprint, instance.values)
    # The lab as the checks read it, but for its multiple choices: their answers are digests.
    copy = load_lab(folder / ".lab/lab.yaml").lab
    assert [t.id for t in copy.tasks] == [t.id for t in loaded.lab.tasks]
    for mine, theirs in zip(copy.tasks, loaded.lab.tasks, strict=True):
        if isinstance(theirs, Explain) and theirs.checked:
            assert isinstance(mine, Explain) and mine.answer is None
            assert mine.answer_digest == choice_digest(LAB, theirs.id, theirs.answer or 0,
                                                       instance.fingerprint)
        else:
            assert mine == theirs
    assert "answer:" not in (folder / ".lab/lab.yaml").read_text()
    # The instance's scenarios, but a predicted one without its expected outcomes.
    predicted = {t.scenario for t in loaded.lab.tasks if t.kind == "predict"}
    for name, (sid, doc) in zip(scenarios, instance.documents.items(), strict=True):
        written = yaml.safe_load((folder / name).read_text())
        assert ("expect" in written) == ("expect" in doc and sid not in predicted), sid
        assert written == {k: v for k, v in doc.items() if k != "expect" or sid not in predicted}
    template = yaml.safe_load((folder / "answers.yaml").read_text())
    assert list(template) == [t.id for t in loaded.lab.tasks]
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_start_refuses_an_existing_folder(tmp_path: Path, key_file: Path) -> None:
    folder = started(tmp_path, key_file)
    (folder / "answers.yaml").write_text("why-tme: b\n")
    line = one_error(invoke("lab", "start", LAB, "--student", "s1", "--class-key",
                            str(key_file), "--dir", str(folder)))
    assert "exists" in line
    assert (folder / "answers.yaml").read_text() == "why-tme: b\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error(invoke("lab", "start", LAB, "--student", "s2", "--dir", str(empty)))
    assert list(empty.iterdir()) == []


def test_start_refuses_a_malformed_student_id_or_key(tmp_path: Path, key_file: Path) -> None:
    line = one_error(invoke("lab", "start", LAB, "--student", "=cmd", "--dir",
                            str(tmp_path / "x")))
    assert "student id" in line
    short = tmp_path / "short.key"
    short.write_text("abc\n")
    assert "16" in one_error(invoke("lab", "start", LAB, "--student", "s1", "--class-key",
                                    str(short), "--dir", str(tmp_path / "y")))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_start_killed_half_way_leaves_no_folder(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_lab(LAB)
    instance = derive(loaded.lab, "s1", CLASS_KEY, loaded.bases)
    workspace = sys.modules["testbed.labs.workspace"]
    calls = []

    def failing_dump(doc: object) -> str:
        calls.append(doc)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(workspace, "_dump", failing_dump)
    target = tmp_path / "folder"
    with pytest.raises(ConfigError, match="No space left"):
        make_folder(loaded, instance, target, render_handout(instance, loaded.lab))
    assert calls, "the scenario files were not written"
    assert list(tmp_path.iterdir()) == []


def test_check_exit_status_follows_the_answers(tmp_path: Path, key_file: Path) -> None:
    folder = started(tmp_path, key_file)
    fresh = invoke("lab", "check", "--dir", str(folder), "--jobs", "1")
    assert fresh.exit_code == 2, fresh.output
    assert "missing" in fresh.output and "0 of 15 points" in fresh.output
    loaded = load_lab(LAB)
    instance = derive(loaded.lab, "s1", CLASS_KEY, loaded.bases)
    fill_folder(folder, loaded, instance)
    done = invoke("lab", "check", "--dir", str(folder), "--jobs", "1")
    assert done.exit_code == 0, done.output
    assert f"{loaded.lab.max_points} of {loaded.lab.max_points} points" in done.output
    submission = read_json(folder / "submission.json")
    assert submission["lab"] == LAB and submission["student"] == "s1"
    assert submission["fingerprint"] == instance.fingerprint
    answers = yaml.safe_load((folder / "answers.yaml").read_text())
    assert submission["answers"] == answers
    assert all(r["status"] in ("passed", "manual") for r in submission["self_check"])
    # One wrong answer: not yet (2), and the submission says so.
    answers["why-tme"] = "a"
    (folder / "answers.yaml").write_text(yaml.safe_dump(answers))
    wrong = invoke("lab", "check", "--dir", str(folder), "--jobs", "1")
    assert wrong.exit_code == 2, wrong.output
    statuses = {r["task"]: r["status"] for r in read_json(folder / "submission.json")[
        "self_check"]}
    assert statuses["why-tme"] == "failed" and statuses["predict-leak"] == "passed"


def test_check_refuses_a_folder_that_is_not_a_lab_folder(tmp_path: Path) -> None:
    assert "not a lab folder" in one_error(invoke("lab", "check", "--dir", str(tmp_path)))
    (tmp_path / ".lab").mkdir()
    (tmp_path / ".lab/instance.json").write_text("{not json")
    assert "not a lab folder" in one_error(invoke("lab", "check", "--dir", str(tmp_path)))


def test_check_refuses_a_tampered_instance_record(tmp_path: Path, key_file: Path) -> None:
    folder = started(tmp_path, key_file)
    record = read_json(folder / ".lab/instance.json")
    record["values"] = {"digits": 5}  # not one of the lab's values
    (folder / ".lab/instance.json").write_text(json.dumps(record))
    assert "not an instance" in one_error(invoke("lab", "check", "--dir", str(folder)))


def test_check_of_malformed_answers_is_one_error_line(tmp_path: Path, key_file: Path) -> None:
    folder = started(tmp_path, key_file)
    (folder / "answers.yaml").write_text('why-tme: b\ncode: "123\n')
    line = one_error(invoke("lab", "check", "--dir", str(folder), "--jobs", "1"))
    assert "answers.yaml:2:" in line or "answers.yaml:3:" in line


def test_check_of_malformed_answers_names_the_line_without_a_traceback(
        tmp_path: Path, key_file: Path) -> None:
    """What the command does today with a malformed answers.yaml: every answer of the file is
    lost with the file's own error, the line named, no traceback."""
    folder = started(tmp_path, key_file)
    (folder / "answers.yaml").write_text("why-tme: b\ncode: [1\n")
    result = invoke("lab", "check", "--dir", str(folder), "--jobs", "1")
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "answers.yaml:" in result.output and "invalid YAML" in result.output


def test_check_in_a_subprocess_has_no_traceback(tmp_path: Path, key_file: Path) -> None:
    folder = started(tmp_path, key_file)
    (folder / ".lab/instance.json").write_text("[]")
    done = subprocess.run([sys.executable, "-m", "testbed", "lab", "check", "--dir",
                           str(folder)], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "MPLCONFIGDIR": str(tmp_path)})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


def test_hint_shows_the_hints_in_order(tmp_path: Path, key_file: Path) -> None:
    folder = started(tmp_path, key_file)
    task = next(t for t in load_lab(LAB).lab.tasks if len(t.hints) >= 2)
    shown = []
    for _ in range(len(task.hints) + 1):
        result = invoke("lab", "hint", task.id, "--dir", str(folder))
        assert result.exit_code == 0, result.output
        shown.append(result.output.strip())
    n = len(task.hints)
    expected = [f"hint {i}/{n}: {h.strip()}" for i, h in enumerate(task.hints, 1)]
    assert [" ".join(s.split()) for s in shown[:n]] == [" ".join(e.split()) for e in expected]
    # Asked again, the last hint stays the last, and says so.
    assert shown[n] == shown[n - 1] + " (no more hints)"
    state = read_json(folder / ".lab/state.json")
    assert state[task.id]["hints"] == n
    bare = next((t for t in load_lab(LAB).lab.tasks if not t.hints), None)
    if bare is not None:
        result = invoke("lab", "hint", bare.id, "--dir", str(folder))
        assert result.exit_code == 0 and "no hints" in result.output
    assert "no task" in one_error(invoke("lab", "hint", "no-such-task", "--dir", str(folder)))


def test_the_same_wrong_answer_again_is_not_a_new_try(tmp_path: Path, key_file: Path) -> None:
    folder = started(tmp_path, key_file)
    (folder / "answers.yaml").write_text("why-tme: a\n")
    task = next(t for t in load_lab(LAB).lab.tasks if t.id == "why-tme")
    first = invoke("lab", "check", "--dir", str(folder), "--jobs", "1")
    assert first.exit_code == 2
    assert f"hint 1/{len(task.hints)}" in first.output
    # The same wrong answer again is not a new try: no further hint.
    again = invoke("lab", "check", "--dir", str(folder), "--jobs", "1")
    assert read_json(folder / ".lab/state.json")["why-tme"]["tries"] == 1
    assert f"hint 1/{len(task.hints)}" in again.output


def test_the_code_read_in_the_students_own_report_is_the_one_checked(tmp_path: Path,
                                                                     key_file: Path) -> None:
    """The student's way: run the instance, read the code in report/results.json, answer."""
    folder = started(tmp_path, key_file)
    ran = invoke("lab", "run", "--dir", str(folder), "--jobs", "1")
    assert ran.exit_code == 0, ran.output
    rows = read_json(folder / "report" / "results.json")["results"]
    row = next(r for r in rows if r["scenario"] == "kernel-map-leak" and r["engine"] == "tme")
    code = bytes.fromhex(row["evidence"]["recovered"]).decode().removeprefix("PIN:")
    assert code.isdigit()
    (folder / "answers.yaml").write_text(f'pin: "{code}"\n')
    done = invoke("lab", "check", "--dir", str(folder), "--jobs", "1")
    statuses = {r["task"]: r["status"] for r in read_json(folder / "submission.json")[
        "self_check"]}
    assert statuses["pin"] == "passed", done.output
    # The teacher's key of the same student agrees.
    loaded = load_lab(LAB)
    key = answer_key(derive(loaded.lab, "s1", CLASS_KEY, loaded.bases), loaded.solutions)
    assert next(e.answer for e in key if e.task == "pin") == code
