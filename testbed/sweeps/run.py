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

import collections
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
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
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

__all__ = ["CACHE", "LocalPool", "RecordedMetrics", "SweepRun", "executor", "run_sweep"]

CACHE = ".sweep-runs.sqlite"
"""The file in a sweep's output folder that keeps every finished run."""
MAX_CHUNK = 32
"""Most runs sent to a worker in one task."""
STOP_POLL_S = 0.25
"""How often, while runs are out, the sweep asks whether it was told to stop."""
MAX_RESTARTS = 8
"""Most times, in one sweep, the local processes are started again after one died while no
run was in progress (a death no run can be blamed for)."""


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



class LocalPool(cf.Executor):
    """Local worker processes that can be started again after one of them died (a
    :class:`~concurrent.futures.ProcessPoolExecutor` is broken for good once one does)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = self._start()

    def _start(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.workers, initializer=worker_init)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        return self._pool.submit(fn, *args, **kwargs)

    def restart(self) -> None:
        """Stop what is left of the processes and start new ones."""
        self._stop()
        self._pool = self._start()

    def _stop(self) -> None:
        # The processes go first (they leave Ctrl-C to us and would finish their runs); the
        # pool then sees them gone and fails what was left, which shutdown waits for. Futures
        # cancelled before that would make the pool's own thread fail on them.
        for child in multiprocessing.active_children():
            child.terminate()
        self._pool.shutdown(wait=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._stop()


@contextlib.contextmanager
def executor(workers: int, dask: bool = False, scheduler: str | None = None
             ) -> Iterator[tuple[cf.Executor, str]]:
    """The executor a sweep runs on, and its description.

    Raises:
        ConfigError: Dask is asked for and not installed, or the scheduler cannot be reached.
    """
    if not dask and scheduler is None:
        pool = LocalPool(workers)
        try:
            yield pool, f"{workers} local process{'es' if workers != 1 else ''}"
        finally:
            pool.shutdown()
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


def run_chunk(jobs: list[Job], track: tuple[str, list[int]] | None = None
              ) -> list[ResultRow]:
    """Run a few jobs, one after the other, in one task of the executor (one task per run
    would spend more time sending than running a short one).

    ``track`` (local processes): a folder and the jobs' numbers. The number of the job in
    progress is kept in a file named after this process, so that when a process dies the
    run it was making is known from those that were waiting.
    """
    out = []
    mark = None if track is None else Path(track[0], str(os.getpid()))
    for n, job in enumerate(jobs):
        if mark is not None and track is not None:
            mark.write_text(str(track[1][n]))
        out.append(run_trials(job))
    if mark is not None:
        mark.unlink(missing_ok=True)
    return out


def chunk_size(runs: int, workers: int) -> int:
    """Runs per task: about eight tasks per worker, so that the last ones are short, and at
    most :data:`MAX_CHUNK` runs between two saves."""
    return max(1, min(MAX_CHUNK, math.ceil(runs / (max(1, workers) * 8))))


def _killed_worker(exc: BaseException) -> bool:
    """Dask gave up on a task whose workers kept dying while running it."""
    return type(exc).__name__ == "KilledWorker"


def _dispatch(units: list[Job], todo: list[int], pool: cf.Executor, workers: int,
              finish: Callable[[list[int], list[ResultRow], bool], None],
              stop: Callable[[], BaseException | None] | None = None) -> None:
    """Make the runs ``todo`` of ``units`` on ``pool``, handing each chunk's rows to
    ``finish`` (``True``: they are ``error`` rows, not to be kept).

    A worker that dies costs only the run it was making. Local processes: the pool is
    started again, the runs that were in progress when it died are each run again alone, and
    one that kills its process alone too becomes an ``error`` row; the runs that were waiting
    are sent again. Dask restarts its workers itself and gives up on a task whose workers kept
    dying while it was on them (``KilledWorker``), which may be a task that only waited on a
    worker beside the cause: that task's runs are each run again alone, and a run it gives up
    on alone too becomes an ``error`` row.

    ``stop`` is asked between waits for an exception to raise (a Ctrl-C whose
    ``KeyboardInterrupt`` Python swallowed because it arrived inside a finaliser).
    """
    size = chunk_size(len(todo), workers)
    queue: collections.deque[list[int]] = collections.deque(
        todo[k:k + size] for k in range(0, len(todo), size))
    alone: collections.deque[int] = collections.deque()
    running: dict[cf.Future[list[ResultRow]], list[int]] = {}
    folder = tempfile.mkdtemp(prefix="testbed-sweep-") if isinstance(pool, LocalPool) else None
    restarts = 0

    def submit(chunk: list[int]) -> None:
        track = None if folder is None else (folder, chunk)
        running[pool.submit(run_chunk, [units[i] for i in chunk], track)] = chunk

    def fail(chunk: list[int], message: str) -> None:
        finish(chunk, [error_row(units[i], message) for i in chunk], True)

    try:
        while queue or alone or running:
            solo = None
            if not running:
                if alone:  # nothing else running: if its process dies, the run is the cause
                    solo = alone.popleft()
                    submit([solo])
                else:
                    while queue:
                        submit(queue.popleft())
            while True:
                done, _ = cf.wait(running, timeout=STOP_POLL_S, return_when=cf.FIRST_COMPLETED)
                signalled = stop() if stop is not None else None
                if signalled is not None:
                    raise signalled
                if done:
                    break
            lost: list[int] = []
            for future in done:
                chunk = running.pop(future)
                try:
                    made = future.result()
                except BrokenProcessPool:
                    lost += chunk
                except Exception as exc:
                    if _killed_worker(exc) and solo is None:
                        alone.extend(chunk)
                    else:
                        fail(chunk, f"worker failed: {type(exc).__name__}: {exc}")
                else:
                    finish(chunk, made, False)
            if not lost:
                continue
            # A process died: the pool is broken, and every task still out fails too.
            for future, chunk in list(running.items()):
                try:
                    made = future.result()
                except Exception:
                    lost += chunk
                else:
                    finish(chunk, made, False)
            running.clear()
            if folder is None or not isinstance(pool, LocalPool):
                left = [*lost, *(i for chunk in queue for i in chunk)]
                fail(left, "worker failed: a worker process died")
                return
            making = set()
            for mark in Path(folder).iterdir():
                with contextlib.suppress(OSError, ValueError):
                    making.add(int(mark.read_text()))
                mark.unlink(missing_ok=True)
            if solo is not None:
                fail([solo], "its worker process died while making it, twice (the second "
                     "time it ran alone)")
                lost.remove(solo)
            suspects = [i for i in lost if i in making]
            alone.extend(suspects)
            waiting = [i for i in lost if i not in making]
            queue.extendleft(reversed([waiting[k:k + size]
                                       for k in range(0, len(waiting), size)]))
            if solo is None and not suspects:  # no run to blame: count it against a bound
                restarts += 1
            if restarts > MAX_RESTARTS:
                left = [*alone, *(i for chunk in queue for i in chunk)]
                fail(left, f"worker processes died {restarts} times with no run in progress: "
                     "the sweep stopped making runs")
                return
            pool.restart()
    except BaseException:
        if not isinstance(pool, LocalPool):  # a local pool stops its processes itself
            for future in running:
                future.cancel()
        raise
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def run_sweep(plan: SweepPlan, out_dir: Path, pool: cf.Executor,
              progress: Callable[[int, bool], None] | None = None,
              planned: Callable[[int, int], None] | None = None,
              workers: int = 1,
              stop: Callable[[], BaseException | None] | None = None) -> list[SweepRun]:
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

        def finish(chunk: list[int], made: list[ResultRow], failed: bool) -> None:
            for i, row in zip(chunk, made, strict=True):
                rows[i] = row
                if not failed:
                    store.put(_key(units[i]), row)
            if progress is not None:
                progress(len(chunk), failed)

        _dispatch(units, todo, pool, workers, finish, stop)
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

