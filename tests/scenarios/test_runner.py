"""The parallel runner: a crashing worker becomes an error row, and the run does not hang."""

from __future__ import annotations

import os
from typing import Any

from _support.scenarios import scenario

from testbed.attacks.kernel_map_leak import KernelMapLeak
from testbed.scenarios import Job, run_jobs
from testbed.types import Outcome


class _Crash(KernelMapLeak):
    """Kills its worker process outright, as an out-of-memory kill would."""

    def run(self, ctx: Any, params: Any) -> Any:
        os._exit(9)


def test_a_crashed_worker_is_an_error_row_not_a_hang() -> None:
    jobs = [Job(scenario("kernel-map-leak"), "<crash>", "tme", 1, attack=_Crash()),
            Job(scenario("freed-data-leak"), "<ok>", "mktme", 1)]
    rows = run_jobs(jobs, workers=2)
    assert [r.scenario for r in rows] == ["t-kernel-map-leak", "t-freed-data-leak"]
    crashed = rows[0]
    assert crashed.outcome is Outcome.ERROR
    assert "worker failed" in crashed.reason
    # The other job either finished or was reported lost with the pool; never silently dropped.
    assert rows[1].outcome in (Outcome.MITIGATED, Outcome.ERROR)


