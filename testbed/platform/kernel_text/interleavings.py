"""Exploring the interleavings of a live patch: which schedules of CPU and patcher steps tear.

:func:`explore_random` samples schedules with a seeded generator; :func:`explore_all` enumerates
every interleaving, counting as one those that differ only in the order of consecutive steps of
different CPUs (those steps only read the text and their own state, so they commute).
:func:`count_interleavings` tells how many that is without running them. The states explored are
:class:`~testbed.platform.kernel_text.livepatch.LivePatch` objects.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, TooManyInterleavings
from .livepatch import PATCHER, ExecClass, Execution, LivePatch

__all__ = [
    "MAX_INTERLEAVINGS",
    "Exploration",
    "count_interleavings",
    "explore_all",
    "explore_random",
]

MAX_INTERLEAVINGS = 100_000
"""Hard cap on the interleavings one exploration runs."""
MAX_COUNT_STATES = 200_000
"""Distinct states the exact count may visit before the case is declared too large."""


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


_Node = tuple[LivePatch, int, Hashable]
"""A state, the CPU that took the last step (0: the patcher), and the memo key of both."""


def count_interleavings(start: LivePatch, limit: int = MAX_INTERLEAVINGS) -> int:
    """Exactly how many interleavings :func:`explore_all` would run from ``start``.

    Counts over distinct states (memoised), so it is fast even when the answer is large.

    Raises:
        TooManyInterleavings: more than ``limit``, or more than :data:`MAX_COUNT_STATES` states.
    """
    memo: dict[Hashable, int] = {}
    stack: list[tuple[_Node, list[_Node] | None]] = [((start, 0, (start.key(), 0)), None)]
    while stack:
        (run, last, key), kids = stack[-1]
        if key in memo:
            stack.pop()
            continue
        if kids is None:
            kids = []
            for thread in _choices(run, last):
                child = run.clone()
                child.step(thread)
                nxt = 0 if thread == PATCHER else thread
                kids.append((child, nxt, (child.key(), nxt)))
            stack[-1] = ((run, last, key), kids)
            stack += [(kid, None) for kid in kids if kid[2] not in memo]
            continue
        memo[key] = sum(memo[kid[2]] for kid in kids) if kids else 1
        stack.pop()
        if memo[key] > limit or len(memo) > MAX_COUNT_STATES:
            raise TooManyInterleavings(
                f"exhaustive exploration: more than {limit} interleavings for {start.cpus} CPUs "
                f"and {len(start.sites)} site(s); use fewer CPUs, sites or visits, larger fetch "
                f"or poke chunks, or sample at random")
    return memo[(start.key(), 0)]


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
