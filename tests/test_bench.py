"""`testbed bench --quick` produces every figure (a smoke test: it asserts no speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _support.paths import SCENARIOS
from click.testing import CliRunner

from testbed.bench import BACKEND_KEY, BENCH_KEYS, DETAIL_KEYS, QUICK_KEY, TARGETS, meets
from testbed.cli import main
from testbed.crypto import mask_backend


def test_bench_quick_writes_every_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--quick", "--json", str(out),
                                       "--scenarios", str(SCENARIOS)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert list(figures)[-2:] == [BACKEND_KEY, QUICK_KEY]
    assert figures.pop(QUICK_KEY) is True  # the figures say they measure nothing
    assert figures.pop(BACKEND_KEY) == mask_backend()  # which mask passes they were made with
    assert mask_backend() in ("llvmlite", "numpy")
    assert f"{BACKEND_KEY} " in result.output and f" {mask_backend()}  " in result.output
    assert list(figures) == list(BENCH_KEYS + DETAIL_KEYS)
    assert all(value > 0 for value in figures.values())
    assert figures["engine_ratio"] == pytest.approx(
        figures["engine_mb_s"] / figures["openssl_xts_mb_s"])
    assert figures["engine_ratio_threads"] == pytest.approx(
        figures["engine_mb_s_threads"] / figures["openssl_xts_mb_s"])
    assert figures["engine_threads"] >= 1
    for key in BENCH_KEYS + DETAIL_KEYS:
        assert key in result.output
    # Figures against targets are marked as no measurement; none is called met or not met.
    assert "--quick: tiny sizes and one repetition" in result.output
    for key in TARGETS:
        line = next(line for line in result.output.splitlines() if line.startswith(key + " "))
        assert line.endswith(": not measured (--quick))"), line
    assert " met)" not in result.output


def test_targets() -> None:
    assert meets("engine_ratio", 0.30) and not meets("engine_ratio", 0.29)
    assert meets("matrix_s_1_job", 30.0) and not meets("matrix_s_1_job", 30.5)
