"""The generated report in a real browser (Debian's chromium, driven by Playwright), looked at
the way a reader looks at it.

The DOM can be right while the page is wrong: style rules that leak out of their element show
as text at the top of every page and no DOM query notices. So these tests read what is
*rendered*: the first visible text of every page is its title; no visible text holds style sheet
or template syntax; every figure has a size on screen; nothing scrolls sideways at 1280 px;
printed (print media), every result is there. They also check what only a browser can: no
script runs (the CSP allows none, and scenario text cannot smuggle one in), no request leaves
the folder, the CSS-only filters work.

A screenshot of each page type is kept: in ``$TESTBED_ARTIFACTS`` when that is set (CI can
upload the folder), else in the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import browser as browsers
from _support.paths import SCENARIOS
from click.testing import CliRunner

from testbed.cli import main

CHROMIUM = browsers.CHROMIUM
playwright = pytest.importorskip("playwright.sync_api",
                                 reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed (.ci/run installs it)")

WIDTH = 1280
HOSTILE = """\
id: hostile
title: "<script>window.__pwned = 1</script> {{ 7*7 }}"
engines: [none, tme]
threat: [kernel_read_bug]
program:
  - {op: create_domain, by: victim, args: {kind: guest}, as: victim}
  - {op: alloc_pages, by: victim, args: {domain: $victim, secret: true}, as: page}
  - op: store_secret
    by: victim
    args: {address: $page, text: "<img src=x onerror=\\"window.__pwned = 2\\">"}
    as: secret
  - {op: read_direct_map, by: attacker, args: {address: $secret}, as: leaked}
goal: {recovered: leaked}
teaching:
  summary: "<img src=x onerror=\\"window.__pwned = 3\\"> javascript:window.__pwned=4"
  questions: ["<svg onload=\\"window.__pwned = 5\\"></svg>"]
"""

# A secret too small to beat chance (inconclusive), and an attack that cannot work with its
# parameters (ineffective): the two outcomes must show in colours of their own.
WEAK = """\
id: zz-weak
title: Two-byte secret
engines: [none, mktme]
threat: [kernel_read_bug]
program:
  - {op: create_domain, by: victim, args: {kind: guest}, as: victim}
  - {op: alloc_pages, by: victim, args: {domain: $victim, secret: true}, as: page}
  - {op: store_secret, by: victim, args: {address: $page, size: 2}, as: secret}
  - {op: read_direct_map, by: attacker, args: {address: $secret}, as: leaked}
goal: {recovered: leaked}
teaching: {summary: Too small to tell from luck.}
"""
FUTILE = """\
id: zz-futile
title: Constant access
attack: dirty-page-leak
engines: [none, sev]
params: {secret_bytes: 4, constant_access: true}
teaching: {summary: Nothing to read in the bitmaps.}
"""

FIRST_VISIBLE_TEXT = """() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const box = node.parentElement;
    if (text && box.checkVisibility({visibilityProperty: true, opacityProperty: true})) {
      const r = box.getBoundingClientRect();
      if (r.width > 0 && r.height > 0) return text;
    }
  }
  return null;
}"""
VISIBLE_TEXT = """() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const shown = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const box = node.parentElement;
    if (box.closest("pre.hex")) continue;  // evidence bytes: data, whatever they spell
    if (box.checkVisibility({visibilityProperty: true, opacityProperty: true})) {
      shown.push(node.textContent);
    }
  }
  return shown.join(" ");
}"""
IMAGE_SIZES = """els => els.map(e => {
  const r = e.getBoundingClientRect();
  return [e.naturalWidth, e.naturalHeight, r.width, r.height];
})"""
SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
LEAKS = ("{", "}", "{{", "{%", "%}", "@media", "display:")
"""What a reader must never see: style sheet or template syntax."""


def _run(scenarios: Path, out: Path) -> Path:
    result = CliRunner().invoke(main, ["run", str(scenarios), "--out", str(out), "--jobs", "2",
                                       "--seed", "7"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the shipped scenarios, as a teacher would generate it."""
    base = tmp_path_factory.mktemp("shipped")
    os.environ.setdefault("MPLCONFIGDIR", str(base / "mpl"))
    return _run(SCENARIOS, base / "out")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report with scenario text that tries markup, script and template syntax."""
    base = tmp_path_factory.mktemp("hostile")
    os.environ.setdefault("MPLCONFIGDIR", str(base / "mpl"))
    scenarios = base / "scenarios"
    scenarios.mkdir()
    for name in ("01-kernel-map-leak.yaml", "02-kernel-map-leak-secretmem.yaml",
                 "12-secretmem-pool-exhaustion.yaml"):
        shutil.copy(SCENARIOS / name, scenarios)
    (scenarios / "zz-hostile.yaml").write_text(HOSTILE)
    (scenarios / "zz-weak.yaml").write_text(WEAK)
    (scenarios / "zz-futile.yaml").write_text(FUTILE)
    return _run(scenarios, base / "out")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return browsers.artifacts(tmp_path_factory)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with browsers.chromium(tmp_path_factory) as launched:
        yield launched


class _Watched:
    """A page whose console messages, errors and requests are recorded."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        self.messages: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, path: Path) -> Any:
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        return self.page

    def outside(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:"))]


def _pages(out: Path) -> list[Path]:
    return [out / "index.html", out / "glossary.html", *sorted((out / "scenarios").glob("*.html"))]


def _looks_right(page: Any, name: str) -> None:
    """What a reader sees on one page, at 1280 px."""
    title = page.locator("h1").first.inner_text().strip()
    assert title and title in page.title(), name
    assert page.evaluate(FIRST_VISIBLE_TEXT) == title, name
    shown = page.evaluate(VISIBLE_TEXT)
    for leak in LEAKS:
        assert leak not in shown, f"{leak!r} shows on {name}"
    sizes = page.locator("img").evaluate_all(IMAGE_SIZES)
    assert all(nw > 0 and nh > 0 and w > 0 and h > 0 for nw, nh, w, h in sizes), (name, sizes)
    assert page.evaluate(SIDEWAYS) <= 0, f"{name} scrolls sideways at {WIDTH} px"


def test_every_page_looks_right_to_a_reader(shipped: Path, browser: Any,
                                            artifacts: Path) -> None:
    watched = _Watched(browser)
    for path in _pages(shipped):
        page = watched.open(path)
        _looks_right(page, path.name)
    assert watched.messages == [] and watched.outside() == []
    # A figure on a page that has one, to be sure the check above looked at some.
    page = watched.open(shipped / "scenarios" / "key-wearout.html")
    assert page.locator("figure.plot img").count() == 1  # one figure across the engines
    for name, path in [("index", shipped / "index.html"),
                       ("glossary", shipped / "glossary.html"),
                       ("scenario-key-wearout", shipped / "scenarios" / "key-wearout.html"),
                       ("scenario-kernel-map-leak",
                        shipped / "scenarios" / "kernel-map-leak.html"),
                       ("scenario-attestation-forged-report",
                        shipped / "scenarios" / "attestation-forged-report.html")]:
        watched.open(path).screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
        assert (artifacts / f"{name}.png").stat().st_size > 10_000


def test_printed_every_result_is_there(shipped: Path, browser: Any, artifacts: Path) -> None:
    watched = _Watched(browser)
    page = watched.open(shipped / "index.html")
    page.emulate_media(media="print")
    rows = len(list(SCENARIOS.glob("*.yaml")))
    cells = page.locator("td[data-cell] .outcome")
    assert cells.count() == rows * 6
    assert all(t.strip() for t in cells.all_inner_texts())
    assert page.locator("td[data-cell]:visible").count() == rows * 6
    assert page.locator("td.control-cell:visible").count() == rows
    assert page.locator("#legend:visible").count() == 1
    assert page.locator(".filters:visible").count() == 0  # nothing to click on paper
    page.screenshot(path=str(artifacts / "index-print.png"), full_page=True)
    for path in sorted((shipped / "scenarios").glob("*.html")):
        page = watched.open(path)
        page.emulate_media(media="print")
        results = page.locator("details.result")
        assert page.locator("details.result[open]:visible").count() == results.count(), path
        lines = page.locator("ul.happened > li")
        assert lines.count() >= 1
        assert page.locator("ul.happened > li:visible").count() == lines.count(), path
        shown = page.inner_text("body")
        for engine in ("none", "tme", "mktme", "mktme-i", "sev", "sev-snp"):
            assert engine in shown
    assert watched.messages == []


def test_scenario_text_never_runs_and_stays_text(hostile: Path, browser: Any) -> None:
    watched = _Watched(browser)
    page = watched.open(hostile / "index.html")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    body = page.inner_text("body")
    assert "<script>window.__pwned = 1</script> {{ 7*7 }}" in body
    assert "javascript:window.__pwned=4" in body
    assert page.locator("script").count() == 0
    assert page.locator("img[onerror]").count() == 0
    page = watched.open(hostile / "scenarios" / "hostile.html")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate(FIRST_VISIBLE_TEXT) == "<script>window.__pwned = 1</script> {{ 7*7 }}"
    assert page.locator("svg").count() == 0
    assert watched.messages == [] and watched.outside() == []


def test_matrix_colours_filters_and_links(hostile: Path, browser: Any) -> None:
    watched = _Watched(browser)
    page = watched.open(hostile / "index.html")
    rows = 6
    assert page.locator("[data-cell]").count() == rows * 6
    assert page.locator("td.control-cell:visible").count() == rows
    assert page.locator("thead th").nth(1).inner_text().startswith("Control")

    def background(cell: str) -> str:
        return str(page.locator(f'td[data-cell="{cell}"]').evaluate(
            "e => getComputedStyle(e).backgroundColor"))

    colours = {name: background(cell) for name, cell in [
        ("inconclusive", "zz-weak/none"), ("ineffective", "zz-futile/sev"),
        ("succeeded", "kernel-map-leak/none"), ("mitigated", "kernel-map-leak/mktme"),
        ("blocked", "kernel-map-leak-secretmem/none")]}
    assert len(set(colours.values())) == len(colours), colours
    assert "rgb(255, 255, 255)" not in colours.values()
    for name, cell in [("inconclusive", "zz-weak/none"), ("ineffective", "zz-futile/sev")]:
        assert page.locator(f'td[data-cell="{cell}"] .outcome').inner_text() == name

    # CSS-only filters (the page runs no script): engine, attack, outcome.
    page.click("label[for=fe-mktme]")
    assert page.locator("td[data-cell]:visible").count() == rows
    assert page.locator("th[data-engine]:visible").all_inner_texts() == ["mktme"]
    page.click("label[for=fe-all]")
    programs = page.locator('tbody tr[data-attack="program"]').count()
    assert programs >= 2  # hostile, zz-weak
    page.click("label[for=fa-program]")
    assert page.locator("tbody tr:visible").count() == programs
    page.click("label[for=fa-all]")
    page.click("label[for=fo-blocked]")
    blocked = page.locator("td[data-outcome=blocked]").count()
    assert blocked > 0
    assert page.locator("td[data-cell] .outcome:visible").count() == blocked
    page.click("label[for=fo-all]")
    assert page.locator("td[data-cell] .outcome:visible").count() == rows * 6

    # Each cell opens that result on the scenario's own page; n/a cells open their line.
    page.click('td[data-cell="secretmem-pool-exhaustion/mktme"] a')
    page.wait_for_load_state("load")
    assert page.url.endswith("/scenarios/secretmem-pool-exhaustion.html"
                             "#res-secretmem-pool-exhaustion.mktme")
    assert page.locator("h1").inner_text() == "secretmem pool exhaustion"
    assert page.locator("details.result[open]").count() == 6
    assert page.locator("figure.plot img").count() == 1  # one figure across the engines
    assert page.locator("#res-secretmem-pool-exhaustion\\.mktme").is_visible()
    page.click("text=\u2190 Outcome matrix")
    page.wait_for_load_state("load")
    assert page.url.endswith("/index.html#matrix")
    page.click('td[data-cell="zz-futile/tme"] a')  # not run: opens the page
    page.wait_for_load_state("load")
    assert page.url.endswith("/scenarios/zz-futile.html")
    assert watched.messages == [] and watched.outside() == []
