"""VFIO dirty-page tracking: every validation rule of the source and the dirty semantics
(the leak that uses them: tests/attacks/test_dirty_page_leak.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from testbed.errors import InvalidArgument, PageFault, PlatformRefusal, RmpViolation
from testbed.platform import Domain, KeySource, Machine, Mitigations, make_engine
from testbed.platform.vfio import (
    DIRTY_BITMAP_PAGES_MAX,
    DIRTY_BITMAP_SIZE_MAX,
    DeviceKind,
    DirtyFlag,
    DmaFlag,
    VfioContainer,
    dirty_bitmap_bytes,
    dirty_page_indexes,
    open_guest_container,
)

PAGE = 4096
PAGES = 8
TOP = 1 << 64
ENGINES = ["none", "tme", "mktme", "sev", "sev-snp"]


def guest_machine(
    engine: str = "none", pages: int = PAGES, mitigations: Mitigations | None = None
) -> tuple[Machine, Domain]:
    m = Machine(make_engine(engine, KeySource(np.random.default_rng(5))), 64, mitigations)
    guest = m.create_domain("guest", "g")
    for _ in range(pages):
        m.alloc_page(guest)
    return m, guest


def container(engine: str = "none", *, tracking: bool = True) -> VfioContainer:
    """A container with one mediated group and all guest RAM mapped at IOVA 0."""
    m, guest = guest_machine(engine)
    c = VfioContainer(m, guest)
    c.attach_group("mdev", DeviceKind.MEDIATED)
    c.map_dma(0, PAGES * PAGE)
    if tracking:
        c.start_dirty_tracking()
    return c


def dirty(c: VfioContainer, iova: int = 0, size: int = PAGES * PAGE) -> list[int]:
    return dirty_page_indexes(c.get_dirty_bitmap(iova, size))


# -- the source's constants ---------------------------------------------------------------

def test_constants_follow_the_source() -> None:
    assert DIRTY_BITMAP_PAGES_MAX == 2**31 - 2  # INT_MAX - 1
    assert DIRTY_BITMAP_SIZE_MAX == 2**28  # 256 MiB: 2^31 bits, 8 TiB of 4 KiB pages
    assert [dirty_bitmap_bytes(n) for n in (1, 64, 65, 128)] == [8, 8, 16, 16]
    assert dirty_page_indexes(bytes([0b101, 0, 0, 0, 0, 0, 0, 0x80])) == [0, 2, 63]


# -- every rule, one failing input each ----------------------------------------------------

def _top_mapping(c: VfioContainer) -> VfioContainer:
    # A mapping ending exactly at 2^64 is legal (map checks iova + size - 1) ...
    c.map_dma(TOP - PAGE, PAGE, vaddr=0x1000)
    return c


GET_BITMAP_RULES: list[tuple[str, Callable[[VfioContainer], object], str]] = [
    ("two flags", lambda c: c.dirty_pages(DirtyFlag.START | DirtyFlag.STOP), "one flag"),
    ("no flag", lambda c: c.dirty_pages(0), "one flag"),
    ("unknown flag", lambda c: c.dirty_pages(1 << 3), "unknown flag"),
    ("pgsize not smallest", lambda c: c.get_dirty_bitmap(0, PAGES * PAGE, pgsize=2 << 20),
     "smallest supported"),
    ("iova unaligned", lambda c: c.get_dirty_bitmap(0x800, PAGE), "iova 0x800 is not aligned"),
    ("size zero", lambda c: c.get_dirty_bitmap(0, 0, bitmap_size=8), "size must be non-zero"),
    ("size unaligned", lambda c: c.get_dirty_bitmap(0, PAGE + 1, bitmap_size=8),
     "size 0x1001 is not aligned"),
    ("wrap-around", lambda c: _top_mapping(c).get_dirty_bitmap(TOP - PAGE, PAGE),
     "wraps around"),
    ("u64 overflow", lambda c: c.get_dirty_bitmap(-PAGE, PAGE), "u64"),
    ("bitmap size zero", lambda c: c.get_dirty_bitmap(0, PAGES * PAGE, bitmap_size=0),
     "bitmap size must be non-zero"),
    ("bitmap over the maximum",
     lambda c: c.get_dirty_bitmap(0, PAGES * PAGE, bitmap_size=DIRTY_BITMAP_SIZE_MAX + 1),
     "DIRTY_BITMAP_SIZE_MAX"),
    ("bitmap too small", lambda c: (c.map_dma(1 << 30, 65 * PAGE),
                                    c.get_dirty_bitmap(1 << 30, 65 * PAGE, bitmap_size=8)),
     "too small"),
    ("no mapping there", lambda c: c.get_dirty_bitmap(1 << 30, PAGE), "no DMA mapping"),
    ("not the whole mapping", lambda c: c.get_dirty_bitmap(0, PAGE), "not exactly the mapping"),
    ("part past the mapping", lambda c: c.get_dirty_bitmap(PAGE, PAGES * PAGE),
     "not exactly the mapping"),
]


@pytest.mark.parametrize(("call", "word"), [(r[1], r[2]) for r in GET_BITMAP_RULES],
                         ids=[r[0] for r in GET_BITMAP_RULES])
def test_dirty_pages_rule(call: Callable[[VfioContainer], object], word: str) -> None:
    c = container()
    with pytest.raises(InvalidArgument, match=word):
        call(c)


def test_get_bitmap_only_while_tracking() -> None:
    c = container(tracking=False)
    with pytest.raises(InvalidArgument, match="not started"):
        c.get_dirty_bitmap(0, PAGES * PAGE)
    c.start_dirty_tracking()
    c.stop_dirty_tracking()
    with pytest.raises(InvalidArgument, match="not started"):
        c.get_dirty_bitmap(0, PAGES * PAGE)


def test_bitmap_size_limits_are_inclusive() -> None:
    c = container()
    exact = dirty_bitmap_bytes(PAGES)
    assert len(c.get_dirty_bitmap(0, PAGES * PAGE, bitmap_size=exact)) == exact
    # A larger buffer is fine up to the maximum; the kernel writes only what the range needs.
    assert len(c.get_dirty_bitmap(0, PAGES * PAGE, bitmap_size=DIRTY_BITMAP_SIZE_MAX)) == exact


def test_pgsize_must_be_supported_even_if_larger() -> None:
    c = container()
    assert c.pgsize == PAGE and c.pgsize_bitmap & (2 << 20)
    with pytest.raises(InvalidArgument, match="0x200000"):
        c.get_dirty_bitmap(0, PAGES * PAGE, pgsize=2 << 20, bitmap_size=8)


HUGE = (DIRTY_BITMAP_PAGES_MAX + 1) * PAGE  # one page over the limit: 8 TiB


def test_start_refuses_a_mapping_over_the_page_limit() -> None:
    c = container(tracking=False)
    c.map_dma(1 << 44, HUGE)  # a mediated-only container pins nothing at map time
    with pytest.raises(InvalidArgument, match="DIRTY_BITMAP_PAGES_MAX"):
        c.start_dirty_tracking()
    assert not c.dirty_page_tracking
    c.unmap_dma(1 << 44, HUGE)
    c.start_dirty_tracking()
    assert c.dirty_page_tracking


def test_map_while_tracking_refuses_a_mapping_over_the_page_limit() -> None:
    c = container()
    with pytest.raises(InvalidArgument, match="DIRTY_BITMAP_PAGES_MAX"):
        c.map_dma(1 << 44, HUGE)
    assert len(c.mappings) == 1  # the refused mapping is removed again
    c.map_dma(1 << 44, HUGE - PAGE)  # exactly DIRTY_BITMAP_PAGES_MAX pages is accepted


MAP_RULES: list[tuple[str, dict[str, int], str]] = [
    ("no permission", {"iova": 1 << 30, "size": PAGE, "flags": 0}, "READ or WRITE"),
    ("unknown flag", {"iova": 1 << 30, "size": PAGE, "flags": 1 << 2}, "unknown flag"),
    ("size zero", {"iova": 1 << 30, "size": 0}, "size must be non-zero"),
    ("size unaligned", {"iova": 1 << 30, "size": PAGE + 8}, "size 0x1008 is not aligned"),
    ("iova unaligned", {"iova": (1 << 30) + 8, "size": PAGE}, "iova 0x40000008 is not aligned"),
    ("vaddr unaligned", {"iova": 1 << 30, "size": PAGE, "vaddr": 0x1008}, "vaddr 0x1008 is not"),
    ("iova wraps", {"iova": TOP - PAGE, "size": 2 * PAGE, "vaddr": 0}, "iova .* wraps around"),
    ("vaddr wraps", {"iova": 1 << 30, "size": 2 * PAGE, "vaddr": TOP - PAGE},
     "vaddr .* wraps around"),
    ("u64 overflow", {"iova": TOP, "size": PAGE, "vaddr": 0}, "u64"),
]


@pytest.mark.parametrize(("args", "word"), [(r[1], r[2]) for r in MAP_RULES],
                         ids=[r[0] for r in MAP_RULES])
def test_map_rule(args: dict[str, int], word: str) -> None:
    c = container()
    with pytest.raises(InvalidArgument, match=word):
        c.map_dma(**args)


def test_map_overlap_is_eexist_not_einval() -> None:
    c = container()
    with pytest.raises(PlatformRefusal, match="EEXIST") as info:
        c.map_dma(PAGE, PAGE)
    assert not isinstance(info.value, InvalidArgument)


def test_unmap_rules_and_whole_mappings() -> None:
    c = container()
    with pytest.raises(InvalidArgument, match="cut the mapping"):
        c.unmap_dma(0, PAGE)
    with pytest.raises(InvalidArgument, match="not aligned"):
        c.unmap_dma(8, PAGE)
    with pytest.raises(InvalidArgument, match="non-zero"):
        c.unmap_dma(0, 0)
    assert c.unmap_dma(0, 1 << 30) == PAGES * PAGE
    assert c.mappings == ()
    with pytest.raises(InvalidArgument, match="no DMA mapping"):
        c.get_dirty_bitmap(0, PAGES * PAGE)


PIN_RULES: list[tuple[str, Callable[[VfioContainer], object], str]] = [
    ("unknown group", lambda c: c.pin_pages("gpu", [0]), "not attached"),
    ("no page", lambda c: c.pin_pages("mdev", []), "at least one page"),
    ("unaligned", lambda c: c.pin_pages("mdev", [8]), "not page-aligned"),
    ("unmapped", lambda c: c.pin_pages("mdev", [1 << 30]), "no DMA mapping"),
    ("dma_rw unmapped", lambda c: c.dma_write(1 << 30, b"x"), "no DMA mapping"),
    ("dma_rw empty", lambda c: c.dma_write(0, b""), "length must be positive"),
]


@pytest.mark.parametrize(("call", "word"), [(r[1], r[2]) for r in PIN_RULES],
                         ids=[r[0] for r in PIN_RULES])
def test_vendor_driver_rule(call: Callable[[VfioContainer], object], word: str) -> None:
    with pytest.raises(InvalidArgument, match=word):
        call(container())


def test_permissions_are_eperm() -> None:
    c = container()
    c.map_dma(PAGES * PAGE, PAGE, flags=DmaFlag.READ)
    with pytest.raises(PlatformRefusal, match="EPERM"):
        c.pin_pages("mdev", [PAGES * PAGE], DmaFlag.WRITE)
    with pytest.raises(PlatformRefusal, match="EPERM"):
        c.dma_write(PAGES * PAGE, b"x")


def test_unbacked_page_is_efault_and_a_failed_pin_unwinds() -> None:
    c = container()
    c.map_dma(1 << 30, PAGE)  # no guest page behind it
    with pytest.raises(PageFault, match="EFAULT"):
        c.pin_pages("mdev", [PAGE, 1 << 30])
    assert c.mappings[0].pinned == {}  # the first page's pin was undone


# -- dirty semantics ------------------------------------------------------------------------

def test_dma_write_marks_every_page_it_touches_and_a_read_rearms() -> None:
    c = container()
    c.dma_write(3 * PAGE + 10, b"x")  # shorter than a page: still marks its page
    c.dma_write(5 * PAGE - 2, b"abcd")  # crosses into the next page
    assert dirty(c) == [3, 4, 5]
    assert dirty(c) == []  # reading cleared it
    assert c.machine.guest_read(c.guest, 3 * PAGE + 10, 1) == b"x"


def test_dma_read_and_writes_before_start_do_not_count() -> None:
    c = container(tracking=False)
    c.dma_write(PAGE, b"before")
    c.start_dirty_tracking()
    assert c.dma_read(PAGE, 6) == b"before"
    assert dirty(c) == []


def test_pinned_pages_stay_dirty_until_unpinned() -> None:
    c = container()
    c.pin_pages("mdev", [2 * PAGE])
    assert dirty(c) == [2]
    assert dirty(c) == [2]  # re-populated from the pinned pages at every read
    c.unpin_pages("mdev", [2 * PAGE])
    assert dirty(c) == [2]  # it was pinned during this interval too: reported once more
    assert dirty(c) == []


def test_pin_and_unpin_within_an_interval_is_seen_once() -> None:
    c = container()
    c.pin_pages("mdev", [6 * PAGE])
    c.unpin_pages("mdev", [6 * PAGE])
    assert dirty(c) == [6]
    assert dirty(c) == []


def test_start_populates_pages_already_pinned() -> None:
    c = container(tracking=False)
    c.pin_pages("mdev", [PAGE, 7 * PAGE])
    c.start_dirty_tracking()
    assert dirty(c) == [1, 7]


def test_stop_forgets_and_restart_is_clean() -> None:
    c = container()
    c.dma_write(0, b"x")
    c.stop_dirty_tracking()
    c.start_dirty_tracking()
    assert dirty(c) == []


def test_unmap_drops_pins_and_bitmap() -> None:
    c = container()
    c.pin_pages("mdev", [PAGE])
    c.unmap_dma(0, PAGES * PAGE)
    c.map_dma(0, PAGES * PAGE)
    assert dirty(c) == []


def test_no_pinned_page_scope_reports_every_mapped_page() -> None:
    c = container()
    c.attach_group("nic", DeviceKind.PASSTHROUGH)
    assert not c.pinned_page_dirty_scope and c.mappings[0].iommu_mapped
    assert c.get_dirty_bitmap(0, PAGES * PAGE) == b"\xff" + bytes(7)  # 8 pages, no bit beyond
    assert dirty(c) == list(range(PAGES))  # at every read, with nothing touched
    c.pin_pages("nic", [PAGE])  # its driver pins through VFIO: the scope is back
    assert c.pinned_page_dirty_scope
    assert dirty(c) == [1]


def test_passthrough_needs_every_page_backed() -> None:
    c = container()
    c.map_dma(1 << 30, PAGE)
    with pytest.raises(PageFault, match="EFAULT"):
        c.attach_group("nic", DeviceKind.PASSTHROUGH)


@pytest.mark.parametrize(("all_dirty", "scope"), [(False, True), (True, False)])
def test_guest_container_follows_the_mitigation(all_dirty: bool, scope: bool) -> None:
    m, guest = guest_machine(mitigations=Mitigations(dirty_all_pages=all_dirty))
    c = open_guest_container(m, guest)
    c.map_dma(0, PAGES * PAGE)
    c.start_dirty_tracking()
    assert c.pinned_page_dirty_scope is scope
    assert len(dirty(c)) == (PAGES if all_dirty else 0)


def test_device_sees_ciphertext_under_sev_and_cannot_write_under_snp() -> None:
    c = container("sev")
    c.machine.guest_write(c.guest, PAGE, b"guest-private!")
    assert c.dma_read(PAGE, 14) != b"guest-private!"
    snp = container("sev-snp")
    with pytest.raises(RmpViolation, match="owned by ASID 1"):
        snp.dma_write(PAGE, b"x")




