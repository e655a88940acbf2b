"""The handout (``testbed lab handout``) in a real browser (Debian's chromium, driven by
Playwright), read the way a student reads it, on screen and printed: no script, the policy
that forbids one, the title and every task in the visible text, no template syntax or raw
Markdown showing, lab text that tries markup shown as text, and a PDF print.

A screenshot and the PDF of each handout are kept: in ``$TESTBED_ARTIFACTS`` when that is set
(CI can upload the folder), else in the test's temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import browser as browsers
from _support.labs import CLASS_KEY
from click.testing import CliRunner

from testbed.cli import main
from testbed.labs import load_lab

CHROMIUM = browsers.CHROMIUM
playwright = pytest.importorskip("playwright.sync_api",
                                 reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed (.ci/run installs it)")

LAB = "direct-map"
VISIBLE_TEXT = """() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const shown = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const box = node.parentElement;
    if (box.checkVisibility({visibilityProperty: true, opacityProperty: true})) {
      shown.push(node.textContent);
    }
  }
  return shown.join(" ");
}"""
LEAKS = ("{{", "}}", "{%", "%}", "**", "`", "](")
"""What a reader must never see: template syntax or Markdown left unrendered."""
HOSTILE = """\
id: hostile
title: "Markup <script>window.__pwned = 1</script>"
goals: ["<img src=x onerror=\\"window.__pwned = 2\\">"]
handout: |
  A **strong** word.

  <script>alert(1)</script>

  <img src=x onerror="window.__pwned = 3">
scenarios:
  - use: kernel-map-leak
tasks:
  - id: t1
    kind: explain
    prompt: "Which? <svg onload=\\"window.__pwned = 4\\"></svg>"
    choices: ["<script>window.__pwned = 5</script>", "plain"]
    answer: 1
"""


def _handout(folder: Path, *args: str) -> Path:
    out = folder / ("-".join(a.strip("-") for a in args if a) + ".html")
    done = CliRunner().invoke(main, ["lab", "handout", *args, "--out", str(out), "--jobs", "1"])
    assert done.exit_code == 0, done.output
    return out


@pytest.fixture(scope="module")
def handouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("handouts")
    os.environ.setdefault("MPLCONFIGDIR", str(base / "mpl"))
    hostile = base / "hostile.yaml"
    hostile.write_text(HOSTILE)
    key_file = base / "class.key"
    key_file.write_bytes(CLASS_KEY)
    return {"student": _handout(base, LAB, "--student", "s1"),
            "key": _handout(base, LAB, "--student", "s1", "--key", "--class-key",
                            str(key_file)),
            "hostile": _handout(base, str(hostile), "--student", "s1")}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return browsers.artifacts(tmp_path_factory)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with browsers.chromium(tmp_path_factory) as launched:
        yield launched


class _Watched:
    """A page whose console messages, errors, dialogs and requests are recorded."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.messages: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))

    def _dialog(self, dialog: Any) -> None:
        self.messages.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def open(self, path: Path) -> Any:
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        return self.page

    def outside(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:"))]


def _no_script(page: Any) -> None:
    assert page.locator("script").count() == 0
    policy = page.locator('meta[http-equiv="Content-Security-Policy"]')
    assert policy.count() == 1
    content = policy.get_attribute("content")
    assert "default-src 'none'" in content and "script-src" not in content


@pytest.mark.parametrize("which", ["student", "key"])
def test_the_handout_reads_right(handouts: dict[str, Path], browser: Any, artifacts: Path,
                                 which: str) -> None:
    lab = load_lab(LAB).lab
    watched = _Watched(browser)
    page = watched.open(handouts[which])
    _no_script(page)
    title = page.locator("h1").first.inner_text().strip()
    assert title == lab.title and lab.title in page.title()
    shown = " ".join(page.evaluate(VISIBLE_TEXT).split())
    for task in lab.tasks:
        assert task.id in shown
        assert " ".join(task.prompt.split())[:40].replace("`", "") in shown, task.id
    for leak in LEAKS:
        assert leak not in shown, f"{leak!r} shows on the {which} handout"
    assert ("Answer key, for the teacher only" in shown) == (which == "key")
    assert page.locator("section.task").count() == len(lab.tasks)
    # On paper: a line to write on below the written answers, nothing cut.
    page.emulate_media(media="print")
    assert page.locator(".answer-lines:visible").count() == (0 if which == "key" else
                                                            page.locator(".answer-lines")
                                                            .count())
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    (artifacts / f"lab-{LAB}-{which}.pdf").write_bytes(pdf)
    page.emulate_media(media="screen")
    page.screenshot(path=str(artifacts / f"lab-{LAB}-{which}.png"), full_page=True)
    assert (artifacts / f"lab-{LAB}-{which}.png").stat().st_size > 10_000
    assert watched.messages == [] and watched.outside() == []


def test_lab_text_that_tries_markup_stays_text(handouts: dict[str, Path], browser: Any,
                                               artifacts: Path) -> None:
    watched = _Watched(browser)
    page = watched.open(handouts["hostile"])
    _no_script(page)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img, svg, iframe").count() == 0
    body = page.inner_text("body")
    assert "<script>alert(1)</script>" in body
    assert "Markup <script>window.__pwned = 1</script>" in body
    assert "<script>window.__pwned = 5</script>" in body
    assert page.locator("strong", has_text="strong").count() == 1  # Markdown is rendered
    page.screenshot(path=str(artifacts / "lab-hostile.png"), full_page=True)
    assert watched.messages == [] and watched.outside() == []
