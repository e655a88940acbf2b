"""Direct maps: kernel reads through them, pages removed from them (secretmem), and the splits
of their 1 GiB and 2 MiB mappings."""

from __future__ import annotations

import numpy as np
import pytest
from _support.machines import LINE, PAGE, SECRET, kernel_read_page, machine

from testbed.errors import ConfigError, PageFault
from testbed.platform import DirectMap, Mitigations
from testbed.platform.mm.secretmem import PMD_PAGES
from testbed.types import KeySlot, Pfn, PhysAddr


def test_kernel_read_outside_direct_maps_faults() -> None:
    m = machine("none")
    with pytest.raises(PageFault, match="not a kernel direct-map address"):
        m.kernel_read(0x1000, 8)
    with pytest.raises(PageFault, match="not in the direct map"):
        m.kernel_read(m.direct_map.virt(64 * PAGE - 4), 8)


BIG = 1024
"""Frames of a machine with the secretmem mitigation: room for its default secretmem=2M."""


@pytest.mark.parametrize("engine", ["none", "tme"])
def test_secretmem_unmaps_from_direct_map(engine: str) -> None:
    """The mitigation's secret page comes from the default secretmem=2M reservation: the
    whole 2 MiB chunk leaves the direct map (one split: the 1 GiB mapping around it); a freed
    secret page goes back to the file's pool, still out of the direct map, and the chunk is
    mapped again, cleared, only when its file goes (the domain is destroyed)."""
    m = machine(engine, Mitigations(secretmem=True), BIG)
    area = m.secretmem_area
    assert area is not None and area.pages == PMD_PAGES
    proc = m.create_domain("process")
    plain_pa = m.alloc_page(proc)
    pa = m.alloc_page(proc, secret=True)
    assert area.start * PAGE <= pa < (area.start + PMD_PAGES) * PAGE
    m.write(proc, pa, SECRET)
    assert m.direct_map_splits == 1  # the 1 GiB mapping; the chunk is a whole 2 MiB one
    with pytest.raises(PageFault, match="removed from the direct map"):
        kernel_read_page(m, pa)
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(m.direct_map.virt(pa - 8), 16)  # range ends inside the secret page
    m.write(proc, plain_pa, SECRET)
    assert kernel_read_page(m, plain_pa) == SECRET  # an ordinary page stays readable
    assert m.read(proc, pa, PAGE) == SECRET  # the owner still has it
    m.free_page(proc, pa)
    with pytest.raises(PageFault, match="removed from the direct map"):
        kernel_read_page(m, pa)  # back in the file's pool, still removed
    assert m.alloc_page(proc, secret=True) == pa  # the pool hands it out again, cleared
    assert m.read(proc, pa, PAGE) == bytes(PAGE)
    m.destroy_domain(proc)
    assert kernel_read_page(m, pa) == bytes(PAGE) and area.free_chunks == 1
    assert m.direct_map_splits == 1  # the split mapping stays split


def test_secretmem_page_inside_a_long_kernel_read_faults() -> None:
    m = machine("none", Mitigations(secretmem=True), BIG)
    proc = m.create_domain("process")
    secret_pa = m.alloc_page(proc, secret=True)
    m.write(proc, secret_pa, SECRET)
    before = PhysAddr(secret_pa - PAGE)  # the frame below the reservation, still mapped
    assert m.owner(before) is None
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(m.direct_map.virt(before), 3 * PAGE)


def test_the_mitigation_and_memfd_secret_share_one_rule() -> None:
    """With the mitigation and no reservation of its own the kernel boots with secretmem=2M:
    memfd_secret works on that machine too, and both take pages from the same reservation.
    A machine too small for it is refused in one line."""
    m = machine("none", Mitigations(secretmem=True), BIG)
    proc = m.create_domain("process", "holder")
    m.alloc_page(proc, secret=True)
    late = m.create_domain("process", "late")
    file = m.memfd_secret(late)
    file.mmap(1)
    # The one chunk is the holder's: the late fault gets VM_FAULT_OOM, the OOM killer kills
    # the heavier holder (one mapped page against none), and the retried fault gets its chunk.
    file.fault(0)
    assert m.oom_kills == ["holder"] and not proc.alive
    assert m.secretmem_area is not None and m.secretmem_area.free_chunks == 0
    with pytest.raises(ConfigError, match="default secretmem=2M reservation"):
        machine("none", Mitigations(secretmem=True), 512)
    assert machine("none", pages=512).secretmem_area is None


def test_secretmem_off_keeps_secret_pages_mapped() -> None:
    m = machine("none")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc, secret=True)
    m.write(proc, pa, SECRET)
    assert kernel_read_page(m, pa) == SECRET
    assert m.direct_map_splits == 0


def test_secretmem_also_hides_page_from_keyid_direct_maps() -> None:
    m = machine("mktme", Mitigations(secretmem=True), BIG)
    g = m.create_domain("guest")
    pa = m.alloc_page(g, secret=True)
    dmap = m.keyid_direct_map(g.slot)  # created after the page went secret
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(dmap.virt(pa), LINE)
    assert m.direct_map_splits == 2  # the 1 GiB mapping, in each of the two maps


def test_removing_a_whole_aligned_pmd_splits_only_the_1g_mapping() -> None:
    """Seed (secretmem PMD pool, secretmem_pool_increase): "If a split of PUD-size page was
    required, it already happened when we marked the pages invalid": removing a whole 2 MiB
    chunk splits the 1 GiB mapping around it, not the 2 MiB one."""
    dmap = DirectMap(KeySlot(0), 2048, 0)
    dmap.unmap(Pfn(512), PMD_PAGES)
    assert (dmap.pud_split_count, dmap.pmd_split_count, dmap.split_count) == (1, 0, 1)
    with pytest.raises(PageFault, match="removed"):
        dmap.translate(512 * PAGE)
    assert dmap.translate(511 * PAGE) == 511 * PAGE
    assert dmap.translate(1024 * PAGE) == 1024 * PAGE


def test_removing_part_of_a_pmd_splits_each_one_touched() -> None:
    dmap = DirectMap(KeySlot(0), 2048, 0)
    dmap.unmap(Pfn(500), 30)  # crosses from the first PMD into the second
    assert (dmap.pud_split_count, dmap.pmd_split_count) == (1, 2)
    dmap.restore(Pfn(500), 30)
    assert dmap.translate(510 * PAGE) == 510 * PAGE
    assert dmap.split_count == 3  # split mappings stay split
    dmap.unmap(Pfn(1500), 1)  # the 1 GiB mapping is split already
    assert (dmap.pud_split_count, dmap.pmd_split_count) == (1, 3)


GIB_PAGES = (1 << 30) // PAGE  # x86-64 PUD_SIZE / PAGE_SIZE
MIB2_PAGES = (2 << 20) // PAGE  # x86-64 PMD_SIZE / PAGE_SIZE


def _expected_splits(pages: int, ranges: list[tuple[int, int]]) -> tuple[int, int]:
    """Splits re-derived page by page: a mapping of ``size`` pages is split when some but not
    all of its pages were ever removed by one request (x86 should_split_large_page: a request
    that covers a large page whole changes its entry without splitting it)."""
    split: dict[int, set[int]] = {GIB_PAGES: set(), MIB2_PAGES: set()}
    for start, count in ranges:
        removed = np.zeros(pages, dtype=bool)
        removed[start:start + count] = True
        for size in split:
            padded = np.zeros(-(-pages // size) * size, dtype=bool)
            padded[:pages] = removed
            per_mapping = padded.reshape(-1, size).sum(axis=1)
            split[size].update(np.flatnonzero((per_mapping > 0) & (per_mapping < size)).tolist())
    return len(split[GIB_PAGES]), len(split[MIB2_PAGES])


def test_splits_match_a_page_by_page_count() -> None:
    """Random removals on a map larger than 1 GiB, against the count re-derived from the page
    sizes of x86-64 (4 KiB, 2 MiB, 1 GiB)."""
    rng = np.random.default_rng(7)
    pages = 2 * GIB_PAGES + 3 * MIB2_PAGES
    dmap = DirectMap(KeySlot(0), pages, 0)
    ranges: list[tuple[int, int]] = []
    for _ in range(40):
        count = int(rng.choice([1, 7, MIB2_PAGES, 3 * MIB2_PAGES + 5]))
        start = int(rng.integers(0, pages - count))
        if rng.random() < 0.3:
            start -= start % MIB2_PAGES  # aligned chunks, as the secretmem pool removes
        ranges.append((start, count))
        dmap.unmap(Pfn(start), count)
        assert (dmap.pud_split_count, dmap.pmd_split_count) == _expected_splits(pages, ranges)


def test_removing_a_whole_aligned_1g_range_splits_nothing() -> None:
    dmap = DirectMap(KeySlot(0), 2 * GIB_PAGES, 0)
    dmap.unmap(Pfn(GIB_PAGES), GIB_PAGES)
    assert dmap.split_count == 0
    with pytest.raises(PageFault, match="removed"):
        dmap.translate(GIB_PAGES * PAGE)
    dmap.unmap(Pfn(GIB_PAGES - 1), 2)  # across the boundary of the two 1 GiB mappings
    assert (dmap.pud_split_count, dmap.pmd_split_count) == (2, 2)
