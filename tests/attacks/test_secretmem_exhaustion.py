"""The secretmem pool exhaustion attack: the greedy task against the plain pool, the memlock
limit, many files against that limit, and the shipped scenarios."""

from __future__ import annotations

import pytest
from _support.paths import SCENARIOS
from _support.scenarios import run

from testbed.attacks.secretmem_exhaustion import SecretmemExhaustionMetrics
from testbed.scenarios import Job, load_scenario, run_job
from testbed.types import Outcome

POOL = {"memory_pages": 4096, "secretmem_reserve_pages": 1024}


def test_exhaustion_succeeds_against_the_plain_pool() -> None:
    row = run("secretmem-exhaustion", "mktme", platform=POOL,
              params={"workload_pages": 0})
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    assert row.metrics_as(SecretmemExhaustionMetrics).victim_allocation == "ENOMEM"
    assert row.metrics_as(SecretmemExhaustionMetrics).free_chunks_left == 0
    assert row.evidence.recovered is None


def test_memlock_limit_mitigates_the_greedy_task() -> None:
    row = run("secretmem-exhaustion", "sev", platform=POOL,
              mitigations={"memlock_limit_pages": 64}, params={"workload_pages": 0})
    assert row.outcome is Outcome.MITIGATED, row.reason
    assert row.metrics_as(SecretmemExhaustionMetrics).attacker_locked_pages == 64
    assert (row.metrics_as(SecretmemExhaustionMetrics).mmap_refusals or 0) > 0
    assert row.evidence.recovered == row.evidence.secret


def test_many_files_defeat_the_memlock_limit() -> None:
    row = run("secretmem-exhaustion", "tme", platform=POOL,
              mitigations={"memlock_limit_pages": 64},
              params={"attacker_files": 2, "pages_per_file": 1, "workload_pages": 0})
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    assert row.metrics_as(SecretmemExhaustionMetrics).attacker_locked_pages == 2


def test_without_a_reservation_the_page_allocator_is_exhausted() -> None:
    row = run("secretmem-exhaustion", "none", platform={"memory_pages": 256},
              params={"pages_per_file": 512, "workload_pages": 0})
    assert row.outcome is Outcome.SUCCEEDED
    assert "no free page frames" in row.reason
    limited = run("secretmem-exhaustion", "none", platform={"memory_pages": 256},
                  mitigations={"memlock_limit_pages": 32},
                  params={"pages_per_file": 512, "workload_pages": 0})
    assert limited.outcome is Outcome.MITIGATED


def test_fragmentation_pool_splits_nothing_per_page_splits_many() -> None:
    row = run("secretmem-exhaustion", "none",
              platform={"memory_pages": 8192, "secretmem_reserve_pages": 1024},
              params={"workload_pages": 128})
    m = row.metrics_as(SecretmemExhaustionMetrics)
    splits = m.direct_map_splits_per_strategy
    assert splits is not None and splits["pmd-pool"] == 0
    assert splits["per-page"] >= 3
    curve = m.fragmentation_curve
    assert curve is not None
    assert len(curve.per_page) == len(curve.secret_pages) == 128
    assert list(curve.per_page) == sorted(curve.per_page)  # splits never heal


@pytest.mark.parametrize("name", [
    "12-secretmem-pool-exhaustion.yaml",
    "13-secretmem-pool-exhaustion-memlock.yaml",
    "21-secretmem-pool-exhaustion-many-files.yaml",
])
def test_shipped_secretmem_scenarios_hold(name: str) -> None:
    s, _ = load_scenario(SCENARIOS / name)
    for engine, expected in s.expect.items():
        row = run_job(Job(s, name, engine, 1))
        assert row.outcome == expected, (engine, row.reason)
