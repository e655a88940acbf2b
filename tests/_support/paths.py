"""Where the repository's files are, for tests at any depth under ``tests/``."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
SCENARIOS = ROOT / "scenarios"
VECTORS = TESTS / "vectors"
README = ROOT / "README.md"
PACKAGE = ROOT / "testbed"
