"""Debian's chromium through Playwright, for the tests that look at pages as a reader does.

Each browser test module skips itself when Playwright or chromium is missing (with
``pytest.importorskip`` and ``CHROMIUM``), then uses :func:`chromium` and :func:`artifacts`
from its fixtures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM", "artifacts", "chromium"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
"""Debian's chromium (no browser download)."""


@contextlib.contextmanager
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless chromium with a profile of its own, closed on exit."""
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("chromium")
    os.environ.setdefault("XDG_CONFIG_HOME", str(home / "config"))
    os.environ.setdefault("XDG_CACHE_HOME", str(home / "cache"))
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            yield launched
        finally:
            launched.close()


def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$TESTBED_ARTIFACTS`` when set (CI can upload it), else a
    temporary folder."""
    given = os.environ.get("TESTBED_ARTIFACTS")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return Path(given)
    return tmp_path_factory.mktemp("screenshots")
