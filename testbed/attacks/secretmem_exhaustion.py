"""secretmem pool exhaustion: one task takes all secret memory, another's allocation fails.

Threat: secret memory (``memfd_secret``) comes from a fixed ``secretmem=`` reservation carved
into PMD-size pools. Any unprivileged task can map and touch secret pages until the reservation
is gone. The next task whose secret page fault needs a new chunk gets ``VM_FAULT_OOM``, not an
error it could handle: the fault ends in the OOM killer, which kills the heaviest task and lets
the fault retry, until the faulting task gets its page or is killed itself (denial of service).
Source: M. Hocko, review of "[PATCH v16 07/11] secretmem: use PMD-size pages to amortize direct
map fragmentation" (linux-api, 26 January 2021): "any task is able to deprive access to secret
memory to other tasks and cause OOM killer which wouldn't really recover ever and potentially
panic the system"; the patch's ``secretmem_fault`` returns ``VM_FAULT_OOM`` when
``secretmem_alloc_page`` fails. The OOM killer is :mod:`testbed.platform.mm.oom`.
Preconditions: capability ``unprivileged_task`` (open ``memfd_secret``, ``mmap`` and touch
pages) and a ``secretmem=`` reservation: without one ``memfd_secret`` fails with ENOMEM for
every task (``Machine.secretmem_unavailable``), and the attack is not applicable (its
precondition). Nothing about the memory-encryption engine matters here; the per-task
locked-memory limit (``memlock_limit``) is the mitigation under test. With
``secretmem_before_pmd_pool`` (the code before the patch) the attacker exhausts the page
allocator itself.

The model's choices: the attacker reads how much of the reservation is left (``CmaFree`` in
``/proc/meminfo``, or ``MemFree`` before the patch) and stops touching pages, or opening files,
when the next fault would need memory that is not there: its own fault would call the OOM killer
too. With ``unmap_after_touch`` (the default) it unmaps each file once it has touched its pages
and keeps the file open: the pages stay in the file's page cache and the reservation stays
taken, but they leave its resident set, which is what ``oom_badness()`` weighs
(:mod:`testbed.platform.mm.oom`). So the attacker is never the heaviest task, and the victim,
which already uses ``victim_resident_pages`` ordinary pages, is killed whatever its size (an
attacker could as well hand its files to a small helper task). Without ``unmap_after_touch``
the attacker's mapped secret pages count, and a victim lighter than them survives.

Alongside, the attack measures direct-map fragmentation: the same workload of secret
allocations, replayed on two fresh machines, one removing pages from the direct map one by one
(before the patch) and one using the PMD pool. Splits count both levels: the 1 GiB mapping split
into 2 MiB ones, and each 2 MiB mapping split into 4 KiB ones.

The run is :func:`exhaust` and its outcome :func:`judge_exhaustion`, which the attack programs'
``exhaust_secretmem`` step and ``denied`` goal share.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from ..errors import OomKilled, ResourceLimit
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

RESIDENT_UNITS = 15
"""Work units per ordinary page the victim holds (one page-allocator call)."""
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
    victim_resident_pages: int = Field(
        64, ge=0, le=65536,
        description="ordinary pages the victim already uses when it asks for secret memory "
        "(its size, which the OOM killer weighs)",
    )
    unmap_after_touch: bool = Field(
        True, description="the attacker unmaps each file's pages once touched and keeps the "
        "file open: the pages stay taken in the file's page cache but leave its resident set, "
        "which the OOM killer weighs",
    )

    def pages_needed(self) -> int:
        return 2 + self.victim_resident_pages

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
                 (f"{self.victim_resident_pages:,} ordinary pages of the victim, allocated and "
                  f"freed by the OOM killer", 2 * RESIDENT_UNITS * self.victim_resident_pages),
                 (f"{self.attacker_files} secretmem file(s)", FILE_UNITS * self.attacker_files),
                 (f"{faults:,} secret pages faulted by the attacker", FAULT_UNITS * faults),
                 (f"{chunks} pool chunks cleared, and again when the OOM killer releases them",
                  2 * CHUNK_UNITS * chunks)]
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
    """Pages charged to the attacker's locked-memory limit at most at once (while its mappings
    were in place: munmap gives the charge back)."""
    attacker_resident_pages: int
    """Pages mapped into the attacker when the victim asks (its resident set, which the OOM
    killer weighs)."""
    free_chunks_left: int | None
    """2 MiB chunks left in the secretmem= reservation (``None``: there is none)."""
    free_frames_left: int
    mmap_refusals: int | None = omitted_when_none()
    """mmap calls refused with EAGAIN by the locked-memory limit."""
    victim_allocation: str | None = omitted_when_none()
    """What the victim's secret page fault got: ``ok``, ``ok after OOM kills`` or
    ``killed (VM_FAULT_OOM)``."""
    oom_killed: tuple[str, ...] | None = omitted_when_none()
    """Tasks the OOM killer killed during the victim's fault, in order."""
    fragmentation: str | None = omitted_when_none()
    """Why the fragmentation was not measured, when it was not."""
    direct_map_splits_per_strategy: dict[str, int] | None = omitted_when_none()
    """Large direct-map mappings split by the workload (1 GiB and 2 MiB together)."""
    direct_map_1g_splits_per_strategy: dict[str, int] | None = omitted_when_none()
    """Of those, 1 GiB mappings split into 2 MiB ones."""
    fragmentation_curve: FragmentationSeries | None = omitted_when_none()

    def plots(self) -> tuple[PlotData, ...]:
        return () if self.fragmentation_curve is None else (self.fragmentation_curve,)


@dataclass(frozen=True)
class Exhaustion:
    """What one exhaustion achieved: the attacker's pages, and what the victim then got.

    Attributes:
        taken: secret pages the attacker mapped and touched.
        refusal: how the victim's secret page fault ended when the victim did not get its page:
            the OOM killer killed it (``None``: the victim got its page).
        secret: the victim's secret.
        read_back: what the victim read back from its secret page (``None``: it got none).
        killed: tasks the OOM killer killed during the victim's fault, in order.
        unavailable: ``memfd_secret`` fails for every task (no reservation): there was no
            secret memory to exhaust.
        stopped: what made the attacker stop taking secret memory.
    """

    taken: int
    refusal: str | None
    secret: bytes
    read_back: bytes | None
    killed: tuple[str, ...] = ()
    unavailable: str | None = None
    stopped: str = ""


def exhaust(ctx: AttackContext, params: SecretmemExhaustionParams) -> Exhaustion:
    """The attacker takes all the secret memory it may on ``ctx.machine``, the fragmentation
    workload is measured on the side, then the victim asks for one secret page and stores its
    secret there; the metrics go to ``ctx.log`` as they are measured.

    On a machine where ``memfd_secret`` fails for every task nothing happens and the result
    says so (:attr:`Exhaustion.unavailable`): the built-in attack never gets here (its
    precondition), the programs' ``exhaust_secretmem`` step does.

    Raises:
        PlatformRefusal: any refusal but the victim's death in the OOM killer (one the victim
            meets is charged to it through :meth:`~testbed.attacks.AttackLog.victim_acts`).
    """
    m, log = ctx.machine, ctx.log
    secret = make_secret(ctx.rng, params.secret, params.secret_bytes)
    log.secret = secret
    unavailable = m.secretmem_unavailable()
    if unavailable is not None:
        log.step(Actor.ATTACKER, "finds no secret memory to exhaust", "unprivileged_task",
                 detail=unavailable)
        return Exhaustion(0, None, secret, None, unavailable=unavailable)
    victim = m.create_domain("process", "victim")
    for _ in range(params.victim_resident_pages):
        m.alloc_page(victim)
    area = m.secretmem_area
    where = (f"the secretmem= reservation ({area.chunks} chunks of 2 MiB)" if area else
             "the page allocator (the code before the PMD-pool patch)")
    log.step(Actor.VICTIM, f"uses {plural(params.victim_resident_pages, 'ordinary page')} and "
             "is about to need secret memory for its key", detail=where)

    log.begin_attack()
    attacker = m.create_domain("process", "attacker")
    taken, refusals, peak, stopped = _exhaust(m, attacker, params, log)
    metrics = SecretmemExhaustionMetrics(
        attacker_pages=taken, attacker_locked_pages=peak,
        attacker_resident_pages=attacker.rss,
        free_chunks_left=area.free_chunks if area else None,
        free_frames_left=m.allocator.free_count, mmap_refusals=refusals or None)
    log.metrics = metrics  # kept if the fragmentation measurement fails
    log.metrics = metrics = _fragmentation(ctx, params, metrics)

    with log.victim_acts():
        file = m.memfd_secret(victim)
        pages = -(-len(secret) // PAGE_SIZE)
        file.mmap(pages)
    killed_before = len(m.oom_kills)
    try:
        # Death in the OOM killer is the attack's success; any other refusal is the victim's.
        with log.victim_acts():
            pa = file.fault(0)
    except OomKilled as exc:
        killed = tuple(m.oom_kills[killed_before:])
        log.step(Actor.VICTIM, "touches its secret page: the fault gets VM_FAULT_OOM and the "
                 f"OOM killer kills {', '.join(killed) or 'nothing'}: the victim is dead",
                 detail=str(exc))
        log.metrics = replace(metrics, victim_allocation="killed (VM_FAULT_OOM)",
                              oom_killed=killed)
        return Exhaustion(taken, str(exc), secret, None, killed, stopped=stopped)
    killed = tuple(m.oom_kills[killed_before:])
    if killed:
        log.step(Actor.VICTIM, "touches its secret page: the fault gets VM_FAULT_OOM, the OOM "
                 f"killer kills {', '.join(killed)}, and the retried fault gets a page")
    log.address = pa
    with log.victim_acts():
        m.write(victim, pa, secret)
        log.recovered = m.read(victim, pa, len(secret))
    log.step(Actor.VICTIM, "stores its secret in secret memory and reads it back", address=pa)
    log.metrics = replace(metrics, victim_allocation="ok after OOM kills" if killed else "ok",
                          oom_killed=killed or None)
    return Exhaustion(taken, None, secret, log.recovered, killed, stopped=stopped)


def judge_exhaustion(done: Exhaustion) -> Verdict:
    """A denial of service when the victim's secret page fault killed it; no guess, so no
    chance."""
    if done.unavailable is not None:
        return Verdict(Outcome.NOT_APPLICABLE,
                       f"no secret memory to exhaust: {done.unavailable}")
    took = f"the attacker took {plural(done.taken, 'secret page')} ({done.stopped})"
    if done.refusal is not None:
        return Verdict(Outcome.SUCCEEDED,
                       f"denial of service: {took}, then the victim's secret page fault got "
                       f"{done.refusal}; the victim cannot continue")
    if done.read_back != done.secret:
        return Verdict(Outcome.ERROR, "the victim's secret page reads back corrupt")
    if done.killed:
        return Verdict(Outcome.MITIGATED,
                       f"the victim still got secret memory: {took}, but the victim's fault "
                       f"made the OOM killer kill {', '.join(done.killed)}, which gave the "
                       f"secret memory back, and the retried fault got a page")
    return Verdict(Outcome.MITIGATED, f"the victim still got secret memory: {took}, and the "
                   f"victim's fault found room")


class SecretmemExhaustion(Attack[SecretmemExhaustionParams]):
    kind = "secretmem-exhaustion"
    title = "secretmem pool exhaustion"
    capabilities = ("unprivileged_task",)
    Params = SecretmemExhaustionParams
    Metrics = SecretmemExhaustionMetrics
    platform_settings = frozenset({"secretmem_reserve_pages", "secretmem_before_pmd_pool"})
    """The ``secretmem=`` reservation its files take their pages from, or the code before the
    PMD-pool patch."""

    def precondition(self, machine: Machine, params: SecretmemExhaustionParams) -> str | None:
        why = machine.secretmem_unavailable()
        return None if why is None else f"no secret memory to exhaust: {why}"

    def run(self, ctx: AttackContext, params: SecretmemExhaustionParams) -> Verdict:
        return judge_exhaustion(exhaust(ctx, params))


def _exhaust(
    m: Machine, attacker: Domain, params: SecretmemExhaustionParams, log: AttackLog,
) -> tuple[int, int, int, str]:
    """The attacker maps and touches as much secret memory as it is allowed and as there is;
    with ``unmap_after_touch`` it unmaps each file once touched and keeps it open.

    Returns:
        Pages taken, mmap calls refused, the most pages charged to its locked-memory limit at
        once, and what made it stop.
    """
    taken = refusals = peak = 0
    empty = ("the reservation was empty" if m.secretmem_area is not None
             else "free memory was exhausted")
    stopped = f"it had filled all its {plural(params.attacker_files, 'file')}"
    for n in range(params.attacker_files):
        if n and not _room(m, None):
            log.step(Actor.ATTACKER, f"opens no more files: /proc/meminfo shows no secret "
                     f"memory left after {plural(n, 'file')}", "unprivileged_task")
            stopped = empty
            break
        file = m.memfd_secret(attacker)
        length, refused = _mmap_greedy(file, params.pages_per_file)
        if refused:
            refusals += refused
            stopped = (f"the locked-memory limit refused its mmap "
                       f"{plural(refusals, 'time')}")
            log.step(Actor.ATTACKER, f"file {n + 1}: mmap refused {refused} times (EAGAIN), "
                     f"settles for {length} pages", "unprivileged_task")
        if not length:
            break
        got = 0
        while got < length and _room(m, file):
            file.fault(got)
            got += 1
        taken += got
        peak = max(peak, attacker.locked_pages)
        full = got < length
        what = (f"maps {plural(length, 'secret page')}, touches {got}, and stops: "
                f"/proc/meminfo shows no secret memory left" if full else
                f"maps and touches {plural(got, 'secret page')}")
        if params.unmap_after_touch:
            file.munmap()
            what += "; unmaps them and keeps the file open (they stay in its page cache)"
        log.step(Actor.ATTACKER, f"file {n + 1}: {what}", "unprivileged_task",
                 detail=plural(len(file.chunks), "pool chunk"))
        if full:
            return taken, refusals, peak, empty
    return taken, refusals, peak, stopped


def _room(m: Machine, file: SecretmemFile | None) -> bool:
    """Whether the next secret page fault of ``file`` (``None``: of a new file) finds memory,
    as the attacker reads it from ``/proc/meminfo`` (CmaFree; MemFree before the patch)."""
    if file is not None and file.pool_free:
        return True
    area = m.secretmem_area
    return area.free_chunks > 0 if area is not None else m.allocator.free_count > 0

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
    per_page, per_page_1g = _replay(ctx.machine, ops, pages, 0, params)
    pool, pool_1g = _replay(ctx.machine, ops, pages, reserve, params)
    return replace(
        metrics,
        direct_map_splits_per_strategy={"per-page": per_page[-1], "pmd-pool": pool[-1]},
        direct_map_1g_splits_per_strategy={"per-page": per_page_1g, "pmd-pool": pool_1g},
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
) -> tuple[list[int], int]:
    """Direct-map splits (both levels) after each secret page of ``ops`` on a fresh machine,
    with the ``secretmem=`` reservation ``reserve`` (0: the code before the PMD-pool patch);
    and the 1 GiB splits at the end."""
    m = base.scratch(pages, Mitigations(), secretmem_reserve_pages=reserve,
                     secretmem_before_pmd_pool=not reserve)
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
    return splits, m.direct_map.pud_split_count
