"""secretmem pool exhaustion: one task takes all secret memory, another's allocation fails.

Threat: secret memory (``memfd_secret``) comes from a fixed ``secretmem=`` reservation carved
into PMD-size pools. Any unprivileged task can map and touch secret pages until the reservation
is gone; every other task's secret allocation then fails (denial of service).
Source: secretmem PMD-pool patch and its review ("any task is able to deprive access to secret
memory to other tasks").
Preconditions: capability ``unprivileged_task`` (open ``memfd_secret``, ``mmap`` and touch
pages). Nothing about the memory-encryption engine matters here; the per-task locked-memory
limit (``memlock_limit``) is the mitigation under test. Without a reservation the same attack
exhausts the page allocator itself.

Alongside, the attack measures direct-map fragmentation: the same workload of secret
allocations, replayed on two fresh machines, one removing pages from the direct map one by one
and one using the PMD pool.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from ..errors import OutOfMemory, ResourceLimit
from ..platform import PMD_PAGES, Domain, Machine, Mitigations, SecretmemFile
from ..types import PAGE_SIZE, Outcome, PhysAddr
from ._base import (
    Attack,
    AttackContext,
    AttackLog,
    SecretParams,
    Verdict,
    make_secret,
)

__all__ = ["SecretmemExhaustion"]


class SecretmemExhaustionParams(SecretParams):
    attacker_files: int = Field(1, ge=1, le=64,
                                description="secretmem files the attacker opens")
    pages_per_file: int = Field(4096, ge=1, le=65536,
                                description="secret pages the attacker maps and touches per file")
    workload_pages: int = Field(
        256, ge=0, le=4096,
        description="secret pages of the fragmentation workload (0: do not measure)",
    )
    workload_tasks: int = Field(4, ge=1, le=16,
                                description="tasks sharing the fragmentation workload")

    def pages_needed(self) -> int:
        return 2


class SecretmemExhaustion(Attack):
    kind = "secretmem-exhaustion"
    title = "secretmem pool exhaustion"
    capabilities = ("unprivileged_task",)
    Params = SecretmemExhaustionParams

    def run(self, ctx: AttackContext, params: SecretmemExhaustionParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        secret = make_secret(ctx.rng, params.secret, params.secret_bytes)
        log.secret = secret
        area = m.secretmem_area
        where = (f"the secretmem= reservation ({area.chunks} chunks of 2 MiB)" if area else
                 "the page allocator (no secretmem= reservation)")
        log.step("victim", "is about to need secret memory for its key", detail=where)

        attacker = m.create_domain("process", "attacker")
        taken = self._exhaust(m, attacker, params, log)
        log.metrics["attacker_pages"] = taken
        log.metrics["attacker_locked_pages"] = attacker.locked_pages
        log.metrics["free_chunks_left"] = area.free_chunks if area else None
        log.metrics["free_frames_left"] = m.allocator.free_count
        self._fragmentation(ctx, params)

        victim = m.create_domain("process", "victim")
        file = m.memfd_secret(victim)
        pages = -(-len(secret) // PAGE_SIZE)
        file.mmap(pages)
        try:
            pa = file.fault(0)
        except OutOfMemory as exc:
            log.step("victim", "touches its secret page: the fault fails", detail=str(exc))
            log.metrics["victim_allocation"] = "ENOMEM"
            return Verdict(Outcome.SUCCEEDED,
                           f"denial of service: the victim's secret allocation failed ({exc}) "
                           f"after the attacker took {taken} pages")
        log.address = pa
        m.write(victim, pa, secret)
        log.recovered = m.read(victim, pa, len(secret))
        log.step("victim", "stores its secret in secret memory and reads it back", address=pa)
        log.metrics["victim_allocation"] = "ok"
        if log.recovered != secret:
            return Verdict(Outcome.ERROR, "the victim's secret page reads back corrupt")
        return Verdict(Outcome.MITIGATED, f"the victim still got secret memory: the attacker "
                       f"could take only {taken} pages")

    @staticmethod
    def _exhaust(
        m: Machine, attacker: Domain, params: SecretmemExhaustionParams, log: AttackLog
    ) -> int:
        """The attacker maps and touches as much secret memory as it is allowed."""
        taken = 0
        for n in range(params.attacker_files):
            file = m.memfd_secret(attacker)
            length, refused = _mmap_greedy(file, params.pages_per_file)
            if refused:
                log.metrics["mmap_refusals"] = log.metrics.get("mmap_refusals", 0) + refused
                log.step("attacker", f"file {n + 1}: mmap refused {refused} times (EAGAIN), "
                         f"settles for {length} pages", "unprivileged_task")
            if not length:
                break
            got = 0
            try:
                for index in range(length):
                    file.fault(index)
                    got += 1
            except OutOfMemory as exc:
                taken += got
                log.step("attacker", f"file {n + 1}: maps {length} secret pages, touches {got} "
                         "until secret memory runs out", "unprivileged_task", detail=str(exc))
                return taken
            taken += got
            log.step("attacker", f"file {n + 1}: maps and touches {got} secret pages",
                     "unprivileged_task", detail=f"{len(file.chunks)} pool chunks")
        return taken

    @staticmethod
    def _fragmentation(ctx: AttackContext, params: SecretmemExhaustionParams) -> None:
        """Replay one workload under both strategies; record the direct-map splits."""
        if not params.workload_pages:
            return
        pages = ctx.machine.memory.pages
        tasks = ctx.rng.integers(0, params.workload_tasks, size=params.workload_pages)
        per_task = np.bincount(tasks, minlength=params.workload_tasks)
        reserve = int(sum(-(-int(n) // PMD_PAGES) for n in per_task)) * PMD_PAGES
        if 2 * reserve > pages:
            ctx.log.metrics["fragmentation"] = (
                f"not measured: the workload's pools need {reserve} frames, more than half of "
                f"the {pages}-frame memory")
            return
        ops = _workload(ctx.rng, pages - reserve, tasks)
        curves = {"per-page": _replay(ctx.machine, ops, pages, 0, params),
                  "pmd-pool": _replay(ctx.machine, ops, pages, reserve, params)}
        ctx.log.metrics["direct_map_splits_per_strategy"] = {k: v[-1] for k, v in curves.items()}
        ctx.log.metrics["fragmentation_curve"] = {
            "secret_pages": list(range(1, params.workload_pages + 1)), **curves,
        }


def _mmap_greedy(file: SecretmemFile, pages: int) -> tuple[int, int]:
    """mmap ``pages``, halving on EAGAIN; returns (pages mapped, refusals)."""
    refused = 0
    while pages:
        try:
            file.mmap(pages)
            return pages, refused
        except ResourceLimit:
            refused += 1
            pages //= 2
    return 0, refused


def _workload(
    rng: np.random.Generator, free_pages: int, tasks: NDArray[np.int64]
) -> list[tuple[str, int]]:
    """A mixed workload: background page churn freed in random order (an aged free list),
    then one secret page for each entry of ``tasks`` (the task that faults it)."""
    churn = free_pages // 2
    ops: list[tuple[str, int]] = [("alloc", i) for i in range(churn)]
    ops += [("free", int(i)) for i in rng.permutation(churn)[: churn // 2]]
    ops += [("secret", int(t)) for t in tasks]
    return ops


def _replay(
    base: Machine, ops: list[tuple[str, int]], pages: int, reserve: int,
    params: SecretmemExhaustionParams,
) -> list[int]:
    """Direct-map splits after each secret page of ``ops`` on a fresh machine."""
    m = base.scratch(pages, Mitigations(), secretmem_reserve_pages=reserve)
    noise = m.create_domain("process", "background")
    tasks = [m.create_domain("process", f"task-{t}") for t in range(params.workload_tasks)]
    files = [m.memfd_secret(t) for t in tasks]
    frames: dict[int, PhysAddr] = {}
    splits: list[int] = []
    for op, arg in ops:
        if op == "alloc":
            frames[arg] = m.alloc_page(noise)
        elif op == "free":
            m.free_page(noise, frames.pop(arg))
        else:
            file = files[arg]
            file.mmap(1)
            file.fault(file.mapped_pages - 1)
            splits.append(m.direct_map_splits)
    return splits
