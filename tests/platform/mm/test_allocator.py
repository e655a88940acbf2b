"""The page allocator: frame 0 reserved, LIFO reuse, ENOMEM, double frees, contiguous ranges."""

from __future__ import annotations

import pytest
from _support.machines import PAGE, machine

from testbed.errors import ConfigError, OutOfMemory
from testbed.platform import PageAllocator
from testbed.types import Pfn


def test_allocator_enomem() -> None:
    m = machine("none", pages=16)
    proc = m.create_domain("process")
    got = [m.alloc_page(proc) // PAGE for _ in range(15)]  # frame 0 is the kernel's
    assert got == list(range(1, 16))
    with pytest.raises(OutOfMemory, match="ENOMEM"):
        m.alloc_page(proc)


def test_allocator_lifo_and_double_free() -> None:
    alloc = PageAllocator(8)
    a, b = alloc.alloc(), alloc.alloc()
    assert (a, b) == (1, 2)
    alloc.free(a)
    alloc.free(b)
    assert alloc.alloc() == b
    with pytest.raises(ConfigError, match=f"free of frame {a} that is not allocated"):
        alloc.free(a)
    with pytest.raises(ConfigError, match="free of frame 0 that is not allocated"):
        alloc.free(Pfn(0))  # reserved kernel frame


def test_reserve_contiguous_takes_an_aligned_range_from_the_top() -> None:
    alloc = PageAllocator(2048)
    start = alloc.reserve_contiguous(1024, 512)
    assert start == 1024
    assert alloc.free_count == 2048 - 1 - 1024
    taken = {alloc.alloc() for _ in range(alloc.free_count)}
    assert taken.isdisjoint(range(1024, 2048))


def test_reserve_contiguous_refuses_when_no_range_is_free() -> None:
    alloc = PageAllocator(1024)
    alloc.alloc()  # frame 1
    with pytest.raises(OutOfMemory, match="ENOMEM"):
        alloc.reserve_contiguous(1024, 512)


def test_a_frame_is_taken_by_number_and_the_next_one_is_known() -> None:
    allocator = PageAllocator(16)
    assert allocator.peek() == 1 and allocator.is_free(5)
    allocator.take(Pfn(5))
    assert not allocator.is_free(5) and allocator.free_count == 14
    with pytest.raises(ConfigError, match="frame 5 is not a free frame"):
        allocator.take(Pfn(5))
    with pytest.raises(ConfigError, match="frame 0 is not a free frame"):
        allocator.take(Pfn(0))  # the kernel image's
    assert allocator.alloc() == 1  # peek did not take it
    allocator.free(Pfn(5))
    assert allocator.peek() == 5
