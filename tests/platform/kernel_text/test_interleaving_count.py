"""Counting a live patch's interleavings without running them: the same number as a search of
the schedule tree (the naive explorer's) or as the classes the reduced explorer runs, and a space
far over the limit refused at once."""

from __future__ import annotations

import random
import time
from collections.abc import Hashable

import pytest
from pydantic import ValidationError

from testbed.attacks.torn_live_patch import TornLivePatchParams, build
from testbed.errors import TooManyInterleavings
from testbed.platform.kernel_text.interleavings import count_interleavings, explore_all
from testbed.platform.kernel_text.livepatch import PATCHER, LivePatch
from testbed.platform.kernel_text.patching import Patcher

PAIRS = [("nop5", "call"), ("nop5", "jmp32"), ("call", "call"), ("call", "nop5"),
         ("jmp32", "call"), ("nop2", "jmp8"), ("jmp8", "nop2"), ("jmp8", "jmp8")]


class _Over(Exception):
    pass


def tree_count(start: LivePatch, limit: int) -> int | None:
    """The leaves of the schedule tree that ``explore_all`` walks (consecutive CPU steps by
    increasing CPU), counted over memoised states; ``None`` above ``limit``."""
    memo: dict[Hashable, int] = {}

    def leaves(run: LivePatch, last: int) -> int:
        key = (run.key(), last)
        if key not in memo:
            threads = ([PATCHER] if run.patcher_enabled() else []) + [
                k for k in range(max(last, 1), run.cpus + 1) if run.cpu_enabled(k)]
            total = 0
            for thread in threads:
                child = run.clone()
                child.step(thread)
                total += leaves(child, 0 if thread == PATCHER else thread)
            memo[key] = total if threads else 1
            if memo[key] > limit:
                raise _Over
        return memo[key]

    try:
        return leaves(start, 0)
    except _Over:
        return None


def cases(seed: int, count: int, *, cpus: int, sites: int, visits: int) -> list[LivePatch]:
    """``count`` seeded random patches (both patchers) within the given sizes."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        old, new = rng.choice(PAIRS)
        params = TornLivePatchParams.model_validate({
            "cpus": rng.randint(2, cpus), "sites": rng.randint(1, sites),
            "visits": rng.randint(1, visits), "fetch_chunk": rng.randint(1, 8),
            "poke_chunk": rng.randint(1, 5), "old": old, "new": new, "explore": "random",
            "interleavings": 1})
        out += [build(params, patcher) for patcher in Patcher]
    return out


def counted(start: LivePatch, limit: int, reduction: bool = False) -> int | None:
    try:
        return count_interleavings(start, limit, reduction=reduction)
    except TooManyInterleavings:
        return None


@pytest.mark.parametrize("start", cases(1, 20, cpus=3, sites=2, visits=2),
                         ids=lambda s: f"{s.cpus}cpus-{len(s.sites)}sites-{len(s.ops)}ops")
@pytest.mark.parametrize("reduction", [False, True], ids=["naive", "reduced"])
def test_count_is_what_explore_all_runs(start: LivePatch, reduction: bool) -> None:
    n = counted(start, 5000, reduction)
    if n is None:
        if not reduction:
            assert tree_count(start, 5000) is None
        with pytest.raises(TooManyInterleavings):
            explore_all(start, limit=5000, reduction=reduction)
    else:
        assert explore_all(start, reduction=reduction).interleavings == n


@pytest.mark.parametrize(("seed", "sizes", "limit"), [
    (2, {"cpus": 4, "sites": 2, "visits": 2}, 20_000),
    (3, {"cpus": 8, "sites": 2, "visits": 1}, 2_000),
    (4, {"cpus": 8, "sites": 1, "visits": 2}, 2_000),
])
def test_count_equals_the_search_of_the_schedule_tree(seed: int, sizes: dict[str, int],
                                                      limit: int) -> None:
    # Many CPUs, with schedules that stop early: a higher CPU through while a lower one still
    # fetches and the patcher is through, or waits for it in a sync.
    for start in cases(seed, 12, **sizes):
        assert counted(start, limit) == tree_count(start, limit), (start.cpus, len(start.sites))


@pytest.mark.parametrize(("reduction", "what"), [
    (False, "interleavings"), (True, "classes of interleavings")])
def test_the_limit_itself_is_accepted(reduction: bool, what: str) -> None:
    start = cases(7, 1, cpus=2, sites=1, visits=1)[0]
    n = count_interleavings(start, reduction=reduction)
    assert count_interleavings(start, limit=n, reduction=reduction) == n
    with pytest.raises(TooManyInterleavings, match=f"more than {n - 1} {what}"):
        count_interleavings(start, limit=n - 1, reduction=reduction)


@pytest.mark.parametrize("params", [
    {"cpus": 8, "sites": 3, "fetch_chunk": 1, "poke_chunk": 3, "old": "jmp8", "new": "jmp8"},
    {"cpus": 7, "sites": 2, "visits": 2, "fetch_chunk": 1, "poke_chunk": 3, "old": "call",
     "new": "call"},
    {"cpus": 8, "sites": 16, "visits": 4, "fetch_chunk": 1, "poke_chunk": 1},
])
def test_a_space_far_over_the_limit_is_refused_fast(params: dict[str, object]) -> None:
    # Counting state by state took 3 to 9 s for each of these; the count of classes stops as
    # soon as its lower bound, from the first steps of the CPUs and the patcher, passes the
    # limit.
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="more than 100000 classes of interleavings"):
        TornLivePatchParams.model_validate(params)
    assert time.perf_counter() - started < 0.5
