"""The generated report in a real browser (Debian's chromium, driven by Playwright).

Checks what only a browser can: the page loads from file:// with no console errors, the matrix
has one cell per (scenario, engine), and script smuggled in through scenario text never runs.
The matrix filters (pure CSS: the page's CSP allows no script) are clicked and checked.
A screenshot is kept in ``test-artifacts/`` for people to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _support.paths import ROOT, SCENARIOS
from click.testing import CliRunner

from testbed.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api",
                                 reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed (.ci/run installs it)")

ARTIFACTS = ROOT / "test-artifacts"
HOSTILE = """\
id: hostile
title: "<script>window.__pwned = 1</script> {{ 7*7 }}"
attack: kernel-map-leak
engines: [none, tme]
params:
  secret: "<img src=x onerror=\\"window.__pwned = 2\\">"
teaching:
  summary: "<img src=x onerror=\\"window.__pwned = 3\\"> javascript:window.__pwned=4"
  questions: ["<svg onload=\\"window.__pwned = 5\\"></svg>"]
"""

# A secret too small to beat chance (inconclusive), and an attack that cannot work with its
# parameters (ineffective): the two outcomes must show in colours of their own.
WEAK = """\
id: zz-weak
title: Two-byte secret
attack: kernel-map-leak
engines: [none, mktme]
params: {secret_bytes: 2}
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


def _no_stray_markup(text: str) -> None:
    """What a reader sees holds no style sheet or template syntax that leaked out of place."""
    for leak in ("@media", "display:", "{ ", "{%", "%}", "</"):
        shown = text.replace("<script>window.__pwned = 1</script> {{ 7*7 }}", "")
        assert leak not in shown, f"{leak!r} shows on the page"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("browser")
    os.environ.setdefault("MPLCONFIGDIR", str(base / "mpl"))
    scenarios = base / "scenarios"
    shutil.copytree(SCENARIOS, scenarios)
    (scenarios / "zz-hostile.yaml").write_text(HOSTILE)
    (scenarios / "zz-weak.yaml").write_text(WEAK)
    (scenarios / "zz-futile.yaml").write_text(FUTILE)
    out = base / "out"
    result = CliRunner().invoke(main, ["run", str(scenarios), "--out", str(out), "--jobs", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "index.html"


def test_report_in_chromium(report: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            messages: list[str] = []
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")

            assert page.title() == "memcrypt-testbed report"
            # The shipped scenarios x 5 engines, plus three of ours x 5 (3 of each "not run").
            rows = len(list(SCENARIOS.glob("*.yaml"))) + 3
            assert page.locator("[data-cell]").count() == rows * 5
            assert page.evaluate("typeof window.__pwned") == "undefined"
            body = page.inner_text("body")
            _no_stray_markup(body)
            assert "<script>window.__pwned = 1</script> {{ 7*7 }}" in body
            assert "javascript:window.__pwned=4" in body
            assert page.locator("script").count() == 0
            assert page.locator("img[onerror]").count() == 0
            assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
            assert messages == []

            # The control column: one visible cell per scenario, next to the engines.
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
            page.click("label[for=fa-key-wearout]")
            assert page.locator("tbody tr:visible").count() == 3
            page.click("label[for=fa-all]")
            page.click("label[for=fo-blocked]")
            blocked = page.locator("td[data-outcome=blocked]").count()
            assert blocked > 0
            assert page.locator("td[data-cell] .outcome:visible").count() == blocked
            page.click("label[for=fo-all]")
            assert page.locator("td[data-cell] .outcome:visible").count() == rows * 5

            # Each cell opens that result on the scenario's own page.
            page.click('td[data-cell="secretmem-pool-exhaustion/mktme"] a')
            page.wait_for_load_state("load")
            assert page.url.endswith("/scenarios/secretmem-pool-exhaustion.html"
                                     "#res-secretmem-pool-exhaustion.mktme")
            assert page.locator("h1").inner_text() == "secretmem pool exhaustion"
            _no_stray_markup(page.inner_text("body"))
            assert page.locator("details.result[open]").count() == 5
            plots = page.locator("figure.plot img")
            assert plots.count() == 5  # the fragmentation plot, once per engine
            assert all(w > 0 for w in plots.evaluate_all("els => els.map(e => e.naturalWidth)"))
            page.click("text=\u2190 Outcome matrix")
            page.wait_for_load_state("load")
            assert page.url.endswith("/index.html#matrix")
            assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
            assert messages == []

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
            assert (ARTIFACTS / "report.png").stat().st_size > 10_000
        finally:
            browser.close()
