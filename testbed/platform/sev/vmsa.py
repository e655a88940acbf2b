"""The VM save area (VMSA): the initial register state of an SEV-ES / SEV-SNP guest's vCPU.

Source: AMD64 Architecture Programmer's Manual, Volume 2, Appendix B, "VMCB Layout, State Save
Area" (the SEV-ES VMSA is that save area, on a page of its own, encrypted with the guest's key);
SEV API specification (publication 55766), LAUNCH_UPDATE_VMSA: the firmware encrypts the VMSA
and adds it to the launch digest; SEV-SNP Firmware ABI specification (publication 56860),
SNP_LAUNCH_UPDATE with PAGE_TYPE_VMSA.

The model keeps a handful of the save area's fields at their published offsets (the rest of the
4 KiB page is zero): CS (selector, attributes, limit, base at 0x10), EFER at 0xD0, CR0 at 0x158,
RFLAGS at 0x170, RIP at 0x178 and RSP at 0x1D8. Its reset state is the x86 one: CS base
0xFFFF0000, RIP 0xFFF0, RFLAGS 0x2, CR0 0x60000010. A hypervisor that builds the VMSA before
launch can choose any of these values; only the launch measurement tells the owner it did.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from ...errors import ConfigError
from ...types import PAGE_SIZE

__all__ = ["CS_OFFSET", "RIP_OFFSET", "RSP_OFFSET", "VMSA_SIZE", "Vmsa"]

VMSA_SIZE = PAGE_SIZE
"""The VMSA fills one 4 KiB page."""
CS_OFFSET = 0x10
"""CS segment: selector u16, attributes u16, limit u32, base u64."""
EFER_OFFSET = 0xD0
CR0_OFFSET = 0x158
RFLAGS_OFFSET = 0x170
RIP_OFFSET = 0x178
RSP_OFFSET = 0x1D8
_U64_MAX = (1 << 64) - 1
_SEGMENT = struct.Struct("<HHIQ")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class Vmsa:
    """The initial state of one vCPU, as its VMSA page holds it.

    Raises:
        ConfigError: a register out of the u64 range.
    """

    rip: int = 0xFFF0
    rsp: int = 0
    rflags: int = 0x2
    cr0: int = 0x6000_0010
    efer: int = 0x1000
    """EFER.SVME: required in an SEV-ES guest's VMSA."""
    cs_base: int = 0xFFFF_0000

    def __post_init__(self) -> None:
        for name in ("rip", "rsp", "rflags", "cr0", "efer", "cs_base"):
            value = getattr(self, name)
            if not 0 <= value <= _U64_MAX:
                raise ConfigError(f"VMSA {name}: must fit in a u64, got {value}")

    def pack(self) -> bytes:
        """The 4096-byte VMSA page."""
        page = bytearray(VMSA_SIZE)
        _SEGMENT.pack_into(page, CS_OFFSET, 0xF000, 0x9B, 0xFFFF, self.cs_base)
        for offset, value in ((EFER_OFFSET, self.efer), (CR0_OFFSET, self.cr0),
                              (RFLAGS_OFFSET, self.rflags), (RIP_OFFSET, self.rip),
                              (RSP_OFFSET, self.rsp)):
            _U64.pack_into(page, offset, value)
        return bytes(page)

    @classmethod
    def unpack(cls, page: bytes) -> Vmsa:
        """The registers of a VMSA page.

        Raises:
            ConfigError: ``page`` is not 4096 bytes.
        """
        if len(page) != VMSA_SIZE:
            raise ConfigError(f"VMSA: expected {VMSA_SIZE} bytes, got {len(page)}")
        def u64(offset: int) -> int:
            return int(_U64.unpack_from(page, offset)[0])
        return cls(rip=u64(RIP_OFFSET), rsp=u64(RSP_OFFSET), rflags=u64(RFLAGS_OFFSET),
                   cr0=u64(CR0_OFFSET), efer=u64(EFER_OFFSET),
                   cs_base=int(_SEGMENT.unpack_from(page, CS_OFFSET)[3]))

    def with_rip(self, rip: int) -> Vmsa:
        """This state with the instruction pointer moved to ``rip``."""
        return replace(self, rip=rip)
