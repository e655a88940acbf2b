"""`testbed compare`: outcomes that changed, results added or removed apart, exit 2 when an
outcome changed (CI gates on it), and the same as JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from testbed.cli import main
from testbed.results import ResultRow, RunInfo, RunStore
from testbed.types import Outcome


def _row(scenario: str, engine: str, outcome: Outcome, profile: str | None = None) -> ResultRow:
    return ResultRow(scenario, scenario, "kernel-map-leak", profile or engine, engine, (),
                     outcome, None, "because")


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "history.sqlite"
    store = RunStore(path)
    info = RunInfo(1, "test", "2026-01-01T00:00:00+00:00", 1.0, ("none", "tme"), 1)
    first = [_row("leak", "none", Outcome.SUCCEEDED), _row("leak", "tme", Outcome.SUCCEEDED),
             _row("gone", "none", Outcome.MITIGATED)]
    second = [_row("leak", "none", Outcome.SUCCEEDED),
              _row("leak", "tme", Outcome.BLOCKED, "tme+secretmem"),
              _row("a-much-longer-scenario-id", "none", Outcome.SUCCEEDED)]
    store.record(info, first)
    store.record(replace(info, seed=2), second)
    store.record(replace(info, seed=3), [r for r in second if r.scenario != "leak"])
    return path


def test_changes_added_and_removed_are_listed_apart(db: Path) -> None:
    result = _invoke("compare", "1", "2", "--db", str(db))
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        "changed (1):",
        "  leak  tme:  succeeded (tme)  ->  blocked (tme+secretmem)",
        "added in run 2 (1):",
        "  a-much-longer-scenario-id  none:  succeeded (none)",
        "removed since run 1 (1):",
        "  gone  none:  mitigated (none)",
        "1 outcome changed from run 1 to run 2; 1 result added, 1 removed",
    ]


def test_only_added_or_removed_results_exit_0(db: Path) -> None:
    result = _invoke("compare", "2", "3", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert "changed (" not in result.output
    assert result.output.splitlines()[-1] == ("0 outcomes changed from run 2 to run 3; "
                                              "0 results added, 2 removed")
    same = _invoke("compare", "2", "2", "--db", str(db))
    assert same.exit_code == 0
    assert same.output.strip() == ("0 outcomes changed from run 2 to run 2; 0 results "
                                   "added, 0 removed")


def test_json(db: Path) -> None:
    result = _invoke("compare", "1", "2", "--json", "--db", str(db))
    assert result.exit_code == 2
    assert json.loads(result.output) == {
        "before": 1, "after": 2,
        "changed": [{"scenario": "leak", "engine": "tme", "before": "succeeded",
                     "after": "blocked", "profile_before": "tme",
                     "profile_after": "tme+secretmem"}],
        "added": [{"scenario": "a-much-longer-scenario-id", "engine": "none",
                   "outcome": "succeeded", "profile": "none"}],
        "removed": [{"scenario": "gone", "engine": "none", "outcome": "mitigated",
                     "profile": "none"}],
    }


def test_a_problem_is_one_line_and_exit_1(db: Path, tmp_path: Path) -> None:
    for args in (["1", "9", "--db", str(db)], ["1", "2", "--json", "--db",
                                                 str(tmp_path / "none.sqlite")]):
        result = _invoke("compare", *args)
        assert result.exit_code == 1
        assert len(result.output.strip().splitlines()) == 1
        assert result.output.startswith("error: ")
