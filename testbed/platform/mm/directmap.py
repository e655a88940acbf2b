"""Kernel direct maps: every physical page mapped at ``base + pa``, with 2 MiB mappings.

The KeyID-0 direct map covers all memory and is what kernel data structures (and kernel read
bugs) use. MKTME adds one direct map per KeyID. Removing a 4 KiB page (secretmem) splits the 2 MiB
mapping that covers it, which is counted: direct-map fragmentation. Removing a whole, aligned
2 MiB range (the secretmem PMD pool) clears the 2 MiB entry itself and splits nothing, as the
kernel's change_page_attr does when a request covers a whole large page. (Linux maps most memory
with 1 GiB pages, which the pool may still split; this model starts at 2 MiB.)
"""

from __future__ import annotations

from ...errors import PageFault
from ...types import PAGE_SIZE, PMD_SIZE, KeySlot, Pfn, PhysAddr

__all__ = ["DIRECT_MAP_BASE", "DIRECT_MAP_STRIDE", "DirectMap"]

DIRECT_MAP_BASE = 0xFFFF_8880_0000_0000
"""Where x86-64 Linux places the direct map (page_offset_base without KASLR)."""
DIRECT_MAP_STRIDE = 1 << 40
"""Distance between the per-KeyID direct maps in this model."""
_PAGES_PER_PMD = PMD_SIZE // PAGE_SIZE


class DirectMap:
    """One kernel direct map, whose accesses carry one key slot (KeyID).

    Args:
        key_slot: the KeyID every access through this map uses.
        pages: frames covered.
        base: virtual address of frame 0.
    """

    def __init__(self, key_slot: KeySlot, pages: int, base: int) -> None:
        self.key_slot = key_slot
        self.pages = pages
        self.base = base
        self._unmapped: set[int] = set()
        """Frames removed from the map."""
        self._split: set[int] = set()

    def virt(self, pa: int) -> int:
        """Kernel virtual address of physical address ``pa`` in this map."""
        return self.base + pa

    def translate(self, va: int) -> PhysAddr:
        """Physical address behind ``va``.

        Raises:
            PageFault: ``va`` is outside the map or its page was removed from it.
        """
        pa = va - self.base
        pfn = pa // PAGE_SIZE
        if pa < 0 or pfn >= self.pages:
            raise PageFault(f"page fault: {va:#x} is not in the direct map (KeyID {self.key_slot})")
        if pfn in self._unmapped:
            raise PageFault(
                f"page fault: {va:#x} (frame {pfn}) was removed from the direct map "
                f"(KeyID {self.key_slot})"
            )
        return PhysAddr(pa)

    def unmap(self, pfn: Pfn, count: int = 1) -> None:
        """Remove ``count`` pages from ``pfn`` on.

        A 2 MiB mapping only partly covered is split (the first time); one covered whole is
        removed as a unit and stays intact.
        """
        pages = range(pfn, pfn + count)
        self._unmapped.update(pages)
        for pmd in range(pfn // _PAGES_PER_PMD, (pfn + count - 1) // _PAGES_PER_PMD + 1):
            first, last = pmd * _PAGES_PER_PMD, (pmd + 1) * _PAGES_PER_PMD
            if not (pfn <= first and last <= pfn + count):
                self._split.add(pmd)

    def restore(self, pfn: Pfn, count: int = 1) -> None:
        """Map the pages again. A split mapping stays split (as in Linux)."""
        self._unmapped.difference_update(range(pfn, pfn + count))

    @property
    def split_count(self) -> int:
        """Number of 2 MiB mappings split into 4 KiB pages."""
        return len(self._split)
