"""The command line end to end: the shipped scenarios, results.json, exit codes, --seed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from _support.paths import SCENARIOS
from click.testing import CliRunner, Result

from testbed import registry
from testbed.cli import main
from testbed.scenarios import load_scenario

ROW_KEYS = {"scenario", "attack", "profile", "engine", "mitigations", "outcome", "expected",
            "metrics", "chance_log2", "trials", "control"}
OUTCOMES = {"succeeded", "partial", "inconclusive", "mitigated", "blocked", "ineffective", "error",
            "not_applicable"}


Shipped = tuple[Result, dict[str, Any]]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def _mpl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    out = tmp_path_factory.mktemp("run")
    result = invoke("run", str(SCENARIOS), "--out", str(out), "--seed", "11", "--jobs", "2")
    return result, json.loads((out / "results.json").read_text())


def test_shipped_scenarios_reproduce_the_reference_verdicts(shipped: Shipped) -> None:
    result, doc = shipped
    assert result.exit_code == 0, result.output
    rows = doc["results"]
    # One row per engine a scenario names (every engine, unless it lists its own).
    engines = sum(len(load_scenario(path)[0].engines) for path in SCENARIOS.glob("*.yaml"))
    assert len(rows) == engines
    assert engines == len(list(SCENARIOS.glob("*.yaml"))) * 6 - 4  # 41: mktme, mktme-i only
    mismatches = [(r["scenario"], r["profile"], r["outcome"], r["expected"]) for r in rows
                  if r["outcome"] != r["expected"]]
    assert mismatches == []
    # Every attack kind has a shipped scenario.
    assert {r["attack"] for r in rows} == set(registry.attacks.names())


def test_results_json_contract(shipped: Shipped) -> None:
    _, doc = shipped
    assert doc["format_version"] == 3
    assert {"seed", "testbed_version", "started"} <= set(doc["run"])
    assert doc["run"]["seed"] == 11
    for row in doc["results"]:
        assert ROW_KEYS <= set(row)
        assert row["outcome"] in OUTCOMES
        chance = row["chance_log2"]
        assert chance is None or chance == "-inf" or -8192 <= chance <= 0
        if row["outcome"] == "succeeded" and chance is not None:
            assert "by chance 2^" in row["reason"], row["reason"]
        assert row["profile"] == "+".join([row["engine"], *row["mitigations"]])
        control = row["control"]
        assert control["outcome"] in OUTCOMES and not control["profile"].count("+")
        if row["outcome"] in ("mitigated", "blocked"):
            assert control["outcome"] in ("succeeded", "partial"), row
        trials = row["trials"]
        assert trials is None or 0 <= trials["low"] <= trials["rate"] <= trials["high"] <= 1
    profiles = {r["profile"] for r in doc["results"]}
    assert {"tme+init_on_free", "mktme+secretmem", "mktme+key_rotation"} <= profiles


def test_results_csv_has_one_row_per_result(tmp_path: Path) -> None:
    import pandas as pd

    result = invoke("run", str(SCENARIOS / "07-capture-compare.yaml"), "--out", str(tmp_path),
                    "--jobs", "1")
    assert result.exit_code == 0
    frame = pd.read_csv(tmp_path / "results.csv")
    assert list(frame["engine"]) == ["none", "tme", "mktme", "mktme-i", "sev", "sev-snp"]
    assert list(frame["outcome"]) == ["succeeded", "succeeded", "mitigated", "mitigated",
                                      "mitigated", "mitigated"]
    assert json.loads(frame["metrics"][0])["guess_space"] == 10000


def test_same_seed_gives_byte_identical_results(tmp_path: Path, shipped: Shipped) -> None:
    _, first = shipped
    result = invoke("run", str(SCENARIOS), "--out", str(tmp_path), "--seed", "11", "--jobs", "1")
    assert result.exit_code == 0
    second = json.loads((tmp_path / "results.json").read_text())
    assert json.dumps(first["results"]) == json.dumps(second["results"])


def test_report_is_written(tmp_path: Path) -> None:
    result = invoke("run", str(SCENARIOS / "01-kernel-map-leak.yaml"), "--out", str(tmp_path),
                    "--jobs", "1")
    assert result.exit_code == 0
    html = (tmp_path / "index.html").read_text()
    assert "Kernel direct-map leak" in html
    # The legend names every outcome whatever ran: read the outcomes from the matrix cells.
    cells = dict(re.findall(r'data-cell="kernel-map-leak/([^"]+)" data-engine="[^"]+" '
                            r'data-outcome="([^"]+)"', html))
    assert cells == {"none": "succeeded", "tme": "succeeded", "mktme": "mitigated",
                     "mktme-i": "mitigated", "sev": "mitigated", "sev-snp": "mitigated"}


def test_profiles_filter(tmp_path: Path) -> None:
    result = invoke("run", str(SCENARIOS), "--out", str(tmp_path), "--profiles", "tme,mktme",
                    "--jobs", "1")
    assert result.exit_code == 0
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {r["engine"] for r in rows} == {"tme", "mktme"}


def test_unknown_profile_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("run", str(SCENARIOS), "--out", str(tmp_path), "--profiles", "tdx")
    assert result.exit_code == 1  # 2 means only "an outcome differs from its expectation"
    assert "unknown profile(s) tdx" in result.output


def test_mismatch_exits_2(tmp_path: Path) -> None:
    text = (SCENARIOS / "01-kernel-map-leak.yaml").read_text()
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace("mktme: mitigated", "mktme: succeeded"))
    result = invoke("run", str(wrong), "--out", str(tmp_path / "out"), "--jobs", "1")
    assert result.exit_code == 2
    assert "(expected succeeded)" in result.output


def test_junit_marks_mismatches_as_failures(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    text = (SCENARIOS / "01-kernel-map-leak.yaml").read_text()
    wrong = tmp_path / "in"
    wrong.mkdir()
    (wrong / "a.yaml").write_text(text.replace("mktme: mitigated", "mktme: succeeded"))
    junit = tmp_path / "junit.xml"
    result = invoke("run", str(wrong), "--out", str(tmp_path / "out"), "--jobs", "1",
                    "--junit", str(junit))
    assert result.exit_code == 2
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "1", "0")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["mktme"]
    failure = suite.find("testcase[@name='mktme']/failure")
    assert failure is not None
    assert failure.get("message") == "expected succeeded, observed mitigated"


def test_bad_file_exits_1_but_others_still_run(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SCENARIOS / "07-capture-compare.yaml", folder)
    (folder / "broken.yaml").write_text("id: x\ntitle: [\n")
    result = invoke("run", str(folder), "--out", str(tmp_path / "out"), "--jobs", "1")
    assert result.exit_code == 1
    assert "broken.yaml:" in result.output
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert {r["scenario"] for r in rows} == {"capture-compare"}
    # The summary line and the report say so too.
    summary = [line for line in result.output.splitlines() if line.startswith("6 runs,")]
    assert summary == ["6 runs, 0 differ from their expectation, 1 scenario file did not load "
                       "(listed above and on the report's index)"]
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert '<a href="#load-errors">1 file did not load</a>' in index
    assert "broken.yaml:3</code>" in index


def test_validate_and_list() -> None:
    ok = invoke("validate", str(SCENARIOS / "08-key-wearout.yaml"))
    assert ok.exit_code == 0
    assert "ok:" in ok.output
    listing = invoke("list", str(SCENARIOS))
    assert listing.exit_code == 0
    for kind in registry.attacks.names():
        assert kind in listing.output


def _section(listing: str, title: str) -> list[str]:
    lines = listing.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")),
               len(lines))
    return lines[start + 1 : end]


def test_list_names_every_mitigation_in_aligned_columns() -> None:
    listing = invoke("list", str(SCENARIOS)).output
    mitigations = _section(listing, "mitigations")
    assert mitigations[0].split() == ["name", "setting", "values", "what", "it", "does"]
    assert [line.split()[0] for line in mitigations[1:]] == list(registry.mitigation_names())
    # The name column is as wide as the longest name (restrict_page_move).
    assert "memlock_limit       memlock_limit_pages  0 .. 65,536 (0: off)" in listing
    for title, column in (("attacks", 1), ("engines", 1), ("mitigations", 1),
                          ("scenarios", 1), ("scenarios", 2)):
        rows = _section(listing, title)
        # Every row's column starts where the header's (or the first row's) does.
        starts = {_column_start(row, column) for row in rows}
        assert len(starts) == 1, (title, column, starts)
    scenarios = _section(listing, "scenarios")
    assert len(scenarios) == len(list(SCENARIOS.glob("*.yaml")))
    # The longest id does not push its row out of line.
    assert any(line.startswith("  secretmem-pool-exhaustion-many-files  ") for line in scenarios)
    assert "program (kernel_read_bug)" in listing


def _column_start(row: str, column: int) -> int:
    """Where the ``column``-th column (0-based) of an aligned row starts: after a run of two
    spaces or more."""
    import re

    starts = [m.end() for m in re.finditer(r"\S  +(?=\S)", row)]
    return starts[column - 1]


def test_validate_bad_file_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\n")
    result = invoke("validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:" in result.output
