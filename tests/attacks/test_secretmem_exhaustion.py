"""The secretmem pool exhaustion attack: the greedy task against the plain pool, the memlock
limit, many files against that limit, the OOM killer at the victim's fault, no reservation, the
code before the PMD pool, and the shipped scenarios."""

from __future__ import annotations

import pytest
from _support.paths import SCENARIOS
from _support.scenarios import run

from testbed.attacks.secretmem_exhaustion import SecretmemExhaustionMetrics
from testbed.scenarios import Job, load_scenario, run_job
from testbed.types import Outcome

POOL = {"memory_pages": 4096, "secretmem_reserve_pages": 1024}
BIG_VICTIM = {"workload_pages": 0, "victim_resident_pages": 1536}
"""A victim heavier than the attacker's whole reservation (1024 pages)."""


def test_exhaustion_kills_the_victim_in_its_fault() -> None:
    """Seed (review of the PMD-pool patch): "any task is able to deprive access to secret memory
    to other tasks and cause OOM killer which wouldn't really recover ever". The patch's fault
    returns VM_FAULT_OOM: the victim, the heaviest task, is killed in its fault; it gets no
    ENOMEM it could handle."""
    row = run("secretmem-exhaustion", "mktme", platform=POOL, params=BIG_VICTIM)
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    m = row.metrics_as(SecretmemExhaustionMetrics)
    assert m.victim_allocation == "killed (VM_FAULT_OOM)"
    assert m.oom_killed == ("victim",)
    assert m.free_chunks_left == 0 and m.attacker_pages == 1024
    assert row.evidence.recovered is None
    assert "cannot continue" in row.reason
    assert any("the victim is dead" in step.action for step in row.steps)


def test_the_oom_killer_kills_a_heavier_attacker_instead() -> None:
    """The OOM killer weighs tasks by size, not by who holds the reservation: a victim lighter
    than the attacker survives, because the attacker dies and its chunks come back. No
    defence is in force, so the attack is ineffective with these sizes, not mitigated."""
    row = run("secretmem-exhaustion", "tme", platform=POOL,
              params={"workload_pages": 0, "victim_resident_pages": 16})
    m = row.metrics_as(SecretmemExhaustionMetrics)
    assert m.oom_killed == ("attacker",)
    assert m.victim_allocation == "ok after OOM kills"
    assert row.evidence.recovered == row.evidence.secret
    assert row.outcome is Outcome.INEFFECTIVE, row.reason


def test_memlock_limit_mitigates_the_greedy_task() -> None:
    row = run("secretmem-exhaustion", "sev", platform=POOL,
              mitigations={"memlock_limit_pages": 64}, params=BIG_VICTIM)
    assert row.outcome is Outcome.MITIGATED, row.reason
    assert row.metrics_as(SecretmemExhaustionMetrics).oom_killed is None
    assert row.metrics_as(SecretmemExhaustionMetrics).attacker_locked_pages == 64
    assert (row.metrics_as(SecretmemExhaustionMetrics).mmap_refusals or 0) > 0
    assert row.evidence.recovered == row.evidence.secret


def test_many_files_defeat_the_memlock_limit() -> None:
    row = run("secretmem-exhaustion", "tme", platform=POOL,
              mitigations={"memlock_limit_pages": 64},
              params={"attacker_files": 4, "pages_per_file": 1, "workload_pages": 0})
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    # Two chunks, two files: the attacker stops opening files once CmaFree is zero.
    assert row.metrics_as(SecretmemExhaustionMetrics).attacker_locked_pages == 2
    assert row.metrics_as(SecretmemExhaustionMetrics).oom_killed == ("victim",)


def test_without_a_reservation_there_is_no_secret_memory_to_exhaust() -> None:
    """Seed (PMD-pool patch): "if (!secretmem_cma) return -ENOMEM;": without secretmem= the
    attacker's memfd_secret and the victim's fail alike, so the attack has nothing to take."""
    row = run("secretmem-exhaustion", "none", platform={"memory_pages": 256},
              params={"pages_per_file": 512, "workload_pages": 0})
    assert row.outcome is Outcome.NOT_APPLICABLE, row.reason
    assert "memfd_secret fails for the attacker and the victim alike" in row.reason
    assert "ENOMEM" in row.reason


def test_before_the_pool_the_page_allocator_is_exhausted() -> None:
    """The code before the PMD-pool patch (each secret page from the page allocator): the
    attacker takes every free frame; the heavier victim dies in its fault."""
    platform = {"memory_pages": 256, "secretmem_before_pmd_pool": True}
    row = run("secretmem-exhaustion", "none", platform=platform,
              params={"pages_per_file": 512, "workload_pages": 0})
    m = row.metrics_as(SecretmemExhaustionMetrics)
    assert m.free_frames_left == 0 and m.free_chunks_left is None
    assert m.attacker_pages == 256 - 1 - 64  # all but the kernel image and the victim's pages
    assert row.outcome is Outcome.INEFFECTIVE  # the attacker is the heavier: it is killed
    assert m.oom_killed == ("attacker",)
    heavy = run("secretmem-exhaustion", "none", platform=platform,
                params={"pages_per_file": 512, "workload_pages": 0,
                        "victim_resident_pages": 160})
    assert heavy.outcome is Outcome.SUCCEEDED, heavy.reason
    limited = run("secretmem-exhaustion", "none", platform=platform,
                  mitigations={"memlock_limit_pages": 32},
                  params={"pages_per_file": 512, "workload_pages": 0,
                          "victim_resident_pages": 160})
    assert limited.outcome is Outcome.MITIGATED, limited.reason


def test_fragmentation_pool_splits_nothing_per_page_splits_many() -> None:
    row = run("secretmem-exhaustion", "none",
              platform={"memory_pages": 8192, "secretmem_reserve_pages": 1024},
              params={"workload_pages": 128})
    m = row.metrics_as(SecretmemExhaustionMetrics)
    splits, gib = m.direct_map_splits_per_strategy, m.direct_map_1g_splits_per_strategy
    # Both strategies split the one 1 GiB mapping; only per-page removal splits 2 MiB ones.
    assert gib == {"per-page": 1, "pmd-pool": 1}
    assert splits is not None and splits["pmd-pool"] == 1
    assert splits["per-page"] >= 1 + 3
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
