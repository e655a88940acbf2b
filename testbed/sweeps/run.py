"""Running a sweep: every point x engine x seed a job (each with its control), on any
:class:`concurrent.futures.Executor`, each finished run kept as it finishes.

The executor is local processes by default (as ``testbed run``), a Dask ``LocalCluster``
(``--dask``) or an existing Dask cluster (``--scheduler``): ``distributed.Client`` gives a
``concurrent.futures`` executor, so one code path serves all. What travels to a worker is the
job (the scenario's validated model, the seed, the attack object): never a file of the
client's.

Every run is kept in ``OUT/.sweep-runs.sqlite`` under a digest of what makes it (the
scenario, engine and seed, the attack, the testbed's version), committed as it finishes. A
sweep killed at any moment resumes where it stopped; run again unchanged it runs nothing; a
changed spec reuses the runs its points share with the old one. Results do not depend on the
executor or the number of workers: each run's seed comes from the sweep's seed and the
point's values (:meth:`~testbed.sweeps.spec.SweepPlan.run_seed`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import logging
import math
import multiprocessing
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..attacks import Attack
from ..errors import ConfigError
from ..results import Control, Evidence, ResultRow
from ..results.metrics import JsonValue, Metrics
from ..results.verdicts import TrialStats
from ..scenarios.runner import Job, control_of, error_row, judged, run_trials, worker_init
from ..types import Outcome
from .spec import Point, SweepPlan

__all__ = ["CACHE", "RecordedMetrics", "SweepRun", "executor", "run_sweep"]

CACHE = ".sweep-runs.sqlite"
MAX_CHUNK = 32
"""Most runs sent to a worker in one task."""
"""The file in a sweep's output folder that keeps every finished run."""


@dataclass(frozen=True)
class RecordedMetrics(Metrics):
    """The metrics of a run read back from the sweep's store (as JSON)."""

    values: dict[str, JsonValue]

    def to_json(self) -> dict[str, JsonValue]:
        return dict(self.values)


def _log2(value: Any) -> float | None:
    if value is None:
        return None
    return float("-inf") if value == "-inf" else float(value)


def _stats(doc: dict[str, Any] | None) -> TrialStats | None:
    if doc is None:
        return None
    return TrialStats(int(doc["trials"]), int(doc["successes"]), float(doc["low"]),
                      float(doc["high"]))


def row_from_json(doc: dict[str, Any]) -> ResultRow:
    """A result row as the store keeps it (metrics as JSON; evidence and steps dropped)."""
    control = doc.get("control")
    return ResultRow(
        scenario=doc["scenario"], title=doc["title"], attack=doc["attack"],
        profile=doc["profile"], engine=doc["engine"], mitigations=tuple(doc["mitigations"]),
        outcome=Outcome(doc["outcome"]),
        expected=None if doc["expected"] is None else Outcome(doc["expected"]),
        reason=doc["reason"], metrics=RecordedMetrics(dict(doc.get("metrics") or {})),
        chance_log2=_log2(doc.get("chance_log2")), evidence=Evidence(),
        trials=_stats(doc.get("trials")),
        control=None if control is None else Control(
            control["profile"], Outcome(control["outcome"]), control["reason"],
            _log2(control.get("chance_log2")), _stats(control.get("trials"))))


def _row_json(row: ResultRow) -> dict[str, Any]:
    doc = row.to_json()
    doc.pop("steps", None)
    doc.pop("evidence", None)
    return doc


class _Store:
    """The finished runs of a sweep's output folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30)
            self.db.execute("CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, row TEXT)")
            self.db.execute("SELECT key, row FROM runs LIMIT 1").fetchall()
            self.db.commit()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"{path}: the sweep's store of finished runs cannot be used "
                              f"({exc}); delete it to run the sweep afresh") from None

    def get(self, key: str) -> ResultRow | None:
        found = self.db.execute("SELECT row FROM runs WHERE key = ?", (key,)).fetchone()
        if found is None:
            return None
        try:
            return row_from_json(json.loads(found[0]))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None

    def put(self, key: str, row: ResultRow) -> None:
        self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?)",
                        (key, json.dumps(_row_json(row), sort_keys=True)))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


@functools.cache
def _code_digest(*modules: str) -> str:
    """A digest of the testbed's sources and of the modules named (a plugin's attack or
    engine): a run kept by other code is not reused, even where the version did not change
    (an editable install)."""
    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent.parent
    files = sorted(package.rglob("*.py"))
    for name in modules:
        found = sys.modules.get(name)
        where = getattr(found, "__file__", None)
        if where and not Path(where).resolve().is_relative_to(package):
            files.append(Path(where))
    for path in files:
        h.update(str(path.relative_to(path.anchor)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _attack_identity(job: Job) -> object:
    """What of the job's attack makes its runs, the same in every process: a program's own
    key (its steps), else the attack's class (its parameters are in the scenario)."""
    attack = job.attack
    if attack is None:
        return None
    if type(attack).run_key is not Attack.run_key:
        return attack.run_key()
    return f"{type(attack).__module__}.{type(attack).__qualname__}:{attack.kind}"


def _key(job: Job) -> str:
    """The digest of what makes a run (two equal keys: the same row): the engine, the seed,
    the scenario, the attack, and the code that runs them."""
    modules = tuple(type(x).__module__ for x in (job.attack, job.engine_class) if x is not None)
    code = _code_digest(*modules)
    text = (f"{code}\0{job.engine}\0{job.seed}\0{job.scenario!r}\0{_attack_identity(job)!r}"
            f"\0{getattr(job.engine_class, '__qualname__', '')}")
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SweepRun:
    """One run of the sweep, judged against its control."""

    point: Point
    engine: str
    repeat: int
    seed: int
    row: ResultRow



@contextlib.contextmanager
def executor(workers: int, dask: bool = False, scheduler: str | None = None
             ) -> Iterator[tuple[cf.Executor, str]]:
    """The executor a sweep runs on, and its description.

    Raises:
        ConfigError: Dask is asked for and not installed, or the scheduler cannot be reached.
    """
    if not dask and scheduler is None:
        pool = cf.ProcessPoolExecutor(max_workers=workers, initializer=worker_init)
        try:
            yield pool, f"{workers} local process{'es' if workers != 1 else ''}"
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for child in multiprocessing.active_children():
                child.terminate()
        return
    try:
        distributed: Any = importlib.import_module("distributed")  # untyped: the dask extra
    except ImportError:
        raise ConfigError("Dask is not installed: pip install 'memcrypt-testbed[dask]' (or run "
                          "without --dask / --scheduler)") from None
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=10)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        try:
            yield client.get_executor(), f"Dask cluster {scheduler}"
        finally:
            client.close()
        return
    for name in ("distributed", "tornado"):  # the cluster's own chatter, not the sweep's
        logging.getLogger(name).setLevel(logging.ERROR)
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    try:
        yield client.get_executor(), f"Dask LocalCluster of {workers} workers"
    finally:
        client.close()
        cluster.close()


def _jobs(plan: SweepPlan) -> list[tuple[Point, str, int, Job]]:
    out = []
    for point in plan.points:
        for engine in plan.engines:
            for repeat in range(plan.sweep.seeds):
                seed = plan.run_seed(point, repeat)
                out.append((point, engine, repeat, Job(point.scenario, str(plan.path), engine,
                                                       seed)))
    return out


def run_chunk(jobs: list[Job]) -> list[ResultRow]:
    """Run a few jobs, one after the other, in one task of the executor (one task per run
    would spend more time sending than running a short one)."""
    return [run_trials(job) for job in jobs]


def chunk_size(runs: int, workers: int) -> int:
    """Runs per task: about eight tasks per worker, so that the last ones are short, and at
    most :data:`MAX_CHUNK` runs between two saves."""
    return max(1, min(MAX_CHUNK, math.ceil(runs / (max(1, workers) * 8))))


def run_sweep(plan: SweepPlan, out_dir: Path, pool: cf.Executor,
              progress: Callable[[int, bool], None] | None = None,
              planned: Callable[[int, int], None] | None = None,
              workers: int = 1) -> list[SweepRun]:
    """Run every point x engine x seed of ``plan`` (and the controls) on ``pool`` (of
    ``workers``), keeping each finished run in ``out_dir``; returns the runs, judged, in plan
    order.

    ``planned`` gets the number of runs to make and of runs kept from before; ``progress``
    is called as runs finish, with their number (``True``: they failed to run and became
    ``error`` rows).
    """
    jobs = _jobs(plan)
    units: list[Job] = []
    index: dict[str, int] = {}
    controls: list[int | None] = []
    for *_, job in jobs:
        key = _key(job)
        if key not in index:
            index[key] = len(units)
            units.append(job)
    for *_, job in jobs:
        reference = control_of(job)
        if reference is None:
            controls.append(None)
            continue
        key = _key(reference)
        if key not in index:
            index[key] = len(units)
            units.append(reference)
        controls.append(index[key])
    store = _Store(Path(out_dir) / CACHE)
    try:
        rows: list[ResultRow | None] = [store.get(_key(u)) for u in units]
        todo = [i for i, r in enumerate(rows) if r is None]
        if planned is not None:
            planned(len(todo), len(units) - len(todo))
        size = chunk_size(len(todo), workers)
        chunks = [todo[k:k + size] for k in range(0, len(todo), size)]
        futures = {pool.submit(run_chunk, [units[i] for i in chunk]): chunk for chunk in chunks}
        try:
            for future in cf.as_completed(futures):
                chunk = futures[future]
                try:
                    made = future.result()
                    failed = False
                except Exception as exc:  # a crashed worker: error runs, not a hang
                    made = [error_row(units[i], f"worker failed: {type(exc).__name__}: {exc}")
                            for i in chunk]
                    failed = True
                for i, row in zip(chunk, made, strict=True):
                    rows[i] = row
                    if not failed:
                        store.put(_key(units[i]), row)
                if progress is not None:
                    progress(len(chunk), failed)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    finally:
        store.close()
    done = [r if r is not None else error_row(units[i], "the run did not finish")
            for i, r in enumerate(rows)]
    out = []
    for (point, engine, repeat, job), at in zip(jobs, controls, strict=True):
        own = done[index[_key(job)]]
        row = judged(own, None if at is None else done[at])
        # As the store keeps a row: the same whether the run was made now or kept.
        row = dataclasses.replace(row, evidence=Evidence(), steps=())
        out.append(SweepRun(point, engine, repeat, job.seed, row))
    return out

