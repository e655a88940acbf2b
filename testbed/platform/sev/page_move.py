"""SEV-SNP's ``SNP_PAGE_MOVE``: the firmware moves a guest page to another frame for the
hypervisor, re-encrypting it under the destination's address tweak.

Sources: AMD, *SEV Secure Nested Paging Firmware ABI Specification* (publication 56860), the
``SNP_PAGE_MOVE`` command (``SEV_CMD_SNP_PAGE_MOVE = 0xC2`` in Linux's
``include/linux/psp-sev.h``; its buffer names the guest context, the page size and the source
and destination system-physical addresses); the page-move chosen-plaintext oracle of
B. Schlüter, C. Wech and S. Shinde, "Heracles: Chosen Plaintext Attack on AMD SEV-SNP", ACM CCS
2025: because the engine's tweak is the physical address, a hypervisor that moves a page of
data it influences onto the frame where a secret was, and reads the ciphertext there, compares
its guesses with the secret's old ciphertext.

What the firmware checks, in this model: the source frame is assigned to the guest and was
validated for the guest page (the RMP check a guest access makes), the destination is a frame
no one holds. The source frame's RMP entry moves to the destination (still validated for the
same guest page), the source goes back to the hypervisor, and the nested page table points at
the destination (the hypervisor updates it after the command). With the platform mitigation
``restrict_page_move`` the firmware refuses the command: the model's choice of a switch for
AMD's response, whose exact form it does not follow. Hypervisor reads stay unchecked, as on
the rest of SEV-SNP.
"""

from __future__ import annotations

from ...errors import ConfigError, FirmwareRefusal
from ...types import PAGE_SIZE, Pfn, PhysAddr
from ..engines.base import EngineWithRmp
from ..machine import Domain, Machine

__all__ = ["SNP_PAGE_MOVE", "snp_page_move"]

SNP_PAGE_MOVE = 0xC2
"""The command's number in the SEV firmware interface."""


def snp_page_move(machine: Machine, guest: Domain, gpn: int, dst: Pfn) -> PhysAddr:
    """Move guest page ``gpn`` of ``guest`` to frame ``dst``; returns the new address.

    Raises:
        FirmwareRefusal: page moves are restricted, or the destination is not free.
        RmpViolation: the source frame is not the guest's, validated for ``gpn``.
        ConfigError: the engine has no RMP (no SEV-SNP firmware to ask).
    """
    engine = machine.engine
    if not isinstance(engine, EngineWithRmp):
        raise ConfigError(f"engine {engine.name} has no SNP firmware: no SNP_PAGE_MOVE")
    if machine.mitigations.restrict_page_move:
        raise FirmwareRefusal("SNP_PAGE_MOVE refused: page moves of guest pages are restricted "
                              "on this platform")
    if not machine.allocator.is_free(dst):
        raise FirmwareRefusal(f"SNP_PAGE_MOVE refused: destination frame {dst} is not a free "
                              "frame of the hypervisor")
    src = guest.npt.get(gpn)
    if src is None:
        raise ConfigError(f"guest page {gpn} of {guest.name} is not mapped")
    engine.check_guest_access(src, guest.slot, gpn)
    machine.move_guest_frame(guest, gpn, dst)
    engine.rmp_reclaim(src)
    engine.rmp_assign(dst, guest.slot, gpn)
    return PhysAddr(dst * PAGE_SIZE)
