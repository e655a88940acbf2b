"""VFIO type1 IOMMU container with dirty-page tracking (the ``VFIO_IOMMU_DIRTY_PAGES`` ioctl).

Source: K. Wankhede, "[PATCH v16 Kernel 4/7] vfio iommu: Implementation of ioctl for dirty pages
tracking" (qemu-devel and kvm, March 2020), and its review thread.

What the model keeps from the source:

- A container holds DMA mappings: an IOVA range backed by the VMM's virtual address range of
  guest RAM, with READ and/or WRITE permission.
- ``START`` gives every mapping a bitmap, one bit per page of the *smallest* supported IOMMU
  page size, and sets the bits of pages already pinned. While tracking, pinning a page
  (:meth:`VfioContainer.pin_pages`) and a write through :meth:`VfioContainer.dma_write` set bits.
  A mapping created while tracking gets its bitmap at once. ``STOP`` frees the bitmaps.
- ``GET_BITMAP`` covers exactly one mapping. It copies the bitmap out, then clears it and sets
  again only the pages still pinned: reading re-arms the bitmap. A page written through
  ``dma_rw`` is reported once; a pinned page is reported at every read for as long as it stays
  pinned (the kernel cannot know what a device does to a page it holds).
- Pinned-page scope: a mediated device's vendor driver reaches guest memory only through
  ``pin_pages`` and ``dma_rw``, so the kernel sees every page it can dirty. A device behind a
  real IOMMU (passthrough) DMAs by itself; until its driver pins pages through VFIO the
  container has no pinned-page scope, and every page of an IOMMU-mapped mapping is reported
  dirty at every read (the v16 code sets all bits whenever the mapping is IOMMU-mapped; the
  thread refines this with ``pinned_page_dirty_scope``, which is what is modelled).
- Every refused argument raises :class:`~testbed.errors.InvalidArgument` (EINVAL) naming the rule
  and the value; the limits are the source's (:data:`DIRTY_BITMAP_PAGES_MAX`,
  :data:`DIRTY_BITMAP_SIZE_MAX`).

Modelling choices:

- The VMM maps guest RAM at :data:`GUEST_RAM_VADDR` + guest-physical address and uses the
  guest-physical address as IOVA (a VM without a virtual IOMMU). Frames come from the guest's
  nested page table; an address no guest page backs is an EFAULT (:class:`PageFault`).
- Only accesses VFIO sees dirty pages, as in the source: pins and ``dma_rw`` writes. The guest
  CPU's own stores are tracked by KVM's dirty log, a different mechanism that is not modelled.
  A guest that wants a device to work on a page asks for it; the vendor driver pins the page
  for the request and unpins it when done.
- ``dma_rw`` copies through the VMM's mapping, that is the host CPU
  (:meth:`~testbed.platform.Machine.hypervisor_write`): under SEV a device reads ciphertext of
  private guest pages, and under SEV-SNP writing a guest-owned page is an RMP violation (real
  guests bounce device I/O through shared pages, which the machine does not model).
- ``dma_rw`` marks every page a write touches. The v16 posting marks ``copied >> pgshift``
  pages from the first one, which marks nothing for a write shorter than a page; later
  revisions count the pages the write spans.
- Only the type1 v2 IOMMU is modelled (the source answers EACCES to v1 containers); ``argsz``
  and user-pointer checks (EFAULT, ``access_ok``) have no counterpart in a Python call; the
  limit on the number of mappings is not modelled. Refusals that are not EINVAL (EEXIST,
  EPERM) raise :class:`~testbed.errors.PlatformRefusal` with the errno in the message.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, InvalidArgument, PageFault, PlatformRefusal
from ..types import PAGE_SIZE, PMD_SIZE, PhysAddr
from .machine import Domain, DomainKind, Machine

__all__ = [
    "DEFAULT_PGSIZE_BITMAP",
    "DIRTY_BITMAP_PAGES_MAX",
    "DIRTY_BITMAP_SIZE_MAX",
    "GUEST_RAM_VADDR",
    "DeviceGroup",
    "DeviceKind",
    "DirtyFlag",
    "DmaFlag",
    "DmaMapping",
    "VfioContainer",
    "dirty_bitmap_bytes",
    "dirty_page_indexes",
    "open_guest_container",
]

U64_MAX = (1 << 64) - 1
INT_MAX = (1 << 31) - 1


def dirty_bitmap_bytes(npages: int) -> int:
    """``DIRTY_BITMAP_BYTES(n)``: bytes of a bitmap of ``npages`` bits, in whole u64 words."""
    return -(-npages // 64) * 64 // 8


DIRTY_BITMAP_PAGES_MAX = INT_MAX - 1
"""Most pages one bitmap may cover: ``bitmap_set()`` takes the bit count as a signed int."""
DIRTY_BITMAP_SIZE_MAX = dirty_bitmap_bytes(DIRTY_BITMAP_PAGES_MAX)
"""Largest bitmap buffer accepted: 2^28 bytes (256 MiB), 8 TiB of guest memory in 4 KiB pages."""
DEFAULT_PGSIZE_BITMAP = PAGE_SIZE | PMD_SIZE | (1 << 30)
"""IOMMU page sizes supported by default: 4 KiB, 2 MiB and 1 GiB."""
GUEST_RAM_VADDR = 0x7F00_0000_0000
"""Where the VMM maps guest RAM in its own address space (guest-physical 0)."""


class DmaFlag(enum.IntFlag):
    """``VFIO_DMA_MAP_FLAG_*``: what the device may do, from the device's point of view."""

    READ = 1 << 0
    WRITE = 1 << 1


class DirtyFlag(enum.IntFlag):
    """``VFIO_IOMMU_DIRTY_PAGES_FLAG_*``: the three operations of the dirty-pages ioctl."""

    START = 1 << 0
    STOP = 1 << 1
    GET_BITMAP = 1 << 2


class DeviceKind(enum.StrEnum):
    """How a device group reaches guest memory."""

    MEDIATED = "mediated"
    """Only through its vendor driver's ``pin_pages`` and ``dma_rw``: in pinned-page scope."""
    PASSTHROUGH = "passthrough"
    """By DMA through the IOMMU: out of scope until its driver pins pages through VFIO."""


@dataclass
class DeviceGroup:
    """One IOMMU group attached to the container."""

    name: str
    kind: DeviceKind
    pinned_page_dirty_scope: bool


@dataclass(eq=False)
class DmaMapping:
    """One ``vfio_dma``: ``size`` bytes at ``iova``, backed by the VMM's ``vaddr``."""

    iova: int
    vaddr: int
    size: int
    prot: DmaFlag
    iommu_mapped: bool = False
    """Pinned and mapped in a real IOMMU for a passthrough device."""
    pinned: dict[int, int] = field(default_factory=dict)
    """Pages pinned by vendor drivers (the ``pfn_list``): page index -> pin count."""
    dirty: set[int] | None = None
    """The dirty bitmap as a set of page indexes; ``None`` while tracking is off."""

    @property
    def end(self) -> int:
        """First IOVA after the mapping."""
        return self.iova + self.size

    def overlaps(self, iova: int, size: int) -> bool:
        """Whether ``[iova, iova + size)`` shares a byte with the mapping."""
        return iova < self.end and self.iova < iova + size


def dirty_page_indexes(bitmap: bytes) -> list[int]:
    """Page indexes whose bit is set in a bitmap returned by ``GET_BITMAP``.

    The bitmap is an array of little-endian u64 words, bit ``n`` standing for page ``n``.
    """
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return [int(i) for i in np.flatnonzero(bits)]


def _pack(npages: int, pages: Iterable[int] | None) -> bytes:
    """A bitmap of ``npages`` bits with ``pages`` set (``None``: every page)."""
    out = bytearray(dirty_bitmap_bytes(npages))
    if pages is None:
        full, rest = divmod(npages, 8)
        out[:full] = b"\xff" * full
        if rest:
            out[full] = (1 << rest) - 1
        return bytes(out)
    for page in pages:
        out[page >> 3] |= 1 << (page & 7)
    return bytes(out)


def _einval(rule: str) -> InvalidArgument:
    return InvalidArgument(f"EINVAL: {rule}")


class VfioContainer:
    """A VFIO container (type1 v2 IOMMU) for the devices of one guest.

    Args:
        machine: the machine whose frames back guest memory.
        guest: the guest whose RAM the mappings cover.
        pgsize_bitmap: IOMMU page sizes supported, one bit each; the smallest must be 4 KiB.

    Raises:
        ConfigError: ``guest`` is not a guest, or the page sizes are not usable.
    """

    def __init__(
        self, machine: Machine, guest: Domain, *, pgsize_bitmap: int = DEFAULT_PGSIZE_BITMAP
    ) -> None:
        if guest.kind is not DomainKind.GUEST:
            raise ConfigError(f"guest: a VFIO container maps guest RAM, got a {guest.kind.value}")
        if not 0 < pgsize_bitmap <= U64_MAX or pgsize_bitmap & -pgsize_bitmap != PAGE_SIZE:
            raise ConfigError(f"pgsize_bitmap: the smallest page size must be {PAGE_SIZE:#x}, "
                              f"got bitmap {pgsize_bitmap:#x}")
        self.machine = machine
        self.guest = guest
        self.pgsize_bitmap = pgsize_bitmap
        self.dirty_page_tracking = False
        self._maps: list[DmaMapping] = []
        self._groups: dict[str, DeviceGroup] = {}

    # -- configuration -------------------------------------------------------------------
    @property
    def pgsize(self) -> int:
        """The smallest supported IOMMU page size: the only one dirty bitmaps use."""
        return self.pgsize_bitmap & -self.pgsize_bitmap

    @property
    def mappings(self) -> tuple[DmaMapping, ...]:
        """The DMA mappings, by IOVA."""
        return tuple(sorted(self._maps, key=lambda d: d.iova))

    @property
    def pinned_page_dirty_scope(self) -> bool:
        """Whether every attached group reaches memory only through pins the kernel sees."""
        return all(g.pinned_page_dirty_scope for g in self._groups.values())

    def attach_group(self, name: str, kind: DeviceKind | str) -> DeviceGroup:
        """Attach a device group. A passthrough group IOMMU-maps (and pins) every mapping.

        Raises:
            ConfigError: a group of that name is already attached.
            PageFault: a mapping covers an address no guest page backs (EFAULT).
        """
        if name in self._groups:
            raise ConfigError(f"group {name!r} is already attached")
        kind = DeviceKind(kind)
        if kind is DeviceKind.PASSTHROUGH:
            for dma in self._maps:
                self._pin_all(dma)
        group = DeviceGroup(name, kind, pinned_page_dirty_scope=kind is DeviceKind.MEDIATED)
        self._groups[name] = group
        return group

    def _iommu_backed(self) -> bool:
        return any(g.kind is DeviceKind.PASSTHROUGH for g in self._groups.values())

    def _pin_all(self, dma: DmaMapping) -> None:
        for offset in range(0, dma.size, PAGE_SIZE):
            self._frame(dma, dma.iova + offset)
        dma.iommu_mapped = True

    # -- mappings ------------------------------------------------------------------------
    def map_dma(
        self, iova: int, size: int, *, vaddr: int | None = None,
        flags: int = DmaFlag.READ | DmaFlag.WRITE,
    ) -> DmaMapping:
        """``VFIO_IOMMU_MAP_DMA``: let the devices reach ``size`` bytes at ``iova``.

        Args:
            iova: device address (default backing: guest-physical address ``iova``).
            size: bytes, a multiple of the smallest page size.
            vaddr: the VMM's virtual address backing the range.
            flags: :class:`DmaFlag` bits; at least one.

        Raises:
            InvalidArgument: a rule of the source is broken (the message names it).
            PlatformRefusal: EEXIST, the range overlaps an existing mapping.
            PageFault: a passthrough device is attached and a page is not backed (EFAULT).
        """
        vaddr = GUEST_RAM_VADDR + iova if vaddr is None else vaddr
        for name, value in (("iova", iova), ("size", size), ("vaddr", vaddr)):
            if not 0 <= value <= U64_MAX:
                raise _einval(f"map: {name} {value:#x} does not fit in a u64")
        if flags & ~int(DmaFlag.READ | DmaFlag.WRITE):
            raise _einval(f"map: unknown flag bits in {flags:#x}")
        if not flags:
            raise _einval("map: flags must allow READ or WRITE, got 0")
        if not size:
            raise _einval("map: size must be non-zero, got 0")
        mask = self.pgsize - 1
        for name, value in (("size", size), ("iova", iova), ("vaddr", vaddr)):
            if value & mask:
                raise _einval(f"map: {name} {value:#x} is not aligned to the page size "
                              f"{self.pgsize:#x}")
        for name, value in (("iova", iova), ("vaddr", vaddr)):
            if value + size - 1 > U64_MAX:
                raise _einval(f"map: {name} {value:#x} + size {size:#x} wraps around")
        for dma in self._maps:
            if dma.overlaps(iova, size):
                raise PlatformRefusal(f"EEXIST: map: [{iova:#x}, {iova + size:#x}) overlaps the "
                                      f"mapping at {dma.iova:#x}")
        dma = DmaMapping(iova, vaddr, size, DmaFlag(flags))
        if self._iommu_backed():
            self._pin_all(dma)
        if self.dirty_page_tracking:
            self._check_bitmap_pages(dma)
            dma.dirty = set()
        self._maps.append(dma)
        return dma

    def unmap_dma(self, iova: int, size: int) -> int:
        """``VFIO_IOMMU_UNMAP_DMA``: remove every mapping inside the range; returns bytes removed.

        Vendor drivers are told and drop their pins; a mapping's dirty bitmap goes with it.

        Raises:
            InvalidArgument: unaligned or empty range, wrap-around, or a range that would cut a
                mapping in two (type1 v2 unmaps whole mappings only).
        """
        mask = self.pgsize - 1
        if iova & mask:
            raise _einval(f"unmap: iova {iova:#x} is not aligned to the page size {self.pgsize:#x}")
        if not size or size & mask:
            raise _einval(f"unmap: size must be a non-zero multiple of {self.pgsize:#x}, "
                          f"got {size:#x}")
        if not 0 <= iova <= U64_MAX or iova + size - 1 > U64_MAX:
            raise _einval(f"unmap: iova {iova:#x} + size {size:#x} wraps around")
        hit = [dma for dma in self._maps if dma.overlaps(iova, size)]
        for dma in hit:
            if dma.iova < iova or dma.end > iova + size:
                raise _einval(f"unmap: [{iova:#x}, {iova + size:#x}) would cut the mapping "
                              f"[{dma.iova:#x}, {dma.end:#x})")
        for dma in hit:
            self._maps.remove(dma)
        return sum(dma.size for dma in hit)

    def _find(self, iova: int, length: int = 1) -> DmaMapping | None:
        return next((dma for dma in self._maps if dma.overlaps(iova, length)), None)

    def _frame(self, dma: DmaMapping, iova: int) -> PhysAddr:
        """Physical address behind ``iova`` (inside ``dma``)."""
        vaddr = dma.vaddr + (iova - dma.iova)
        gpa = vaddr - GUEST_RAM_VADDR
        gpn = gpa // PAGE_SIZE
        if gpa < 0 or gpn not in self.guest.npt:
            raise PageFault(f"EFAULT: vaddr {vaddr:#x} (iova {iova:#x}) is not backed by a page "
                            f"of {self.guest.name}")
        return PhysAddr(self.guest.npt[gpn] * PAGE_SIZE + gpa % PAGE_SIZE)

    # -- vendor-driver interface ---------------------------------------------------------
    def pin_pages(
        self, group: str, iovas: Sequence[int], prot: int = DmaFlag.READ | DmaFlag.WRITE
    ) -> list[int]:
        """``vfio_pin_pages``: a vendor driver pins pages for its device; returns their frames.

        While tracking, every page pinned is marked dirty. A passthrough group that pins
        through this interface enters the pinned-page scope.

        Raises:
            InvalidArgument: unknown group, no page, an unaligned or unmapped IOVA.
            PlatformRefusal: EPERM, the mapping does not allow ``prot``.
            PageFault: the page is not backed (EFAULT).
        """
        if group not in self._groups:
            raise _einval(f"pin: group {group!r} is not attached to the container")
        if not iovas:
            raise _einval("pin: at least one page, got 0")
        done: list[tuple[DmaMapping, int]] = []
        frames: list[int] = []
        try:
            for iova in iovas:
                dma, page = self._pin_one(iova, prot)
                done.append((dma, page))
                frames.append(self._frame(dma, iova) // PAGE_SIZE)
        except PlatformRefusal:
            for dma, page in done:
                self._unpin_one(dma, page)
            raise
        found = self._groups[group]
        found.pinned_page_dirty_scope = True
        return frames

    def _pin_one(self, iova: int, prot: int) -> tuple[DmaMapping, int]:
        if iova % PAGE_SIZE:
            raise _einval(f"pin: iova {iova:#x} is not page-aligned")
        dma = self._find(iova)
        if dma is None:
            raise _einval(f"pin: no DMA mapping covers iova {iova:#x}")
        if (dma.prot & prot) != prot:
            raise PlatformRefusal(f"EPERM: pin: the mapping at {dma.iova:#x} does not allow "
                                  f"{DmaFlag(prot)!r}")
        self._frame(dma, iova)
        page = (iova - dma.iova) // self.pgsize
        dma.pinned[page] = dma.pinned.get(page, 0) + 1
        if dma.dirty is not None:
            dma.dirty.add(page)
        return dma, page

    @staticmethod
    def _unpin_one(dma: DmaMapping, page: int) -> None:
        count = dma.pinned.get(page, 0)
        if count > 1:
            dma.pinned[page] = count - 1
        else:
            dma.pinned.pop(page, None)

    def unpin_pages(self, group: str, iovas: Sequence[int]) -> None:
        """``vfio_unpin_pages``: drop one pin of each page (pages not pinned are ignored).

        Raises:
            InvalidArgument: unknown group, no page, or an unmapped IOVA.
        """
        if group not in self._groups:
            raise _einval(f"unpin: group {group!r} is not attached to the container")
        if not iovas:
            raise _einval("unpin: at least one page, got 0")
        for iova in iovas:
            dma = self._find(iova)
            if dma is None:
                raise _einval(f"unpin: no DMA mapping covers iova {iova:#x}")
            self._unpin_one(dma, (iova - dma.iova) // self.pgsize)

    def dma_write(self, iova: int, data: bytes) -> None:
        """``vfio_dma_rw`` (write): the vendor driver copies ``data`` into guest memory.

        While tracking, every page the write touches is marked dirty.

        Raises:
            InvalidArgument: empty data, or a range no mapping covers.
            PlatformRefusal: EPERM without WRITE; an RMP violation under SEV-SNP.
            PageFault: a page is not backed (EFAULT).
        """
        for dma, at, chunk in self._chunks(iova, len(data), DmaFlag.WRITE):
            self.machine.hypervisor_write(self._frame(dma, at), data[chunk])
            if dma.dirty is not None:
                first = (at - dma.iova) // self.pgsize
                last = (at + len(data[chunk]) - 1 - dma.iova) // self.pgsize
                dma.dirty.update(range(first, last + 1))

    def dma_read(self, iova: int, length: int) -> bytes:
        """``vfio_dma_rw`` (read): the vendor driver copies guest memory out (no dirty bit).

        Raises:
            InvalidArgument: zero length, or a range no mapping covers.
            PlatformRefusal: EPERM without READ.
            PageFault: a page is not backed (EFAULT).
        """
        return b"".join(self.machine.hypervisor_read(self._frame(dma, at), chunk.stop - chunk.start)
                        for dma, at, chunk in self._chunks(iova, length, DmaFlag.READ))

    def _chunks(self, iova: int, length: int, need: DmaFlag) -> list[tuple[DmaMapping, int, slice]]:
        """Split an access at mapping and page boundaries: (mapping, iova, slice of the data)."""
        if length <= 0:
            raise _einval(f"dma_rw: length must be positive, got {length}")
        out: list[tuple[DmaMapping, int, slice]] = []
        at, end = iova, iova + length
        while at < end:
            dma = self._find(at)
            if dma is None:
                raise _einval(f"dma_rw: no DMA mapping covers iova {at:#x}")
            if not dma.prot & need:
                raise PlatformRefusal(f"EPERM: dma_rw: the mapping at {dma.iova:#x} does not "
                                      f"allow {need.name}")
            stop = min(end, dma.end, (at // PAGE_SIZE + 1) * PAGE_SIZE)
            out.append((dma, at, slice(at - iova, stop - iova)))
            at = stop
        return out

    # -- dirty-page tracking ---------------------------------------------------------------
    def dirty_pages(
        self, flags: int, *, iova: int = 0, size: int = 0, pgsize: int = 0, bitmap_size: int = 0
    ) -> bytes | None:
        """``VFIO_IOMMU_DIRTY_PAGES``: start, stop, or get the bitmap of one mapping.

        Args:
            flags: exactly one :class:`DirtyFlag`.
            iova: GET_BITMAP: start of the mapping.
            size: GET_BITMAP: size of the mapping.
            pgsize: GET_BITMAP: page size of the bitmap; must be the smallest supported.
            bitmap_size: GET_BITMAP: bytes of the caller's buffer.

        Returns:
            GET_BITMAP: the bitmap (:func:`dirty_bitmap_bytes` bytes); otherwise ``None``.

        Raises:
            InvalidArgument: a rule of the source is broken (the message names it).
        """
        valid = DirtyFlag.START | DirtyFlag.STOP | DirtyFlag.GET_BITMAP
        if flags & ~int(valid):
            raise _einval(f"dirty pages: unknown flag bits in {flags:#x}")
        if not flags or flags & (flags - 1):
            raise _einval(f"dirty pages: exactly one flag at a time, got flags={flags:#x}")
        if flags == DirtyFlag.START:
            self._start()
            return None
        if flags == DirtyFlag.STOP:
            self.dirty_page_tracking = False
            for dma in self._maps:
                dma.dirty = None
            return None
        return self._get_bitmap(iova, size, pgsize, bitmap_size)

    def start_dirty_tracking(self) -> None:
        """``START``; nothing happens when tracking is already on."""
        self.dirty_pages(DirtyFlag.START)

    def stop_dirty_tracking(self) -> None:
        """``STOP``: forget every bitmap; nothing happens when tracking is off."""
        self.dirty_pages(DirtyFlag.STOP)

    def get_dirty_bitmap(
        self, iova: int, size: int, *, pgsize: int | None = None, bitmap_size: int | None = None
    ) -> bytes:
        """``GET_BITMAP`` for the mapping ``[iova, iova + size)``; reading re-arms the bitmap.

        ``pgsize`` defaults to the smallest supported page size and ``bitmap_size`` to the
        bytes the range needs.

        Raises:
            InvalidArgument: a rule of the source is broken (the message names it).
        """
        pgsize = self.pgsize if pgsize is None else pgsize
        if bitmap_size is None:
            bitmap_size = dirty_bitmap_bytes(size // pgsize) if pgsize > 0 else 0
        return self._get_bitmap(iova, size, pgsize, bitmap_size)

    def _check_bitmap_pages(self, dma: DmaMapping) -> None:
        npages = dma.size // self.pgsize
        if npages > DIRTY_BITMAP_PAGES_MAX:
            raise _einval(f"dirty bitmap: a mapping of {npages} pages exceeds "
                          f"DIRTY_BITMAP_PAGES_MAX ({DIRTY_BITMAP_PAGES_MAX})")

    def _start(self) -> None:
        if self.dirty_page_tracking:
            return
        for dma in self._maps:  # all bitmaps or none
            self._check_bitmap_pages(dma)
        for dma in self._maps:
            dma.dirty = set(dma.pinned)
        self.dirty_page_tracking = True

    def _get_bitmap(self, iova: int, size: int, pgsize: int, bitmap_size: int) -> bytes:
        for name, value in (("iova", iova), ("size", size), ("pgsize", pgsize),
                            ("bitmap size", bitmap_size)):
            if not 0 <= value <= U64_MAX:
                raise _einval(f"get bitmap: {name} {value:#x} does not fit in a u64")
        if pgsize != self.pgsize:
            raise _einval(f"get bitmap: page size must be the smallest supported "
                          f"({self.pgsize:#x}), got {pgsize:#x}")
        mask = self.pgsize - 1
        if iova & mask:
            raise _einval(f"get bitmap: iova {iova:#x} is not aligned to the page size "
                          f"{self.pgsize:#x}")
        if not size:
            raise _einval("get bitmap: size must be non-zero, got 0")
        if size & mask:
            raise _einval(f"get bitmap: size {size:#x} is not aligned to the page size "
                          f"{self.pgsize:#x}")
        if iova + size > U64_MAX:
            raise _einval(f"get bitmap: iova {iova:#x} + size {size:#x} wraps around")
        npages = size // pgsize
        if not bitmap_size:
            raise _einval("get bitmap: bitmap size must be non-zero, got 0")
        if bitmap_size > DIRTY_BITMAP_SIZE_MAX:
            raise _einval(f"get bitmap: bitmap size {bitmap_size} bytes exceeds "
                          f"DIRTY_BITMAP_SIZE_MAX ({DIRTY_BITMAP_SIZE_MAX} bytes)")
        if bitmap_size < dirty_bitmap_bytes(npages):
            raise _einval(f"get bitmap: bitmap size {bitmap_size} bytes is too small for "
                          f"{npages} pages (needs {dirty_bitmap_bytes(npages)})")
        if not self.dirty_page_tracking:
            raise _einval("get bitmap: dirty-page tracking is not started")
        dma = self._find(iova)
        if dma is None:
            raise _einval(f"get bitmap: no DMA mapping at iova {iova:#x}")
        if dma.iova != iova or dma.size != size:
            raise _einval(f"get bitmap: [{iova:#x}, {iova + size:#x}) is not exactly the mapping "
                          f"[{dma.iova:#x}, {dma.end:#x})")
        all_dirty = dma.iommu_mapped and not self.pinned_page_dirty_scope
        bitmap = _pack(npages, None if all_dirty else (dma.dirty or ()))
        dma.dirty = set(dma.pinned)  # clear, then re-populate with the pages still pinned
        return bitmap


def open_guest_container(machine: Machine, guest: Domain, mdev: str = "mdev") -> VfioContainer:
    """The VMM's container for ``guest``, with one mediated device group named ``mdev``.

    With the ``dirty_all_pages`` mitigation a passthrough group (``assigned``) is attached as
    well: a device the kernel cannot watch, so the container has no pinned-page scope and every
    IOMMU-mapped page reads dirty.
    """
    container = VfioContainer(machine, guest)
    container.attach_group(mdev, DeviceKind.MEDIATED)
    if machine.mitigations.dirty_all_pages:
        container.attach_group("assigned", DeviceKind.PASSTHROUGH)
    return container
