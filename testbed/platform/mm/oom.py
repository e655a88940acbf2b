"""The OOM killer as a secretmem page fault meets it: pick the task with the highest badness and
kill it.

A user page fault that returns ``VM_FAULT_OOM`` (the secretmem fault handler does when its pool
cannot grow) ends in ``pagefault_out_of_memory()`` (``mm/oom_kill.c``, Linux 5.11, the kernel of
the secretmem seed). Outside a memory cgroup that calls ``out_of_memory()`` with no allocation
context; ``select_bad_process()`` then weighs every killable task by ``oom_badness()`` (its
resident pages, swap entries and page tables, plus ``oom_score_adj``) and kills the heaviest; the
faulting task returns to user space, touches the page again and faults again. With nothing
left to kill the kernel panics ("System is deadlocked on memory"). The OOM killer knows nothing
of the secretmem reservation: killing a task gives it back only if that task held the files.
This is the outcome the seed's review names: "cause OOM killer which wouldn't really recover
ever and potentially panic the system".

``oom_badness()`` weighs ``get_mm_rss(p->mm)``: the pages the task's page tables map
(anonymous, file and shmem counters of its ``mm``), not the pages it keeps alive otherwise. A
page of a memfd (secretmem's among them) that the task has unmapped stays in the file's page
cache, where no ``mm`` counts it: a task that touches secret pages and unmaps them weighs
nothing for the OOM killer, however much of the reservation its open files hold.

The model's choices: a task's badness is its resident set, :attr:`OomCandidate.rss`: the
ordinary frames it owns plus the secret pages it has mapped (secret pages of its files that it
has unmapped do not count); the model has no swap, no page-table pages and no
``oom_score_adj``. Among equal badness the task created last wins, as ``oom_evaluate_task`` keeps
a later task of equal points (``for_each_process`` walks tasks in creation order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["OomCandidate", "badness", "select_bad_process"]


class OomCandidate(Protocol):
    """A task as the OOM killer weighs it."""

    @property
    def name(self) -> str: ...

    @property
    def rss(self) -> int:
        """Pages mapped into the task (its resident set)."""
        ...

    @property
    def alive(self) -> bool: ...


T = TypeVar("T", bound=OomCandidate)


def badness(task: OomCandidate) -> int:
    """``oom_badness()`` of ``task`` in this model: the pages mapped into it."""
    return task.rss


def select_bad_process(tasks: Sequence[T]) -> T | None:
    """The task ``select_bad_process()`` would kill among ``tasks`` (in creation order), or
    ``None`` when no live task is left."""
    chosen: T | None = None
    for task in tasks:
        if task.alive and (chosen is None or badness(task) >= badness(chosen)):
            chosen = task
    return chosen
