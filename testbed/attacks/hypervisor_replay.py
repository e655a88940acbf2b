"""Hypervisor replay (intra-guest rollback).

Threat: a malicious hypervisor saves the ciphertext of a guest page, lets the guest update it,
then writes the old ciphertext back: without integrity the guest decrypts its own stale data
(for example an old balance or an old nonce counter).
Source: AMD, "AMD SEV-SNP: Strengthening VM Isolation with Integrity Protection and More"
(white paper, January 2020): SEV has no integrity, so a hypervisor can replay old ciphertext;
SEV-SNP's Reverse Map Table refuses hypervisor writes to guest pages.
Preconditions: capability ``malicious_hypervisor``; the engine must protect guests from the
hypervisor at all — where the hypervisor is trusted, there is nothing to attack.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, model_validator

from ..platform import Machine
from ..results import chance_text
from ..types import LINE_SIZE, PAGE_SIZE, Outcome
from ._base import Actor, Attack, AttackContext, AttackParams, BaseMetrics, Verdict
from .cost import MachineShape, Work, run_part

__all__ = ["HypervisorReplay", "HypervisorReplayMetrics", "HypervisorReplayParams"]


class HypervisorReplayParams(AttackParams):
    """old_value and new_value differ and have the same length in UTF-8 bytes."""

    old_value: str = Field("balance=0000100", min_length=1, max_length=1024,
                           description="what the guest stores first (the value rolled back to)")
    new_value: str = Field("balance=0000000", min_length=1, max_length=1024,
                           description="what the guest updates it to")

    @model_validator(mode="after")
    def _comparable(self) -> HypervisorReplayParams:
        old, new = self.old_value.encode(), self.new_value.encode()
        if len(old) != len(new) or old == new:
            raise ValueError("old_value and new_value must differ and have the same length in "
                             "UTF-8 bytes")
        if len(old) > PAGE_SIZE:
            raise ValueError(f"values must fit in one page ({PAGE_SIZE} bytes)")
        return self

    def best_chance_log2(self, *, block_bits: int = 128) -> float | None:
        """The rolled-back value, 8 bits per byte."""
        return -8.0 * len(self.old_value.encode("utf-8"))

    def work(self, machine: MachineShape) -> Work:
        """A few lines written and read: the run and its machine."""
        return Work((run_part(machine),))


@dataclass(frozen=True)
class HypervisorReplayMetrics(BaseMetrics):
    guest_reads_old_value: bool
    """Whether the guest read back the value the hypervisor rolled it back to."""


class HypervisorReplay(Attack[HypervisorReplayParams]):
    kind = "hypervisor-replay"
    title = "Hypervisor replay (intra-guest rollback)"
    capabilities = ("malicious_hypervisor",)
    Params = HypervisorReplayParams
    Metrics = HypervisorReplayMetrics
    control_engine = "sev"
    """The threat needs a hypervisor the guest does not trust; ``sev`` has no defence against it."""
    platform_settings = frozenset({"ciphertext_hiding"})
    """SEV-SNP ciphertext hiding blanks what the hypervisor reads of the guest."""

    def precondition(self, machine: Machine, params: HypervisorReplayParams) -> str | None:
        if not machine.engine.isolates_guests:
            return (f"engine {machine.engine.name} does not protect guests from the hypervisor: "
                    "the hypervisor is trusted there, so a malicious one is out of scope")
        return None

    def run(self, ctx: AttackContext, params: HypervisorReplayParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        old, new = params.old_value.encode(), params.new_value.encode()
        guest = m.create_domain("guest", "victim")
        pa = m.alloc_page(guest)
        m.write(guest, pa, old)
        log.address = pa
        log.step(Actor.VICTIM, "guest stores the old value", address=pa, detail=params.old_value)
        log.begin_attack()
        saved = m.hypervisor_read(pa, -(-len(old) // LINE_SIZE) * LINE_SIZE)
        log.captured = saved[: len(old)]
        log.step(Actor.ATTACKER, "hypervisor saves the page's ciphertext",
                 "malicious_hypervisor", pa)
        with log.victim_acts():
            m.write(guest, pa, new)
        log.step(Actor.VICTIM, "guest updates the value", address=pa, detail=params.new_value)
        m.hypervisor_write(pa, saved)
        log.step(Actor.ATTACKER, "hypervisor writes the saved ciphertext back",
                 "malicious_hypervisor", pa)
        log.recovered = m.read(guest, pa, len(old))
        log.secret = old
        log.step(Actor.VICTIM, "guest reads the value", address=pa)
        log.metrics = HypervisorReplayMetrics(guest_reads_old_value=log.recovered == old)
        if log.recovered == old:
            # A blind write reads back as the old value 1 time in 2^(8 x its bytes).
            odds = -8.0 * len(old)
            return Verdict(Outcome.SUCCEEDED, f"the guest read its old value: the rollback "
                           f"worked (by chance {chance_text(odds)})", odds)
        if log.recovered == new:
            return Verdict(Outcome.MITIGATED, "the guest still reads its current value", 0.0)
        return Verdict(Outcome.MITIGATED,
                       "the guest read garbage: the replayed bytes were not its ciphertext", 0.0)
