"""Cold-boot read: an example attack that lives outside the testbed, registered by entry point.

Threat: the attacker cuts power, moves the DIMMs to a machine of its own and reads them before
the charge fades (Halderman et al., "Lest We Remember: Cold Boot Attacks on Encryption Keys",
USENIX Security 2008). It sees exactly what DRAM holds: plaintext without memory encryption,
ciphertext under any engine that encrypts, with the key gone with the power.
Preconditions: physical access to the memory (modelled as a read of raw DRAM).

It uses only the testbed's public API: the attack contract from ``testbed.attacks`` and the
machine the runner hands it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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

__all__ = ["ColdBoot", "ColdBootMetrics", "ColdBootParams"]


class ColdBootParams(SecretParams):
    """The victim's secret, and who holds it."""

    victim: Literal["process", "guest"] = Field("guest", description="who holds the secret")


@dataclass(frozen=True)
class ColdBootMetrics(BaseMetrics):
    bytes_read: int
    """Bytes of DRAM the attacker read from the moved DIMM."""


class ColdBoot(Attack[ColdBootParams]):
    kind = "cold-boot"
    title = "Cold-boot read of DRAM"
    capabilities = ("bus_interposer",)
    Params = ColdBootParams
    Metrics = ColdBootMetrics

    def run(self, ctx: AttackContext, params: ColdBootParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        _, pa, secret = plant_secret(ctx, params, params.victim)
        log.begin_attack()
        log.captured = log.recovered = m.dram(pa, len(secret))
        log.step(Actor.ATTACKER, "cuts power and reads the DIMM in a machine of its own",
                 "bus_interposer", pa, "the memory controller's keys are gone with the power")
        log.metrics = ColdBootMetrics(bytes_read=len(secret))
        return judge_bytes(secret, log.recovered)
