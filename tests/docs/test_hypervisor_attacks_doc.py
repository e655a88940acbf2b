"""docs/hypervisor-attacks.md: its outcome tables are those the shipped scenarios expect, it
names every outcome the two attacks can have, and its sources are real citations."""

from __future__ import annotations

import re

from _support.paths import ROOT, SCENARIOS

from testbed.scenarios import load_scenario

DOC = ROOT / "docs" / "hypervisor-attacks.md"
ROW = re.compile(r"^\| (3[1-4]) [^|]+ \|((?: [^|]+ \|)+)$")
ABBREVIATIONS = {"n/a": "not_applicable"}


def _header_engines(lines: list[str], row: int) -> list[str]:
    """The engines of the table the row at ``row`` belongs to (its first line)."""
    start = row
    while lines[start - 1].startswith("|"):
        start -= 1
    return [cell.strip() for cell in lines[start].strip("|").split("|")[1:]]


def test_the_outcome_tables_are_what_the_shipped_scenarios_expect() -> None:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    seen = set()
    for i, line in enumerate(lines):
        found = ROW.match(line)
        if found is None:
            continue
        number = found.group(1)
        (path,) = SCENARIOS.glob(f"{number}-*.yaml")
        scenario, _ = load_scenario(path)
        engines = _header_engines(lines, i)
        cells = [c.strip() for c in found.group(2).strip(" |").split("|")]
        shown = {e: ABBREVIATIONS.get(c, c) for e, c in zip(engines, cells, strict=True)}
        expected = {e: o.value for e, o in scenario.expect.items()}
        assert shown == expected, (number, shown, expected)
        seen.add(number)
    assert seen == {"31", "32", "33", "34"}


def test_every_outcome_the_attacks_can_have_is_named() -> None:
    text = DOC.read_text(encoding="utf-8")
    cipherleaks, severed = text.split("## Remapping (SEVered)")
    for outcome in ("succeeded", "partial", "inconclusive", "mitigated", "ineffective",
                    "not_applicable"):
        assert f"| `{outcome}` |" in cipherleaks, outcome
    for outcome in ("succeeded", "partial", "inconclusive", "blocked", "ineffective",
                    "not_applicable"):
        assert f"| `{outcome}` |" in severed, outcome


def test_the_interposer_source_is_described_not_waved_at() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "related work" not in text
    assert "DDR bus interposer results published in 2025" in text
    # The SNP fault of a remapped page is a nested page fault, not a #VC.
    assert "nested page fault (#NPF)" in text
