"""Command line: ``testbed run | validate | list | history | compare | bench | reference | lab |
sweep``. With :mod:`testbed.cli_lab` (the ``lab`` commands) and :mod:`testbed.cli_sweep`, the
only modules that print or exit.

Exit status: 0 every outcome as expected; 2 some outcome differs from its expectation (for
``compare``: some outcome changed between the two runs); 1 bad input or a failure (a scenario
file that does not load, an ``error`` outcome).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import click

from . import registry
from ._version import __version__
from .cli_lab import lab
from .cli_sweep import sweep
from .errors import ConfigError, ScenarioError
from .results import (
    Change,
    ResultRow,
    RunInfo,
    RunStore,
    StoreError,
    write_junit,
    write_results_json,
)
from .results.publish import OutputError, StagedOutput, set_new_file_mode
from .scenarios import Job, Scenario, load_scenarios, plan, run_jobs, units
from .scenarios.model import PROGRAM_ATTACK
from .signals import SIGNALLED, Terminated
from .text import escape, plural
from .types import Outcome

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_MISMATCH = 0, 1, 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
HISTORY = "history.sqlite"
MAX_SEED = 2**63 - 1


def _clean(text: str) -> str:
    """Text from a plugin or a scenario, safe for one terminal line (see :mod:`testbed.text`)."""
    return escape(text)


def _origin(distribution: str) -> str:
    if distribution == registry.BUILTIN_DISTRIBUTION:
        return ""
    return f"  (plugin: {_clean(distribution)})"


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def _planned_engines(jobs: Sequence[Job]) -> tuple[str, ...]:
    """The engines a run uses, in registry order."""
    used = {job.engine for job in jobs}
    return tuple(name for name in registry.engines.names() if name in used)


def _echo_errors(errors: Sequence[ScenarioError]) -> None:
    for err in errors:
        click.echo(f"error: {err.one_line()}", err=True)


def _echo_weak_evidence(scenarios: Sequence[tuple[Scenario, str]]) -> None:
    """Warn about scenarios whose secret is too small to ever show a success."""
    for scenario, source in scenarios:
        warning = scenario.evidence_warning()
        if warning is not None:
            where = "goal" if scenario.attack == PROGRAM_ATTACK else "params"
            click.echo(f"warning: {_clean(source)}: {where}: {warning}", err=True)


def _profiles(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [p.strip() for p in value.split(",") if p.strip()]
    mitigations = registry.mitigation_names()
    unknown = [n for n in names if n.split("+")[0] not in registry.engines
               or any(m not in mitigations for m in n.split("+")[1:])]
    if unknown:
        raise click.BadParameter(
            f"unknown profile(s) {', '.join(unknown)}; a profile is an engine "
            f"({', '.join(registry.engines.names())}) with optional +mitigation "
            f"({', '.join(mitigations)})"
        )
    return names


class _LazyHelpOption(click.Option):
    """An option whose help text is made when help is shown, not when the CLI is imported
    (the registries, and so the plugins, load only when something needs them)."""

    def __init__(self, *args: Any, lazy_help: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_help = lazy_help

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = self._lazy_help()
        return super().get_help_record(ctx)


def _echo_plugin_problems() -> None:
    for problem in (*registry.attacks.problems, *registry.engines.problems):
        click.echo(f"warning: {_clean(problem.one_line())}", err=True)


def _profiles_help() -> str:
    return (f"Comma-separated engines ({', '.join(registry.engines.names())}) or profiles "
            f"(engine+mitigation, e.g. tme+secretmem).")




def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    SIGNALLED.append(signum)
    raise Terminated()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    SIGNALLED.append(signum)
    raise KeyboardInterrupt()


def _quiet_in_finalisers(
    previous: Callable[[sys.UnraisableHookArgs], object],
) -> Callable[[sys.UnraisableHookArgs], None]:
    """An unraisable-exception hook that stays silent about our signal exceptions: a signal
    that arrives while Python runs a finaliser (a weakref callback, ``__del__``) raises there,
    and Python prints that exception with a traceback and goes on. The signal is in
    :data:`SIGNALLED`, where a sweep notices it; anything else goes to ``previous``."""

    def hook(info: sys.UnraisableHookArgs) -> None:
        if info.exc_type is not None and issubclass(info.exc_type, (KeyboardInterrupt,
                                                                    Terminated)):
            return
        previous(info)

    return hook


class _Command(click.Group):
    """The command group, with the exit statuses the README promises: usage errors exit 1
    (2 means an outcome differed from its expectation), Ctrl-C 130 and SIGTERM 143, each with
    one line and no traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        SIGNALLED.clear()  # this invocation's signals only
        handlers = (signal.signal(signal.SIGINT, _raise_interrupt),
                    signal.signal(signal.SIGTERM, _raise_terminated))
        unraisable = sys.unraisablehook
        sys.unraisablehook = _quiet_in_finalisers(unraisable)
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.ClickException as exc:  # usage errors included
            exc.show()
            sys.exit(EXIT_FAILURE)
        except (click.Abort, KeyboardInterrupt):
            click.echo("\ninterrupted: nothing was written; earlier reports and history are "
                       "unchanged", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Terminated:
            click.echo("terminated: nothing was written; earlier reports and history are "
                       "unchanged", err=True)
            sys.exit(EXIT_TERMINATED)
        except Exception:
            # A signal raised inside a C extension's import comes out as that extension's own
            # error (pandas: "could not import module"): still the signal's doing.
            if not SIGNALLED:
                raise
            terminated = SIGNALLED[-1] == signal.SIGTERM
            click.echo(f"{'terminated' if terminated else 'interrupted'}: nothing was written; "
                       "earlier reports and history are unchanged", err=True)
            sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
        finally:
            signal.signal(signal.SIGINT, handlers[0])
            signal.signal(signal.SIGTERM, handlers[1])
            sys.unraisablehook = unraisable
        if SIGNALLED:  # swallowed in a finaliser: the command went on and finished
            click.echo(f"{'terminated' if SIGNALLED[-1] == signal.SIGTERM else 'interrupted'} "
                       "too late to stop: the command had finished its work", err=True)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


@click.group(cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="testbed")
@click.option("-v", "--verbose", is_flag=True, help="Log what the runner does.")
def main(verbose: bool) -> None:
    """Run memory-encryption attacks on an emulated machine and report what each engine stops."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--profiles", cls=_LazyHelpOption, lazy_help=_profiles_help)
@click.option("--seed", default=1, show_default=True, type=click.IntRange(0, MAX_SEED),
              help="Makes the results byte-identical between runs.")
@click.option("--out", "out_dir", default="reports", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--jobs", default=0, type=click.IntRange(0, 64),
              help="Worker processes (0: one per core).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write JUnit XML here (a mismatch is a failure, an error an error).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Run history database [default: OUT/history.sqlite].")
def run(paths: tuple[str, ...], profiles: str | None, seed: int, out_dir: Path,
        jobs: int, junit_path: Path | None, db_path: Path | None) -> None:
    """Run every scenario in PATHS (files or folders; default: the shipped scenarios) under
    every profile."""
    _echo_plugin_problems()
    if not paths:
        paths = (str(_shipped_scenarios()),)
    wanted = _profiles(profiles)
    scenarios, errors = load_scenarios(paths)
    _echo_errors(errors)
    _echo_weak_evidence(scenarios)
    job_list = plan(scenarios, seed, wanted)
    if not job_list:
        click.echo("error: nothing to run (no valid scenario matches)", err=True)
        sys.exit(EXIT_FAILURE)
    # Every output is checked before any work: a bad path costs nothing but one line.
    out = StagedOutput(out_dir)
    junit_tmp: Path | None = None
    try:
        out.prepare()
        if junit_path is not None:
            junit_path = Path(os.path.abspath(junit_path))
            junit_tmp = _stage_beside(junit_path)
        store = RunStore.open(Path(os.path.abspath(db_path or out_dir / HISTORY)))
    except (OutputError, StoreError, OSError) as exc:
        out.discard()
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    try:
        rows, info = _run_all(job_list, jobs, seed, wanted)
        run_id = _publish(out, store, info, rows, scenarios, errors, junit_path, junit_tmp)
    except BaseException as exc:
        out.discard()
        if junit_tmp is not None:
            junit_tmp.unlink(missing_ok=True)
        if not isinstance(exc, (OutputError, StoreError)):
            raise
        click.echo(f"error: {exc}; earlier reports and history are unchanged", err=True)
        sys.exit(EXIT_FAILURE)
    _summary(rows, errors)
    click.echo(f"report: {out_dir / 'index.html'}")
    click.echo(f"results: {out_dir / 'results.json'}, {out_dir / 'results.csv'}")
    click.echo(f"history: run {run_id} in {db_path or out_dir / HISTORY}")
    if errors or any(r.outcome is Outcome.ERROR for r in rows):
        sys.exit(EXIT_FAILURE)
    if any(r.as_expected is False for r in rows):
        sys.exit(EXIT_MISMATCH)


def _shipped_scenarios() -> Path:
    from .shipped import scenarios_dir

    try:
        return scenarios_dir()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)


def _stage_beside(path: Path) -> Path:
    """A temporary file beside ``path``, to be renamed onto it when the run is published."""
    if path.is_dir():
        raise OutputError(f"{path}: is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here: {exc.strerror or exc}") from None
    os.close(fd)
    return Path(name)


def _run_all(job_list: Sequence[Job], jobs: int, seed: int, wanted: list[str] | None
             ) -> tuple[list[ResultRow], RunInfo]:
    workers = jobs or os.cpu_count() or 1
    started = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    t0 = time.perf_counter()
    runs = len(units(job_list)[0])
    with click.progressbar(length=runs, label=f"{len(job_list)} runs + {runs - len(job_list)} "
                           "controls",
                           file=sys.stderr, show_pos=True,
                           item_show_func=lambda r: r and f"{r.scenario} / {r.profile}"
                           ) as bar:
        def progress(row: ResultRow) -> None:
            bar.update(1, row)

        rows = run_jobs(job_list, workers, progress)
    info = RunInfo(seed, __version__, started, time.perf_counter() - t0,
                   tuple(wanted or _planned_engines(job_list)), workers)
    return rows, info


def _publish(out: StagedOutput, store: RunStore, info: RunInfo, rows: list[ResultRow],
             scenarios: list[tuple[Scenario, str]], errors: Sequence[ScenarioError],
             junit_path: Path | None, junit_tmp: Path | None) -> int:
    """Write every output into the staging folder, record the run, and publish both."""
    from .report import Previous, write_report, write_results_csv  # late: slow imports

    try:
        write_results_csv(out.staging / "results.csv", rows)
        if junit_tmp is not None:
            write_junit(junit_tmp, rows, info.duration_s)
        with out.lock():
            # A run killed while publishing left a pending run: keep it if its folder is the
            # one in place, else drop it.
            store.settle_pending(out.absolute)
            run_id = store.record(info, rows, pending_in=out.absolute)
            try:
                info = replace(info, history_id=run_id)
                write_results_json(out.staging / "results.json", info, rows)
                before = store.previous_of_same_scenarios(run_id)
                previous = None if before is None else Previous(
                    before, store.compare(before, run_id))
                write_report(out.staging, info, rows, scenarios, previous, errors)
                out.publish()
            except BaseException:
                if not out.published:  # the exchange is the commit point
                    store.forget(run_id)
                raise
            store.mark_published(run_id)
            if junit_path is not None and junit_tmp is not None:
                set_new_file_mode(junit_tmp)
                os.replace(junit_tmp, junit_path)
    except OSError as exc:
        raise OutputError(f"cannot write the run's outputs: {exc.strerror or exc}"
                          f"{f' ({exc.filename})' if exc.filename else ''}") from None
    return run_id


def _summary(rows: Sequence[ResultRow], errors: Sequence[ScenarioError]) -> None:
    width = max(len(r.scenario) for r in rows)
    profile_width = max(len(r.profile) for r in rows)
    for r in rows:
        mark = ""
        if r.as_expected is False:
            mark = f"  (expected {r.expected.value if r.expected else '-'})"
        click.echo(f"{r.scenario:<{width}}  {r.profile:<{profile_width}}  {r.outcome.value}{mark}")
    mismatches = sum(r.as_expected is False for r in rows)
    line = f"{len(rows)} runs, {mismatches} differ from their expectation"
    if errors:
        files = len({e.path for e in errors})
        line += (f", {files} scenario file{'s' if files != 1 else ''} did not load (listed "
                 "above and on the report's index)")
    click.echo(line)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
def validate(files: tuple[str, ...]) -> None:
    """Check scenario files without running them."""
    _echo_plugin_problems()
    scenarios, errors = load_scenarios(files)
    for scenario, source in scenarios:
        click.echo(f"ok: {_clean(source)}: {scenario.id} ({scenario.attack})")
    _echo_weak_evidence(scenarios)
    _echo_errors(errors)
    sys.exit(EXIT_FAILURE if errors or not scenarios else EXIT_OK)


@main.command()
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the figures to this JSON file.")
@click.option("--scenarios", "scenario_dir", default=None,
              type=click.Path(exists=True),
              help="Scenario matrix to time [default: the shipped scenarios].")
@click.option("--quick", is_flag=True, help="Tiny sizes: checks the command, measures nothing.")
def bench(json_path: Path | None, scenario_dir: str | None, quick: bool) -> None:
    """Measure engine and attack speed next to raw OpenSSL on this machine."""
    import json

    from .bench import BACKEND_KEY, BENCH_KEYS, DETAIL_KEYS, QUICK_KEY, TARGETS, meets, run_bench
    from .crypto import mask_backend
    from .results import atomic_write_text

    workers = os.cpu_count() or 1
    figures = run_bench([scenario_dir or str(_shipped_scenarios())], workers, quick,
                        lambda what: click.echo(f"measuring {what} ...", err=True))
    if quick:
        click.echo("--quick: tiny sizes and one repetition, to check that the command works; "
                   "these figures measure nothing and are not compared with the targets")
    labels = {
        "matrix_s_all_jobs": f"({workers} jobs)",
        "engine_mb_s": "(1 thread)",
        "engine_mb_s_threads": f"(threads={figures['engine_threads']:.0f})",
    }
    for key, (op, bound) in TARGETS.items():
        shown_bound = f"{bound:g} s" if key.endswith("_s_1_job") else f"{bound:.2f}"
        verdict = ("not measured (--quick)" if quick else
                   "not measured (the dask extra is not installed)" if key not in figures else
                   "met" if meets(key, figures[key]) else "NOT met")
        labels[key] = f"(target {op} {shown_bound}: {verdict})"
    keys = BENCH_KEYS + DETAIL_KEYS
    for key in keys:
        value = figures.get(key)
        shown = "-" if value is None else f"{value:.3f}" if value < 10 else f"{value:,.0f}"
        label = labels.get(key, "" if value is not None else "(not measured: no dask extra)")
        click.echo(f"{key:<31} {shown:>18}  {label}".rstrip())
    backend = mask_backend()
    click.echo(f"{BACKEND_KEY:<31} {backend:>18}  (XTS mask passes; TESTBED_ACCEL=0: numpy)")
    if json_path is not None:
        doc: dict[str, float | str | bool | None] = {k: figures.get(k) for k in keys}
        doc[BACKEND_KEY] = backend
        doc[QUICK_KEY] = quick
        atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")
        set_new_file_mode(json_path)
        click.echo(f"written: {json_path}")


def _store(db_path: Path) -> RunStore:
    try:
        return RunStore.open(db_path, read_only=True)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)


_DB_OPTION = click.option("--db", "db_path", default=f"reports/{HISTORY}", show_default=True,
                          type=click.Path(dir_okay=False, path_type=Path),
                          help="Run history database.")


@main.command()
@_DB_OPTION
def history(db_path: Path) -> None:
    """List recorded runs."""
    try:
        runs = _store(db_path).runs()
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    for r in runs:
        click.echo(f"run {r.id:>4}  {r.started}  seed {r.seed:<6} {r.results:>4} results  "
                   f"{r.duration_s:7.2f} s  v{r.version}  [{r.profiles}]")


@main.command()
@click.argument("run_a", type=int)
@click.argument("run_b", type=int)
@click.option("--json", "as_json", is_flag=True,
              help="Print the comparison as one JSON object instead of text.")
@_DB_OPTION
def compare(run_a: int, run_b: int, as_json: bool, db_path: Path) -> None:
    """Show what changed from RUN_A to RUN_B: outcomes that changed, and results that are in
    one run only (added, removed).

    Exit status 2 when an outcome changed (so CI can gate on it), else 0; 1 on a problem.
    """
    store = _store(db_path)
    try:
        changes = store.compare(run_a, run_b)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    changed = [c for c in changes if c.before is not None and c.after is not None]
    added = [c for c in changes if c.before is None]
    removed = [c for c in changes if c.after is None]
    if as_json:
        import json

        def result(scenario: str, engine: str, outcome: str | None,
                   profile: str | None) -> dict[str, str | None]:
            return {"scenario": scenario, "engine": engine, "outcome": outcome,
                    "profile": profile}

        doc = {
            "before": run_a, "after": run_b,
            "changed": [{"scenario": c.scenario, "engine": c.engine, "before": c.before,
                         "after": c.after, "profile_before": c.profile_before,
                         "profile_after": c.profile_after} for c in changed],
            "added": [result(c.scenario, c.engine, c.after, c.profile_after) for c in added],
            "removed": [result(c.scenario, c.engine, c.before, c.profile_before)
                        for c in removed],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        _echo_comparison(run_a, run_b, changed, added, removed)
    sys.exit(EXIT_MISMATCH if changed else EXIT_OK)


def _echo_comparison(run_a: int, run_b: int, changed: Sequence[Change],
                     added: Sequence[Change], removed: Sequence[Change]) -> None:
    def where(c: Change) -> str:
        return f"{c.scenario}  {c.engine}:"

    sections = [
        (f"changed ({len(changed)}):", [[where(c), f"{c.before} ({c.profile_before})", "->",
                                          f"{c.after} ({c.profile_after})"] for c in changed]),
        (f"added in run {run_b} ({len(added)}):",
         [[where(c), f"{c.after} ({c.profile_after})"] for c in added]),
        (f"removed since run {run_a} ({len(removed)}):",
         [[where(c), f"{c.before} ({c.profile_before})"] for c in removed]),
    ]
    for title, rows in sections:
        if rows:
            click.echo(title)
            for line in _table(rows):
                click.echo(line)
    click.echo(f"{plural(len(changed), 'outcome')} changed from run {run_a} to run {run_b}; "
               f"{plural(len(added), 'result')} added, {len(removed)} removed")


@main.command()
@click.option("--update", "update_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Rewrite the reference blocks of this Markdown file in place.")
@click.option("--check", "check_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Exit 2 if the reference blocks of this Markdown file are out of date.")
@click.argument("sections", nargs=-1)
def reference(update_path: Path | None, check_path: Path | None, sections: tuple[str, ...]
              ) -> None:
    """Print the reference tables (attacks, engines, mitigations, platform) from the
    registries, or refresh them in a Markdown file."""
    from . import reference as ref
    from .results import atomic_write_text

    path = update_path or check_path
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            click.echo(f"error: {path}: {exc.strerror or exc}", err=True)
            sys.exit(EXIT_FAILURE)
        new, changed = ref.update_text(text)
        if check_path is not None:
            if changed:
                click.echo(f"{path}: out of date: {', '.join(changed)} (run testbed reference "
                           f"--update {path})", err=True)
                sys.exit(EXIT_MISMATCH)
            click.echo(f"{path}: reference tables up to date")
            return
        if changed:
            mode = stat.S_IMODE(path.stat().st_mode)
            atomic_write_text(path, new)
            os.chmod(path, mode)  # the file keeps its mode
        click.echo(f"{path}: {', '.join(changed) or 'nothing'} updated")
        return
    unknown = [s for s in sections if s not in ref.SECTIONS]
    if unknown:
        click.echo(f"error: unknown section(s) {', '.join(unknown)}; known: "
                   f"{', '.join(ref.SECTIONS)}", err=True)
        sys.exit(EXIT_FAILURE)
    for name in sections or tuple(ref.SECTIONS):
        click.echo(f"## {name}\n\n{ref.render(name)}\n")


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Rows as lines of aligned columns (the last column is not padded)."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [indent + "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]])
            .rstrip() for r in rows]


def _mitigation_values(m: registry.MitigationInfo) -> str:
    return "true | false" if m.kind is bool else f"0 .. {m.maximum or 0:,} (0: off)"


def _attack_of(scenario: Scenario) -> str:
    """A scenario's attack kind, with a program's capabilities."""
    threat = getattr(scenario.params, "threat", None)
    if scenario.attack == PROGRAM_ATTACK and threat is not None:
        return f"{PROGRAM_ATTACK} ({', '.join(threat) or 'no capability'})"
    return scenario.attack


@main.command(name="list")
@click.argument("paths", nargs=-1, type=click.Path())
def list_(paths: tuple[str, ...]) -> None:
    """List attacks, engines, mitigations and the scenarios in PATHS (default: scenarios/)."""
    click.echo("attacks:")
    rows = []
    for entry in registry.attacks.entries():
        attack = entry.item
        needs = (", ".join(attack.capabilities) if entry.name != PROGRAM_ATTACK
                 else "what its threat: lists")
        rows.append([entry.name, _clean(attack.title),
                     f"needs: {_clean(needs or 'nothing')}{_origin(entry.distribution)}"])
    for line in _table(rows):
        click.echo(line)
    click.echo("engines:")
    for line in _table([[e.name, _clean(_first_line(e.item.__doc__)) + _origin(e.distribution)]
                        for e in registry.engines.entries()]):
        click.echo(line)
    click.echo("mitigations (a profile adds +name; a scenario sets them in mitigations:):")
    for line in _table([["name", "setting", "values", "what it does"],
                        *([m.name, m.setting, _mitigation_values(m), m.description]
                          for m in registry.MITIGATIONS)]):
        click.echo(line)
    _echo_plugin_problems()
    targets = paths or (("scenarios",) if Path("scenarios").is_dir() else
                        (str(_shipped_scenarios()),))
    if targets:
        scenarios, errors = load_scenarios(targets)
        click.echo("scenarios:")
        for line in _table([[scenario.id, _attack_of(scenario), _clean(source)]
                            for scenario, source in scenarios]):
            click.echo(line)
        _echo_errors(errors)


main.add_command(lab)
main.add_command(sweep)

if __name__ == "__main__":  # python -m testbed.cli
    main()
