"""The OOM killer's choice: the heaviest live task, the later one on a tie, none when none is
left (mm/oom_kill.c select_bad_process and oom_evaluate_task, as testbed.platform.mm.oom
models them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.platform.mm.oom import badness, select_bad_process


@dataclass
class Task:
    name: str
    pages: list[int] = field(default_factory=list)
    alive: bool = True
    cached: int = 0
    """Of pages, those held only in a file's page cache (not mapped)."""

    @property
    def rss(self) -> int:
        return len(self.pages) - self.cached


def test_heaviest_live_task_is_chosen() -> None:
    small, big, dead = Task("small", [1]), Task("big", [2, 3, 4]), Task("dead", [5] * 9, False)
    assert badness(big) == 3
    assert select_bad_process([small, big, dead]) is big


def test_a_tie_goes_to_the_task_created_later() -> None:
    first, second = Task("first", [1, 2]), Task("second", [3, 4])
    assert select_bad_process([first, second]) is second


def test_nothing_left_to_kill() -> None:
    assert select_bad_process([Task("gone", [1], alive=False)]) is None
    assert select_bad_process([]) is None


def test_badness_counts_mapped_pages_only() -> None:
    """oom_badness weighs get_mm_rss: pages a task keeps only in a file's page cache (secret
    pages it has unmapped) weigh nothing, however many."""
    holder = Task("holder", list(range(1000)), cached=1000)
    small = Task("small", [1, 2])
    assert badness(holder) == 0 and badness(small) == 2
    assert select_bad_process([small, holder]) is small
