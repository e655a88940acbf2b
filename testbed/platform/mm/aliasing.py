"""Memory aliasing (BadRAM): a DIMM whose SPD reports more capacity than it holds, and the
boot-time check that finds the aliases.

Source: J. De Meulemeester, L. Wilke, D. Oswald, T. Eisenbarth, I. Verbauwhede and J. Van Bulck,
"BadRAM: Practical Memory Aliasing Attacks on Trusted Execution Environments", IEEE S&P 2025
(CVE-2024-21944). An attacker with physical access rewrites the module's SPD chip so that it
reports one more address bit than its chips decode; the memory controller then maps twice the
physical addresses, and the DIMM ignores the extra bit, so every cell of the upper half is also
a cell of the lower half. The SEV-SNP Reverse Map Table checks the physical address an access
uses, not the cell it reaches: a hypervisor writing through the alias of a guest page is not
refused. The paper reports that AMD's firmware fix detects aliases at boot.

The model's choices (the paper does not fix them, AMD does not publish its check):

- the ignored bit is the highest address bit inside memory (:func:`ignored_bit`): the frames
  from ``2**bit`` up alias the frames below;
- the host keeps the alias frames out of its page allocator (as the paper's attacker reserves
  them), so that only the attacker reaches a cell through them;
- the check (:func:`find_aliases`) writes a distinct marker to the first line of every frame
  straight into DRAM, then reads each back: a frame showing another frame's marker shares its
  cells. It clears the lines it probed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, FirmwareRefusal
from ...types import LINE_SIZE, PAGE_SIZE, Pfn
from .allocator import PageAllocator
from .memory import PhysicalMemory

__all__ = [
    "Alias",
    "alias_frames",
    "alias_problem",
    "boot_with_alias",
    "find_aliases",
    "ignored_bit",
]


@dataclass(frozen=True)
class Alias:
    """The alias a reprogrammed SPD made: the address bit the DIMM ignores and the first alias
    frame (every frame from it on shares its cells with the frame ``2**bit`` below it)."""

    bit: int
    first_frame: Pfn
    frames: int


def ignored_bit(pages: int) -> int:
    """The highest address bit inside ``pages`` frames (the bit the reprogrammed DIMM drops)."""
    return (pages * PAGE_SIZE - 1).bit_length() - 1


def find_aliases(memory: PhysicalMemory) -> tuple[tuple[Pfn, Pfn], ...]:
    """Probe DRAM for aliases: ``(frame, frame whose marker it shows)`` for every frame whose
    first line did not keep the marker written there (none on a sound DIMM). The markers are
    written frame after frame, then read back, all in one batch each."""
    frames = np.arange(memory.pages, dtype=np.uint64)
    addrs = frames * np.uint64(PAGE_SIZE)
    markers = np.zeros((memory.pages, LINE_SIZE), dtype=np.uint8)
    markers[:, :8] = frames.astype("<u8").view(np.uint8).reshape(-1, 8)
    markers[:, 8:16] = 0xA5  # not a line of zeros, whatever the frame number
    memory.store_lines(addrs, markers)
    seen = np.ascontiguousarray(memory.load_lines(addrs)[:, :8]).view("<u8").reshape(-1)
    memory.store_lines(addrs, np.zeros_like(markers))
    moved = np.flatnonzero(seen != frames)
    return tuple((Pfn(int(f)), Pfn(int(seen[f]))) for f in moved)


def alias_frames(pages: int) -> tuple[Pfn, int]:
    """The first frame whose address the reprogrammed DIMM aliases, and how many there are
    (from it to the top of a memory of ``pages`` frames)."""
    first = Pfn((1 << ignored_bit(pages)) // PAGE_SIZE)
    return first, pages - first


def alias_problem(allocator: PageAllocator, pages: int) -> str | None:
    """Why the machine cannot boot with the alias the way the model does (``None``: it can):
    the model keeps every alias frame for the hypervisor, so none may be taken at boot."""
    first, count = alias_frames(pages)
    taken = count - allocator.free_between(first, first + count)
    if not taken:
        return None
    return (f"the alias frames {first}..{first + count - 1} must be free at boot for the "
            f"hypervisor to keep, but a boot-time reservation (secretmem=) holds {taken} of "
            "them")


def boot_with_alias(memory: PhysicalMemory, allocator: PageAllocator, *, check: bool) -> Alias:
    """The machine boots with the reprogrammed DIMM: ``memory`` decodes with an alias; with
    ``check`` the boot firmware probes for aliases first and refuses to boot; otherwise the
    alias frames are kept out of ``allocator`` (the attacker's) and the alias is returned.

    Raises:
        FirmwareRefusal: ``check`` found aliased frames.
        ConfigError: some alias frames are already taken (:func:`alias_problem`; a program
            with the step is ``not_applicable`` on such a machine before it runs).
    """
    problem = alias_problem(allocator, memory.pages)
    if problem is not None:
        raise ConfigError(problem)
    bit = ignored_bit(memory.pages)
    memory.alias(bit)
    if check:
        found = find_aliases(memory)
        if found:
            frame, other = found[0]
            raise FirmwareRefusal(f"boot refused: the memory check found {len(found)} aliased "
                                  f"frames (frames {frame} and {other} share their cells)")
    first, count = alias_frames(memory.pages)
    allocator.reserve_contiguous(count, 1)  # the highest free range: exactly those frames
    return Alias(bit, first, count)
