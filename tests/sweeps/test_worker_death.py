"""A worker that dies costs the sweep only the run it was making: that run is an ``error``
row, every other run is made and kept, and nothing hangs."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support.crashing import KillsItsProcess

from testbed import registry
from testbed.sweeps import executor, load_sweep, run_sweep
from testbed.types import Outcome

SPEC = """\
id: deaths
title: Some runs end their process
scenario:
  id: deaths
  title: Some runs end their process
  attack: kills-its-process
  params: {secret_bytes: 16}
  teaching: {summary: Runs that end their process., look_for: The error rows.}
grid:
  params.secret_bytes: [16, 24]
  params.die: [false, true]
combine: product
engines: [none, tme]
seeds: 3
plots:
  - x: params.secret_bytes
"""


@pytest.fixture
def spec(tmp_path: Path) -> Iterator[Path]:
    registry.attacks.add(KillsItsProcess())
    path = tmp_path / "deaths.yaml"
    path.write_text(SPEC)
    try:
        yield path
    finally:
        registry.attacks.remove(KillsItsProcess.kind)


def outcomes(spec: Path, out: Path, workers: int, dask: bool = False
             ) -> dict[tuple[bool, str], set[Outcome]]:
    plan = load_sweep(spec)
    with executor(workers, dask=dask) as (pool, _):
        runs = run_sweep(plan, out, pool, workers=workers)
    found: dict[tuple[bool, str], set[Outcome]] = {}
    for run in runs:
        found.setdefault((run.point.values["params.die"], run.engine), set()).add(
            run.row.outcome)
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_only_the_run_whose_process_died_is_an_error(spec: Path, tmp_path: Path,
                                                     workers: int) -> None:
    found = outcomes(spec, tmp_path / "out", workers)
    assert found == {
        (False, "none"): {Outcome.SUCCEEDED}, (False, "tme"): {Outcome.MITIGATED},
        (True, "none"): {Outcome.ERROR}, (True, "tme"): {Outcome.ERROR},
    }
    plan = load_sweep(spec)
    with executor(1) as (pool, _):
        again = run_sweep(plan, tmp_path / "out", pool)
    reasons = {r.row.reason for r in again if r.point.values["params.die"]}
    assert reasons == {"its worker process died while making it, twice (the second time it "
                       "ran alone)"}


class KilledWorker(Exception):
    """What Dask raises for a task after the workers that ran it kept dying."""


class Dying(cf.Executor):
    """Runs a chunk here, or fails it as Dask does when it holds a run that kills its
    worker: the chunk is lost whole, whichever of its runs was the cause."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        jobs, _track = args
        self.sent.append(len(jobs))
        future: cf.Future[Any] = cf.Future()
        if any(job.scenario.params.die for job in jobs):
            future.set_exception(KilledWorker("all those workers died while running it"))
        else:
            future.set_result(fn(jobs, None))
        return future


def test_a_task_dask_gave_up_on_is_run_again_one_run_at_a_time(spec: Path,
                                                                  tmp_path: Path) -> None:
    pool = Dying()
    runs = run_sweep(load_sweep(spec), tmp_path / "out", pool, workers=1)
    assert max(pool.sent) > 1 and pool.sent.count(1) > 0  # chunks, then runs one by one
    for run in runs:
        if run.point.values["params.die"]:
            assert run.row.outcome is Outcome.ERROR
            assert run.row.reason.startswith("worker failed: KilledWorker")
        else:
            assert run.row.outcome is not Outcome.ERROR
