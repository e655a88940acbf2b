"""Page-frame allocator with a LIFO free list, like the kernel's per-CPU hot-page lists."""

from __future__ import annotations

from ...errors import ConfigError, OutOfMemory
from ...types import Pfn

__all__ = ["RESERVED_FRAMES", "PageAllocator"]

RESERVED_FRAMES = 1
"""Frames at the bottom of memory that hold the kernel image and are never handed out."""


class PageAllocator:
    """Hands out page frame numbers; the most recently freed frame is handed out first.

    Args:
        pages: frames in the machine.
        reserved: frames ``0..reserved-1`` belong to the kernel image and are never handed out.
    """

    def __init__(self, pages: int, reserved: int = RESERVED_FRAMES) -> None:
        if not 0 <= reserved < pages:
            raise ConfigError(f"reserved frames: must be in 0..{pages - 1}, got {reserved}")
        self.pages = pages
        # Highest frames at the bottom of the stack, so the first allocations are low frames.
        self._free: list[Pfn] = [Pfn(f) for f in range(pages - 1, reserved - 1, -1)]
        self._in_use: set[Pfn] = set()

    @property
    def free_count(self) -> int:
        """Frames on the free list."""
        return len(self._free)

    def alloc(self) -> Pfn:
        """Take a frame off the free list.

        Raises:
            OutOfMemory: the free list is empty (ENOMEM).
        """
        if not self._free:
            raise OutOfMemory("ENOMEM: no free page frames")
        pfn = self._free.pop()
        self._in_use.add(pfn)
        return pfn

    def is_free(self, pfn: int) -> bool:
        """Whether frame ``pfn`` is on the free list."""
        return pfn in self._free

    def free_between(self, first: int, stop: int) -> int:
        """How many of frames ``first .. stop-1`` are free (one pass over the free list)."""
        return sum(1 for f in self._free if first <= f < stop)

    def peek(self) -> Pfn:
        """The frame :meth:`alloc` would hand out next.

        Raises:
            OutOfMemory: the free list is empty (ENOMEM).
        """
        if not self._free:
            raise OutOfMemory("ENOMEM: no free page frames")
        return self._free[-1]

    def take(self, pfn: Pfn) -> None:
        """Take the free frame ``pfn`` off the free list (a frame chosen by number).

        Raises:
            ConfigError: ``pfn`` is not a free frame.
        """
        if not self.is_free(pfn):
            raise ConfigError(f"frame {pfn} is not a free frame")
        self._free.remove(pfn)
        self._in_use.add(pfn)

    def reserve_contiguous(self, count: int, align: int) -> Pfn:
        """Take ``count`` free frames starting at a multiple of ``align``, as high as possible
        (a boot-time carve-out such as a CMA area); returns the first frame.

        Raises:
            OutOfMemory: no such free range.
        """
        if count < 1 or align < 1:
            raise ConfigError(f"reserve: count and align must be positive, got {count}, {align}")
        free = set(self._free)
        start = (self.pages - count) // align * align
        while start >= 0:
            if all(f in free for f in range(start, start + count)):
                taken = set(range(start, start + count))
                self._free = [f for f in self._free if f not in taken]
                return Pfn(start)
            start -= align
        raise OutOfMemory(f"ENOMEM: no free range of {count} frames aligned to {align}")

    def free(self, pfn: Pfn) -> None:
        """Return a frame to the head of the free list.

        Raises:
            ConfigError: the frame is not allocated (double free).
        """
        if pfn not in self._in_use:
            raise ConfigError(f"free of frame {pfn} that is not allocated")
        self._in_use.remove(pfn)
        self._free.append(pfn)
