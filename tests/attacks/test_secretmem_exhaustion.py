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
QUICK = {"workload_pages": 0}


def test_exhaustion_kills_the_victim_in_its_fault() -> None:
    """Seed (review of the PMD-pool patch): "any task is able to deprive access to secret memory
    to other tasks and cause OOM killer which wouldn't really recover ever". The patch's fault
    returns VM_FAULT_OOM: the attacker has unmapped its secret pages (they stay in its files'
    page cache), so its resident set is empty and the victim, with the default 64 pages, is the
    heaviest task: it is killed in its fault; it gets no ENOMEM it could handle."""
    row = run("secretmem-exhaustion", "mktme", platform=POOL, params=QUICK)
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    m = row.metrics_as(SecretmemExhaustionMetrics)
    assert m.victim_allocation == "killed (VM_FAULT_OOM)"
    assert m.oom_killed == ("victim",)
    assert m.free_chunks_left == 0 and m.attacker_pages == 1024
    assert m.attacker_resident_pages == 0
    assert row.evidence.recovered is None
    assert row.reason.startswith("denial of service: the attacker took 1,024 secret pages (the "
                                 "reservation was empty)")
    assert "cannot continue" in row.reason
    assert any("the victim is dead" in step.action for step in row.steps)
    assert any("unmaps them and keeps the file open" in step.action for step in row.steps)


@pytest.mark.parametrize("victim", [1, 64, 3000])
def test_the_victims_size_does_not_decide_the_outcome(victim: int) -> None:
    """The attacker's unmapped secret pages weigh nothing for oom_badness (it counts the pages
    a task maps): whatever the victim's size, the victim is the one killed."""
    row = run("secretmem-exhaustion", "tme", platform=POOL,
              params={**QUICK, "victim_resident_pages": victim})
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    assert row.metrics_as(SecretmemExhaustionMetrics).oom_killed == ("victim",)


def test_an_attacker_that_keeps_its_pages_mapped_is_killed_instead() -> None:
    """Without unmap_after_touch the attacker's 1024 mapped secret pages are its resident set:
    the lighter victim survives, because the attacker dies and its chunks come back. No
    defence is in force, so the attack is ineffective, not mitigated; the reason says that the
    attacker took the whole reservation and was killed, not that it could take only so much."""
    row = run("secretmem-exhaustion", "tme", platform=POOL,
              params={**QUICK, "victim_resident_pages": 16, "unmap_after_touch": False})
    m = row.metrics_as(SecretmemExhaustionMetrics)
    assert m.attacker_resident_pages == 1024
    assert m.oom_killed == ("attacker",)
    assert m.victim_allocation == "ok after OOM kills"
    assert row.evidence.recovered == row.evidence.secret
    assert row.outcome is Outcome.INEFFECTIVE, row.reason
    assert "could take only" not in row.reason
    assert row.reason.startswith(
        "the victim still got secret memory: the attacker took 1,024 secret pages (the "
        "reservation was empty), but the victim's fault made the OOM killer kill attacker, "
        "which gave the secret memory back, and the retried fault got a page")


def test_memlock_limit_mitigates_the_greedy_task() -> None:
    row = run("secretmem-exhaustion", "sev", platform=POOL,
              mitigations={"memlock_limit_pages": 64}, params=QUICK)
    assert row.outcome is Outcome.MITIGATED, row.reason
    assert row.reason.startswith("the victim still got secret memory: the attacker took 64 secret "
                          "pages (the locked-memory limit refused its mmap 6 times), and the "
                          "victim's fault found room")
    assert row.metrics_as(SecretmemExhaustionMetrics).oom_killed is None
    assert row.metrics_as(SecretmemExhaustionMetrics).attacker_locked_pages == 64
    assert (row.metrics_as(SecretmemExhaustionMetrics).mmap_refusals or 0) > 0
    assert row.evidence.recovered == row.evidence.secret


def test_many_files_defeat_the_memlock_limit() -> None:
    row = run("secretmem-exhaustion", "tme", platform=POOL,
              mitigations={"memlock_limit_pages": 64},
              params={"attacker_files": 4, "pages_per_file": 1, "workload_pages": 0})
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    # Two chunks, two files: the attacker stops opening files once CmaFree is zero. It unmaps
    # each file's page before it opens the next: the limit never sees more than one page.
    assert row.metrics_as(SecretmemExhaustionMetrics).attacker_pages == 2
    assert row.metrics_as(SecretmemExhaustionMetrics).attacker_locked_pages == 1
    assert row.metrics_as(SecretmemExhaustionMetrics).oom_killed == ("victim",)


def test_without_a_reservation_there_is_no_secret_memory_to_exhaust() -> None:
    """Seed (PMD-pool patch): "if (!secretmem_cma) return -ENOMEM;": without secretmem= every
    task's memfd_secret fails, so the attack has nothing to take: decided by its precondition,
    before anything is set up."""
    row = run("secretmem-exhaustion", "none", platform={"memory_pages": 256},
              params={"pages_per_file": 512, "workload_pages": 0})
    assert row.outcome is Outcome.NOT_APPLICABLE, row.reason
    assert row.reason == ("no secret memory to exhaust: ENOMEM: memfd_secret needs the "
                          "secretmem= boot reservation, and this kernel has none")
    assert not row.steps


def test_before_the_pool_the_page_allocator_is_exhausted() -> None:
    """The code before the PMD-pool patch (each secret page from the page allocator): the
    attacker takes every free frame and unmaps them; the victim dies in its fault. An attacker
    that keeps them mapped is the heavier task and is killed instead."""
    platform = {"memory_pages": 256, "secretmem_before_pmd_pool": True}
    params = {"pages_per_file": 512, "workload_pages": 0}
    row = run("secretmem-exhaustion", "none", platform=platform, params=params)
    m = row.metrics_as(SecretmemExhaustionMetrics)
    assert m.free_frames_left == 0 and m.free_chunks_left is None
    assert m.attacker_pages == 256 - 1 - 64  # all but the kernel image and the victim's pages
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    assert "(free memory was exhausted)" in row.reason
    mapped = run("secretmem-exhaustion", "none", platform=platform,
                 params={**params, "unmap_after_touch": False})
    assert mapped.outcome is Outcome.INEFFECTIVE, mapped.reason
    assert mapped.metrics_as(SecretmemExhaustionMetrics).oom_killed == ("attacker",)
    limited = run("secretmem-exhaustion", "none", platform=platform,
                  mitigations={"memlock_limit_pages": 32}, params=params)
    assert limited.outcome is Outcome.MITIGATED, limited.reason


def test_fragmentation_pool_splits_only_the_1g_mapping_per_page_splits_2m_ones() -> None:
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
