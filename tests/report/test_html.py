"""Tests of the HTML report: structure, escaping of untrusted text, determinism, plots."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from _support.scenarios import scenario

from testbed.report import write_report
from testbed.report.html import SCENARIO_DIR, _page
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


def _scenario(sid: str, title: str, summary: str, attack: str = "kernel-map-leak") -> Scenario:
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
        # mktme, sev, sev-snp of "wear" are deliberately not run.
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


def test_writes_index_and_creates_folder(tmp_path: Path) -> None:
    html = _render(tmp_path, "nested/deeper")
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>memcrypt-testbed report</title>" in html
    # One page per scenario, and no temporary files left behind.
    out = tmp_path / "nested" / "deeper"
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "scenarios"]
    assert sorted(p.name for p in (out / "scenarios").iterdir()) == ["leak.html", "wear.html"]


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


def test_header_metadata_and_summary(tmp_path: Path) -> None:
    html = _render(tmp_path)
    for text in ("1234", "0.1.0", "2024-05-01T10:00:00+00:00", "12.35 s"):
        assert text in html
    # sev-snp has only a not_applicable row, which the count leaves out.
    assert "none: 1 of 2 attacks stopped" in html  # succeeded + blocked
    assert "tme: 0 of 2 attacks stopped" in html  # succeeded + error
    assert "mktme: 0 of 1 attacks stopped" in html
    assert "sev: 1 of 1 attacks stopped" in html
    assert "sev-snp: 0 of 0 attacks stopped" in html
    assert "1 expectation mismatch" in html
    assert 'class="mismatch-banner"' in html


def test_matrix_has_one_cell_per_scenario_and_engine(tmp_path: Path) -> None:
    html = _render(tmp_path)
    cells = re.findall(r'<td class="cell[^"]*" data-cell="([^"]+)"', html)
    assert len(cells) == 2 * len(ENGINE_NAMES)
    assert cells == [f"{s}/{e}" for s in ("leak", "wear") for e in ENGINE_NAMES]
    # Column order of the header follows the engine order.
    header = html[html.index('<table class="matrix">') : html.index("</thead>")]
    positions = [header.index(f">{e}</th>") for e in ENGINE_NAMES]
    assert positions == sorted(positions)
    assert html.count('data-outcome="not-run"') == 3
    assert html.count('href="scenarios/leak.html#res-leak.') == 5 + 1  # cells + mismatch


def test_outcome_texts_and_profile(tmp_path: Path) -> None:
    html = _render(tmp_path)
    for text in ("succeeded", "partial", "mitigated", "blocked", "error", "not applicable"):
        assert f'<span class="outcome">{text}</span>' in html
    assert '<small class="profile">tme+secretmem</small>' in html
    assert html.count('<span class="outcome">not run</span>') == 3 + 3  # matrix + wear page


def test_mismatch_is_flagged_with_text(tmp_path: Path) -> None:
    html = _render(tmp_path)
    cell = re.search(
        r'<td class="cell o-partial mismatch" data-cell="leak/mktme".*?</td>', html, re.S
    )
    assert cell is not None
    assert "expected mitigated" in cell.group(0)
    # Rows that match their expectation carry no flag.
    ok = re.search(r'<td class="cell o-succeeded" data-cell="leak/none".*?</td>', html, re.S)
    assert ok is not None and "expected" not in ok.group(0)


def test_legend_and_sections(tmp_path: Path) -> None:
    html = _render(tmp_path)
    assert "The attacker got exactly what it wanted." in html
    assert "The threat does not exist under this profile." in html
    assert '<section class="scenario" id="scn-leak"' in html
    assert '<section class="scenario" id="scn-wear"' in html
    assert "scenarios/leak.yaml" in html
    assert "What to look for" in html
    assert '<li class="prose">Why does TME not help here?</li>' in html
    assert html.count("<details") == 7


def test_metrics_sorted_and_compact(tmp_path: Path) -> None:
    html = _render(tmp_path)
    section = html[html.index('id="res-leak.none"') :]
    section = section[: section.index("</details>")]
    keys = re.findall(r'<th scope="row"><code>([^<]+)</code></th>', section)
    assert keys == ["bytes_read", "info", "pages"]
    assert "{&#34;a&#34;: 1, &#34;b&#34;: 2}" in section
    assert "[1, 2, 3]" in section


def test_long_metric_is_truncated(tmp_path: Path) -> None:
    scn = _scenario("long", "Long", "s")
    row = _row("long", "none", Outcome.SUCCEEDED, metrics={"big": list(range(1000))})
    html = _all_pages(write_report(tmp_path, _run(), [row], [(scn, "x.yaml")]))
    value = re.search(r"<code>big</code></th><td><code>([^<]*)</code>", html)
    assert value is not None
    assert len(value.group(1)) <= 300
    assert value.group(1).endswith("\u2026")


def test_evidence_hex_and_matches(tmp_path: Path) -> None:
    html = _render(tmp_path)
    section = html[html.index('id="res-leak.mktme"') :]
    section = section[: section.index("</details>")]
    assert "DRAM / bus capture" in html
    assert "16 of 32 compared bytes equal the secret" in section
    recovered = section[section.index("evidence-recovered") :]
    # First row matches the secret (marked), second row is 0xee (not marked).
    assert '<mark class="match">00</mark>' in recovered
    assert '<mark class="match">0f</mark>' in recovered
    assert '<mark class="match">ee</mark>' not in recovered
    assert "0010" in recovered and "ee ee" in recovered


def test_evidence_truncated_to_256_bytes(tmp_path: Path) -> None:
    scn = _scenario("big", "Big", "s")
    data = bytes(i % 256 for i in range(1000))
    row = _row("big", "none", Outcome.SUCCEEDED, evidence=Evidence(secret=data, recovered=data))
    html = _all_pages(write_report(tmp_path, _run(), [row], [(scn, "x.yaml")]))
    assert "Showing the first 256 of 1000 bytes." in html
    recovered = html[html.index("evidence-recovered") :]
    recovered = recovered[: recovered.index("</pre>")]
    assert recovered.count('<span class="off">') == 16
    assert '<span class="off">00f0</span>' in recovered
    assert '<span class="off">0100</span>' not in recovered


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
    summary = re.search(r'<h3>Summary</h3>\n<p class="prose">(.*?)</p>', html, re.S)
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
        local = re.fullmatch(r"(\.\./index\.html|scenarios/[a-z0-9_-]+\.html|[a-z0-9_-]+\.html)?"
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
    (DICTIONARY, "13.3 bits of entropy, a dictionary of 10000 candidates, 4711 candidate writes",
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
    page = _page(scenario("kernel-map-leak", id="a-b_c9").id)
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
    assert "Control</strong> (the same attack under none, no mitigations)" in html
    assert "4 of 4 succeeded: success rate 1.00 (95 % interval 0.51-1.00)" in html
    assert "0 of 4 succeeded: success rate 0.00 (95 % interval 0.00-0.49)" in html
    # Inconclusive and ineffective rows are neither stopped nor counted as attacks that ran.
    assert "none: 0 of 1 attacks stopped" in html
    assert "mktme: 1 of 1 attacks stopped" in html
    assert html.count("(1 inconclusive or ineffective)") == 2
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
