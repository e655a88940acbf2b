"""Kernel direct maps: every physical page mapped at ``base + pa``, with 1 GiB mappings that
split into 2 MiB ones, and those into 4 KiB ones, as pages leave the map.

The KeyID-0 direct map covers all memory and is what kernel data structures (and kernel read
bugs) use. MKTME adds one direct map per KeyID.

On x86-64 with ``gbpages`` the kernel maps memory with 1 GiB (PUD) mappings where it can
(``arch/x86/mm/init.c``, ``split_mem_range``), and ``change_page_attr`` splits a large mapping
only when a request covers part of it (``arch/x86/mm/pat/set_memory.c``, ``should_split_large_page``
and ``__split_large_page``): a 1 GiB mapping becomes 512 mappings of 2 MiB, a 2 MiB one 512 of
4 KiB. So removing one 4 KiB page (secretmem before its PMD pool) splits the 1 GiB mapping
around it and then the 2 MiB one; removing a whole, aligned 2 MiB range (the secretmem PMD pool)
splits the 1 GiB mapping but clears the 2 MiB entry itself, as the PMD-pool patch says: "If a
split of PUD-size page was required, it already happened when we marked the pages invalid"
(secretmem seed, ``secretmem_pool_increase``). A split mapping stays split when the pages come
back: x86 of that time did not merge them again.

The model's choice: the emulated memory (at most 256 MiB) is the low part of one 1 GiB-aligned
region mapped by a 1 GiB mapping, as on a machine with at least 1 GiB of memory; the kernel would
map a machine this small with 2 MiB mappings only.
"""

from __future__ import annotations

from ...errors import PageFault
from ...types import PAGE_SIZE, PMD_SIZE, KeySlot, Pfn, PhysAddr

__all__ = ["DIRECT_MAP_BASE", "DIRECT_MAP_STRIDE", "PUD_SIZE", "DirectMap"]

DIRECT_MAP_BASE = 0xFFFF_8880_0000_0000
"""Where x86-64 Linux places the direct map (page_offset_base without KASLR)."""
DIRECT_MAP_STRIDE = 1 << 40
"""Distance between the per-KeyID direct maps in this model."""
PUD_SIZE = 1 << 30
"""Size of the direct map's largest mapping (1 GiB, x86-64 with gbpages)."""
_PAGES_PER_PMD = PMD_SIZE // PAGE_SIZE
_PAGES_PER_PUD = PUD_SIZE // PAGE_SIZE


def _partly_covered(pfn: int, count: int, size: int) -> list[int]:
    """Indexes of the ``size``-page mappings that frames ``pfn .. pfn+count-1`` touch without
    covering them whole."""
    end = pfn + count
    return [n for n in range(pfn // size, (end - 1) // size + 1)
            if not (pfn <= n * size and (n + 1) * size <= end)]


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
        self._split_pud: set[int] = set()
        """1 GiB mappings split into 2 MiB ones."""
        self._split_pmd: set[int] = set()
        """2 MiB mappings split into 4 KiB ones."""

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

        Each 1 GiB mapping the range covers only in part is split into 2 MiB mappings (the
        first time); each 2 MiB mapping it covers only in part is then split into 4 KiB ones. A
        mapping covered whole is removed as a unit and not split.
        """
        self._unmapped.update(range(pfn, pfn + count))
        self._split_pud.update(_partly_covered(pfn, count, _PAGES_PER_PUD))
        # A 2 MiB mapping covered in part lies in a 1 GiB mapping covered in part: split above.
        self._split_pmd.update(_partly_covered(pfn, count, _PAGES_PER_PMD))

    def restore(self, pfn: Pfn, count: int = 1) -> None:
        """Map the pages again. A split mapping stays split (as in Linux)."""
        self._unmapped.difference_update(range(pfn, pfn + count))

    @property
    def pud_split_count(self) -> int:
        """1 GiB mappings split into 2 MiB ones."""
        return len(self._split_pud)

    @property
    def pmd_split_count(self) -> int:
        """2 MiB mappings split into 4 KiB ones."""
        return len(self._split_pmd)

    @property
    def split_count(self) -> int:
        """Large mappings split, at both levels (1 GiB and 2 MiB)."""
        return self.pud_split_count + self.pmd_split_count
