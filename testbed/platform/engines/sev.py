"""AMD SEV and SEV-SNP: one AES-128 key per guest ASID (XEX); SNP adds the Reverse Map Table.

The RMP check of a guest access follows AMD's APM vol. 2 (section "RMP and VMPL Access
Checks") and KVM's handling of it (``PFERR_GUEST_RMP_MASK`` in a nested page fault's error
code): a frame that is not assigned to the guest's ASID, or whose RMP entry records another
guest-physical page than the one accessed (the hypervisor remapped it), raises a nested page
fault (#NPF) to the hypervisor; a frame whose entry matches but whose Validated bit is 0 raises
#VC (PAGE_NOT_VALIDATED) to the guest. The RMP entry is modelled at page granularity (4 KiB
pages only) without VMPL permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from ...errors import ConfigError, PlatformFailure, RmpViolation
from ...types import KeySlot, Pfn
from .base import (
    HOST,
    Engine,
    EngineOptions,
    EngineWithAttestation,
    EngineWithGuestIsolation,
    EngineWithRmp,
    EngineWithSnpAttestation,
)
from .keys import CipherFamily, KeySource

__all__ = ["RmpEntry", "SevEngine", "SevSnpEngine"]


class SevEngine(Engine, EngineWithGuestIsolation, EngineWithAttestation):
    """AMD SEV: one AES-128 key per guest ASID (XEX, physical-address tweak); no integrity.

    The host runs with ASID 0 and no C-bit: its accesses are not encrypted (SME off), so a
    hypervisor reading guest memory sees the guest's ciphertext.

    Args:
        asids: number of guest ASIDs (1..asids).
    """

    name = "sev"
    family = CipherFamily.XEX
    encrypts = True
    per_domain_keys = True
    MAX_ASIDS: ClassVar[int] = 1006

    def __init__(
        self, keys: KeySource, reduced_width_bits: int | None = None, asids: int = 15
    ) -> None:
        if not 1 <= asids <= self.MAX_ASIDS:
            raise ConfigError(f"asids: must be 1..{self.MAX_ASIDS}, got {asids}")
        super().__init__(keys, reduced_width_bits)
        self.asids = asids

    @classmethod
    def build(cls, keys: KeySource, options: EngineOptions) -> Self:
        return cls(keys, options.reduced_width_bits, options.asids)

    def domain_slot(self, kind: str) -> KeySlot:
        if kind != "guest":
            return HOST
        for asid in map(KeySlot, range(1, self.asids + 1)):
            if not self.holds_key(asid):
                self.program_key(asid)
                return asid
        raise PlatformFailure(f"no free ASID (all {self.asids} in use)")

    def release_slot(self, slot: KeySlot) -> None:
        # DECOMMISSION: the firmware destroys the guest key.
        if slot != HOST:
            self.forget_key(slot)


@dataclass
class RmpEntry:
    """One Reverse Map Table entry (per 4 KiB frame)."""

    owner: KeySlot = HOST
    assigned: bool = False
    validated: bool = False
    gpn: int = -1
    """Guest page number the frame was validated for (PVALIDATE records it)."""


class SevSnpEngine(SevEngine, EngineWithRmp, EngineWithSnpAttestation):
    """AMD SEV-SNP: SEV plus the RMP. Hypervisor writes to guest-owned frames fault.

    The PSP runs SNP firmware: SNP launch digest, VCEK-signed SNP attestation reports.

    Hypervisor *reads* are not RMP-checked; with ``ciphertext_hiding`` they return 0xff.
    """

    name = "sev-snp"

    def __init__(
        self,
        keys: KeySource,
        reduced_width_bits: int | None = None,
        asids: int = 15,
        ciphertext_hiding: bool = False,
    ) -> None:
        super().__init__(keys, reduced_width_bits, asids)
        self.ciphertext_hiding = ciphertext_hiding
        self.rmp: dict[Pfn, RmpEntry] = {}

    @classmethod
    def build(cls, keys: KeySource, options: EngineOptions) -> Self:
        return cls(keys, options.reduced_width_bits, options.asids, options.ciphertext_hiding)

    def rmp_assign(self, pfn: Pfn, asid: KeySlot, gpn: int = -1) -> None:
        self.rmp[pfn] = RmpEntry(owner=asid, assigned=True, validated=True, gpn=gpn)

    def check_guest_access(self, pfn: Pfn, asid: KeySlot, gpn: int) -> None:
        entry = self.rmp.get(pfn)
        if entry is None or not entry.assigned or entry.owner != asid:
            raise RmpViolation(f"#NPF: frame {pfn} behind guest page {gpn} is not assigned to "
                               f"ASID {asid}")
        if entry.gpn != gpn:
            raise RmpViolation(f"#NPF (RMP): frame {pfn} was validated for guest page "
                               f"{entry.gpn}, not {gpn}: the hypervisor remapped the page")
        if not entry.validated:
            raise RmpViolation(f"#VC (PAGE_NOT_VALIDATED): frame {pfn} behind guest page {gpn} "
                               "is assigned to the guest but not validated")

    def rmp_reclaim(self, pfn: Pfn) -> None:
        self.rmp.pop(pfn, None)

    def check_hypervisor_write(self, pfn: Pfn) -> None:
        entry = self.rmp.get(pfn)
        if entry is not None and entry.assigned:
            raise RmpViolation(
                f"RMP violation: hypervisor write to frame {pfn} owned by ASID {entry.owner}"
            )

    def hides_ciphertext(self, pfn: Pfn) -> bool:
        entry = self.rmp.get(pfn)
        return self.ciphertext_hiding and entry is not None and entry.assigned
