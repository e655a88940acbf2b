"""Kernel direct-map leak.

Threat: a kernel information-disclosure bug (CVE-2017-7277 and CVE-2017-9605 are the source's
examples) reads arbitrary memory through the kernel direct map, which uses KeyID 0.
Source: MKTME mitigations document, "Kernel Mapping Attacks".
Preconditions: capability ``kernel_read_bug``; the victim (a process or guest) holds a secret.
With MKTME the victim's page is encrypted under its own KeyID, so the KeyID-0 read decrypts
with the wrong key; under SEV the host sees the guest's ciphertext; with ``secretmem`` the page
is not in the direct map at all and the read faults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Attack, AttackContext, AttackParams, Verdict, judge_bytes, make_secret

__all__ = ["KernelMapLeak"]


class KernelMapLeakParams(AttackParams):
    victim: Literal["process", "guest"] = "guest"
    secret: str | None = Field(None, min_length=1, max_length=1024)
    secret_bytes: int = Field(32, ge=1, le=1024, description="random secret size when no text")
    offset: int = Field(0, ge=0, le=3072, description="byte offset of the secret in its page")


class KernelMapLeak(Attack):
    kind = "kernel-map-leak"
    title = "Kernel direct-map leak"
    capabilities = ("kernel_read_bug",)
    Params = KernelMapLeakParams

    def run(self, ctx: AttackContext, params: KernelMapLeakParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        secret = make_secret(ctx.rng, params.secret, params.secret_bytes)
        victim = m.create_domain(params.victim, "victim")
        pa = m.alloc_page(victim, secret=True) + params.offset
        m.write(victim, pa, secret)
        log.secret, log.address = secret, pa
        log.captured = m.dram(pa, len(secret))
        log.step("victim", f"stores a {len(secret)}-byte secret in its page", address=pa,
                 detail=f"{victim.kind.value} with key slot {victim.slot}")
        va = m.direct_map.virt(pa)
        log.step("attacker", "reads the page through the KeyID-0 kernel direct map",
                 "kernel_read_bug", pa, f"virtual address {va:#x}")
        log.recovered = m.kernel_read(va, len(secret))
        log.metrics["bytes_read"] = len(secret)
        log.metrics["direct_map_splits"] = m.direct_map_splits
        return judge_bytes(secret, log.recovered)
