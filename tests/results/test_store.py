"""Run history: recorded per run in one transaction; `history` and `compare` read it back."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from _support.paths import SCENARIOS
from _support.programs import leak
from _support.scenarios import run as run_one
from click.testing import CliRunner

from testbed.cli import main
from testbed.results import RunInfo, RunStore

SCENARIO = SCENARIOS / "01-kernel-map-leak.yaml"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def info(seed: int = 1) -> RunInfo:
    return RunInfo(seed, "test", "2026-01-01T00:00:00+00:00", 1.5, ("tme",), 1)


def test_history_and_compare_over_two_runs(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    folder = tmp_path / "in"
    folder.mkdir()
    text = SCENARIO.read_text()
    (folder / "s.yaml").write_text(text)
    out, db = tmp_path / "out", tmp_path / "out" / "history.sqlite"
    assert invoke("run", str(folder), "--out", str(out), "--jobs", "1")[0] == 0
    (folder / "s.yaml").write_text(text.replace("threat:", "mitigations: {secretmem: true}\n"
                                                "platform: {memory_pages: 1024}\n"
                                                "threat:").replace("mitigated", "blocked")
                                   .replace("succeeded", "blocked"))
    code, output = invoke("run", str(folder), "--out", str(out), "--jobs", "1")
    assert code == 0, output
    assert "history: run 2" in output

    html = (out / "index.html").read_text()
    assert "6 outcomes changed since run 1" in html
    assert html.count("changed: was succeeded") == 2  # none and tme
    assert html.count("changed: was mitigated") == 4  # mktme, mktme-i, sev, sev-snp

    code, listing = invoke("history", "--db", str(db))
    assert code == 0
    assert [line.split()[1] for line in listing.splitlines()] == ["1", "2"]

    code, diff = invoke("compare", "1", "2", "--db", str(db))
    assert code == 2  # an outcome changed
    assert re.search(r"kernel-map-leak  tme: +succeeded \(tme\) +->  blocked \(tme\+secretmem\)",
                     diff), diff
    assert diff.strip().endswith("6 outcomes changed from run 1 to run 2; 0 results added, "
                                 "0 removed")
    assert invoke("compare", "2", "2", "--db", str(db))[1].strip() == \
        "0 outcomes changed from run 2 to run 2; 0 results added, 0 removed"


def test_compare_unknown_run_and_missing_db(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "h.sqlite")
    store.record(info(), [run_one("program", "tme", id="t-kernel-map-leak", params=leak())])
    code, output = invoke("compare", "1", "7", "--db", str(tmp_path / "h.sqlite"))
    assert code == 1 and "no run 7" in output
    code, output = invoke("history", "--db", str(tmp_path / "none.sqlite"))
    assert code == 1 and "no run history" in output


def test_compare_with_run_ids_beyond_sqlite_integers(tmp_path: Path) -> None:
    row = run_one("program", "tme", id="t-kernel-map-leak", params=leak())
    RunStore(tmp_path / "h.sqlite").record(info(), [row])
    for a, b, missing in ((1, 2**70, 2**70), (2**63, 1, 2**63), (0, 1, 0)):
        code, output = invoke("compare", str(a), str(b), "--db", str(tmp_path / "h.sqlite"))
        assert code == 1
        assert f"no run {missing}" in output
        assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_a_failed_record_leaves_no_half_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "h.sqlite")
    row = run_one("program", "tme", id="t-kernel-map-leak", params=leak())
    assert store.record(info(), [row]) == 1
    before = store.path.read_bytes()
    with pytest.raises(ValueError, match="two result rows for scenario 't-kernel-map-leak' on "
                       "engine 'tme'"):
        store.record(info(2), [row, row])  # the same (scenario, engine) twice: refused first
    with pytest.raises(sqlite3.IntegrityError), sqlite3.connect(store.path) as db:
        db.execute("INSERT INTO results SELECT * FROM results")  # the table refuses them too
    assert store.path.read_bytes() == before
    assert [r.id for r in store.runs()] == [1]
    assert store.outcomes(1) == {("t-kernel-map-leak", "tme"): ("succeeded", "tme")}
    assert store.previous_of_same_scenarios(1) is None


def test_metric_values_become_valid_stable_json() -> None:
    from testbed.results import json_value

    assert json_value(float("nan")) is None and json_value(float("inf")) is None
    assert json_value({"b", "a", "c"}) == ["a", "b", "c"]
    assert json_value(frozenset({3, 1, 2})) == [1, 2, 3]
    assert json_value(0.1234567891234) == 0.123456789
