"""Run history in an embedded SQLite database: every run and every result row.

The database says in its header that it is ours: ``PRAGMA application_id`` is
:data:`APPLICATION_ID` and ``PRAGMA user_version`` the schema version, :data:`SCHEMA_VERSION`.
A file is used only if it is new (absent, or 0 bytes), carries that marker with a version this
code knows, or is a history written before the marker existed (exactly the tables ``runs`` and
``results``, with their columns: it gets the marker on its next write). Anything else is refused
with a :class:`StoreError`, and nothing is written to it.

A run is recorded in one transaction (:meth:`RunStore.recording`) that commits only when the
caller's block succeeds: an interrupted run or a failed write leaves earlier runs intact and no
half-recorded run behind.

A run whose outputs are published elsewhere (the report folder, by one atomic rename) is
recorded *pending* first, with the folder it goes to (``pending_in``), and marked published
once the folder is in place (:meth:`RunStore.mark_published`). A pending run counts as
recorded only while its folder's ``results.json`` carries its id, so a run killed between the
two steps is seen as published exactly when its report is; the next run into the folder
settles it for good (:meth:`RunStore.settle_pending`). Schema version 2 adds the two columns
this needs to version 1 (a version-1 file gets them on its next write).
"""

from __future__ import annotations

import enum
import errno
import json
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import TestbedError
from .model import ResultRow, RunInfo

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "Change",
    "PendingRun",
    "RunStore",
    "StoreError",
    "StoredRun",
    "UnknownRun",
]

APPLICATION_ID = 0x4D435442
"""``PRAGMA application_id`` of a history database: the ASCII bytes ``MCTB``
(memcrypt-testbed) read as a big-endian 32-bit integer, 1296258114."""
SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of a history database: the tables below. Version 1 is the schema
the project used before it marked its files (an unmarked file of ours is version 1); version 2
adds ``runs.published`` and ``runs.out_dir``."""
_MAX_RUN_ID = 2**63 - 1
"""SQLite's largest integer: the last run id a history can hand out."""

_HEADER = b"SQLite format 3\x00"
_RUNS_V1 = ("id", "started", "seed", "version", "profiles", "jobs", "duration_s", "results")
_RUNS = (*_RUNS_V1, "published", "out_dir")
_RESULTS = ("run_id", "scenario", "attack", "profile", "engine", "outcome", "expected",
            "reason", "metrics")
_TABLES = {"runs": _RUNS, "results": _RESULTS}
_MIGRATE_V1 = ("ALTER TABLE runs ADD COLUMN published INTEGER NOT NULL DEFAULT 1",
               "ALTER TABLE runs ADD COLUMN out_dir TEXT")
_CREATE = (
    """CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL,
    seed INTEGER NOT NULL,
    version TEXT NOT NULL,
    profiles TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    results INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 1,
    out_dir TEXT
)""",
    """CREATE TABLE results (
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
)""",
)
_SQLITE_PROBLEMS = {
    3: "permission denied",
    5: "locked by another program",
    6: "locked",
    8: "file is read-only",
    10: "I/O error",
    11: "database disk image is malformed",
    13: "disk full",
    14: "cannot open the file",
    26: "not a SQLite database",
}
"""What a SQLite primary result code means here (the rest say it in SQLite's own words)."""
_SQLITE_READONLY_ROLLBACK = 776
_OS_PROBLEMS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class StoreError(TestbedError):
    """The history database cannot be used as asked; ``str()`` is one line naming the file.

    Args:
        path: the database file.
        problem: what is wrong with it.
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = " ".join(problem.split())  # always one line
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """``history database PATH: problem``, as shown to users."""
        return f"history database {self.path}: {self.problem}"

    def __str__(self) -> str:
        return self.one_line()


class UnknownRun(StoreError, KeyError):
    """No run with this id in the history; ``args[0]`` is the id, as a ``KeyError``'s key."""

    def __init__(self, path: Path, run_id: int) -> None:
        self.run_id = run_id
        hint = "" if _in_range(run_id) else f" (run ids are 1 to {_MAX_RUN_ID})"
        super().__init__(path, f"no run {run_id}{hint}")
        self.args = (run_id,)


@dataclass(frozen=True)
class StoredRun:
    """One recorded run."""

    id: int
    started: str
    seed: int
    version: str
    profiles: str
    jobs: int
    duration_s: float
    results: int


@dataclass(frozen=True)
class Change:
    """One (scenario, engine) whose outcome differs between two runs (None: absent there)."""

    scenario: str
    engine: str
    before: str | None
    after: str | None
    profile_before: str | None
    profile_after: str | None


@dataclass(frozen=True)
class PendingRun:
    """A run written but not yet committed: what :meth:`RunStore.recording` yields."""

    run_id: int
    previous: int | None
    """The latest earlier run of the same (scenario, engine) pairs, as
    :meth:`RunStore.previous_of_same_scenarios` finds it; ``None`` if there is none."""
    changes: tuple[Change, ...]
    """The outcomes that changed from :attr:`previous` to this run (none without one)."""


class _State(enum.Enum):
    NEW = "new"
    """Absent or 0 bytes: initialised by the first write."""
    OURS = "ours"
    LEGACY = "legacy"
    """Our tables without the marker: marked by the next write."""


class RunStore:
    """The history database at ``path``.

    ``RunStore(path)`` checks nothing until it is used; :meth:`open` checks at once. Reading
    methods never create the file: a store opened for writing reads an absent or empty file as
    an empty history; one opened ``read_only`` refuses an absent file and never writes.
    Every problem with the file, from SQLite or the operating system, is a :class:`StoreError`.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._tx: sqlite3.Connection | None = None

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> RunStore:
        """The store at ``path``, checked by :meth:`check`.

        Raises:
            StoreError: the database cannot be read, or (unless ``read_only``) recorded into.
        """
        store = cls(path, read_only=read_only)
        store.check()
        return store

    def check(self) -> None:
        """Check, without writing anything, that the file can be read or recorded into: a
        regular file (or, for writing, an absent one whose folder can be made), readable and
        writable as needed, a SQLite database of ours (or new), intact, with run ids left.
        (Opened for writing, a history that a crashed writer left mid-transaction is rolled
        back first, as SQLite does for any writer; read-only, it is refused until then.)

        Raises:
            StoreError: what is wrong, in one line.
        """
        with self._mapped():
            if not self._preflight():
                return
            with closing(self._connection(create=False)) as db:
                self._classify(db, thorough=True)
                if not self.read_only:
                    self._check_run_ids(db)

    @contextmanager
    def recording(self, run: RunInfo, rows: Sequence[ResultRow],
                  window: int = 50, *, pending_in: Path | None = None) -> Iterator[PendingRun]:
        """Write one run and its rows in a transaction that commits when the block succeeds.

        The block is where the caller publishes the run's outputs. Inside it, the reading
        methods see the pending run; other programs do not, and no other run can be recorded
        until it ends. If the block raises, the run is rolled back (and a file this call
        created is removed) and the exception propagates. A failed commit is a
        :class:`StoreError` raised after the block has run.

        Args:
            run: the run's description.
            rows: its result rows, at most one per (scenario, engine).
            window: how many earlier runs to search for :attr:`PendingRun.previous`.
            pending_in: the folder the run's outputs will be published to: the run is
                recorded pending (see :meth:`mark_published`).

        Raises:
            StoreError: the database cannot be recorded into, or the write or commit failed.
            ValueError: two rows for the same (scenario, engine).
        """
        if self.read_only:
            raise ValueError(f"{self.path}: opened read-only, cannot record a run")
        if self._tx is not None:
            raise RuntimeError(f"{self.path}: a run is already being recorded")
        _check_unique(rows)
        created: list[Path] = []
        db = self._begin(created)
        self._tx = db
        try:
            with self._mapped():
                pending = self._insert(db, run, rows, window, pending_in)
            yield pending
            with self._mapped():
                db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            db.close()
            _remove_created(created)
            raise
        finally:
            self._tx = None
            db.close()

    def record(self, run: RunInfo, rows: Sequence[ResultRow], *,
               pending_in: Path | None = None) -> int:
        """Store one run and its rows in a single transaction; returns the run id.

        With ``pending_in`` (the folder its outputs are published to) the run is recorded
        pending, until :meth:`mark_published`.

        Raises:
            StoreError: as :meth:`recording`.
            ValueError: two rows for the same (scenario, engine).
        """
        with self.recording(run, rows, pending_in=pending_in) as pending:
            return pending.run_id

    def mark_published(self, run_id: int) -> None:
        """The pending run's outputs are in place: it is published for good."""
        self._write("UPDATE runs SET published = 1, out_dir = NULL WHERE id = ?", (run_id,))

    def forget(self, run_id: int) -> None:
        """Remove a pending run whose outputs were never published (and its rows)."""
        self._write("DELETE FROM runs WHERE id = ? AND published = 0", (run_id,))

    def settle_pending(self, out_dir: Path) -> None:
        """Settle the runs left pending for ``out_dir`` by a run killed while publishing:
        the one whose id the folder's ``results.json`` carries is published, the others are
        removed. Does nothing to a history that does not exist yet."""
        published_id = _published_id(out_dir)
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self._reading() as db:
            if "published" not in _columns(db, "runs"):
                return
            pending = [r for (r,) in db.execute(
                "SELECT id FROM runs WHERE published = 0 AND out_dir = ?", (str(out_dir),))]
        for run_id in pending:
            if run_id == published_id:
                self.mark_published(run_id)
            else:
                self.forget(run_id)

    def _write(self, statement: str, args: tuple[object, ...]) -> None:
        if self.read_only:
            raise ValueError(f"{self.path}: opened read-only")
        with self._mapped(), closing(self._connection(create=False)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(statement, args)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise

    def runs(self) -> list[StoredRun]:
        """Every recorded run, oldest first."""
        with self._reading() as db:
            rows = db.execute("SELECT id, started, seed, version, profiles, jobs, duration_s, "
                              "results FROM runs ORDER BY id").fetchall()
            hidden = _hidden(db)
        return [StoredRun(*row) for row in rows if row[0] not in hidden]

    def run_exists(self, run_id: int) -> bool:
        """Whether a run with this id is recorded (any int may be asked about)."""
        with self._reading() as db:
            return _exists(db, run_id)

    def outcomes(self, run_id: int) -> dict[tuple[str, str], tuple[str, str]]:
        """``(scenario, engine) -> (outcome, profile)`` for one run.

        Raises:
            UnknownRun: no run with that id (a ``KeyError`` too).
        """
        with self._reading() as db:
            return self._outcomes(db, run_id)

    def compare(self, before: int, after: int) -> list[Change]:
        """Outcomes that changed from run ``before`` to run ``after`` (sorted).

        Raises:
            UnknownRun: either run is not recorded.
        """
        with self._reading() as db:
            return self._compare(db, before, after)

    def previous_of_same_scenarios(self, run_id: int, window: int = 50) -> int | None:
        """The latest earlier run (among the last ``window``) with the same (scenario, engine)
        pairs as ``run_id``; ``None`` if there is none."""
        with self._reading() as db:
            return self._previous(db, run_id, window)

    # Reading, once a connection is open.

    def _outcomes(self, db: sqlite3.Connection,
                  run_id: int) -> dict[tuple[str, str], tuple[str, str]]:
        if not _exists(db, run_id):
            raise UnknownRun(self.path, run_id)
        rows = db.execute("SELECT scenario, engine, outcome, profile FROM results "
                          "WHERE run_id = ?", (run_id,)).fetchall()
        return {(s, e): (o, p) for s, e, o, p in rows}

    def _compare(self, db: sqlite3.Connection, before: int, after: int) -> list[Change]:
        a, b = self._outcomes(db, before), self._outcomes(db, after)
        changes = []
        for key in sorted(set(a) | set(b)):
            old, new = a.get(key), b.get(key)
            if (old and old[0]) != (new and new[0]):
                changes.append(Change(key[0], key[1], old[0] if old else None,
                                      new[0] if new else None, old[1] if old else None,
                                      new[1] if new else None))
        return changes

    def _previous(self, db: sqlite3.Connection, run_id: int, window: int) -> int | None:
        keys = set(self._outcomes(db, run_id))
        hidden = _hidden(db)
        earlier = [r for (r,) in db.execute(
            "SELECT id FROM runs WHERE id < ? ORDER BY id DESC LIMIT ?", (run_id, window))
            if r not in hidden]
        for candidate in earlier:
            if set(self._outcomes(db, candidate)) == keys:
                return int(candidate)
        return None

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The recording's connection inside :meth:`recording`, else a checked one of its
        own (an empty in-memory history for a new file)."""
        if self._tx is not None:
            with self._mapped():
                yield self._tx
            return
        with self._mapped():
            if not self._preflight():
                with closing(sqlite3.connect(":memory:")) as empty:
                    _create_tables(empty)
                    yield empty
                return
            with closing(self._connection(create=False)) as db:
                self._classify(db, thorough=False)
                yield db

    # Writing.

    def _begin(self, created: list[Path]) -> sqlite3.Connection:
        """A connection holding the write lock on a checked, initialised database."""
        with self._mapped():
            new = not self._preflight()
            if new:
                created.extend(_make_folders(self.path.parent))
            existed = self.path.exists()
            db = self._connection(create=new)
            if new and not existed:
                created.append(self.path)
        try:
            with self._mapped():
                empty = db.execute("PRAGMA page_count").fetchone()[0] == 0
                db.execute("BEGIN IMMEDIATE")
                # Checked again under the lock: another program may have written meanwhile.
                state = (_State.NEW if empty and _blank(db)
                         else self._classify(db, thorough=True))
                if state is _State.NEW:
                    _create_tables(db)
                elif _columns(db, "runs") == _RUNS_V1:
                    for statement in _MIGRATE_V1:
                        db.execute(statement)
                if state is not _State.OURS or _columns(db, "runs") != _RUNS_V1:
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._check_run_ids(db)
        except BaseException:
            _rollback(db)
            db.close()
            _remove_created(created)
            raise
        return db

    def _insert(self, db: sqlite3.Connection, run: RunInfo, rows: Sequence[ResultRow],
                window: int, pending_in: Path | None = None) -> PendingRun:
        cur = db.execute(
            "INSERT INTO runs (started, seed, version, profiles, jobs, duration_s, results,"
            " published, out_dir) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run.started, run.seed, run.testbed_version, ",".join(run.profiles), run.jobs,
             run.duration_s, len(rows), int(pending_in is None),
             None if pending_in is None else str(pending_in)),
        )
        run_id = int(cur.lastrowid or 0)
        db.executemany(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, r.scenario, r.attack, r.profile, r.engine, r.outcome.value,
              r.expected.value if r.expected else None, r.reason,
              json.dumps(r.to_json()["metrics"], sort_keys=True)) for r in rows],
        )
        previous = self._previous(db, run_id, window)
        changes = () if previous is None else tuple(self._compare(db, previous, run_id))
        return PendingRun(run_id, previous, changes)

    def _check_run_ids(self, db: sqlite3.Connection) -> None:
        (last,) = db.execute(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0),"
            " coalesce((SELECT max(id) FROM runs), 0))").fetchone()
        if last >= _MAX_RUN_ID:
            raise StoreError(self.path, f"run ids exhausted (the last run id is {last}, "
                             "SQLite's largest integer): record into a new history file")

    # Checking the file.

    def _preflight(self) -> bool:
        """Check the file as a file; ``False`` if it is new (absent, or 0 bytes)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self.read_only:
                raise StoreError(self.path, "does not exist: no run history recorded there "
                                 "yet") from None
            self._check_creatable()
            return False
        except NotADirectoryError:
            raise StoreError(self.path, f"{_first_non_folder(self.path)} is not a "
                             "folder") from None
        if stat.S_ISDIR(st.st_mode):
            raise StoreError(self.path, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(self.path, f"not a regular file ({_kind(st.st_mode)})")
        if not os.access(self.path, os.R_OK):
            raise StoreError(self.path, "file is not readable (permission denied)")
        if not self.read_only:
            if not st.st_mode & 0o222 or not os.access(self.path, os.W_OK):
                raise StoreError(self.path, "file is read-only")
            self._check_writable_folder(self.path.absolute().parent)
        if st.st_size == 0:
            return False
        with self.path.open("rb") as f:
            if f.read(len(_HEADER)) != _HEADER:
                raise StoreError(self.path, "not a SQLite database")
        return True

    def _check_creatable(self) -> None:
        folder = self.path.absolute().parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            raise StoreError(self.path, f"{folder} is not a folder")
        self._check_writable_folder(folder)

    def _check_writable_folder(self, folder: Path) -> None:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError(self.path, f"folder {folder} is not writable (SQLite keeps its "
                             "journal next to the database)")

    def _connection(self, *, create: bool) -> sqlite3.Connection:
        mode = "ro" if self.read_only else "rwc" if create else "rw"
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode={mode}"
        db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _classify(self, db: sqlite3.Connection, *, thorough: bool) -> _State:
        """Whose database this is; ``thorough`` also checks every page."""
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        objects = db.execute("SELECT type, name FROM sqlite_master "
                             "WHERE name NOT LIKE 'sqlite^_%' ESCAPE '^'").fetchall()
        runs = _columns(db, "runs")
        ours = (sorted(objects) == [("table", "results"), ("table", "runs")]
                and _columns(db, "results") == _RESULTS
                and runs == (_RUNS if version == SCHEMA_VERSION else _RUNS_V1))
        if app_id == APPLICATION_ID:
            if not 1 <= version <= SCHEMA_VERSION:
                raise StoreError(self.path, f"written by another memcrypt-testbed version "
                                 f"(schema version {version}; this one knows 1 to "
                                 f"{SCHEMA_VERSION})")
            if not ours:
                raise StoreError(self.path, "marked as a memcrypt-testbed history, but its "
                                 f"tables are not those of schema version {version}")
            state = _State.OURS
        elif app_id == 0 and version == 0 and ours:
            state = _State.LEGACY
        else:
            raise StoreError(self.path, f"a SQLite database of another program "
                             f"({_describe(app_id, version, objects)}): refusing to "
                             f"{'read' if self.read_only else 'write to'} it")
        if thorough:
            (report,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if report != "ok":
                first = [line for line in str(report).splitlines() if not line.startswith("***")]
                raise StoreError(self.path, "database disk image is malformed "
                                 f"({_printable(first[0] if first else str(report))})")
        return state

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Turn SQLite's and the operating system's errors into :class:`StoreError`."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(self.path, _sqlite_problem(exc)) from exc
        except OSError as exc:
            raise StoreError(self.path, _os_problem(self.path, exc)) from exc


def _hidden(db: sqlite3.Connection) -> set[int]:
    """Pending runs whose folder does not hold them (yet, or ever): not part of the history."""
    if "published" not in _columns(db, "runs"):
        return set()
    hidden = set()
    for run_id, out_dir in db.execute("SELECT id, out_dir FROM runs WHERE published = 0"):
        if _published_id(Path(out_dir or "")) != run_id:
            hidden.add(int(run_id))
    return hidden


def _published_id(out_dir: Path) -> int | None:
    """The history id in ``out_dir/results.json`` (``None``: none, or unreadable)."""
    try:
        doc = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
        value = doc["run"]["history_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) else None


def _in_range(run_id: int) -> bool:
    return 1 <= run_id <= _MAX_RUN_ID


def _exists(db: sqlite3.Connection, run_id: int) -> bool:
    return _in_range(run_id) and db.execute(
        "SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None


def _check_unique(rows: Sequence[ResultRow]) -> None:
    seen: set[tuple[str, str]] = set()
    for r in rows:
        if (r.scenario, r.engine) in seen:
            raise ValueError(f"two result rows for scenario {r.scenario!r} on engine "
                             f"{r.engine!r}: a run has at most one")
        seen.add((r.scenario, r.engine))


def _blank(db: sqlite3.Connection) -> bool:
    """No schema and no marker (a file still empty when the write lock was taken)."""
    (blank,) = db.execute("SELECT (SELECT count(*) FROM sqlite_master) = 0"
                          " AND (SELECT application_id FROM pragma_application_id) = 0"
                          " AND (SELECT user_version FROM pragma_user_version) = 0").fetchone()
    return bool(blank)


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in _CREATE:
        db.execute(statement)


def _columns(db: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(name for _, name, *_ in db.execute(f"PRAGMA table_info({table})"))


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is open (SQLite ends one itself on a full disk)."""
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # closing the connection rolls back too


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; the ones made, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    for p in missing:
        p.mkdir(exist_ok=True)
    return missing


def _remove_created(created: list[Path]) -> None:
    """Undo :meth:`RunStore._begin`'s creations: an empty file and empty folders."""
    for p in reversed(created):
        try:
            if p.is_dir():
                p.rmdir()
            elif p.stat().st_size == 0:
                p.unlink()
        except OSError:
            pass  # not empty any more, or gone: leave it


def _first_non_folder(path: Path) -> Path:
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path.parent


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _describe(app_id: int, version: int, objects: list[tuple[str, str]]) -> str:
    """``no memcrypt-testbed schema; user_version 7; tables: notes``."""
    parts = ["no memcrypt-testbed schema"]
    if app_id:
        parts.append(f"application_id {app_id & 0xFFFFFFFF:#010x}")
    if version:
        parts.append(f"user_version {version}")
    names = sorted(_printable(name) for kind, name in objects if kind == "table")
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    parts.append(f"tables: {shown}" if names else "no tables")
    return "; ".join(parts)


def _sqlite_problem(exc: sqlite3.Error) -> str:
    code = getattr(exc, "sqlite_errorcode", None)
    if code == _SQLITE_READONLY_ROLLBACK:
        return ("holds a transaction a crashed program left unfinished; it is rolled back "
                "the next time the history is opened for writing")
    problem = _SQLITE_PROBLEMS.get((code or 0) & 0xFF)
    text = _printable(str(exc))
    if problem is None or problem == text:
        return text
    return f"{problem} ({text})"


def _os_problem(path: Path, exc: OSError) -> str:
    problem = _OS_PROBLEMS.get(exc.errno or 0) or exc.strerror or str(exc)
    if exc.filename is not None and str(exc.filename) != str(path):
        problem = f"{problem}: {exc.filename}"
    return _printable(problem)
