"""The history database is checked before anything is written to it, and a run is recorded all
or nothing: a refused file is left byte for byte as it was, a failed block leaves no run."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from _support.paths import TESTS
from _support.programs import leak
from _support.scenarios import run as run_one

from testbed.results import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    ResultRow,
    RunInfo,
    RunStore,
    StoreError,
    UnknownRun,
)
from testbed.types import Outcome

LAST_ID = 2**63 - 1
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL,
    seed INTEGER NOT NULL,
    version TEXT NOT NULL,
    profiles TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    results INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    scenario TEXT NOT NULL,
    attack TEXT NOT NULL,
    profile TEXT NOT NULL,
    engine TEXT NOT NULL,
    outcome TEXT NOT NULL,
    expected TEXT,
    reason TEXT NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, scenario, engine)
);
"""
"""The tables as the project wrote them before it marked its files (no application_id)."""


class Boom(Exception):
    """What a failed publish step raises in these tests."""


@pytest.fixture(scope="module")
def row() -> ResultRow:
    return run_one("program", "tme", id="t-kernel-map-leak", params=leak())


def info(seed: int = 1) -> RunInfo:
    return RunInfo(seed, "test", "2026-01-01T00:00:00+00:00", 1.5, ("tme",), 1)


def many(row: ResultRow, count: int) -> list[ResultRow]:
    return [dataclasses.replace(row, scenario=f"s{n}") for n in range(count)]


def marker(path: Path) -> tuple[int, int]:
    """``(application_id, user_version)`` of the file."""
    with closing(sqlite3.connect(path)) as db:
        return (db.execute("PRAGMA application_id").fetchone()[0],
                db.execute("PRAGMA user_version").fetchone()[0])


def sql(path: Path, script: str) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.executescript(script)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` with its bytes: nothing added, nothing changed."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def ids(store: RunStore) -> list[int]:
    return [r.id for r in store.runs()]


# Files that are not ours: each refused by every way in, and left as it was.

def text_file(path: Path, row: ResultRow) -> None:
    path.write_text("started,seed\n2026-01-01,1\n")


def corrupted(path: Path, row: ResultRow) -> None:
    store = RunStore(path)
    for seed in range(3):
        store.record(info(seed), many(row, 40))
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) % page == 0 and len(data) // page >= 6  # every page in use: no deletes
    middle = len(data) // page // 2 * page
    data[middle:middle + page] = b"\xff" * page
    path.write_bytes(bytes(data))


def foreign(path: Path, row: ResultRow) -> None:
    sql(path, "CREATE TABLE notes (x); PRAGMA user_version = 7;")


def foreign_application(path: Path, row: ResultRow) -> None:
    sql(path, "CREATE TABLE runs (id); PRAGMA application_id = 305419896;")


def our_tables_and_more(path: Path, row: ResultRow) -> None:
    sql(path, LEGACY_SCHEMA + "CREATE TABLE notes (x);")


def our_names_other_columns(path: Path, row: ResultRow) -> None:
    sql(path, "CREATE TABLE runs (id, started); CREATE TABLE results (run_id, x);")


def sqlite_without_tables(path: Path, row: ResultRow) -> None:
    sql(path, "CREATE TABLE t (x); DROP TABLE t;")
    assert path.stat().st_size > 0


def newer_schema(path: Path, row: ResultRow) -> None:
    RunStore(path).record(info(), [row])
    sql(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1};")


def marked_other_tables(path: Path, row: ResultRow) -> None:
    sql(path, f"CREATE TABLE notes (x); PRAGMA application_id = {APPLICATION_ID};"
              f"PRAGMA user_version = {SCHEMA_VERSION};")


FOREIGN_FILES: list[tuple[Callable[[Path, ResultRow], None], str]] = [
    (text_file, "not a SQLite database"),
    (corrupted, "database disk image is malformed ("),
    (foreign, "a SQLite database of another program (no memcrypt-testbed schema; user_version 7;"
              " tables: notes): refusing to write to it"),
    (foreign_application, "a SQLite database of another program (no memcrypt-testbed schema; "
                          "application_id 0x12345678; tables: runs): refusing to write to it"),
    (our_tables_and_more, "(no memcrypt-testbed schema; tables: notes, results, runs)"),
    (our_names_other_columns, "(no memcrypt-testbed schema; tables: results, runs)"),
    (sqlite_without_tables, "(no memcrypt-testbed schema; no tables): refusing to write to it"),
    (newer_schema, f"written by another memcrypt-testbed version (schema version "
                   f"{SCHEMA_VERSION + 1}; this one knows 1 to {SCHEMA_VERSION})"),
    (marked_other_tables, "marked as a memcrypt-testbed history, but its tables are not those "
                          f"of schema version {SCHEMA_VERSION}"),
]


@pytest.mark.parametrize(("make", "problem"), FOREIGN_FILES,
                         ids=[make.__name__ for make, _ in FOREIGN_FILES])
def test_a_file_that_is_not_our_history_is_refused_untouched(
        tmp_path: Path, row: ResultRow, make: Callable[[Path, ResultRow], None],
        problem: str) -> None:
    path = tmp_path / "h.sqlite"
    make(path, row)
    before = snapshot(tmp_path)
    for attempt in (lambda: RunStore.open(path), lambda: RunStore(path).record(info(), [row])):
        with pytest.raises(StoreError) as err:
            attempt()
        assert str(err.value).startswith(f"history database {path}: ")
        assert problem in str(err.value) and "\n" not in str(err.value)
        assert err.value.path == path
    with pytest.raises(StoreError) as err:
        RunStore.open(path, read_only=True)
    assert problem.replace("write to it", "read it") in str(err.value)
    assert snapshot(tmp_path) == before  # byte for byte, and no journal left beside it


def test_a_foreign_table_name_cannot_break_the_line(tmp_path: Path) -> None:
    sql(tmp_path / "h.sqlite", 'CREATE TABLE "two\nlines\x1b[2J" (x);')
    with pytest.raises(StoreError, match=r"tables: two\?lines\?\[2J\)") as err:
        RunStore.open(tmp_path / "h.sqlite")
    assert str(err.value).isprintable()


def test_more_than_five_foreign_tables_are_cut_short(tmp_path: Path) -> None:
    sql(tmp_path / "h.sqlite", "".join(f"CREATE TABLE t{n} (x);" for n in range(8)))
    with pytest.raises(StoreError, match=r"tables: t0, t1, t2, t3, t4, \.\.\.\)"):
        RunStore.open(tmp_path / "h.sqlite")


# Paths that are not files at all.

def test_a_directory_is_refused(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    path.mkdir()
    for read_only in (False, True):
        with pytest.raises(StoreError, match="h.sqlite: is a directory$"):
            RunStore.open(path, read_only=read_only)
    with pytest.raises(StoreError, match="is a directory"):
        RunStore(path).record(info(), [row])
    assert list(path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null on this system")
@pytest.mark.parametrize("link", [False, True], ids=["dev-null", "link-to-dev-null"])
def test_dev_null_is_refused(tmp_path: Path, row: ResultRow, link: bool) -> None:
    path = Path("/dev/null")
    if link:
        path = tmp_path / "h.sqlite"
        path.symlink_to("/dev/null")
    for read_only in (False, True):
        with pytest.raises(StoreError) as err:
            RunStore.open(path, read_only=read_only)
        assert str(err.value) == (f"history database {path}: not a regular file "
                                  "(a character device)")
    with pytest.raises(StoreError, match="not a regular file"):
        RunStore(path).record(info(), [row])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_being_opened(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    os.mkfifo(path)  # opening it would block: the check must not
    for read_only in (False, True):
        with pytest.raises(StoreError, match=r"not a regular file \(a FIFO\)$"):
            RunStore.open(path, read_only=read_only)
    with pytest.raises(StoreError, match=r"\(a FIFO\)"):
        RunStore(path).record(info(), [row])


def test_a_parent_that_is_a_file_is_refused(tmp_path: Path, row: ResultRow) -> None:
    (tmp_path / "out").write_text("not a folder")
    path = tmp_path / "out" / "deeper" / "h.sqlite"
    for read_only in (False, True):
        with pytest.raises(StoreError) as err:
            RunStore.open(path, read_only=read_only)
        assert str(err.value) == f"history database {path}: {tmp_path / 'out'} is not a folder"
    with pytest.raises(StoreError, match="is not a folder"):
        RunStore(path).record(info(), [row])
    assert (tmp_path / "out").read_text() == "not a folder"


# Permissions.

def test_a_read_only_file_is_refused_for_writing_and_still_read(tmp_path: Path,
                                                                row: ResultRow) -> None:
    """Refused by its mode bits, so also where the tests run as root (whom the kernel would
    let write): the owner made the history read-only, and it stays so."""
    path = tmp_path / "h.sqlite"
    RunStore(path).record(info(), [row])
    path.chmod(0o444)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as err:
        RunStore.open(path)
    assert str(err.value) == f"history database {path}: file is read-only"
    with pytest.raises(StoreError, match="file is read-only"):
        RunStore(path).record(info(2), [row])
    assert ids(RunStore.open(path, read_only=True)) == [1]
    assert snapshot(tmp_path) == before


def skip_if_permissions_are_ignored(tmp_path: Path) -> None:
    """Skip where a file's mode does not stop this process (root, CAP_DAC_OVERRIDE)."""
    probe = tmp_path / "probe"
    probe.touch(mode=0o000)
    try:
        if os.access(probe, os.R_OK) or os.access(probe, os.W_OK):
            pytest.skip("this process reads and writes files whatever their mode (root or "
                        "CAP_DAC_OVERRIDE): permissions have nothing to refuse")
    finally:
        probe.unlink()


def test_a_folder_without_write_permission_is_refused(tmp_path: Path, row: ResultRow) -> None:
    skip_if_permissions_are_ignored(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    RunStore(folder / "h.sqlite").record(info(), [row])
    folder.chmod(0o555)
    try:
        for path in (folder / "h.sqlite", folder / "new" / "h.sqlite"):
            with pytest.raises(StoreError, match=f"folder {folder} is not writable"):
                RunStore.open(path)
        assert ids(RunStore.open(folder / "h.sqlite", read_only=True)) == [1]
    finally:
        folder.chmod(0o755)


def test_an_unreadable_file_is_refused(tmp_path: Path, row: ResultRow) -> None:
    skip_if_permissions_are_ignored(tmp_path)
    path = tmp_path / "h.sqlite"
    RunStore(path).record(info(), [row])
    path.chmod(0o000)
    try:
        for read_only in (False, True):
            with pytest.raises(StoreError, match="file is not readable"):
                RunStore.open(path, read_only=read_only)
    finally:
        path.chmod(0o644)


# New files, and ours from before the marker.

def test_a_new_file_is_made_and_marked_only_when_a_run_is_recorded(tmp_path: Path,
                                                                   row: ResultRow) -> None:
    path = tmp_path / "a" / "b" / "h.sqlite"
    store = RunStore.open(path)
    assert store.runs() == [] and not store.run_exists(1)
    assert list(tmp_path.iterdir()) == []  # checked, read, and nothing made yet
    assert store.record(info(), [row]) == 1
    assert marker(path) == (APPLICATION_ID, SCHEMA_VERSION)
    assert ids(RunStore.open(path)) == [1]


def test_an_empty_file_is_initialised(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    path.touch()
    RunStore.open(path)
    assert ids(RunStore.open(path, read_only=True)) == []
    assert path.read_bytes() == b""
    assert RunStore(path).record(info(), [row]) == 1
    assert marker(path) == (APPLICATION_ID, SCHEMA_VERSION)


def test_our_history_from_before_the_marker_is_adopted(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    sql(path, LEGACY_SCHEMA + "INSERT INTO runs VALUES (NULL, '2025-01-01', 1, '0.9', 'tme', "
              "1, 2.0, 1); INSERT INTO results VALUES (1, 'old', 'kernel-map-leak', 'tme', "
              "'tme', 'succeeded', NULL, 'read back', '{}');")
    before = path.read_bytes()
    assert ids(RunStore.open(path)) == [1]
    assert RunStore.open(path, read_only=True).outcomes(1) == {
        ("old", "tme"): ("succeeded", "tme")}
    assert path.read_bytes() == before and marker(path) == (0, 0)  # reading marks nothing
    assert RunStore(path).record(info(), [row]) == 2
    assert marker(path) == (APPLICATION_ID, SCHEMA_VERSION)
    assert ids(RunStore.open(path)) == [1, 2]


# Reading never writes.

def test_reading_a_missing_history_makes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "h.sqlite"
    for attempt in (lambda: RunStore.open(path, read_only=True),
                    lambda: RunStore(path, read_only=True).runs(),
                    lambda: RunStore(path, read_only=True).compare(1, 2)):
        with pytest.raises(StoreError) as err:
            attempt()
        assert str(err.value) == (f"history database {path}: does not exist: no run history "
                                  "recorded there yet")
    assert RunStore(path).runs() == []  # opened for writing: an empty history, still no file
    assert list(tmp_path.iterdir()) == []


def test_reading_our_history_leaves_it_as_it_was(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    store = RunStore(path)
    store.record(info(), [row])
    store.record(info(2), [row])
    before, mtime = snapshot(tmp_path), path.stat().st_mtime_ns
    reader = RunStore.open(path, read_only=True)
    assert ids(reader) == [1, 2] and reader.compare(1, 2) == []
    assert reader.previous_of_same_scenarios(2) == 1
    assert snapshot(tmp_path) == before and path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="opened read-only"):
        reader.record(info(3), [row])


# Run ids.

def test_run_ids_out_of_sqlite_range_are_unknown_runs(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    store = RunStore(path)
    store.record(info(), [row])
    assert store.run_exists(1)
    assert not any(store.run_exists(n) for n in (0, -1, 2, LAST_ID, 2**63, 2**70, -(2**70)))
    with pytest.raises(UnknownRun) as err:
        store.compare(1, 2**70)
    assert isinstance(err.value, KeyError) and isinstance(err.value, StoreError)
    assert err.value.args == (2**70,) and err.value.run_id == 2**70
    assert str(err.value) == (f"history database {path}: no run {2**70} (run ids are 1 to "
                              f"{LAST_ID})")
    with pytest.raises(UnknownRun) as err:
        store.outcomes(5)
    assert str(err.value) == f"history database {path}: no run 5"
    with pytest.raises(KeyError):
        store.previous_of_same_scenarios(-(2**64))


def test_exhausted_run_ids_are_refused_before_the_jobs(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    store = RunStore(path)
    store.record(info(), [row])
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'runs'", (LAST_ID - 1,))
    assert store.record(info(2), [row]) == LAST_ID  # the last id there is
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as err:
        RunStore.open(path)
    assert str(err.value) == (f"history database {path}: run ids exhausted (the last run id "
                              f"is {LAST_ID}, SQLite's largest integer): record into a new "
                              "history file")
    with pytest.raises(StoreError, match="run ids exhausted"):
        store.record(info(3), [row])
    assert ids(RunStore.open(path, read_only=True)) == [1, LAST_ID]
    assert snapshot(tmp_path) == before


# Recording: all or nothing.

def test_recording_commits_when_the_block_succeeds(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    store = RunStore.open(path)
    store.record(info(), [row])
    blocked = dataclasses.replace(row, outcome=Outcome.BLOCKED)
    with store.recording(info(2), [blocked]) as pending:
        assert pending.run_id == 2 and pending.previous == 1
        assert [(c.before, c.after) for c in pending.changes] == [("succeeded", "blocked")]
        assert list(pending.changes) == store.compare(1, 2)  # the pending run, read inside
        assert store.previous_of_same_scenarios(2) == 1 and ids(store) == [1, 2]
        assert ids(RunStore.open(path, read_only=True)) == [1]  # others: not yet
    assert ids(RunStore.open(path, read_only=True)) == [1, 2]
    assert store.outcomes(2) == {("t-kernel-map-leak", "tme"): ("blocked", "tme")}


def test_recording_the_first_run_has_no_previous(tmp_path: Path, row: ResultRow) -> None:
    with RunStore(tmp_path / "h.sqlite").recording(info(), [row]) as pending:
        assert (pending.run_id, pending.previous, pending.changes) == (1, None, ())


@pytest.mark.parametrize("failure", [Boom, KeyboardInterrupt])
def test_recording_rolls_back_when_the_block_fails(tmp_path: Path, row: ResultRow,
                                                   failure: type[BaseException]) -> None:
    path = tmp_path / "h.sqlite"
    store = RunStore(path)
    store.record(info(), [row])
    before = snapshot(tmp_path)
    with pytest.raises(failure), store.recording(info(2), many(row, 30)) as pending:
        assert pending.run_id == 2
        raise failure("publishing failed")
    assert snapshot(tmp_path) == before
    assert ids(store) == [1]
    assert store.record(info(3), [row]) == 2  # the id rolled back with the run


def test_a_rolled_back_first_run_leaves_no_file_and_no_folders(tmp_path: Path,
                                                               row: ResultRow) -> None:
    path = tmp_path / "a" / "b" / "h.sqlite"
    with pytest.raises(Boom), RunStore.open(path).recording(info(), [row]):
        assert path.is_file()
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_a_rolled_back_run_keeps_an_empty_file_someone_made(tmp_path: Path,
                                                            row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    path.touch()
    with pytest.raises(Boom), RunStore(path).recording(info(), [row]):
        raise Boom
    assert path.read_bytes() == b""


def test_recording_is_not_reentrant(tmp_path: Path, row: ResultRow) -> None:
    store = RunStore(tmp_path / "h.sqlite")
    with store.recording(info(), [row]):
        with pytest.raises(RuntimeError, match="already being recorded"):
            store.record(info(2), [row])
    assert ids(store) == [1]


def test_a_failed_commit_is_a_store_error_and_records_nothing(
        tmp_path: Path, row: ResultRow, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.sqlite"
    RunStore(path).record(info(), [row])
    before = snapshot(tmp_path)

    class FailingCommit(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql == "COMMIT":
                exc = sqlite3.OperationalError("disk I/O error")
                exc.sqlite_errorcode = 266  # SQLITE_IOERR_READ
                raise exc
            return super().execute(sql, *args)

    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect",
                        lambda *a, **k: connect(*a, **k, factory=FailingCommit))
    published = []
    with pytest.raises(StoreError) as err, RunStore(path).recording(info(2), [row]):
        published.append(True)
    assert published == [True]  # the block ran; the commit after it failed
    assert str(err.value) == f"history database {path}: I/O error (disk I/O error)"
    monkeypatch.undo()
    assert snapshot(tmp_path) == before and ids(RunStore(path)) == [1]


def test_a_full_disk_is_a_store_error_and_changes_nothing(
        tmp_path: Path, row: ResultRow, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's page limit, held at the file's size, fails as a full disk does."""
    path = tmp_path / "h.sqlite"
    RunStore(path).record(info(), [row])
    before = snapshot(tmp_path)
    connect = sqlite3.connect

    def no_room(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **kwargs)
        db.execute("PRAGMA max_page_count = 1")  # raised to the pages the file has now
        return db

    monkeypatch.setattr(sqlite3, "connect", no_room)
    with pytest.raises(StoreError) as err:
        RunStore(path).record(info(2), many(row, 200))
    assert str(err.value) == f"history database {path}: disk full (database or disk is full)"
    monkeypatch.undo()
    assert snapshot(tmp_path) == before and ids(RunStore(path)) == [1]


def test_a_full_disk_making_the_folder_is_a_store_error(
        tmp_path: Path, row: ResultRow, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "mkdir", full)
    path = tmp_path / "out" / "h.sqlite"
    RunStore.open(path)  # nothing to make yet
    with pytest.raises(StoreError) as err:
        RunStore(path).record(info(), [row])
    assert str(err.value) == f"history database {path}: disk full: {tmp_path / 'out'}"
    assert list(tmp_path.iterdir()) == []


CRASH = """
import dataclasses, os, sqlite3, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from _support.programs import leak
from _support.scenarios import run
from testbed.results import RunInfo, RunStore

connect = sqlite3.connect
def small_cache(*args, **kwargs):
    db = connect(*args, **kwargs)
    db.execute("PRAGMA cache_size = 1")  # pages reach the file before the commit
    return db
sqlite3.connect = small_cache
row = run("program", "tme", id="t-kernel-map-leak", params=leak())
rows = [dataclasses.replace(row, scenario=f"s{n}") for n in range(300)]
with RunStore(Path(sys.argv[1])).recording(RunInfo(2, "t", "x", 1.0, ("tme",), 1), rows):
    os._exit(9)  # killed while publishing: no rollback, no close
"""


def test_a_run_killed_while_publishing_is_rolled_back_by_the_next_writer(
        tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "h.sqlite"
    RunStore(path).record(info(), [row])
    before = path.read_bytes()
    crashed = subprocess.run([sys.executable, "-c", CRASH, str(path), str(TESTS)], check=False)
    assert crashed.returncode == 9
    assert (tmp_path / "h.sqlite-journal").exists() and path.read_bytes() != before
    with pytest.raises(StoreError) as err:
        RunStore.open(path, read_only=True)  # may not roll back: that is a write
    assert str(err.value) == (f"history database {path}: holds a transaction a crashed program "
                              "left unfinished; it is rolled back the next time the history is "
                              "opened for writing")
    assert ids(RunStore.open(path)) == [1]
    assert path.read_bytes() == before and snapshot(tmp_path) == {"h.sqlite": before}
    assert ids(RunStore.open(path, read_only=True)) == [1]


def test_a_path_with_uri_characters_is_the_file_it_names(tmp_path: Path, row: ResultRow) -> None:
    path = tmp_path / "odd ?#% name" / "h?mode=ro#.sqlite"
    assert RunStore.open(path).record(info(), [row]) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["h?mode=ro#.sqlite"]
    assert ids(RunStore.open(path, read_only=True)) == [1]


# -- pending runs: recorded before the outputs are published, settled after ---------------

def _published_folder(folder: Path, run_id: int | None) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "results.json").write_text(json.dumps({"run": {"history_id": run_id}}))
    return folder


def test_a_pending_run_counts_only_once_its_folder_holds_it(tmp_path: Path,
                                                         row: ResultRow) -> None:
    store = RunStore(tmp_path / "h.sqlite")
    first = store.record(info(), [row])
    out = _published_folder(tmp_path / "out", first)
    pending = store.record(info(), [row], pending_in=out)
    assert [r.id for r in store.runs()] == [first]  # its folder still holds the first run
    assert store.previous_of_same_scenarios(pending) == first
    _published_folder(out, pending)  # the folder was exchanged, then the process was killed
    assert [r.id for r in store.runs()] == [first, pending]
    store.settle_pending(out)
    _published_folder(out, None)
    assert [r.id for r in store.runs()] == [first, pending]  # now published for good


def test_a_pending_run_whose_folder_never_appeared_is_dropped(tmp_path: Path,
                                                            row: ResultRow) -> None:
    store = RunStore(tmp_path / "h.sqlite")
    out = _published_folder(tmp_path / "out", None)
    pending = store.record(info(), [row], pending_in=out)
    other = store.record(info(), [row], pending_in=tmp_path / "elsewhere")
    store.settle_pending(out)
    assert not store.run_exists(pending)
    assert store.run_exists(other)  # another folder's pending run is left alone
    store.forget(other)
    assert not store.run_exists(other)


def test_a_version_1_history_gains_the_pending_columns_on_its_next_write(
    tmp_path: Path, row: ResultRow
) -> None:
    path = tmp_path / "h.sqlite"
    sql(path, LEGACY_SCHEMA)
    store = RunStore(path)
    assert store.runs() == []
    store.record(info(), [row])
    assert marker(path) == (APPLICATION_ID, SCHEMA_VERSION) == (APPLICATION_ID, 2)
    with closing(sqlite3.connect(path)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    assert columns[-2:] == ["published", "out_dir"]
