"""A sweep's page (``testbed sweep``) in a real browser (Debian's chromium, driven by
Playwright): its title first, every figure loaded and drawn at its size, no template syntax
showing, nothing scrolling sideways but the table, no request out, and a PDF print.

A screenshot is kept in ``$TESTBED_ARTIFACTS`` when that is set, else in the test's temporary
folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import browser as browsers
from _support import paths

CHROMIUM = browsers.CHROMIUM
playwright = pytest.importorskip("playwright.sync_api",
                                 reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed (.ci/run installs it)")

SPEC = paths.SCENARIOS / "sweeps" / "dictionary-digits.yaml"


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sweep")
    spec = base / "digits.yaml"
    spec.write_text(SPEC.read_text().replace("[2, 3, 4, 5, 6]", "[1, 2, 3]").replace(
        "seeds: 4", "seeds: 2"))
    done = subprocess.run([sys.executable, "-m", "testbed", "sweep", str(spec), "--out",
                           str(base / "out"), "--jobs", "2"], capture_output=True, text=True,
                          timeout=600, check=False, cwd=base,
                          env={**os.environ, "MPLCONFIGDIR": str(base / "mpl")})
    assert done.returncode == 0, done.stderr
    return base / "out" / "index.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with browsers.chromium(tmp_path_factory) as launched:
        yield launched


def test_the_sweep_page_reads_right(page_file: Path, browser: Any,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    text = page.inner_text("body")
    assert text.lstrip().startswith("Dictionary guesses against PIN digits, per engine")
    for leak in ("{{", "}}", "{%", "%}"):
        assert leak not in text
    images = page.locator("figure img")
    assert images.count() == 2
    for i in range(images.count()):
        box = images.nth(i).bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 200
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= 1280, "the page scrolls sideways (only the table may)"
    assert page.locator("script").count() == 0
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    shots = browsers.artifacts(tmp_path_factory)
    page.screenshot(path=str(shots / "sweep-page.png"), full_page=True)
    assert len(page.pdf()) > 10_000
    page.close()
