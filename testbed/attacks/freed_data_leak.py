"""Freed-data leak.

Threat: an application or VM places a secret in a page, then exits; the page goes back to the
allocator's free list; an attacker reallocates it and reads it before writing it (the kernel's
history of uninitialised-data bugs).
Source: K. Shutemov, "[PATCH, RFC 58/62] x86/mktme: Document the MKTME provided security
mitigations" (linux-kernel, 8 May 2019), section "Freed Data Leak Attack".
Preconditions: capability ``uninit_page_read``. With MKTME the victim's KeyID is de-programmed
at teardown (CLEAR_KEY: the KeyID falls back to the TME key), so even a mapping that still
carries the victim's KeyID sees only garbage; SEV destroys the guest's key on decommission.
``init_on_free`` zeroes the page before it is reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..types import PAGE_SIZE
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

__all__ = ["FreedDataLeak", "FreedDataLeakMetrics", "FreedDataLeakParams"]


PAGE_UNITS = 250
"""Work units per victim page (:mod:`testbed.attacks.cost`)."""
DIRECT_MAP_PAGE_UNITS = 0.1
"""Work units per frame of a direct map made for the victim's old KeyID."""


class FreedDataLeakParams(SecretParams):
    """The victim frees all its pages; the secret sits in the middle one."""

    victim: Literal["process", "guest"] = Field("guest", description="who holds the secret")
    attacker: Literal["process", "guest"] = Field(
        "process", description="the domain the attacker owns")
    victim_pages: int = Field(4, ge=1, le=1024, description="pages the victim owns and frees")
    read_with: Literal["own_key", "victim_key"] = Field(
        "own_key", description="reallocate and read with the attacker's own key, or read the "
        "freed frame through a kernel mapping that still carries the victim's old KeyID")

    def pages_needed(self) -> int:
        return self.victim_pages

    def work(self, machine: MachineShape) -> Work:
        """Each victim page allocated, written, freed (and cleared), then reallocated and
        read; a stale KeyID's direct map covers the whole memory."""
        return Work((run_part(machine),
                     (f"{self.victim_pages} victim pages", PAGE_UNITS * self.victim_pages),
                     ("a direct map of the victim's KeyID",
                      DIRECT_MAP_PAGE_UNITS * machine.memory_pages)),
                    hint="lower params.victim_pages")


@dataclass(frozen=True)
class FreedDataLeakMetrics(BaseMetrics):
    pages_reallocated: int
    """Frames the attacker reallocated until it found the victim's."""


class FreedDataLeak(Attack[FreedDataLeakParams]):
    kind = "freed-data-leak"
    title = "Freed-data leak"
    capabilities = ("uninit_page_read",)
    Params = FreedDataLeakParams
    Metrics = FreedDataLeakMetrics
    platform_settings = frozenset()

    def run(self, ctx: AttackContext, params: FreedDataLeakParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        victim, pa, secret = plant_secret(ctx, params, params.victim, pages=params.victim_pages)
        m.destroy_domain(victim)
        log.step(Actor.VICTIM, "exits: its pages return to the free list and its key is released",
                 detail=f"init_on_free={'on' if m.mitigations.init_on_free else 'off'}")
        log.captured = m.dram(pa, len(secret))
        log.begin_attack()
        if params.read_with == "victim_key":
            dmap = m.keyid_direct_map(victim.slot)
            log.step(Actor.ATTACKER, "reads the freed frame through a stale kernel mapping "
                     "with the victim's old KeyID", "uninit_page_read", pa,
                     f"key slot {victim.slot}")
            log.recovered = m.kernel_read(dmap.virt(pa), len(secret))
            return judge_bytes(secret, log.recovered)
        attacker = m.create_domain(params.attacker, "attacker")
        found: bytes | None = None
        for _ in range(params.victim_pages):
            frame = m.alloc_page(attacker)
            data = m.read(attacker, frame, PAGE_SIZE)
            if frame == pa - pa % PAGE_SIZE:
                found = data[pa % PAGE_SIZE : pa % PAGE_SIZE + len(secret)]
                log.step(Actor.ATTACKER, "reallocates the victim's old frame and reads it "
                         "unwritten", "uninit_page_read", frame,
                         f"{attacker.kind.value} with key slot {attacker.slot}")
                break
        log.metrics = FreedDataLeakMetrics(pages_reallocated=len(attacker.pages))
        log.recovered = found
        return judge_bytes(secret, found)
