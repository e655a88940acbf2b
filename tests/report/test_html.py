"""Tests of the HTML report: its pages and what each shows, escaping of untrusted text,
determinism, plots."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from _support.scenarios import scenario

from testbed.errors import ScenarioError
from testbed.report import write_report
from testbed.report.views import SCENARIO_DIR, page_of
from testbed.results import (
    Actor,
    CurvePoint,
    DictionaryPlot,
    DirtyBitmapPlot,
    Evidence,
    FragmentationSeries,
    JsonValue,
    Metrics,
    PlotData,
    ResultRow,
    RunInfo,
    Step,
    TraceInterval,
    WearoutPlot,
)
from testbed.scenarios import engine_names
from testbed.scenarios.model import Scenario
from testbed.types import Outcome

ENGINE_NAMES = engine_names()


@dataclass(frozen=True)
class _Given(Metrics):
    """Metrics of a made-up attack: the JSON and the plot data the report is handed."""

    values: Mapping[str, JsonValue] = field(default_factory=dict)
    drawn: tuple[PlotData, ...] = ()

    def to_json(self) -> dict[str, JsonValue]:
        return dict(sorted(self.values.items()))

    def plots(self) -> tuple[PlotData, ...]:
        return self.drawn

HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(1)> {{ 7*7 }} javascript:alert(1)"


@pytest.fixture(autouse=True)
def _mpl_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("mplconfig")))


def _run() -> RunInfo:
    return RunInfo(
        seed=1234,
        testbed_version="0.1.0",
        started="2024-05-01T10:00:00+00:00",
        duration_s=12.3456,
        profiles=ENGINE_NAMES,
        jobs=4,
    )


def _scenario(sid: str, title: str, summary: str, attack: str = "attestation") -> Scenario:
    return Scenario.model_validate(
        {
            "id": sid,
            "title": title,
            "attack": attack,
            "teaching": {
                "summary": summary,
                "look_for": "Compare the captured bytes with the secret.",
                "questions": ["Why does TME not help here?", "What would secretmem change?"],
            },
        }
    )


def _row(
    sid: str,
    engine: str,
    outcome: Outcome,
    expected: Outcome | None = None,
    *,
    profile: str | None = None,
    metrics: Mapping[str, JsonValue] | None = None,
    plots: tuple[PlotData, ...] = (),
    evidence: Evidence | None = None,
    steps: tuple[Step, ...] = (),
    reason: str = "because",
) -> ResultRow:
    return ResultRow(
        scenario=sid,
        title=sid,
        attack="kernel-map-leak",
        profile=profile or engine,
        engine=engine,
        mitigations=(),
        outcome=outcome,
        expected=expected,
        reason=reason,
        metrics=_Given(dict(metrics or {}), plots),
        evidence=evidence or Evidence(),
        steps=steps,
    )


SECRET = bytes(range(32))
RECOVERED = bytes(range(16)) + b"\xee" * 16


def _inputs() -> tuple[list[ResultRow], list[tuple[Scenario, str]]]:
    leak = _scenario("leak", "Kernel direct map leak", "The kernel reads guest memory.")
    wear = _scenario("wear", "Key wear-out", "Birthday bound on a narrow cipher.", "key-wearout")
    rows = [
        _row(
            "leak",
            "none",
            Outcome.SUCCEEDED,
            Outcome.SUCCEEDED,
            evidence=Evidence(secret=SECRET, captured=SECRET, recovered=SECRET, address=0x4000),
            steps=(Step(Actor.ATTACKER, "read", "kernel-read", 0x4000, "direct map"),),
            metrics={"bytes_read": 32, "pages": [1, 2, 3], "info": {"b": 2, "a": 1}},
        ),
        _row("leak", "tme", Outcome.SUCCEEDED, Outcome.SUCCEEDED, profile="tme+secretmem"),
        _row(
            "leak",
            "mktme",
            Outcome.PARTIAL,
            Outcome.MITIGATED,
            evidence=Evidence(secret=SECRET, recovered=RECOVERED),
        ),
        _row("leak", "mktme-i", Outcome.BLOCKED, Outcome.BLOCKED),
        _row("leak", "sev", Outcome.MITIGATED, Outcome.MITIGATED),
        _row("leak", "sev-snp", Outcome.NOT_APPLICABLE),
        _row("wear", "none", Outcome.BLOCKED),
        _row(
            "wear",
            "tme",
            Outcome.ERROR,
            metrics={"reduced_width": True, "block_bits": 24},
            plots=(WearoutPlot(tuple(
                CurvePoint(q, min(1.0, q * q / 2**24 * 0.9), q * q / 2**25)
                for q in (256, 1024, 2048, 4096, 8192)), 24, True),),
        ),
        # mktme, mktme-i, sev, sev-snp of "wear" are deliberately not run.
    ]
    return rows, [(leak, "scenarios/leak.yaml"), (wear, "scenarios/wear.yaml")]


def _render(tmp_path: Path, name: str = "out") -> str:
    rows, scenarios = _inputs()
    path = write_report(tmp_path / name, _run(), rows, scenarios)
    assert path == tmp_path / name / "index.html"
    assert path.is_file()
    return _all_pages(path)


def _all_pages(index: Path) -> str:
    """The index followed by every scenario page, in name order."""
    pages = sorted((index.parent / "scenarios").glob("*.html"))
    return "\n".join(p.read_text(encoding="utf-8") for p in [index, *pages])


def _page(tmp_path: Path, name: str, out: str = "out") -> str:
    return (tmp_path / out / name).read_text(encoding="utf-8")


def _result(html: str, anchor: str) -> str:
    """The details panel of one result on a scenario page."""
    section = html[html.index(f'id="{anchor}"') :]
    return section[: section.index("</details>")]


def test_writes_index_and_creates_folder(tmp_path: Path) -> None:
    html = _render(tmp_path, "nested/deeper")
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>memcrypt-testbed report</title>" in html
    # The pages, a data file per scenario, and no temporary files left behind.
    out = tmp_path / "nested" / "deeper"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "glossary.html", "index.html", "scenarios/leak.html", "scenarios/leak.json",
        "scenarios/wear.html", "scenarios/wear.json"]


def test_pages_link_to_each_other(tmp_path: Path) -> None:
    rows, scenarios = _inputs()
    index = write_report(tmp_path, _run(), rows, scenarios).read_text("utf-8")
    assert 'href="scenarios/leak.html#res-leak.none"' in index
    assert 'href="scenarios/wear.html"' in index
    leak = (tmp_path / "scenarios" / "leak.html").read_text("utf-8")
    assert 'href="../index.html#matrix"' in leak
    assert 'href="wear.html" rel="next"' in leak
    assert 'id="res-leak.none"' in leak
    assert "<title>Kernel direct map leak &middot; memcrypt-testbed report</title>" in leak
    wear = (tmp_path / "scenarios" / "wear.html").read_text("utf-8")
    assert 'href="leak.html" rel="prev"' in wear and 'rel="next"' not in wear


def test_index_scenario_glossary_and_data_links(tmp_path: Path) -> None:
    _render(tmp_path)
    index, leak = _page(tmp_path, "index.html"), _page(tmp_path, "scenarios/leak.html")
    assert 'href="scenarios/leak.html"' in index and 'href="scenarios/wear.html"' in index
    assert 'href="glossary.html"' in index
    assert 'href="../index.html#matrix"' in leak and 'href="../glossary.html"' in leak
    assert 'href="wear.html" rel="next"' in leak
    assert 'href="leak.json"' in leak


def test_the_title_comes_first_on_every_page(tmp_path: Path) -> None:
    _render(tmp_path)
    for name, title in (("index.html", "memcrypt-testbed report"),
                        ("scenarios/leak.html", "Kernel direct map leak"),
                        ("glossary.html", "Glossary")):
        body = _page(tmp_path, name).split("<body>", 1)[1]
        first = re.search(r"<h1[^>]*>(.*?)</h1>", body, re.S)
        assert first is not None and first.group(1) == title
        # Nothing but the header's opening comes before it.
        assert body[: first.start()].strip() == "<header>", name


def test_run_line_and_metadata(tmp_path: Path) -> None:
    _render(tmp_path)
    html = _page(tmp_path, "index.html")
    line = re.search(r'<p class="runline">(.*?)</p>', html, re.S)
    assert line is not None
    assert "2 scenarios &times; 6 engines, 8 results" in line.group(1)
    assert "1 expectation mismatch &middot;" in line.group(1)
    assert "did not load" not in line.group(1)
    for text in ("1234", "0.1.0", "2024-05-01T10:00:00+00:00", "12.35 s"):
        assert f"<dd>{text}</dd>" in html
    assert 'class="banner mismatch-banner"' in html


def test_engine_counts_say_scenarios_and_leave_out_not_applicable(tmp_path: Path) -> None:
    _render(tmp_path)
    html = _page(tmp_path, "index.html")
    foot = html[html.index("<tfoot>") : html.index("</tfoot>")]
    counts = dict(re.findall(r'data-engine="([^"]+)"><span class="count">([^<]+)</span>', foot))
    # none: succeeded + blocked; tme: succeeded + error; sev-snp: only not applicable.
    assert counts == {"none": "1 of 2 scenarios", "tme": "0 of 2 scenarios",
                      "mktme": "0 of 1 scenario", "mktme-i": "1 of 1 scenario",
                      "sev": "1 of 1 scenario",
                      "sev-snp": "0 of 0 scenarios"}
    rest = dict(re.findall(r'data-engine="([^"]+)">.*?<span class="count-rest">([^<]*)</span>',
                           foot))
    assert rest["tme"] == "1 worked · 1 error"
    assert rest["sev-snp"] == "0 worked · 1 n/a"
    assert "attacks" not in foot


def test_matrix_has_one_cell_per_scenario_and_engine(tmp_path: Path) -> None:
    _render(tmp_path)
    html = _page(tmp_path, "index.html")
    cells = re.findall(r'<td class="cell[^"]*" data-cell="([^"]+)"', html)
    assert cells == [f"{s}/{e}" for s in ("leak", "wear") for e in ENGINE_NAMES]
    header = html[html.index('<table class="matrix">') : html.index("</thead>")]
    positions = [header.index(f">{e}</th>") for e in ENGINE_NAMES]
    assert positions == sorted(positions)
    assert html.count('data-outcome="not-run"') == 4
    assert html.count('href="scenarios/leak.html#res-leak.') == 6 + 1  # cells + mismatch
    # The matrix comes before the legend, which sits beside it.
    assert html.index('id="matrix"') < html.index('id="legend"') < html.index('id="scenarios"')


def test_a_not_applicable_cell_is_short_and_says_why_in_a_note(tmp_path: Path) -> None:
    scn = _scenario("hv", "Hypervisor", "s.")
    rows = [_row("hv", e, Outcome.NOT_APPLICABLE,
                 reason=f"engine {e} does not protect guests from the hypervisor")
            for e in ("none", "tme")]
    rows.append(_row("hv", "sev", Outcome.SUCCEEDED))
    html = _all_pages(write_report(tmp_path / "o", _run(), rows, [(scn, "x.yaml")]))
    cell = re.search(r'data-cell="hv/none".*?</td>', html, re.S)
    assert cell is not None
    assert '<span class="outcome">n/a</span>' in cell.group(0)
    assert "see note 1" in cell.group(0)
    notes = html[html.index('id="not-applicable"') :]
    notes = notes[: notes.index("</section>")]
    # Reasons that differ only by the engine's name are one line.
    assert "<strong>none, tme</strong>: The engine does not protect guests from the " \
        "hypervisor." in notes
    # The scenario's page gives the n/a engines one compact line, and no empty panels.
    page = (tmp_path / "o" / "scenarios" / "hv.html").read_text(encoding="utf-8")
    line = re.search(r'<li class="na[^"]*">.*?</li>', page, re.S)
    assert line is not None
    assert '<span id="res-hv.none">none</span>, <span id="res-hv.tme">tme</span>' in line.group(0)
    assert page.count("<details class=\"result") == 1  # sev's, which has nothing to detail
    assert page.count("No metrics, timeline or evidence were recorded") == 1


def test_outcome_texts(tmp_path: Path) -> None:
    html = _render(tmp_path)
    for text in ("succeeded", "partial", "mitigated", "blocked", "error", "n/a"):
        assert f'<span class="outcome">{text}</span>' in html
    assert html.count('<span class="outcome">not run</span>') == 4 + 4  # matrix + wear page


def test_mismatch_is_flagged_with_text(tmp_path: Path) -> None:
    html = _render(tmp_path)
    cell = re.search(
        r'<td class="cell o-partial mismatch" data-cell="leak/mktme".*?</td>', html, re.S
    )
    assert cell is not None
    assert "expected mitigated" in cell.group(0)
    ok = re.search(r'<td class="cell o-succeeded" data-cell="leak/none".*?</td>', html, re.S)
    assert ok is not None and "expected" not in ok.group(0)


def test_legend_and_sections(tmp_path: Path) -> None:
    html = _render(tmp_path)
    assert "The attacker got exactly what it wanted." in html
    assert "The threat does not exist under this engine" in html
    assert '<section class="scenario" id="scn-leak"' in html
    assert "What to look for" in html
    assert ('<li class="prose">Why does <a class="term" href="../glossary.html#term-tme">TME</a> '
            "not help here?</li>") in html
    # One panel per applicable result: leak has 5 (sev-snp is n/a), wear 2.
    assert html.count('<details class="result') == 7


def test_what_happened_leads_the_page_one_line_per_outcome(tmp_path: Path) -> None:
    scn = _scenario("same", "Same", "First sentence. Second sentence.")
    rows = [_row("same", e, Outcome.MITIGATED, reason="the attacker read garbage")
            for e in ("none", "tme", "mktme")]
    rows.append(_row("same", "sev", Outcome.SUCCEEDED, reason="the attacker read the secret"))
    write_report(tmp_path / "o", _run(), rows, [(scn, "x.yaml")])
    page = (tmp_path / "o" / "scenarios" / "same.html").read_text(encoding="utf-8")
    assert page.index("What happened") < page.index("About this scenario") \
        < page.index("Details by engine")
    assert '<p class="lede prose">First sentence.</p>' in page
    lines = re.findall(r'<ul class="happened">(.*?)</ul>', page, re.S)[0]
    items = re.findall(r"<li class=\"o-[a-z_]+\">(.*?)</li>", lines, re.S)
    assert len(items) == 2
    assert ">none</a>, <a href=\"#res-same.tme\">tme</a>, <a href=\"#res-same.mktme\">mktme</a>" \
        in items[0]
    assert "The attacker read garbage." in items[0]
    assert "The attacker read the secret." in items[1]
    assert "sev-snp</span>: <span class=\"outcome\">not run" in lines


def test_metrics_are_rounded_with_units_and_series_expand(tmp_path: Path) -> None:
    scn = _scenario("m", "Metrics", "s.")
    curve = [{"pairs": q, "measured": q / 1e4, "bound": q / 3e4} for q in range(0, 2000, 10)]
    row = _row("m", "none", Outcome.SUCCEEDED, metrics={
        "entropy_bits": 13.287712379549449, "blocks_captured": 43520,
        "extrapolated_blocks_for_50pct_n128": 2.171938135516356e19, "bandwidth_gb_s": 100.0,
        "reduced_width": True, "check_failed": None, "curve": curve,
        "executions": {"old": 1665, "torn": 2507}, "big": list(range(1000))})
    write_report(tmp_path / "o", _run(), [row], [(scn, "x.yaml")])
    page = (tmp_path / "o" / "scenarios" / "m.html").read_text(encoding="utf-8")
    values = dict(re.findall(r'<tr><th scope="row"><code>([^<]+)</code></th><td>([^<]*)', page))
    assert values["entropy_bits"] == "13.3 bits"
    assert values["blocks_captured"] == "43,520 blocks"
    assert values["extrapolated_blocks_for_50pct_n128"] == "2.17 × 10¹⁹ blocks"
    assert values["bandwidth_gb_s"] == "100 GB/s"
    assert values["reduced_width"] == "yes"
    assert values["check_failed"] == "—"
    assert values["executions"] == "old: 1,665 · torn: 2,507"
    assert values["big"].startswith("0, 1, 2, 3, 4, 5, 6, 7, … (1,000 values)")
    assert '<details class="more"><summary>show all</summary><pre>0, 1, 2' in page
    assert "13.287712379549449" not in page
    # A series is a table behind a closed <details>, cut at 64 rows, with a link to the rest.
    series = page[page.index('<details class="series">') :]
    series = series[: series.index("</details>")]
    assert "<code>curve</code>: a series of 200 rows (pairs, measured, bound)" in series
    assert series.count("<tr>") == 1 + 64
    assert 'The first 64 of 200 rows; all of them are in <a href="m.json">m.json</a>.' in series


def test_the_data_file_holds_every_value(tmp_path: Path) -> None:
    import json

    rows, scenarios = _inputs()
    write_report(tmp_path / "o", _run(), rows, scenarios)
    doc = json.loads((tmp_path / "o" / "scenarios" / "leak.json").read_text(encoding="utf-8"))
    assert doc["scenario"] == "leak"
    assert [r["engine"] for r in doc["results"]] == list(ENGINE_NAMES)
    assert doc["results"][0] == rows[0].to_json()


def test_evidence_is_labelled_with_ascii_and_meaningful_matches(tmp_path: Path) -> None:
    html = _render(tmp_path)
    section = _result(html, "res-leak.mktme")
    assert "DRAM / bus capture" not in html
    assert "What the backdoor read from the guest" in section
    assert "16 of 32 bytes equal the secret at the same position; 16 of them in 1 run" in section
    recovered = section[section.index("evidence-recovered") :]
    # The first line matches the secret (one run, marked), the second is 0xee.
    assert '<mark class="match">00</mark>' in recovered
    assert '<mark class="match">0f</mark>' in recovered
    assert '<mark class="match">ee</mark>' not in recovered
    assert '<span class="off">0010</span>  ee ee' in recovered
    assert '<span class="bar">|</span>................<span class="bar">|</span>' in recovered


def test_evidence_truncated_to_256_bytes(tmp_path: Path) -> None:
    scn = _scenario("big", "Big", "s")
    data = bytes(i % 256 for i in range(1000))
    row = _row("big", "none", Outcome.SUCCEEDED, evidence=Evidence(secret=data, recovered=data))
    html = _all_pages(write_report(tmp_path, _run(), [row], [(scn, "x.yaml")]))
    assert 'The first 256 of 1000 bytes; all of them are in <a href="big.json">' in html
    recovered = html[html.index("evidence-recovered") :]
    recovered = recovered[: recovered.index("</pre>")]
    assert recovered.count('<span class="off">') == 16
    assert '<span class="off">00f0</span>' in recovered
    assert '<span class="off">0100</span>' not in recovered


def test_the_timeline_shows_each_actor_once(tmp_path: Path) -> None:
    scn = _scenario("t", "Timeline", "s.")
    steps = (Step(Actor.VICTIM, "victim guest stores attacker-chosen data"),
             Step(Actor.ATTACKER, "reads it", "bus_interposer", 0x40, "64 bytes"))
    row = _row("t", "none", Outcome.SUCCEEDED, steps=steps)
    write_report(tmp_path / "o", _run(), [row], [(scn, "x.yaml")])
    page = (tmp_path / "o" / "scenarios" / "t.html").read_text(encoding="utf-8")
    assert "<h4>Timeline</h4>" in page
    assert ('<span class="actor">victim</span> <span class="action">guest stores '
            "attacker-chosen data</span>") in page
    assert "victim victim" not in page
    assert '<span class="capability" title="capability">bus_interposer</span>' in page


def test_files_that_did_not_load_are_listed(tmp_path: Path) -> None:
    rows, scenarios = _inputs()
    errors = [ScenarioError("scenarios/bad.yaml", 3, "params.secret", "too long"),
              ScenarioError("scenarios/bad.yaml", 5, "expect", "unknown engine"),
              ScenarioError("scenarios/\u202eodd.yaml", 0, "", "not YAML")]
    write_report(tmp_path / "o", _run(), rows, scenarios, load_errors=errors)
    html = (tmp_path / "o" / "index.html").read_text(encoding="utf-8")
    assert '<a href="#load-errors">2 files did not load</a>' in html
    assert "<strong>2 scenario files did not load</strong> and are not in the matrix" in html
    assert "<li><code>scenarios/bad.yaml:3</code>: <code>params.secret</code>: too long</li>" \
        in html
    assert "<code>scenarios/\\u202eodd.yaml</code>: <code>(file)</code>: not YAML" in html
    assert "\u202e" not in html


def test_glossary_page_and_term_links(tmp_path: Path) -> None:
    from testbed.report.glossary import TERMS

    _render(tmp_path)
    glossary = _page(tmp_path, "glossary.html")
    for term in TERMS:
        assert f'<dt id="{term.anchor}">' in glossary
    for word in ("KeyID", "ASID", "RMP", "C-bit", "PEK", "CEK", "mnonce", "Tweak"):
        assert word in glossary
    leak = _page(tmp_path, "scenarios/leak.html")
    assert ('<a class="term" href="../glossary.html#term-tme">TME</a> not help here?'
            in leak)


def test_untrusted_text_is_escaped(tmp_path: Path) -> None:
    scn = _scenario("evil", HOSTILE[:200], HOSTILE)
    row = _row(
        "evil",
        "none",
        Outcome.SUCCEEDED,
        reason=HOSTILE,
        metrics={HOSTILE: HOSTILE},
        steps=(Step(Actor.ATTACKER, HOSTILE, HOSTILE, None, HOSTILE),),
        profile=HOSTILE,
    )
    html = _all_pages(write_report(tmp_path, _run(), [row], [(scn, HOSTILE)]))
    assert "<script" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # Template syntax in scenario text stays literal text: never evaluated.
    title = re.search(r'<h1 id="scn-evil-title">(.*?)</h1>', html, re.S)
    summary = re.search(r'<div class="teaching">\n<p class="prose">(.*?)</p>', html, re.S)
    assert title is not None and summary is not None
    for text in (title.group(1), summary.group(1)):
        assert "{{ 7*7 }}" in text
        assert "49" not in text
    assert "49" not in html
    # Text that merely looks like a URL stays text, never an attribute value.
    assert 'href="javascript' not in html and 'src="javascript' not in html
    assert "javascript:alert(1)" in html


def test_csp_and_self_contained(tmp_path: Path) -> None:
    html = _render(tmp_path)
    assert (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
    ) in html
    assert "<script" not in html
    assert "<link" not in html
    # Every src and href points inside the report folder or is a data: URI.
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        local = re.fullmatch(r"((\.\./)?(index|glossary)\.html|scenarios/[a-z0-9_-]+\.html|"
                             r"[a-z0-9_-]+\.(html|json)|results\.(json|csv))?"
                             r"(#[A-Za-z0-9_.-]*)?", attr)
        assert attr.startswith("data:image/png;base64,") or local, attr
    assert "@media print" in html and "break-inside: avoid" in html


def test_output_is_deterministic(tmp_path: Path) -> None:
    first = (tmp_path / "a").joinpath("x")
    rows, scenarios = _inputs()
    a = write_report(first, _run(), rows, scenarios).read_bytes()
    rows, scenarios = _inputs()
    b = write_report(tmp_path / "b", _run(), rows, scenarios).read_bytes()
    assert a == b
    # Rewriting in place replaces the file with the same bytes.
    assert write_report(first, _run(), rows, scenarios).read_bytes() == a


def test_curve_metric_produces_embedded_plot(tmp_path: Path) -> None:
    html = _render(tmp_path)
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', html)
    # The figure is drawn once, across engines, before the details.
    assert len(imgs) == 1
    data, alt = imgs[0]
    assert len(data) > 1000
    assert "reduced-width cipher" in alt
    assert "birthday bound" in alt


@pytest.mark.parametrize(
    ("bits", "reduced", "expected", "absent"),
    [
        (20, True, "reduced-width cipher, n = 20 bits", None),
        (0, True, "(reduced-width cipher)", None),
        (128, False, "(n = 128 bits)", "reduced-width"),
        (0, False, "measured vs birthday bound.", "reduced-width"),
    ],
)
def test_plot_title_names_reduced_width(
    tmp_path: Path, bits: int, reduced: bool, expected: str, absent: str | None
) -> None:
    scn = _scenario("wear", "Wear", "s", "key-wearout")
    curve = tuple(CurvePoint(q, 0.1 * i, 0.05 * i) for i, q in enumerate((8, 16)))
    row = _row("wear", "none", Outcome.SUCCEEDED, plots=(WearoutPlot(curve, bits, reduced),))
    html = _all_pages(write_report(tmp_path, _run(), [row], [(scn, "x.yaml")]))
    alt = re.search(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', html)
    assert alt is not None
    assert expected in alt.group(1)
    if absent is not None:
        assert absent not in alt.group(1)


def test_no_plot_without_curve(tmp_path: Path) -> None:
    scn = _scenario("plain", "Plain", "s")
    row = _row("plain", "none", Outcome.SUCCEEDED, metrics={"curve": "not a curve"},
               plots=(WearoutPlot((), 24, True),))
    html = _all_pages(write_report(tmp_path, _run(), [row], [(scn, "x.yaml")]))
    assert "<img" not in html


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_row("leak", "bogus", Outcome.SUCCEEDED)], "unknown engine"),
        ([_row("ghost", "none", Outcome.SUCCEEDED)], "unknown scenario"),
        ([_row("leak", "none", Outcome.SUCCEEDED)] * 2, "two rows"),
    ],
)
def test_inconsistent_rows_are_rejected(
    tmp_path: Path, rows: list[ResultRow], message: str
) -> None:
    scn = _scenario("leak", "Leak", "s")
    with pytest.raises(ValueError, match=message):
        write_report(tmp_path, _run(), rows, [(scn, "x.yaml")])
    assert not (tmp_path / "index.html").exists()


def _plots(tmp_path: Path, plots: tuple[PlotData, ...]) -> list[tuple[str, str]]:
    scn = _scenario("p", "P", "s")
    row = _row("p", "none", Outcome.SUCCEEDED, plots=plots)
    html = _all_pages(write_report(tmp_path, _run(), [row], [(scn, "x.yaml")]))
    return re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)">\n'
                      r"<figcaption>([^<]+)</figcaption>", html)


FRAGMENTATION = FragmentationSeries((1, 2, 3, 4), (1, 2, 2, 3), (0, 0, 0, 0))
DICTIONARY = DictionaryPlot(10000, 13.29, 4711)
DIRTY = DirtyBitmapPlot(tuple(
    TraceInterval(i, (1 + t, 7), g, t)
    for i, (g, t) in enumerate([(1, 1), (0, 0), (0, 1), (None, 1)])))
NAN: Any = float("nan")  # in any field, as a plugin's data might hold it
WEIRD: Any = "many"  # what a plugin's metrics might hold despite their types


@pytest.mark.parametrize(("data", "alt", "caption"), [
    (FRAGMENTATION, "one at a time ends with 3 splits, the PMD-size pool with 0",
     "direct-map splits per allocation strategy"),
    (DICTIONARY, "none: 13.3 bits, 4711 candidate writes of 10000",
     "candidate writes needed against the entropy"),
    (DIRTY, "2 of 4 agree, 1 intervals were ambiguous", "secret bits it reconstructed"),
])
def test_each_plot_kind_is_drawn_with_its_text(
    tmp_path: Path, data: PlotData, alt: str, caption: str
) -> None:
    plots = _plots(tmp_path, (data,))
    assert len(plots) == 1
    assert alt in plots[0][0]
    assert caption in plots[0][1]


@pytest.mark.parametrize("data", [
    FragmentationSeries((1, 2), (1,), (0, 0)),
    FragmentationSeries((), (), ()),
    # Deliberately malformed: a NaN where split counts (ints) go.
    FragmentationSeries((1, 2), (1, NAN), (0, 0)),
    DictionaryPlot(WEIRD, 13.3, 5),
    DictionaryPlot(0, 0, 0),
    WearoutPlot((CurvePoint(8, NAN, 0.1),), 24, True),
    DirtyBitmapPlot((TraceInterval(0, (1,), WEIRD, 1),)),
    DirtyBitmapPlot((TraceInterval(0, (WEIRD,), 1, 1),)),
    DirtyBitmapPlot((TraceInterval(0, (1,), True, 1),)),
    DirtyBitmapPlot((TraceInterval(0, (-1,), 1, 1),)),
    DirtyBitmapPlot(()),
    PlotData(),
])
def test_malformed_plot_data_draws_nothing(tmp_path: Path, data: PlotData) -> None:
    assert _plots(tmp_path, (data,)) == []


def test_plots_of_a_row_appear_in_the_order_its_metrics_give(tmp_path: Path) -> None:
    plots = _plots(tmp_path, (DIRTY, FRAGMENTATION, DICTIONARY))
    assert [caption.split(":")[0] for _, caption in plots] == [
        "Dirty-page access-pattern leak", "secretmem", "Dictionary attack"]


def test_scenario_pages_stay_in_their_folder() -> None:
    page = page_of(scenario("attestation", id="a-b_c9").id)
    assert page == f"{SCENARIO_DIR}/a-b_c9.html"


def test_controls_trials_and_undecided_outcomes(tmp_path: Path) -> None:
    from testbed.results import Control, TrialStats

    weak = _scenario("weak", "Weak evidence", "A two-byte secret.")
    worked = Control("none", Outcome.SUCCEEDED, "the control read the secret", -200.0)
    failed = Control("none", Outcome.MITIGATED, "the control read garbage", 0.0)
    rows = [
        replace(_row("leak", "none", Outcome.SUCCEEDED), control=worked,
                trials=TrialStats.of(4, 4)),
        replace(_row("leak", "mktme", Outcome.MITIGATED), control=worked,
                trials=TrialStats.of(0, 4)),
        replace(_row("weak", "none", Outcome.INCONCLUSIVE), control=failed),
        replace(_row("weak", "mktme", Outcome.INEFFECTIVE), control=failed),
    ]
    scenarios = [(_scenario("leak", "Leak", "x"), "leak.yaml"), (weak, "weak.yaml")]
    html = _all_pages(write_report(tmp_path / "out", _run(), rows, scenarios))
    # The control column, one cell per scenario, coloured by the control's outcome.
    assert html.count('<td class="control-cell o-succeeded">') == 1
    assert html.count('<td class="control-cell o-mitigated">') == 1
    assert "Control</strong> (the same attack under none, no defence)" in html
    assert "4 of 4 succeeded: success rate 1.00 (95 % interval 0.51-1.00)" in html
    assert "0 of 4 succeeded: success rate 0.00 (95 % interval 0.00-0.49)" in html
    # Inconclusive and ineffective rows are neither stopped nor counted as scenarios that ran.
    assert '"none"><span class="count">0 of 1 scenario</span>' in html
    assert '"mktme"><span class="count">1 of 1 scenario</span>' in html
    assert html.count("undecided") == 2
    for text in ("inconclusive", "ineffective"):
        assert f'<span class="outcome">{text}</span>' in html


def test_every_outcome_has_a_legend_entry_and_a_colour() -> None:
    from testbed.report.html import OUTCOME_LEGEND, TEMPLATES_DIR

    assert [o for o, _ in OUTCOME_LEGEND] == list(Outcome)
    css = (TEMPLATES_DIR / "style.css.j2").read_text(encoding="utf-8")
    printed = css[css.index("print-color-adjust") - 400 : css.index("print-color-adjust")]
    for outcome in Outcome:
        assert f".o-{outcome.value} {{ background: var(--" in css, outcome
        assert f".o-{outcome.value}" in printed, outcome
