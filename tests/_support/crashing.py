"""An attack whose run can kill the process making it: what a worker that dies looks like
(a segfault in an extension, the out-of-memory killer) to the code that sent it the run."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import Field

from testbed.attacks import (
    Actor,
    Attack,
    AttackContext,
    BaseMetrics,
    SecretParams,
    Verdict,
    judge_bytes,
    plant_secret,
)

__all__ = ["KillsItsProcess"]


class KillsItsProcessParams(SecretParams):
    die: bool = Field(False, description="the run ends its process before it judges")


@dataclass(frozen=True)
class KillsItsProcessMetrics(BaseMetrics):
    bytes_read: int


class KillsItsProcess(Attack[KillsItsProcessParams]):
    """Reads the victim's secret from DRAM, or, with ``die``, ends its own process."""

    kind = "kills-its-process"
    title = "A run that ends the process making it"
    capabilities = ("bus_interposer",)
    Params = KillsItsProcessParams
    Metrics = KillsItsProcessMetrics

    def run(self, ctx: AttackContext, params: KillsItsProcessParams) -> Verdict:
        if params.die:
            os._exit(70)
        m, log = ctx.machine, ctx.log
        _, pa, secret = plant_secret(ctx, params, "process")
        log.begin_attack()
        log.captured = log.recovered = m.dram(pa, len(secret))
        log.step(Actor.ATTACKER, "reads DRAM", "bus_interposer", pa, "")
        log.metrics = KillsItsProcessMetrics(bytes_read=len(secret))
        return judge_bytes(secret, log.recovered)
