"""Command line of sweeps: ``testbed sweep SPEC``. With :mod:`testbed.cli` and
:mod:`testbed.cli_lab`, the only modules that print or exit.

Exit status: 0 done; 1 bad input or a failure, with one line saying why (an ``error`` run
included: the table says which).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import click

from ._version import __version__
from .errors import ConfigError, ScenarioError
from .text import escape, plural

__all__ = ["sweep"]

EXIT_OK, EXIT_FAILURE = 0, 1


def _signalled() -> BaseException | None:
    """The exception a signal that arrived meant to raise (``None``: no signal): a Ctrl-C
    Python swallowed, arriving inside a finaliser, still stops the sweep."""
    from .signals import SIGNALLED, Terminated

    if not SIGNALLED:
        return None
    return Terminated() if SIGNALLED[-1] == signal.SIGTERM else KeyboardInterrupt()


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {escape(message, 2000)}", err=True)
    sys.exit(EXIT_FAILURE)


@click.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: reports/sweeps/ID].")
@click.option("--jobs", default=0, type=click.IntRange(0, 256),
              help="Workers (0: one per core).")
@click.option("--dask", is_flag=True, help="Run on a Dask LocalCluster on this machine.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run on an existing Dask cluster (tcp://HOST:PORT).")
def sweep(spec: Path, out_dir: Path | None, jobs: int, dask: bool, scheduler: str | None
          ) -> None:
    """Run the sweep SPEC: every point of its grid under every engine, SEEDS times each."""
    from .results import RunInfo, RunStore, StoreError, write_results_json
    from .results.publish import OutputError, StagedOutput
    from .sweeps.outputs import OWNED, missing_metrics, write_outputs
    from .sweeps.run import executor, run_sweep
    from .sweeps.spec import load_sweep

    if dask and scheduler:
        _fail("give --dask or --scheduler, not both")
    try:
        plan = load_sweep(spec)
    except ScenarioError as exc:
        for err in (exc, *exc.more):
            click.echo(f"error: {err.one_line()}", err=True)
        sys.exit(EXIT_FAILURE)
    target = out_dir or Path("reports") / "sweeps" / plan.sweep.id
    out = StagedOutput(target, OWNED)
    try:
        out.prepare()
        store = RunStore.open(Path(os.path.abspath(target / "history.sqlite")))
    except (OutputError, StoreError, OSError) as exc:
        out.discard()
        _fail(str(exc))
    workers = jobs or os.cpu_count() or 1
    started = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    t0 = time.perf_counter()
    bar: Any = None
    counts = {"made": 0, "kept": 0, "failed": 0}

    def planned(todo: int, kept: int) -> None:
        nonlocal bar
        counts["kept"] = kept
        click.echo(f"{plan.sweep.id}: {plural(len(plan.points), 'point')} x "
                   f"{plural(len(plan.engines), 'engine')} x {plural(plan.sweep.seeds, 'seed')}:"
                   f" {plural(todo, 'run')} to make, controls included"
                   + (f", {kept} kept from an earlier run" if kept else ""), err=True)
        bar = click.progressbar(length=todo, label="sweep", file=sys.stderr, show_pos=True,
                                show_eta=True)
        bar.__enter__()

    def progress(n: int, failed: bool) -> None:
        counts["made"] += n
        counts["failed"] += n if failed else 0
        if bar is not None:
            bar.update(n)

    try:
        try:
            with executor(workers, dask, scheduler) as (pool, described):
                runs = run_sweep(plan, target, pool, progress, planned, workers, _signalled)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        seconds = time.perf_counter() - t0
        info: dict[str, Any] = {"executor": described, "made": counts["made"],
                                "kept": counts["kept"], "seconds": seconds}
        rows = [replace(r.row, scenario=f"{plan.sweep.id}@{r.point.index}.{r.repeat}")
                for r in runs]
        run = RunInfo(plan.sweep.seed, __version__, started, seconds,
                      tuple(plan.engines), workers)
        with out.lock():
            store.settle_pending(out.absolute)
            run_id = store.record(run, rows, pending_in=out.absolute)
            try:
                write_results_json(out.staging / "results.json", replace(run, history_id=run_id),
                                   rows)
                points = write_outputs(out.staging, plan, runs, info)
                out.publish()
            except BaseException:
                if not out.published:
                    store.forget(run_id)
                raise
            store.mark_published(run_id)
    except ConfigError as exc:
        out.discard()
        _fail(str(exc))
    except (OutputError, StoreError) as exc:
        out.discard()
        _fail(f"{exc}; the earlier sweep outputs are unchanged")
    except BaseException:
        out.discard()
        raise
    errors = sum(r.row.outcome.value == "error" for r in runs)
    click.echo(f"{plural(len(runs), 'run')} in {len(points)} point-engine rows"
               f" ({counts['made']} made and {counts['kept']} kept, controls included) in "
               f"{info['seconds']:.1f} s on {described}")
    click.echo(f"page: {target / 'index.html'}; tables: {target / 'sweep.csv'}, "
               f"{target / 'points.csv'} (and .parquet); history: run {run_id} in "
               f"{target / 'history.sqlite'}")
    for name, have in missing_metrics(plan, points):
        click.echo(f"warning: no run reported {escape(name)}, so its figure is empty; the runs "
                   f"report: {', '.join(escape(h) for h in have) or 'no numeric metric'}",
                   err=True)
    if errors:
        click.echo(f"error: {plural(errors, 'run')} failed (outcome error): see sweep.csv",
                   err=True)
        sys.exit(EXIT_FAILURE)
