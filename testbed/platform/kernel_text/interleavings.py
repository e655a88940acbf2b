"""Exploring the interleavings of a live patch: which schedules of CPU and patcher steps tear.

:func:`explore_random` samples schedules with a seeded generator; :func:`explore_all` enumerates
every interleaving, counting as one those that differ only in the order of consecutive steps of
different CPUs (those steps only read the text and their own state, so they commute).
:func:`count_interleavings` tells how many that is without running them. The states explored are
:class:`~testbed.platform.kernel_text.livepatch.LivePatch` objects.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, TooManyInterleavings
from .livepatch import PATCHER, ExecClass, Execution, LivePatch
from .patching import OpKind

__all__ = [
    "MAX_INTERLEAVINGS",
    "Exploration",
    "count_interleavings",
    "explore_all",
    "explore_random",
]

MAX_INTERLEAVINGS = 100_000
"""Hard cap on the interleavings one exploration runs."""


# -- exploring interleavings ----------------------------------------------------------------
@dataclass(frozen=True)
class Exploration:
    """What the CPUs executed over all the interleavings explored.

    Attributes:
        exhaustive: every interleaving was run (else: a seeded sample).
        interleavings: schedules run to completion.
        torn_interleavings: those in which at least one execution was torn.
        counts: executions of each category, summed over all schedules.
        first_torn: the finished run of the first schedule that tore.
        first_emulated: the first execution the INT3 handler emulated.
    """

    exhaustive: bool
    interleavings: int
    torn_interleavings: int
    counts: Mapping[ExecClass, int]
    first_torn: LivePatch | None
    first_emulated: Execution | None


class _Tally:
    def __init__(self) -> None:
        self.runs = self.torn_runs = 0
        self.counts = dict.fromkeys(ExecClass, 0)
        self.first_torn: LivePatch | None = None
        self.first_emulated: Execution | None = None

    def add(self, run: LivePatch) -> None:
        self.runs += 1
        for e in run.executions:
            self.counts[e.category] += 1
            if e.emulated and self.first_emulated is None:
                self.first_emulated = e
        if run.torn():
            self.torn_runs += 1
            if self.first_torn is None:
                self.first_torn = run

    def result(self, exhaustive: bool) -> Exploration:
        return Exploration(exhaustive, self.runs, self.torn_runs, self.counts, self.first_torn,
                           self.first_emulated)


def _choices(run: LivePatch, last_cpu: int) -> list[int]:
    """Canonical next threads: consecutive CPU steps go in non-decreasing CPU order."""
    out = [PATCHER] if run.patcher_enabled() else []
    return out + [k for k in range(max(last_cpu, 1), run.cpus + 1) if run.cpu_enabled(k)]


@dataclass(frozen=True)
class _Layer:
    """One CPU's schedules with the patcher, cut after the patcher's ``j``-th step and any
    number of that CPU's steps: how many such prefixes there are, how many end with the CPU
    through its program, and how many with no sync waiting for it."""

    prefixes: int
    finished: int
    unawaited: int


def _too_many(start: LivePatch, limit: int) -> TooManyInterleavings:
    return TooManyInterleavings(
        f"exhaustive exploration: more than {limit} interleavings for {start.cpus} CPUs "
        f"and {len(start.sites)} site(s); use fewer CPUs, sites or visits, larger fetch "
        f"or poke chunks, or sample at random")


def _cpu_layers(start: LivePatch, cpu: int, limit: int) -> list[_Layer]:
    """The schedules of ``cpu`` alone with the patcher, counted after each patcher step.

    A CPU's steps read the text and change only its own state, so where it is after the
    patcher's ``j``-th step and its own next steps depends on nothing else. Counted forward,
    layer by layer (patcher steps taken), each layer in the order of the CPU's progress.

    Raises:
        TooManyInterleavings: a count above ``limit``: every prefix of one CPU's schedule
            extends to at least one whole interleaving, so the whole count is larger still.
    """
    layers: list[_Layer] = []
    entries: dict[Hashable, tuple[LivePatch, int]] = {start.key(): (start, 1)}
    for _taken in range(len(start.ops) + 1):
        runs = {key: run for key, (run, _n) in entries.items()}
        counts = {key: n for key, (_run, n) in entries.items()}
        queue = [(run.cpu_progress(cpu), i, key) for i, (key, run) in enumerate(runs.items())]
        heapq.heapify(queue)
        while queue:
            key = heapq.heappop(queue)[2]
            run = runs[key]
            if not run.cpu_enabled(cpu):
                continue
            child = run.clone()
            child.step(cpu)
            ckey = child.key()
            if ckey not in runs:
                runs[ckey], counts[ckey] = child, 0
                heapq.heappush(queue, (child.cpu_progress(cpu), len(runs), ckey))
            counts[ckey] += counts[key]
        layer = _Layer(
            prefixes=sum(counts.values()),
            finished=sum(n for key, n in counts.items() if not runs[key].cpu_enabled(cpu)),
            unawaited=sum(n for key, n in counts.items() if not runs[key].sync_waits_for(cpu)))
        if layer.prefixes > limit:
            raise _too_many(start, limit)
        layers.append(layer)
        entries = {}
        for key, run in runs.items():
            if run.patcher_enabled():
                child = run.clone()
                child.step(PATCHER)
                entries[child.key()] = (child, counts[key])
    return layers


def _product(values: Iterable[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def count_interleavings(start: LivePatch, limit: int = MAX_INTERLEAVINGS) -> int:
    """Exactly how many interleavings :func:`explore_all` would run from ``start``, counted
    without running them.

    CPUs interact only through the patcher: each CPU's steps depend on the patcher's progress
    and its own state, and a sync waits for the CPUs that were mid-fetch. So a schedule is one
    path of each CPU among the patcher's steps (:func:`_cpu_layers`) and their number is a
    product, as for a multinomial coefficient. :func:`explore_all` also runs the schedules that
    stop early: a CPU step after which the order it keeps (consecutive CPU steps by increasing
    CPU) allows no step, because the higher CPUs are through and the patcher is through or
    waits for a lower CPU. Those are counted from the same tables. Each CPU's count stops at
    ``limit``, so a case far too large is refused after a few patcher steps.

    Raises:
        TooManyInterleavings: more than ``limit``.
    """
    ops, n = start.ops, len(start.sites)
    tables: dict[int, list[_Layer]] = {}
    per_cpu: list[list[_Layer]] = []
    for cpu in range(1, start.cpus + 1):
        program = (cpu - 1) % n  # CPUs with the same program have the same counts
        if program not in tables:
            tables[program] = _cpu_layers(start, cpu, limit)
        per_cpu.append(tables[program])
    total = _product(t[-1].finished for t in per_cpu)
    if total > limit:
        raise _too_many(start, limit)
    done = len(ops)
    for j in range(done + 1):
        if j < done and ops[j].kind is not OpKind.WAIT:
            continue  # the patcher can step: no schedule stops here
        # A lower CPU stops the schedule when it is not through (the patch is), or when the
        # sync waits for it.
        free = [t[j].finished if j == done else t[j].unawaited for t in per_cpu]
        for k in range(1, start.cpus):  # the last step is cpu k + 1's
            last = per_cpu[k]
            ends = last[j].finished - (last[j - 1].finished if j else 0)
            through = _product(t[j - 1].finished if j else 0 for t in per_cpu[k + 1:])
            stuck = _product(t[j].prefixes for t in per_cpu[:k]) - _product(free[:k])
            total += ends * through * stuck
            if total > limit:
                raise _too_many(start, limit)
    return total


def explore_all(start: LivePatch, limit: int = MAX_INTERLEAVINGS) -> Exploration:
    """Run every interleaving from ``start`` (see the module docstring for what counts as one).

    Raises:
        TooManyInterleavings: the case has more than ``limit`` (checked before running any).
    """
    count_interleavings(start, limit)
    tally = _Tally()
    stack = [(start.clone(), 0)]
    while stack:
        run, last = stack.pop()
        threads = _choices(run, last)
        if not threads:
            tally.add(run)
            continue
        for thread in reversed(threads):
            child = run.clone() if thread != threads[0] else run
            child.step(thread)
            stack.append((child, 0 if thread == PATCHER else thread))
    return tally.result(exhaustive=True)


def explore_random(start: LivePatch, count: int, rng: np.random.Generator) -> Exploration:
    """Run ``count`` schedules from ``start``, each step's thread drawn uniformly from ``rng``.

    Raises:
        ConfigError: ``count`` outside 1..:data:`MAX_INTERLEAVINGS`.
    """
    if not 1 <= count <= MAX_INTERLEAVINGS:
        raise ConfigError(f"interleavings: must be 1..{MAX_INTERLEAVINGS}, got {count}")
    tally = _Tally()
    steps = start.max_steps()
    for _ in range(count):
        run = start.clone()
        draws = rng.random(steps)
        for u in draws:
            threads = run.enabled()
            if not threads:
                break
            run.step(threads[int(u * len(threads))])
        tally.add(run)
    return tally.result(exhaustive=False)
