"""The dirty-page access-pattern leak: it succeeds under every engine, all-pages-dirty and constant
access mitigate it, and the judge compares bits only."""

from __future__ import annotations

import numpy as np
import pytest
from _support.paths import SCENARIOS
from _support.scenarios import run

from testbed.attacks.dirty_page_leak import (
    DirtyPageLeakMetrics,
    DirtyPageLeakParams,
    chance_probability,
    judge_bits,
)
from testbed.scenarios import Job, load_scenario, run_job
from testbed.types import Outcome

ENGINES = ["none", "tme", "mktme", "mktme-i", "sev", "sev-snp"]


SECRET = {"secret": "k3y!Zq", "background_pages": 2}  # 6 text bytes: 2^-39 by chance


@pytest.mark.parametrize("engine", ENGINES)
def test_leak_succeeds_under_every_engine(engine: str) -> None:
    row = run("dirty-page-leak", engine, params=SECRET)
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    assert row.evidence.recovered == row.evidence.secret == b"k3y!Zq"
    m = row.metrics_as(DirtyPageLeakMetrics)
    assert (m.bits_total, m.bits_recovered, m.bit_accuracy, m.intervals) == (48, 48, 1.0, 48)
    bits = np.unpackbits(np.frombuffer(b"k3y!Zq", dtype=np.uint8)).tolist()
    assert [t.truth for t in m.bitmap_trace] == bits
    assert [t.guess for t in m.bitmap_trace] == bits
    for entry in m.bitmap_trace:
        assert len(entry.dirty_pages) == 3  # one buffer and two background pages
    assert len(row.evidence.captured or b"") == 48 * 8  # the bitmaps, not memory contents


@pytest.mark.parametrize("engine", ENGINES)
def test_all_pages_dirty_mitigates(engine: str) -> None:
    row = run("dirty-page-leak", engine, params=SECRET, mitigations={"dirty_all_pages": True})
    assert row.outcome is Outcome.MITIGATED, row.reason
    assert "coin flips" in row.reason
    m = row.metrics_as(DirtyPageLeakMetrics)
    assert m.ambiguous_intervals == m.intervals == 48
    assert m.pinned_page_dirty_scope is False
    assert 0.25 <= m.bit_accuracy <= 0.75  # fair coin flips, not a guess that peeks
    assert all(list(t.dirty_pages) == list(range(16)) for t in m.bitmap_trace)
    assert all(t.guess is None for t in m.bitmap_trace)


@pytest.mark.parametrize("engine", ["none", "sev-snp"])
def test_constant_access_leaves_nothing_to_read(engine: str) -> None:
    # The guest's constant access is a parameter, not a defence in force: without any defence
    # (the control) the attack gets coin flips too, so it is ineffective, not mitigated.
    row = run("dirty-page-leak", engine, params={**SECRET, "constant_access": True})
    assert row.outcome is Outcome.INEFFECTIVE, row.reason
    assert row.control is not None and row.control.outcome is Outcome.MITIGATED
    m = row.metrics_as(DirtyPageLeakMetrics)
    assert m.ambiguous_intervals == 48
    assert m.pinned_page_dirty_scope is True
    assert 0.25 <= m.bit_accuracy <= 0.75


def test_trace_is_capped_and_runs_reproduce() -> None:
    params = {"secret_bytes": 128, "constant_access": True}
    row = run("dirty-page-leak", "sev", params=params)
    m = row.metrics_as(DirtyPageLeakMetrics)
    assert m.intervals == 1024 and len(m.bitmap_trace) == 256
    again = run("dirty-page-leak", "sev", params=params)
    assert again.evidence == row.evidence and again.metrics == row.metrics
    other = run("dirty-page-leak", "sev", seed=8, params=params)
    assert other.evidence.recovered != row.evidence.recovered


def test_judge_bits_by_comparison_only() -> None:
    truth = np.unpackbits(np.frombuffer(bytes(range(8)), dtype=np.uint8))
    assert judge_bits(truth, truth.copy()).outcome is Outcome.SUCCEEDED
    most = truth.copy()
    most[:4] ^= 1  # 60 of 64 right: far beyond guessing
    assert judge_bits(truth, most).outcome is Outcome.PARTIAL
    half = truth.copy()
    half[::2] ^= 1  # 32 of 64: what coin flips get
    verdict = judge_bits(truth, half)
    assert verdict.outcome is Outcome.MITIGATED and "0.50" in verdict.reason
    assert chance_probability(64, 64) == 2.0**-64 and chance_probability(0, 64) == 1.0


@pytest.mark.parametrize(("params", "word"), [
    ({"secret_bytes": 129}, "at most 128 bytes"),
    ({"guest_pages": 4, "background_pages": 2}, "at most guest_pages - 3"),
    ({"guest_pages": 65}, "less than or equal to 64"),
    ({"constant_access": "yes"}, "valid boolean"),
])
def test_params_are_bounded(params: dict[str, object], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        DirtyPageLeakParams.model_validate(params)
    assert DirtyPageLeakParams.model_validate({"guest_pages": 40}).pages_needed() == 40


@pytest.mark.parametrize("name", ["14-dirty-page-leak.yaml", "15-dirty-page-leak-all-dirty.yaml"])
def test_shipped_scenarios_match_their_expectations(name: str) -> None:
    scenario, source = load_scenario(SCENARIOS / name)
    assert scenario.attack == "dirty-page-leak"
    assert sorted(scenario.expect) == sorted(ENGINES)
    for engine in scenario.engines:
        row = run_job(Job(scenario, source, engine, seed=1))
        assert row.outcome is scenario.expect[engine], (engine, row.reason)
