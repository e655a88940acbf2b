"""The parallel runner: a crashing worker becomes an error row, and the run does not hang."""

from __future__ import annotations

import os
from typing import Any

from _support.programs import freed, leak
from _support.scenarios import scenario

from testbed.programs import ProgramAttack
from testbed.scenarios import Job, run_jobs
from testbed.types import Outcome


class _Crash(ProgramAttack):
    """Kills its worker process outright, as an out-of-memory kill would."""

    def run(self, ctx: Any, params: Any) -> Any:
        os._exit(9)


def test_a_crashed_worker_is_an_error_row_not_a_hang() -> None:
    jobs = [Job(scenario("program", id="t-leak", params=leak()), "<crash>", "tme", 1,
                attack=_Crash()),
            Job(scenario("program", id="t-freed", params=freed()), "<ok>", "mktme", 1)]
    rows = run_jobs(jobs, workers=2)
    assert [r.scenario for r in rows] == ["t-leak", "t-freed"]
    crashed = rows[0]
    assert crashed.outcome is Outcome.ERROR
    assert "worker failed" in crashed.reason
    # The other job either finished or was reported lost with the pool; never silently dropped.
    assert rows[1].outcome in (Outcome.MITIGATED, Outcome.ERROR)


