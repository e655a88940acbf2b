"""Cross-domain replay.

Threat: a DDR interposer captures the ciphertext of a victim's secret at a physical address;
after the victim frees the address the attacker gains ownership, writes the old ciphertext back
and reads it through its own domain. AES-XTS binds ciphertext to its physical address, so the
replay must happen at the same address; different keys per domain defeat it.
Source: K. Shutemov, "[PATCH, RFC 58/62] x86/mktme: Document the MKTME provided security
mitigations" (linux-kernel, 8 May 2019), section "Cross-Domain Replay Attack".
Preconditions: capabilities ``bus_interposer`` and ``chosen_plaintext`` (the attacker owns a
domain).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import AttackError
from ..types import LINE_SIZE, PAGE_SIZE
from ._base import (
    Actor,
    Attack,
    AttackContext,
    BaseMetrics,
    SecretParams,
    Verdict,
    judge_bytes,
    plant_secret,
)
from .cost import MachineShape, Work, run_part

__all__ = ["CrossDomainReplay", "CrossDomainReplayParams"]


class CrossDomainReplayParams(SecretParams):
    """The secret is given as text or made of random bytes."""

    victim: Literal["process", "guest"] = Field("guest", description="who holds the secret")
    attacker: Literal["process", "guest"] = Field(
        "guest", description="the domain the attacker owns")

    def work(self, machine: MachineShape) -> Work:
        """A few lines written and read: the run and its machine."""
        return Work((run_part(machine),))


class CrossDomainReplay(Attack[CrossDomainReplayParams]):
    kind = "cross-domain-replay"
    title = "Cross-domain replay"
    capabilities = ("bus_interposer", "chosen_plaintext")
    Params = CrossDomainReplayParams
    Metrics = BaseMetrics
    """It measures nothing beyond its evidence."""
    platform_settings = frozenset()

    def run(self, ctx: AttackContext, params: CrossDomainReplayParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        victim, pa, secret = plant_secret(ctx, params, params.victim)
        span = -(-len(secret) // LINE_SIZE) * LINE_SIZE
        captured = m.bus.read(pa, span)
        log.captured = captured[: len(secret)]
        log.begin_attack()
        log.step(Actor.ATTACKER, f"captures {span} bytes of ciphertext on the memory bus",
                 "bus_interposer", pa)
        with log.victim_acts():
            m.destroy_domain(victim)
        log.step(Actor.VICTIM, "frees the address (exits)")
        attacker = m.create_domain(params.attacker, "attacker")
        frame = m.alloc_page(attacker)
        if frame != pa - pa % PAGE_SIZE:
            raise AttackError(f"the attacker did not get frame {pa // PAGE_SIZE} back "
                              f"(got {frame // PAGE_SIZE})")
        log.step(Actor.ATTACKER, "gains ownership of the address", "chosen_plaintext", frame,
                 f"{attacker.kind.value} with key slot {attacker.slot}")
        m.bus.write(pa, captured)
        log.step(Actor.ATTACKER, "writes the old ciphertext back at the same address",
                 "bus_interposer", pa)
        log.recovered = m.read(attacker, pa, len(secret))
        log.step(Actor.ATTACKER, "reads the address through its own domain", address=pa)
        return judge_bytes(secret, log.recovered)
