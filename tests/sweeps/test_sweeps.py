"""Sweeps: the spec's limits and errors, the grid, results equal whatever runs them, resume
after a kill, reuse of shared points, the tables' statistics and the page."""

from __future__ import annotations

import csv
import importlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _support import paths
from click.testing import CliRunner

from testbed.cli import main
from testbed.errors import ConfigError, ScenarioError
from testbed.results.verdicts import wilson_interval
from testbed.scenarios import load_scenarios
from testbed.sweeps import executor, load_sweep
from testbed.sweeps.outputs import birthday
from testbed.sweeps.spec import MAX_RUNS, MAX_VALUES, Range

SMALL = """\
id: small
title: A small dictionary sweep
use: capture-compare
set:
  trials: 1
grid:
  program.2.args.digits: [1, 2]
  program.7.args.digits: [1, 2]
combine: zip
engines: [tme, mktme]
seeds: 3
plots:
  - x: program.2.args.digits
    y: metrics.guesses
"""


def spec(folder: Path, text: str = SMALL, name: str = "sweep.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def sweep(path: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed", "sweep", str(path), "--out",
                           str(out), *args], capture_output=True, text=True, timeout=600,
                          check=False, cwd=path.parent)


def table(out: Path, name: str = "sweep.csv") -> list[dict[str, str]]:
    with open(out / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def kept(store: Path) -> int:
    """How many runs the sweep's store holds (0: none yet, or it is being made)."""
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return 0


def wait_for_kept(store: Path, count: int, proc: subprocess.Popen[Any]) -> None:
    """Wait (two minutes at most) until ``store`` holds ``count`` runs or ``proc`` ends."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists() and kept(store) >= count:
            return
        time.sleep(0.05)


def refused(tmp_path: Path, text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        load_sweep(spec(tmp_path, text))
    return caught.value


# -- the spec -----------------------------------------------------------------------------
def test_ranges_are_computed_not_added_up() -> None:
    assert Range.model_validate({"from": -3, "to": -1, "step": 1}).values() == [-3, -2, -1]
    assert Range.model_validate({"from": 0, "to": 1, "step": 0.1,
                                 "integer": False}).values()[-1] == 1.0
    assert Range.model_validate({"from": 0, "to": 1, "step": 0.1,
                                 "integer": False}).values()[3] == 0.3


def test_ranges_are_arithmetic_or_geometric() -> None:
    assert Range.model_validate({"from": 1, "to": 10, "step": 3}).values() == [1, 4, 7, 10]
    assert Range.model_validate({"from": 16, "to": 1024, "times": 4}).values() == [16, 64, 256,
                                                                                 1024]
    assert Range.model_validate({"from": 0.5, "to": 1.0, "step": 0.25,
                                 "integer": False}).values() == [0.5, 0.75, 1.0]


def test_the_grid_expands_to_points_with_their_scenarios(tmp_path: Path) -> None:
    plan = load_sweep(spec(tmp_path))
    assert [p.values for p in plan.points] == [
        {"program.2.args.digits": 1, "program.7.args.digits": 1},
        {"program.2.args.digits": 2, "program.7.args.digits": 2}]
    assert plan.runs == 2 * 2 * 3
    seeds = {plan.run_seed(p, r) for p in plan.points for r in range(3)}
    assert len(seeds) == 6  # every run its own seed
    product = load_sweep(spec(tmp_path, SMALL.replace("combine: zip", "combine: product")))
    assert len(product.points) == 4


@pytest.mark.parametrize(("change", "field", "message"), [
    (("[1, 2]\n  program.7", f"{{from: 1, to: {MAX_VALUES + 5}, step: 1}}\n  program.7"),
     "grid.program.2.args.digits.to", f"more than {MAX_VALUES} values"),
    (("program.7.args.digits: [1, 2]", "program.7.args.digits: [1, 2, 3]"), "combine",
     "zip needs as many values"),
    (("x: program.2.args.digits", "x: params.nothing"), "plots[0].x", "not a grid key"),
    (("combine: zip", "combine: zip\ncolour: red"), "colour", "unknown key"),
    (("use: capture-compare", "use: no-such"), "use", "no shipped scenario"),
    (("[1, 2]\n  program.7", "[1, 12]\n  program.7"), "grid.program.2.args.digits",
     "the point"),
    (("[1, 2]\n  program.7", "[1, 1]\n  program.7"), "grid.program.2.args.digits",
     "each value once"),
    (("engines: [tme, mktme]", "engines: [tme, tme]"), "engines", "each engine once"),
    (("set:\n  trials: 1", "set:\n  title.x: 3"), "set.title.x", "not a mapping"),
    (("program.7.args.digits: [1, 2]", "program.9.args.digits: [1, 2]"),
     "grid.program.9.args.digits", "not an index"),
    (("set:\n  trials: 1", "set:\n  trials: 1\n  title: Cost $\\frac{ and $"), "", ""),
])
def test_a_bad_spec_is_one_error_with_its_line(tmp_path: Path, change: tuple[str, str],
                                               field: str, message: str) -> None:
    text = SMALL.replace(*change)
    assert text != SMALL
    if not field:  # loads: a title with $ signs is no problem
        assert load_sweep(spec(tmp_path, text)).runs == 12
        return
    error = refused(tmp_path, text)
    assert error.field == field and message in error.message, error.one_line()
    assert error.line > 0


def test_a_sweep_over_the_run_limit_is_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import testbed.sweeps.spec as spec_module

    monkeypatch.setattr(spec_module, "MAX_RUNS", 11)
    error = refused(tmp_path, SMALL)  # 2 points x 2 engines x 3 seeds = 12 runs
    assert error.field == "grid" and "is over 11 runs" in error.message, error.one_line()
    assert MAX_RUNS == 20_000


def test_a_scenario_file_must_stay_in_the_specs_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text((paths.SCENARIOS / "07-capture-compare.yaml").read_text())
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "linked.yaml").symlink_to(outside)
    text = SMALL.replace("use: capture-compare", "scenario: linked.yaml")
    assert "leaves the spec's folder" in refused(folder, text).message
    assert "scenario" in refused(folder, SMALL.replace("use: capture-compare",
                                                       "scenario: ../outside.yaml")).field


def test_a_sweep_over_the_work_limit_is_refused(tmp_path: Path) -> None:
    text = SMALL.replace("use: capture-compare", "use: key-wearout").replace(
        "set:\n  trials: 1", "set:\n  params.trials: 8").replace(
        "  program.2.args.digits: [1, 2]\n  program.7.args.digits: [1, 2]",
        "  params.max_pairs: [262144, 262143, 262142]").replace("seeds: 3", "seeds: 600").replace(
        "    y: metrics.guesses", "").replace("program.2.args.digits", "params.max_pairs")
    error = refused(tmp_path, text)
    assert "over the limit" in error.message, error.one_line()


def test_a_scanned_folder_skips_its_sweeps() -> None:
    loaded, errors = load_scenarios([paths.SCENARIOS])
    assert not errors
    assert all("/sweeps/" not in source for _, source in loaded)
    for path in sorted((paths.SCENARIOS / "sweeps").glob("*.yaml")):
        assert load_sweep(path).runs > 0, path


# -- running ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("reference")
    done = sweep(spec(base), base / "out", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    return base / "out"


def test_results_are_the_same_with_two_workers(reference: Path, tmp_path: Path) -> None:
    done = sweep(spec(tmp_path), tmp_path / "out", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "sweep.csv").read_bytes() == (reference / "sweep.csv").read_bytes()
    assert (tmp_path / "out" / "points.csv").read_bytes() == (
        reference / "points.csv").read_bytes()


def test_results_are_the_same_on_a_dask_cluster(reference: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("the dask extra (distributed) is not installed")
    done = sweep(spec(tmp_path), tmp_path / "out", "--dask", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert "Dask LocalCluster of 2 workers" in done.stdout
    assert (tmp_path / "out" / "sweep.csv").read_bytes() == (reference / "sweep.csv").read_bytes()


def test_without_dask_the_message_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def blocked(name: str, *args: Any) -> Any:
        if name == "distributed":
            raise ImportError("no distributed")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", blocked)
    with pytest.raises(ConfigError, match=r"pip install 'memcrypt-testbed\[dask\]'"):
        with executor(1, dask=True):
            pass


def test_an_unchanged_sweep_runs_nothing_and_a_changed_one_reuses_its_points(
        tmp_path: Path) -> None:
    path = spec(tmp_path)
    first = sweep(path, tmp_path / "out")
    assert first.returncode == 0, first.stderr
    again = sweep(path, tmp_path / "out")
    assert "0 runs to make" in again.stderr and "kept from an earlier run" in again.stderr
    before = table(tmp_path / "out")
    grown = SMALL.replace("digits: [1, 2]\n  program.7.args.digits: [1, 2]",
                          "digits: [1, 2, 3]\n  program.7.args.digits: [1, 2, 3]")
    spec(tmp_path, grown)
    third = sweep(path, tmp_path / "out")
    assert third.returncode == 0, third.stderr
    # Only the new point's runs (2 engines x 3 seeds, and its controls) are made.
    made = int(third.stderr.split(" runs to make")[0].rsplit(" ", 1)[-1])
    assert 0 < made <= 2 * 3 * 2
    after = table(tmp_path / "out")
    shared = [r for r in after if r["program.2.args.digits"] in ("1", "2")]
    assert [{k: v for k, v in r.items() if k != "point"} for r in shared] == [
        {k: v for k, v in r.items() if k != "point"} for r in before]


def test_a_sweep_killed_midway_resumes_to_the_same_tables(reference: Path, tmp_path: Path
                                                          ) -> None:
    heavier = SMALL.replace("[1, 2]\n  program.7.args.digits: [1, 2]",
                            "[1, 2, 3, 4]\n  program.7.args.digits: [1, 2, 3, 4]")
    path = spec(tmp_path, heavier)
    whole = sweep(path, tmp_path / "whole", "--jobs", "1")
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "sweep", str(path), "--out",
                             str(tmp_path / "out"), "--jobs", "1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    store = tmp_path / "out" / ".sweep-runs.sqlite"
    wait_for_kept(store, 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "sweep.csv").exists()  # killed before it published
    resumed = sweep(path, tmp_path / "out", "--jobs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "kept from an earlier run" in resumed.stderr
    assert (tmp_path / "out" / "sweep.csv").read_bytes() == (
        tmp_path / "whole" / "sweep.csv").read_bytes()


# -- the tables and the page ------------------------------------------------------------------
def test_each_point_has_its_rate_and_wilson_interval(reference: Path) -> None:
    runs = table(reference)
    points = table(reference, "points.csv")
    assert len(points) == 2 * 2
    for point in points:
        mine = [r for r in runs if r["point"] == point["point"] and
                r["engine"] == point["engine"]]
        successes = sum(int(r["success"]) for r in mine)
        assert int(point["runs"]) == len(mine) == 3
        assert int(point["successes"]) == successes
        low, high = wilson_interval(successes, 3)
        assert float(point["rate_low"]) == pytest.approx(low)
        assert float(point["rate_high"]) == pytest.approx(high)
    mktme = [p for p in points if p["engine"] == "mktme"]
    assert all(float(p["rate"]) == 0 for p in mktme)


def test_the_tables_are_in_parquet_too(reference: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(reference / "sweep.parquet")
    assert len(frame) == len(table(reference))
    assert list(frame.columns) == list(table(reference)[0])


def test_the_birthday_bound() -> None:
    assert birthday(2**12, 24) == pytest.approx(0.5)
    assert birthday(1, 128) == pytest.approx(2.0**-129)
    assert birthday(2**20, 16) == 1.0


def test_the_page_has_its_figures_and_no_script(reference: Path) -> None:
    page = (reference / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page and "Content-Security-Policy" in page
    assert page.count('<img src="data:image/png;base64,') == 1  # zipped keys: one figure
    assert "A small dictionary sweep" in page


def test_the_history_records_every_run(reference: Path) -> None:
    done = CliRunner().invoke(main, ["history", "--db", str(reference / "history.sqlite")])
    assert done.exit_code == 0, done.output
    assert " 12 results" in done.output


def test_ctrl_c_stops_a_sweep_and_keeps_its_finished_runs(tmp_path: Path) -> None:
    heavier = SMALL.replace("[1, 2]\n  program.7.args.digits: [1, 2]",
                            "[1, 2, 3, 4, 5]\n  program.7.args.digits: [1, 2, 3, 4, 5]")
    path = spec(tmp_path, heavier)
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "sweep", str(path), "--out",
                             str(tmp_path / "out"), "--jobs", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = tmp_path / "out" / ".sweep-runs.sqlite"
    wait_for_kept(store, 2, proc)
    if proc.poll() is not None:
        pytest.fail(f"the sweep ended before it could be interrupted: {proc.stderr}")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not (tmp_path / "out" / "sweep.csv").exists()
    assert kept(store) >= 2
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


BUILTIN = """\
id: builtin
title: "A built-in attack: $ signs stay dollars"
use: dirty-page-leak
set:
  params.guest_pages: 8
grid:
  trials: [1, 2]
  params.background_pages: [0, 2]
engines: [tme, sev-snp]
seeds: 2
plots:
  - x: params.background_pages
    y: metrics.bit_accuracy
    lines: trials
"""


def test_a_built_in_attacks_runs_are_kept_across_processes(tmp_path: Path) -> None:
    """A built-in attack (not a program) is kept under the same key in every process, a grid
    over trials has its own column, and lines over a grid key are drawn per engine."""
    path = spec(tmp_path, BUILTIN)
    first = sweep(path, tmp_path / "out", "--jobs", "2")
    assert first.returncode == 0, first.stderr
    again = sweep(path, tmp_path / "out", "--jobs", "1")
    assert again.returncode == 0, again.stderr
    assert "0 runs to make" in again.stderr, again.stderr
    rows = table(tmp_path / "out")
    assert {r["trials"] for r in rows} == {"1", "2"}
    assert {r["run_trials"] for r in rows} == {"1", "2"}
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == 2  # one figure per engine
    assert "under tme" in page and "under sev-snp" in page


def test_a_plotted_metric_no_run_reports_is_named_with_those_they_do(tmp_path: Path) -> None:
    """A metric's name can be checked only against what the attack measured: after the runs,
    a plot over one no run reported is a warning that lists the metrics they did report."""
    path = spec(tmp_path, BUILTIN.replace("y: metrics.bit_accuracy", "y: metrics.bit_acuracy"))
    done = sweep(path, tmp_path / "out", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert "warning: no run reported metrics.bit_acuracy, so its figure is empty" in done.stderr
    assert "bit_accuracy" in done.stderr.split("the runs report:")[1]
    good = sweep(spec(tmp_path / "good", BUILTIN), tmp_path / "good-out", "--jobs", "1")
    assert good.returncode == 0 and "warning: no run reported" not in good.stderr
