"""Direct maps: kernel reads through them, pages removed from them (secretmem), PMD splits."""

from __future__ import annotations

import pytest
from _support.machines import LINE, PAGE, SECRET, kernel_read_page, machine

from testbed.errors import PageFault
from testbed.platform import DirectMap, Mitigations
from testbed.platform.mm.secretmem import PMD_PAGES
from testbed.types import KeySlot, Pfn


def test_kernel_read_outside_direct_maps_faults() -> None:
    m = machine("none")
    with pytest.raises(PageFault, match="not a kernel direct-map address"):
        m.kernel_read(0x1000, 8)
    with pytest.raises(PageFault, match="not in the direct map"):
        m.kernel_read(m.direct_map.virt(64 * PAGE - 4), 8)


@pytest.mark.parametrize("engine", ["none", "tme"])
def test_secretmem_unmaps_from_direct_map(engine: str) -> None:
    m = machine(engine, Mitigations(secretmem=True))
    proc = m.create_domain("process")
    plain_pa = m.alloc_page(proc)
    pa = m.alloc_page(proc, secret=True)
    m.write(proc, pa, SECRET)
    assert m.direct_map_splits == 1
    with pytest.raises(PageFault, match="removed from the direct map"):
        kernel_read_page(m, pa)
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(m.direct_map.virt(pa - 8), 16)  # range ends inside the secret page
    m.write(proc, plain_pa, SECRET)
    assert kernel_read_page(m, plain_pa) == SECRET  # an ordinary page stays readable
    assert m.read(proc, pa, PAGE) == SECRET  # the owner still has it
    m.free_page(proc, pa)
    assert kernel_read_page(m, pa) == bytes(PAGE)
    assert m.direct_map_splits == 1  # the split mapping stays split


def test_secretmem_page_inside_a_long_kernel_read_faults() -> None:
    m = machine("none", Mitigations(secretmem=True))
    proc = m.create_domain("process")
    before = m.alloc_page(proc)
    secret_pa = m.alloc_page(proc, secret=True)
    m.alloc_page(proc)
    assert secret_pa == before + PAGE
    m.write(proc, secret_pa, SECRET)
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(m.direct_map.virt(before), 3 * PAGE)


def test_secretmem_off_keeps_secret_pages_mapped() -> None:
    m = machine("none")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc, secret=True)
    m.write(proc, pa, SECRET)
    assert kernel_read_page(m, pa) == SECRET
    assert m.direct_map_splits == 0


def test_secretmem_also_hides_page_from_keyid_direct_maps() -> None:
    m = machine("mktme", Mitigations(secretmem=True))
    g = m.create_domain("guest")
    pa = m.alloc_page(g, secret=True)
    dmap = m.keyid_direct_map(g.slot)  # created after the page went secret
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(dmap.virt(pa), LINE)
    assert m.direct_map_splits == 2


def test_removing_a_whole_aligned_pmd_splits_nothing() -> None:
    dmap = DirectMap(KeySlot(0), 2048, 0)
    dmap.unmap(Pfn(512), PMD_PAGES)
    assert dmap.split_count == 0
    with pytest.raises(PageFault, match="removed"):
        dmap.translate(512 * PAGE)
    assert dmap.translate(511 * PAGE) == 511 * PAGE
    assert dmap.translate(1024 * PAGE) == 1024 * PAGE


def test_removing_part_of_a_pmd_splits_each_one_touched() -> None:
    dmap = DirectMap(KeySlot(0), 2048, 0)
    dmap.unmap(Pfn(500), 30)  # crosses from the first PMD into the second
    assert dmap.split_count == 2
    dmap.restore(Pfn(500), 30)
    assert dmap.translate(510 * PAGE) == 510 * PAGE
    assert dmap.split_count == 2  # split mappings stay split
