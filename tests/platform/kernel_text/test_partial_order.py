"""Partial-order reduction of the live-patch explorer: one schedule run per class of equivalent
interleavings, as many as counted without running them, with the verdict and the torn
instructions of the naive explorer.

What conflicts is written out again here, as sets of locations, from the model's description
(``testbed.platform.kernel_text.interleavings``); swapping two adjacent steps it calls
independent is checked to change nothing, and the classes it defines are found by brute force.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from testbed.attacks.torn_live_patch import TornLivePatchParams, build
from testbed.errors import TooManyInterleavings
from testbed.platform.kernel_text import interleavings
from testbed.platform.kernel_text.interleavings import count_interleavings, explore_all
from testbed.platform.kernel_text.livepatch import PATCHER, LivePatch
from testbed.platform.kernel_text.patching import OpKind, Patcher
from testbed.platform.kernel_text.x86 import InsnKind

PAIRS = [("nop5", "call"), ("nop5", "jmp32"), ("call", "call"), ("call", "nop5"),
         ("jmp32", "call"), ("nop2", "jmp8"), ("jmp8", "nop2"), ("jmp8", "jmp8")]

Access = tuple[int, frozenset[object], frozenset[object]]


def patch(cpus: int = 2, sites: int = 1, visits: int = 1, fetch: int = 2, poke: int = 1,
          old: str = "nop5", new: str = "call",
          patcher: Patcher = Patcher.TEXT_POKE) -> LivePatch:
    params = TornLivePatchParams.model_validate(
        {"cpus": cpus, "sites": sites, "visits": visits, "fetch_chunk": fetch,
         "poke_chunk": poke, "old": old, "new": new, "explore": "random", "interleavings": 1})
    return build(params, patcher)


# -- what a step touches, written out ---------------------------------------------------------
def step(run: LivePatch, thread: int) -> Access:
    """Let ``thread`` step in ``run``: the locations that step read and wrote."""
    if thread == PATCHER:
        op = run.ops[run.patcher_steps]
        run.step(PATCHER)
        batch = {"batch"} if op.publish or op.retract else set()
        busy = {("busy", k) for k in range(1, run.cpus + 1)}
        waits = {("waits", k) for k in range(1, run.cpus + 1)}
        if op.kind is OpKind.WRITE:
            return thread, frozenset(), frozenset(
                {("text", op.address + i) for i in range(len(op.data))} | batch)
        if op.kind is OpKind.IPI:
            return thread, frozenset(busy), frozenset(waits | batch)
        return thread, frozenset(waits), frozenset(batch)
    address, fetching = run.fetch_address(thread), run.cpu_progress(thread)[1] > 0
    awaited, executed = run.sync_waits_for(thread), len(run.executions)
    run.step(thread)
    ended = len(run.executions) > executed
    reads: set[object] = {("text", address + i) for i in range(run.fetch_chunk)}
    writes: set[object] = set()
    if fetching == ended:  # it started or ended a fetch
        writes.add(("busy", thread))
    if ended and awaited:
        writes.add(("waits", thread))
    if ended and run.executions[-1].kind is InsnKind.INT3:
        reads.add("batch")
    return thread, frozenset(reads), frozenset(writes)


def conflict(a: Access, b: Access) -> bool:
    return a[0] == b[0] or bool(a[2] & (b[1] | b[2])) or bool(b[2] & a[1])


def accesses(start: LivePatch, schedule: list[int]) -> list[Access]:
    run = start.clone()
    return [step(run, t) for t in schedule]


def canonical(start: LivePatch, schedule: list[int]) -> tuple[int, ...]:
    """The least schedule (by thread, step by step) equivalent to ``schedule``: one per class."""
    steps = accesses(start, schedule)
    before = [{i for i in range(j) if conflict(steps[i], steps[j])} for j in range(len(steps))]
    done: set[int] = set()
    out: list[int] = []
    while len(out) < len(steps):
        j = min((j for j in range(len(steps)) if j not in done and before[j] <= done),
                key=lambda j: steps[j][0])
        done.add(j)
        out.append(steps[j][0])
    return tuple(out)


def every_schedule(start: LivePatch) -> Iterator[list[int]]:
    """Every complete interleaving, each order of every step (no merging at all)."""
    stack = [start.clone()]
    while stack:
        run = stack.pop()
        threads = run.enabled()
        if not threads:
            yield run.schedule
        for t in threads:
            child = run.clone()
            child.step(t)
            stack.append(child)


def outcome(run: LivePatch) -> list[tuple[object, ...]]:
    """What the CPUs executed, whatever the step numbers."""
    return sorted((e.cpu, e.site, e.fetched, e.kind or "", e.next_ip or 0, e.pushed or 0,
                   e.emulated, e.category) for e in run.executions)


class _Runs(interleavings._Tally):
    """Keeps every schedule the reduced explorer finishes."""

    def __init__(self) -> None:
        super().__init__()
        self.schedules: list[list[int]] = []

    def add(self, run: LivePatch) -> None:
        super().add(run)
        self.schedules.append(run.schedule)


def reduced_schedules(start: LivePatch) -> list[list[int]]:
    runs = _Runs()
    interleavings._Reduced(start, runs).run()
    return runs.schedules


# -- the classes ------------------------------------------------------------------------------
TINY = [
    patch(fetch=2, poke=2),
    patch(fetch=2, poke=1),
    patch(fetch=3, poke=3, cpus=3),
    patch(fetch=1, poke=1, old="jmp8", new="nop2"),
    patch(fetch=2, poke=2, sites=2, old="jmp8", new="jmp8"),
    patch(fetch=3, poke=5, patcher=Patcher.TEXT_POKE_BP),
    patch(fetch=5, poke=2, patcher=Patcher.TEXT_POKE_BP, old="call", new="jmp32"),
    patch(fetch=8, poke=1, cpus=3, patcher=Patcher.TEXT_POKE_BP),
    patch(fetch=2, poke=1, patcher=Patcher.TEXT_POKE_BP, old="nop2", new="jmp8"),
]


@pytest.mark.parametrize("start", TINY, ids=lambda s: f"{s.cpus}cpus-{len(s.ops)}ops")
def test_one_schedule_is_run_per_class_and_the_count_is_that_number(start: LivePatch) -> None:
    classes = {canonical(start, s) for s in every_schedule(start)}
    run = reduced_schedules(start)
    assert sorted(canonical(start, s) for s in run) == sorted(classes)  # each class once
    assert count_interleavings(start) == len(classes) == explore_all(start).interleavings


@pytest.mark.parametrize("seed", range(4))
def test_swapping_steps_that_do_not_conflict_changes_nothing(seed: int) -> None:
    # The reduction is sound only if such steps commute: same state, same instructions run.
    rng = random.Random(seed)
    for patcher in Patcher:
        start = patch(cpus=3, sites=2, visits=2, fetch=rng.randint(1, 4),
                      poke=rng.randint(1, 3), patcher=patcher, old="call", new="jmp32")
        for _ in range(5):
            run = start.clone()
            while run.enabled():
                run.step(rng.choice(run.enabled()))
            schedule, steps = run.schedule, accesses(start, run.schedule)
            for i in range(len(schedule) - 1):
                if conflict(steps[i], steps[i + 1]):
                    continue
                swapped = [*schedule[:i], schedule[i + 1], schedule[i], *schedule[i + 2:]]
                other = start.replay(swapped, trace=False)
                assert other.key() == run.key() and outcome(other) == outcome(run)


# -- against the naive explorer ---------------------------------------------------------------
NAIVE_LIMIT = 5000


SMALL = st.sampled_from([1, 1, 2])
"""Mostly one: the naive explorer must finish for most cases to be compared."""


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cpus=st.sampled_from([2, 2, 3]), sites=SMALL, visits=SMALL,
       fetch=st.integers(1, 8), poke=st.integers(1, 5), pair=st.sampled_from(PAIRS),
       patcher=st.sampled_from(list(Patcher)))
def test_the_reduced_explorer_finds_what_the_naive_one_finds(
        cpus: int, sites: int, visits: int, fetch: int, poke: int, pair: tuple[str, str],
        patcher: Patcher) -> None:
    start = patch(cpus, sites, visits, fetch, poke, *pair, patcher=patcher)
    try:
        naive = explore_all(start, NAIVE_LIMIT, reduction=False)
    except TooManyInterleavings:
        naive = None
    try:
        reduced = explore_all(start, NAIVE_LIMIT)
    except TooManyInterleavings:
        assert naive is None  # there are never more classes than interleavings
        return
    assert reduced.reduced and reduced.exhaustive
    assert reduced.interleavings == count_interleavings(start)
    event("compared with the naive explorer" if naive else "too many interleavings to compare")
    if naive is None:
        return
    assert reduced.interleavings <= naive.interleavings
    assert (reduced.torn_interleavings > 0) == (naive.torn_interleavings > 0)
    assert (reduced.first_torn is None) == (naive.first_torn is None)
    assert reduced.torn_instructions == naive.torn_instructions
    assert ({c for c, n in reduced.counts.items() if n}
            == {c for c, n in naive.counts.items() if n})
    assert (reduced.first_emulated is None) == (naive.first_emulated is None)


@pytest.mark.parametrize(("patcher", "naive", "classes"), [
    (Patcher.TEXT_POKE, 3284, 256), (Patcher.TEXT_POKE_BP, 527, 49)])
def test_the_shipped_case_runs_one_schedule_in_a_dozen(patcher: Patcher, naive: int,
                                                        classes: int) -> None:
    # Two CPUs, each with 16 (text_poke) or 7 (text_poke_bp) classes of its own.
    start = build(TornLivePatchParams(), patcher)
    assert count_interleavings(start, reduction=False) == naive
    assert count_interleavings(start) == classes == explore_all(start).interleavings


def test_the_cap_applies_to_classes() -> None:
    # Over 300,000 interleavings, 2,401 classes: refused without the reduction only.
    start = patch(cpus=4, patcher=Patcher.TEXT_POKE_BP)
    with pytest.raises(TooManyInterleavings, match="more than 100000 interleavings"):
        count_interleavings(start, reduction=False)
    assert count_interleavings(start) == 7 ** 4
    with pytest.raises(TooManyInterleavings, match="more than 2400 classes of interleavings"):
        explore_all(start, limit=2400)
    params = TornLivePatchParams.model_validate({"cpus": 4, "explore": "exhaustive"})
    assert params.cpus == 4


def test_a_torn_class_is_torn_in_every_schedule_of_it() -> None:
    start = patch(fetch=2, poke=2)
    torn = explore_all(start).first_torn
    assert torn is not None
    seen = set()
    for schedule in every_schedule(start):
        if canonical(start, schedule) == canonical(start, torn.schedule):
            seen.add(tuple(outcome(start.replay(schedule, trace=False))))
    assert seen == {tuple(outcome(torn))}
