"""secretmem pool exhaustion: one task takes all secret memory, another's allocation fails.

Threat: secret memory (``memfd_secret``) comes from a fixed ``secretmem=`` reservation carved
into PMD-size pools. Any unprivileged task can map and touch secret pages until the reservation
is gone; every other task's secret allocation then fails (denial of service).
Source: M. Hocko, review of "[PATCH v16 07/11] secretmem: use PMD-size pages to amortize direct
map fragmentation" (linux-api, 26 January 2021): "any task is able to deprive access to secret
memory to other tasks".
Preconditions: capability ``unprivileged_task`` (open ``memfd_secret``, ``mmap`` and touch
pages). Nothing about the memory-encryption engine matters here; the per-task locked-memory
limit (``memlock_limit``) is the mitigation under test. Without a reservation the same attack
exhausts the page allocator itself.

Alongside, the attack measures direct-map fragmentation: the same workload of secret
allocations, replayed on two fresh machines, one removing pages from the direct map one by one
and one using the PMD pool.

The run is :func:`exhaust` and its outcome :func:`judge_exhaustion`, which the attack programs'
``exhaust_secretmem`` step and ``denied`` goal share.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from ..errors import OutOfMemory, ResourceLimit
from ..platform import PMD_PAGES, Domain, Machine, Mitigations, SecretmemFile
from ..results import FragmentationSeries, PlotData, omitted_when_none
from ..text import plural
from ..types import PAGE_SIZE, Outcome, PhysAddr
from ._base import (
    Actor,
    Attack,
    AttackContext,
    AttackLog,
    BaseMetrics,
    SecretParams,
    Verdict,
    make_secret,
)
from .cost import MachineShape, Work, boot_units, run_part

__all__ = [
    "Exhaustion",
    "SecretmemExhaustion",
    "SecretmemExhaustionMetrics",
    "SecretmemExhaustionParams",
    "exhaust",
    "judge_exhaustion",
]

FAULT_UNITS = 100
"""Work units per secret page faulted: cleared through the engine, out of the direct maps
(:mod:`testbed.attacks.cost`)."""
FILE_UNITS = 200
"""Work units per secretmem file opened and mapped (mmap retried on EAGAIN)."""
CHUNK_UNITS = 16_000
"""Work units per 2 MiB chunk a file takes from the ``secretmem=`` reservation: cleared and
taken out of the direct maps."""
CHURN_UNITS = 15
"""Work units per page of background churn the fragmentation workload allocates or frees..."""
SCAN_UNITS = 0.012
"""...plus, per free, this much per page the freeing task owns (it looks for the page among
them: half of them on average)."""


class SecretmemExhaustionParams(SecretParams):
    """The fragmentation workload needs its pools to fit in half the memory, or it is not
    measured."""

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

    def best_chance_log2(self, *, block_bits: int = 128) -> float | None:
        """A denial of service is no guess."""
        return None

    def work(self, machine: MachineShape) -> Work:
        """The attacker's faults, at most its locked-memory limit and the memory secret
        pages come from, then the fragmentation workload replayed twice on a machine of the same
        size, unless its pools cannot fit."""
        reserve = machine.secretmem_reserve_pages
        faults = min(self.attacker_files * self.pages_per_file, reserve or machine.memory_pages,
                     machine.mitigations.memlock_limit_pages or machine.memory_pages)
        chunks = (min(self.attacker_files * -(-self.pages_per_file // PMD_PAGES),
                      reserve // PMD_PAGES) + 1 if reserve else 0)
        parts = [run_part(machine),
                 (f"{self.attacker_files} secretmem file(s)", FILE_UNITS * self.attacker_files),
                 (f"{faults:,} secret pages faulted by the attacker", FAULT_UNITS * faults),
                 (f"{chunks} pool chunks cleared", CHUNK_UNITS * chunks)]
        if self.workload_pages:
            pages = machine.memory_pages
            pools = -(-self.workload_pages // PMD_PAGES) * PMD_PAGES  # the fewest it can need
            if 2 * pools <= pages:
                churn = (pages - pools) // 2
                frees = churn // 2
                replay = (boot_units(pages) + CHURN_UNITS * (churn + frees)
                          + SCAN_UNITS * frees * churn / 2 + FAULT_UNITS * self.workload_pages)
                parts.append((f"the fragmentation workload replayed twice on {pages:,} "
                              f"frames ({churn:,} pages of churn)", 2 * replay))
        return Work(tuple(parts), hint="lower params.pages_per_file, params.attacker_files or "
                    "params.workload_pages (0: not measured), or platform.memory_pages")


@dataclass(frozen=True)
class SecretmemExhaustionMetrics(BaseMetrics):
    attacker_pages: int
    """Secret pages the attacker mapped and touched."""
    attacker_locked_pages: int
    """Pages charged to the attacker's locked-memory limit."""
    free_chunks_left: int | None
    """2 MiB chunks left in the secretmem= reservation (``None``: there is none)."""
    free_frames_left: int
    mmap_refusals: int | None = omitted_when_none()
    """mmap calls refused with EAGAIN by the locked-memory limit."""
    victim_allocation: str | None = omitted_when_none()
    """``ok`` or ``ENOMEM``: what the victim's secret page fault got."""
    fragmentation: str | None = omitted_when_none()
    """Why the fragmentation was not measured, when it was not."""
    direct_map_splits_per_strategy: dict[str, int] | None = omitted_when_none()
    fragmentation_curve: FragmentationSeries | None = omitted_when_none()

    def plots(self) -> tuple[PlotData, ...]:
        return () if self.fragmentation_curve is None else (self.fragmentation_curve,)


@dataclass(frozen=True)
class Exhaustion:
    """What one exhaustion achieved: the attacker's pages, and what the victim then got.

    Attributes:
        taken: secret pages the attacker mapped and touched.
        refusal: the platform's ENOMEM when the victim's secret page fault failed (``None``:
            the victim got its page).
        secret: the victim's secret.
        read_back: what the victim read back from its secret page (``None``: it got none).
    """

    taken: int
    refusal: str | None
    secret: bytes
    read_back: bytes | None


def exhaust(ctx: AttackContext, params: SecretmemExhaustionParams) -> Exhaustion:
    """The attacker takes all the secret memory it may on ``ctx.machine``, the fragmentation
    workload is measured on the side, then the victim asks for one secret page and stores its
    secret there; the metrics go to ``ctx.log`` as they are measured.

    Raises:
        PlatformRefusal: any refusal but the victim's ENOMEM (one the victim meets is charged
            to it through :meth:`~testbed.attacks.AttackLog.victim_acts`).
    """
    m, log = ctx.machine, ctx.log
    secret = make_secret(ctx.rng, params.secret, params.secret_bytes)
    log.secret = secret
    area = m.secretmem_area
    where = (f"the secretmem= reservation ({area.chunks} chunks of 2 MiB)" if area else
             "the page allocator (no secretmem= reservation)")
    log.step(Actor.VICTIM, "is about to need secret memory for its key", detail=where)

    log.begin_attack()
    attacker = m.create_domain("process", "attacker")
    taken, refusals = _exhaust(m, attacker, params, log)
    metrics = SecretmemExhaustionMetrics(
        attacker_pages=taken, attacker_locked_pages=attacker.locked_pages,
        free_chunks_left=area.free_chunks if area else None,
        free_frames_left=m.allocator.free_count, mmap_refusals=refusals or None)
    log.metrics = metrics  # kept if the fragmentation measurement fails
    log.metrics = metrics = _fragmentation(ctx, params, metrics)

    with log.victim_acts():
        victim = m.create_domain("process", "victim")
        file = m.memfd_secret(victim)
        pages = -(-len(secret) // PAGE_SIZE)
        file.mmap(pages)
    try:
        # ENOMEM is the attack's success; any other refusal is the victim's.
        with log.victim_acts():
            pa = file.fault(0)
    except OutOfMemory as exc:
        log.step(Actor.VICTIM, "touches its secret page: the fault fails", detail=str(exc))
        log.metrics = replace(metrics, victim_allocation="ENOMEM")
        return Exhaustion(taken, str(exc), secret, None)
    log.address = pa
    with log.victim_acts():
        m.write(victim, pa, secret)
        log.recovered = m.read(victim, pa, len(secret))
    log.step(Actor.VICTIM, "stores its secret in secret memory and reads it back", address=pa)
    log.metrics = replace(metrics, victim_allocation="ok")
    return Exhaustion(taken, None, secret, log.recovered)


def judge_exhaustion(done: Exhaustion) -> Verdict:
    """A denial of service when the victim's secret page fault failed; no guess, so no
    chance."""
    if done.refusal is not None:
        return Verdict(Outcome.SUCCEEDED,
                       f"denial of service: the victim's secret allocation failed "
                       f"({done.refusal}) after the attacker took {done.taken} pages")
    if done.read_back != done.secret:
        return Verdict(Outcome.ERROR, "the victim's secret page reads back corrupt")
    return Verdict(Outcome.MITIGATED, f"the victim still got secret memory: the attacker "
                   f"could take only {done.taken} pages")


class SecretmemExhaustion(Attack[SecretmemExhaustionParams]):
    kind = "secretmem-exhaustion"
    title = "secretmem pool exhaustion"
    capabilities = ("unprivileged_task",)
    Params = SecretmemExhaustionParams
    Metrics = SecretmemExhaustionMetrics
    platform_settings = frozenset({"secretmem_reserve_pages"})
    """The ``secretmem=`` reservation its files take their pages from."""

    def run(self, ctx: AttackContext, params: SecretmemExhaustionParams) -> Verdict:
        return judge_exhaustion(exhaust(ctx, params))


def _exhaust(
    m: Machine, attacker: Domain, params: SecretmemExhaustionParams, log: AttackLog
) -> tuple[int, int]:
    """The attacker maps and touches as much secret memory as it is allowed.

    Returns:
        Pages taken, and mmap calls refused.
    """
    taken = refusals = 0
    for n in range(params.attacker_files):
        file = m.memfd_secret(attacker)
        length, refused = _mmap_greedy(file, params.pages_per_file)
        if refused:
            refusals += refused
            log.step(Actor.ATTACKER, f"file {n + 1}: mmap refused {refused} times (EAGAIN), "
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
            log.step(Actor.ATTACKER, f"file {n + 1}: maps {plural(length, 'secret page')}, touches "
                     f"{got} until secret memory runs out", "unprivileged_task",
                     detail=str(exc))
            return taken, refusals
        taken += got
        log.step(Actor.ATTACKER, f"file {n + 1}: maps and touches {plural(got, 'secret page')}",
                 "unprivileged_task", detail=plural(len(file.chunks), "pool chunk"))
    return taken, refusals

def _fragmentation(
    ctx: AttackContext, params: SecretmemExhaustionParams,
    metrics: SecretmemExhaustionMetrics,
) -> SecretmemExhaustionMetrics:
    """Replay one workload under both strategies; add the direct-map splits to ``metrics``."""
    if not params.workload_pages:
        return metrics
    pages = ctx.machine.memory.pages
    tasks = ctx.rng.integers(0, params.workload_tasks, size=params.workload_pages)
    per_task = np.bincount(tasks, minlength=params.workload_tasks)
    reserve = int(sum(-(-int(n) // PMD_PAGES) for n in per_task)) * PMD_PAGES
    if 2 * reserve > pages:
        return replace(metrics, fragmentation=(
            f"not measured: the workload's pools need {reserve} frames, more than half of "
            f"the {pages}-frame memory"))
    ops = _workload(ctx.rng, pages - reserve, tasks)
    per_page = _replay(ctx.machine, ops, pages, 0, params)
    pool = _replay(ctx.machine, ops, pages, reserve, params)
    return replace(
        metrics,
        direct_map_splits_per_strategy={"per-page": per_page[-1], "pmd-pool": pool[-1]},
        fragmentation_curve=FragmentationSeries(
            secret_pages=tuple(range(1, params.workload_pages + 1)),
            per_page=tuple(per_page), pmd_pool=tuple(pool)),
    )


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
