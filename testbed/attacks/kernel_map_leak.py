"""Kernel direct-map leak.

Threat: a kernel information-disclosure bug (CVE-2017-7277 and CVE-2017-9605 are the source's
examples) reads arbitrary memory through the kernel direct map, which uses KeyID 0.
Source: K. Shutemov, "[PATCH, RFC 58/62] x86/mktme: Document the MKTME provided security
mitigations" (linux-kernel, 8 May 2019), section "Kernel Mapping Attacks".
Preconditions: capability ``kernel_read_bug``; the victim (a process or guest) holds a secret.
With MKTME the victim's page is encrypted under its own KeyID, so the KeyID-0 read decrypts
with the wrong key; under SEV the host sees the guest's ciphertext; with ``secretmem`` the page
is not in the direct map at all and the read faults.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from pydantic import Field, model_validator

from ..results import omitted_when_none
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

__all__ = ["KernelMapLeak", "KernelMapLeakMetrics", "KernelMapLeakParams"]


class KernelMapLeakParams(SecretParams):
    """offset + the secret size fit in one 4096-byte page."""

    victim: Literal["process", "guest"] = Field("guest", description="who holds the secret")
    offset: int = Field(0, ge=0, le=PAGE_SIZE - 1, description="byte offset in the page")

    @model_validator(mode="after")
    def _in_one_page(self) -> KernelMapLeakParams:
        if self.offset + self.secret_size > PAGE_SIZE:
            raise ValueError(f"offset + secret size must fit in one page ({PAGE_SIZE} bytes), "
                             f"got {self.offset} + {self.secret_size}")
        return self

    def work(self, machine: MachineShape) -> Work:
        """One page written and read: the run and its machine."""
        return Work((run_part(machine),))


@dataclass(frozen=True)
class KernelMapLeakMetrics(BaseMetrics):
    direct_map_splits: int
    """2 MiB direct-map mappings split (secretmem removes the secret page)."""
    bytes_read: int | None = omitted_when_none()
    """Bytes the kernel read bug returned (absent when the read faulted)."""


class KernelMapLeak(Attack[KernelMapLeakParams]):
    kind = "kernel-map-leak"
    title = "Kernel direct-map leak"
    capabilities = ("kernel_read_bug",)
    Params = KernelMapLeakParams
    Metrics = KernelMapLeakMetrics
    platform_settings = frozenset()

    def run(self, ctx: AttackContext, params: KernelMapLeakParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        _, pa, secret = plant_secret(ctx, params, params.victim, secret_page=True,
                                     offset=params.offset)
        log.captured = m.dram(pa, len(secret))
        va = m.direct_map.virt(pa)
        metrics = KernelMapLeakMetrics(direct_map_splits=m.direct_map_splits)
        log.metrics = metrics  # measured before the read, which may fault
        log.begin_attack()
        log.step(Actor.ATTACKER, "reads the page through the KeyID-0 kernel direct map",
                 "kernel_read_bug", pa, f"virtual address {va:#x}")
        log.recovered = m.kernel_read(va, len(secret))
        log.metrics = replace(metrics, bytes_read=len(secret))
        return judge_bytes(secret, log.recovered)
