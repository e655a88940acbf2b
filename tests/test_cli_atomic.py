"""A run is one unit: killed, interrupted or terminated at any moment, run twice at once, or
out of disk, it leaves the previous run's outputs and history or the new run's, never a mix;
and no worker outlives the command.

These tests start the real command (``python -m testbed._main``) and signal it at random
moments drawn from a seeded generator, so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from _support.paths import ROOT, SCENARIOS

CHEAP = ("01-kernel-map-leak.yaml", "03-freed-data-leak.yaml",
         "04-freed-data-leak-init-on-free.yaml")
"""Shipped scenarios that run in well under a second each."""


def _command(scenarios: Path, out: Path, seed: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "testbed._main", "run", str(scenarios), "--out", str(out),
            "--seed", str(seed), *extra]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONPATH": str(ROOT)}


@pytest.fixture()
def scenarios(tmp_path: Path) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for name in CHEAP:
        (folder / name).write_bytes((SCENARIOS / name).read_bytes())
    return folder


def published(out: Path) -> tuple[int, str] | None:
    """The (seed, started) of the run ``out`` holds, after checking that every file of it
    belongs to that one run; ``None`` when ``out`` holds no run."""
    if not out.exists():
        return None
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    seed, started = doc["run"]["seed"], doc["run"]["started"]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert f"<dd>{seed}</dd>" in index and f"<dd>{started}</dd>" in index
    ids = {r["scenario"] for r in doc["results"]}
    pages = {p.stem for p in (out / "scenarios").glob("*.html")}
    assert pages == ids
    for page in (out / "scenarios").glob("*.html"):
        assert f"seed {seed} &middot; {started}" in page.read_text(encoding="utf-8"), page
    csv_lines = (out / "results.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == 1 + len(doc["results"])
    return seed, started


def history(db: Path) -> list[tuple[int, str]]:
    """The (seed, started) of every run the history holds as published, oldest first: marked
    published, or pending in a folder that holds it (a run killed between the two steps).

    Read as the next run reads it: a run killed inside its transaction leaves a hot journal,
    which SQLite rolls back on the next open that may write (a read-only open refuses to)."""
    if not db.exists():
        return []
    with closing(sqlite3.connect(f"file:{db}?mode=rw", uri=True)) as conn:
        rows = list(conn.execute("SELECT id, seed, started, published, out_dir FROM runs "
                                 "ORDER BY id"))
    runs = []
    for run_id, seed, started, done, out_dir in rows:
        if not done:
            try:
                doc = json.loads((Path(out_dir) / "results.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if doc["run"].get("history_id") != run_id:
                continue
        runs.append((seed, started))
    return runs


def _consistent(out: Path) -> tuple[int, str] | None:
    """The run ``out`` holds, checked against the history's last published run."""
    run = published(out)
    runs = history(out / "history.sqlite")
    assert (runs[-1] if runs else None) == run, (runs[-3:], run)
    return run


def _wait_until_ours(process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until the command's own code runs: it catches SIGTERM from its first line, which
    the interpreter's start-up (site packages, before any of it) does not."""
    status = Path(f"/proc/{process.pid}/status")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            caught = next(line for line in status.read_text().splitlines()
                          if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            break
        if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)


def _first_run(scenarios: Path, out: Path, tmp_path: Path) -> float:
    t0 = time.monotonic()
    done = subprocess.run(_command(scenarios, out, 1, "--jobs", "1"), env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - t0


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_run_stopped_at_any_moment_leaves_the_old_run_or_the_new(
    signum: int, scenarios: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    duration = _first_run(scenarios, out, tmp_path)
    rng = random.Random(f"kill-{signum}")
    seen = {"old": 0, "new": 0}
    expected_status: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
    for trial in range(8):
        before = _consistent(out)
        seed = 100 + trial
        process = subprocess.Popen(_command(scenarios, out, seed, "--jobs", "1"),
                                   env=_env(tmp_path), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        _wait_until_ours(process)
        # Anywhere from the start to the end, more often late, where outputs are published.
        time.sleep(rng.uniform(0.0, 1.0) ** 0.5 * duration)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
        after = _consistent(out)
        assert after in (before, (seed, after and after[1])), (before, after)
        seen["new" if after != before else "old"] += 1
        if process.returncode in (130, 143):
            assert process.returncode == expected_status[signum]
        if signum != signal.SIGKILL:
            assert "Traceback" not in err, err
            # -signum: the signal came as the interpreter was exiting, after the run's own
            # code (shells report it as 128 + signum too).
            assert process.returncode in (0, expected_status[signum], -signum), err
    # Measured here: SIGKILL 4 old / 4 new, SIGINT 6 / 2, SIGTERM 6 / 2 (both states occur).
    assert sum(seen.values()) == 8


def test_an_interrupt_while_starting_exits_130_quietly(scenarios: Path, tmp_path: Path) -> None:
    # From the command's first line on (the interpreter's own start-up, before it, prints
    # its own error when interrupted): while numpy, pydantic and the registries load.
    for delay in (0.0, 0.01, 0.05, 0.1, 0.2):
        process = subprocess.Popen(_command(scenarios, tmp_path / "out", 1), env=_env(tmp_path),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_until_ours(process)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        assert process.returncode in (0, 130), err
        assert "Traceback" not in err, err


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_no_worker_outlives_the_command(signum: int, tmp_path: Path) -> None:
    out = tmp_path / f"out-{signum}-workers"
    process = subprocess.Popen(_command(SCENARIOS, out, 3, "--jobs", "2"), env=_env(tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(_processes_mentioning(str(out))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # the command and its two workers
    assert len(_processes_mentioning(str(out))) >= 3
    process.send_signal(signum)
    process.wait(timeout=60)
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(out)) == []


def test_two_runs_into_one_folder_at_once_each_publish_whole(
    scenarios: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _first_run(scenarios, out, tmp_path)
    for round_ in range(3):
        seeds = (200 + 2 * round_, 201 + 2 * round_)
        processes = [subprocess.Popen(_command(scenarios, out, seed, "--jobs", "1"),
                                      env=_env(tmp_path), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for seed in seeds]
        for process in processes:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err
        run = _consistent(out)
        assert run is not None and run[0] in seeds
        assert {s for s, _ in history(out / "history.sqlite")[-2:]} == set(seeds)
    leftovers = [p.name for p in tmp_path.iterdir() if ".staging-" in p.name or ".old-" in p.name]
    assert leftovers == []


# -- outputs that cannot be written: one line, exit 1, nothing touched -----------------------

def _invoke(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from testbed.cli import main

    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.lower().startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    return lines[0]


@pytest.mark.parametrize("where", ["proc", "file-parent", "file-itself", "junit-dir"])
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(
    where: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = {
        "proc": ["--out", "/proc/testbed-out"],
        "file-parent": ["--out", str(blocker / "out")],
        "file-itself": ["--out", str(blocker)],
        "junit-dir": ["--out", str(tmp_path / "out"), "--junit", str(tmp_path)],
    }[where]
    code, output = _invoke("run", str(SCENARIOS / CHEAP[0]), *args)
    assert code == 1, output
    line = _one_error_line(output)
    assert "runs" not in output.split(line)[0]  # refused before the progress bar
    assert blocker.read_text() == "x"
    assert not (tmp_path / "out" / "results.json").exists()


def _mount_tmpfs(path: Path, *options: str) -> None:
    """Mount a tmpfs at ``path``, or skip the test where this process may not mount."""
    path.mkdir(parents=True, exist_ok=True)
    done = None if os.geteuid() != 0 else subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
        capture_output=True)
    if done is None or done.returncode != 0:
        pytest.skip("mounting a tmpfs needs root and mount rights (not available here)")


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=3m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_leaves_the_previous_run_untouched(small_disk: Path) -> None:
    out = small_disk / "out"
    code, output = _invoke("run", str(SCENARIOS / CHEAP[0]), "--out", str(out), "--seed", "1",
                           "--jobs", "1")
    assert code == 0, output
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    # Fill the disk, leaving too little for the next run's report.
    filler = small_disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    filler_size = filler.stat().st_size
    os.truncate(filler, max(0, filler_size - 64 * 1024))
    code, output = _invoke("run", str(SCENARIOS), "--out", str(out), "--seed", "2",
                           "--jobs", "1")
    assert code == 1, output
    assert "No space left on device" in _one_error_line(output)
    after = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before
    assert [p.name for p in small_disk.iterdir() if ".staging-" in p.name] == []
    filler.unlink()
    code, output = _invoke("run", str(SCENARIOS / CHEAP[0]), "--out", str(out), "--seed", "3",
                           "--jobs", "1")
    assert code == 0, output
    run = published(out)
    assert run is not None and run[0] == 3


def test_a_read_only_mount_is_one_line(tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "size=1m", "ro")
    try:
        code, output = _invoke("run", str(SCENARIOS / CHEAP[0]), "--out", str(disk / "out"))
        assert code == 1, output
        assert "Read-only file system" in _one_error_line(output)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_mount_point_folder_is_published_in_place(tmp_path: Path) -> None:
    """A Docker volume cannot be renamed: the run is staged and locked inside it, and moved in
    entry by entry (a user's own file stays)."""
    out = tmp_path / "volume"
    _mount_tmpfs(out, "size=8m")
    try:
        (out / "keep.txt").write_text("mine")
        for seed in (1, 2):
            code, output = _invoke("run", str(SCENARIOS / CHEAP[0]), "--out", str(out),
                                   "--seed", str(seed), "--jobs", "1")
            assert code == 0, output
            run = _consistent(out)
            assert run is not None and run[0] == seed
        assert (out / "keep.txt").read_text() == "mine"
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock"]
        assert not list(tmp_path.glob(".volume.*"))  # nothing beside the mount point
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


@pytest.mark.parametrize("kind", ["folder", "mount point"])
def test_a_smaller_run_leaves_no_page_of_the_last_one(kind: str, scenarios: Path,
                                                      tmp_path: Path) -> None:
    """The folder holds one run: a run of one scenario after a run of three leaves that one
    scenario's page and data file, and an index with one row."""
    out = tmp_path / "out"
    if kind == "mount point":
        _mount_tmpfs(out, "size=8m")
    try:
        code, output = _invoke("run", str(scenarios), "--out", str(out), "--jobs", "1")
        assert code == 0, output
        assert len(list((out / "scenarios").glob("*.html"))) == len(CHEAP)
        code, output = _invoke("run", str(scenarios / CHEAP[1]), "--out", str(out),
                               "--seed", "2", "--jobs", "1")
        assert code == 0, output
        assert _consistent(out) is not None
        assert sorted(p.name for p in (out / "scenarios").iterdir()) == [
            "freed-data-leak.html", "freed-data-leak.json"]
        index = (out / "index.html").read_text(encoding="utf-8")
        assert index.count('<tr data-attack="') == 1
        assert (out / "glossary.html").is_file()
    finally:
        if kind == "mount point":
            subprocess.run(["umount", "-l", str(out)], check=False)


def test_the_current_folder_cannot_be_the_output_folder(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """It is replaced as a whole: the shell would be left in a deleted folder."""
    inner = tmp_path / "here"
    inner.mkdir()
    monkeypatch.chdir(inner)
    for out in (".", str(tmp_path)):
        code, output = _invoke("run", str(SCENARIOS / CHEAP[0]), "--out", out)
        assert code == 1, output
        assert "cannot be the current folder or hold it" in _one_error_line(output)
    assert list(inner.iterdir()) == []
