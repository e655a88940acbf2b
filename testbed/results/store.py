"""Run history in an embedded SQLite database: every run and every result row.

Each run is written in one transaction, so an interrupted run leaves earlier runs intact and
no half-recorded run behind.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .model import ResultRow, RunInfo

__all__ = ["Change", "RunStore", "StoredRun"]

_SCHEMA = """
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


class RunStore:
    """The history database at ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(_SCHEMA)
            yield db

    def record(self, run: RunInfo, rows: Sequence[ResultRow]) -> int:
        """Store one run and its rows in a single transaction; returns the run id."""
        with self._connect() as db, db:
            cur = db.execute(
                "INSERT INTO runs (started, seed, version, profiles, jobs, duration_s, results)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run.started, run.seed, run.testbed_version, ",".join(run.profiles), run.jobs,
                 run.duration_s, len(rows)),
            )
            run_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r.scenario, r.attack, r.profile, r.engine, r.outcome.value,
                  r.expected.value if r.expected else None, r.reason,
                  json.dumps(r.to_json()["metrics"], sort_keys=True)) for r in rows],
            )
        return run_id

    def runs(self) -> list[StoredRun]:
        """Every recorded run, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT id, started, seed, version, profiles, jobs, duration_s, "
                              "results FROM runs ORDER BY id").fetchall()
        return [StoredRun(*row) for row in rows]

    def outcomes(self, run_id: int) -> dict[tuple[str, str], tuple[str, str]]:
        """``(scenario, engine) -> (outcome, profile)`` for one run.

        Raises:
            KeyError: no run with that id.
        """
        with self._connect() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise KeyError(run_id)
            rows = db.execute("SELECT scenario, engine, outcome, profile FROM results "
                              "WHERE run_id = ?", (run_id,)).fetchall()
        return {(s, e): (o, p) for s, e, o, p in rows}

    def compare(self, before: int, after: int) -> list[Change]:
        """Outcomes that changed from run ``before`` to run ``after`` (sorted)."""
        a, b = self.outcomes(before), self.outcomes(after)
        changes = []
        for key in sorted(set(a) | set(b)):
            old, new = a.get(key), b.get(key)
            if (old and old[0]) != (new and new[0]):
                changes.append(Change(key[0], key[1], old[0] if old else None,
                                      new[0] if new else None, old[1] if old else None,
                                      new[1] if new else None))
        return changes

    def previous_of_same_scenarios(self, run_id: int, window: int = 50) -> int | None:
        """The latest earlier run (among the last ``window``) with the same (scenario, engine)
        pairs as ``run_id``; ``None`` if there is none."""
        keys = set(self.outcomes(run_id))
        with self._connect() as db:
            earlier = [r for (r,) in db.execute(
                "SELECT id FROM runs WHERE id < ? ORDER BY id DESC LIMIT ?", (run_id, window))]
        for candidate in earlier:
            if set(self.outcomes(candidate)) == keys:
                return int(candidate)
        return None
