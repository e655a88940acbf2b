"""The SEV-SNP ATTESTATION_REPORT: its byte layout, its guest policy bits and how it is signed.

Source: SEV Secure Nested Paging Firmware ABI specification (AMD publication 56860), the
ATTESTATION_REPORT structure (report version 2) and the guest policy structure; cross-checked
against the report structures of public SNP guest tools (virtee/sev, google/go-sev-guest)::

    0x000  version            u32      2
    0x004  guest_svn          u32
    0x008  policy             u64      guest policy (bits below)
    0x010  family_id          16 bytes
    0x020  image_id           16 bytes
    0x030  vmpl               u32      VMPL of the guest that asked for the report
    0x034  signature_algo     u32      1: ECDSA P-384 with SHA-384
    0x038  current_tcb        u64
    0x040  platform_info      u64
    0x048  flags              u32      author_key_en (bit 0), mask_chip_key, signing_key (4:2)
    0x04C  reserved           u32
    0x050  report_data        64 bytes chosen by the guest: the owner's nonce
    0x090  measurement        48 bytes the launch digest
    0x0C0  host_data          32 bytes
    0x0E0  id_key_digest      48 bytes
    0x110  author_key_digest  48 bytes
    0x140  report_id          32 bytes
    0x160  report_id_ma       32 bytes
    0x180  reported_tcb       u64
    0x188  reserved           24 bytes
    0x1A0  chip_id            64 bytes
    0x1E0  committed_tcb      u64
    0x1E8  current build, minor, major, reserved (u8 each)
    0x1EC  committed build, minor, major, reserved (u8 each)
    0x1F0  launch_tcb         u64
    0x1F8  reserved           168 bytes
    0x2A0  signature          512 bytes: r (72-byte little-endian), s (likewise), 368 zero bytes
    0x4A0  (end: 1184 bytes)

The signature covers bytes 0x000-0x29F; it is made with the VCEK, the chip's versioned endorsement
key, whose certificate chains to AMD's ASK and ARK (:mod:`testbed.platform.sev.snp_certs`).
Guest policy bits (ABI 1.58): ABI minor (7:0), ABI major (15:8), SMT allowed (16), reserved,
must be one (17), migration agent (18), DEBUG (19), single socket (20), CXL allowed (21),
AES-256-XTS required (22), RAPL disabled (23), ciphertext hiding required (24), PAGE_SWAP_DISABLE
(25); bits 63:26 are reserved and must be zero. The firmware answers LAUNCH_START with
POLICY_FAILURE when bit 17 is clear, a reserved bit is set, or the ABI the policy asks for is
newer than its own (:func:`snp_policy_problem`).

PLATFORM_INFO bits the model sets (the same ABI; also the PlatformInfo flags of virtee/sev):
SMT enabled (0), TSME enabled (1), ECC (2), RAPL disabled (3), ciphertext hiding enabled for
DRAM (4, :data:`PLATFORM_INFO_CIPHERTEXT_HIDING`), ALIAS_CHECK_COMPLETE (5: the firmware's DRAM
alias check, the CVE-2024-21944 "BadRAM" fix, completed since the last reboot,
:data:`PLATFORM_INFO_ALIAS_CHECK`). The model sets only bits 4 and 5, from the platform
(:class:`~testbed.platform.sev.psp.Psp`); the others stay zero.

The model's choices: the TCB values, chip_id and the firmware version are the
constants of :class:`SnpReport`'s defaults and the model's chip; family_id, image_id,
id_key_digest, author_key_digest and report_id_ma are zero (no ID block); report_id is
drawn by the PSP per guest.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, fields, replace

from ...crypto.signing import COMPONENT_SIZE, SIGNATURE_SIZE, SigningKey
from ...errors import ConfigError

__all__ = [
    "CHIP_ID_OFFSET",
    "MEASUREMENT_OFFSET",
    "MEASUREMENT_SIZE",
    "MODEL_TCB",
    "PLATFORM_INFO_ALIAS_CHECK",
    "PLATFORM_INFO_CIPHERTEXT_HIDING",
    "REPORT_DATA_OFFSET",
    "REPORT_DATA_SIZE",
    "SNP_FIRMWARE_ABI",
    "SNP_POLICY_DEBUG",
    "SNP_POLICY_DEFAULT",
    "SNP_POLICY_MUST_BE_ONE",
    "SNP_POLICY_PAGE_SWAP_DISABLE",
    "SNP_POLICY_RESERVED",
    "SNP_REPORT_SIZE",
    "SNP_REPORT_VERSION",
    "SNP_SIGNATURE_OFFSET",
    "SNP_SIGNATURE_SIZE",
    "SNP_SIGNED_END",
    "SnpReport",
    "SnpSigAlgo",
    "sign_snp_report",
    "snp_policy_problem",
]

SNP_REPORT_VERSION = 2
SNP_REPORT_SIZE = 0x4A0
REPORT_DATA_OFFSET = 0x50
REPORT_DATA_SIZE = 64
MEASUREMENT_OFFSET = 0x90
MEASUREMENT_SIZE = 48
CHIP_ID_OFFSET = 0x1A0
SNP_SIGNATURE_OFFSET = 0x2A0
SNP_SIGNED_END = SNP_SIGNATURE_OFFSET
"""The signature covers every byte before it."""
SNP_SIGNATURE_SIZE = 0x200
"""The signature field: r and s (72 bytes each), then zero padding."""
SNP_POLICY_DEFAULT = 0x3_0000
"""SMT allowed (bit 16) and the reserved bit 17, which must be one; debugging not allowed."""
SNP_POLICY_DEBUG = 1 << 19
SNP_POLICY_MUST_BE_ONE = 1 << 17
SNP_FIRMWARE_ABI = (1, 58)
"""ABI version (major, minor) of the modelled SNP firmware: the report's current and committed
version, and the newest ABI a guest policy may ask for."""
SNP_POLICY_PAGE_SWAP_DISABLE = 1 << 25
"""The guest may not be moved or swapped with SNP_PAGE_MOVE / SNP_SWAP_OUT (ABI 1.58)."""
SNP_POLICY_RESERVED = ((1 << 64) - 1) & ~((1 << 26) - 1)
"""Bits 63:26: reserved, must be zero."""
PLATFORM_INFO_CIPHERTEXT_HIDING = 1 << 4
"""PLATFORM_INFO bit 4: ciphertext hiding is enabled for DRAM."""
PLATFORM_INFO_ALIAS_CHECK = 1 << 5
"""PLATFORM_INFO bit 5: ALIAS_CHECK_COMPLETE, the DRAM alias check ran since the last reboot."""
MODEL_TCB = 0x1508_0000_0000_0003
"""TCB_VERSION of the modelled firmware: boot loader 3 (byte 0), SNP 8 (byte 6), microcode 0x15
(byte 7)."""
_U32_MAX = 0xFFFF_FFFF
_U64_MAX = (1 << 64) - 1

_LAYOUT = struct.Struct(
    "<II Q 16s16s II Q Q II 64s48s32s48s48s32s32s Q 24x 64s Q BBBx BBBx Q 168x 512s"
)
assert _LAYOUT.size == SNP_REPORT_SIZE


class SnpSigAlgo(enum.IntEnum):
    """SIGNATURE_ALGO codes of the SNP ABI."""

    ECDSA_P384_SHA384 = 0x1


_SIZES = {"family_id": 16, "image_id": 16, "report_data": REPORT_DATA_SIZE,
          "measurement": MEASUREMENT_SIZE, "host_data": 32, "id_key_digest": 48,
          "author_key_digest": 48, "report_id": 32, "report_id_ma": 32, "chip_id": 64,
          "signature": SNP_SIGNATURE_SIZE}
_U8 = frozenset({"current_build", "current_minor", "current_major", "committed_build",
                 "committed_minor", "committed_major"})
_U32 = frozenset({"version", "guest_svn", "vmpl", "signature_algo", "flags"})


@dataclass(frozen=True)
class SnpReport:
    """The 1184-byte SEV-SNP attestation report (layout in the module docstring).

    Raises:
        ConfigError: a field of the wrong size or out of its integer range.
    """

    report_data: bytes
    measurement: bytes
    policy: int = SNP_POLICY_DEFAULT
    vmpl: int = 0
    version: int = SNP_REPORT_VERSION
    guest_svn: int = 0
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    signature_algo: int = SnpSigAlgo.ECDSA_P384_SHA384
    current_tcb: int = MODEL_TCB
    platform_info: int = 0
    flags: int = 0
    host_data: bytes = bytes(32)
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    report_id: bytes = bytes(32)
    report_id_ma: bytes = bytes(32)
    reported_tcb: int = MODEL_TCB
    chip_id: bytes = bytes(64)
    committed_tcb: int = MODEL_TCB
    current_build: int = 15
    current_minor: int = SNP_FIRMWARE_ABI[1]
    current_major: int = SNP_FIRMWARE_ABI[0]
    committed_build: int = 15
    committed_minor: int = SNP_FIRMWARE_ABI[1]
    committed_major: int = SNP_FIRMWARE_ABI[0]
    launch_tcb: int = MODEL_TCB
    signature: bytes = bytes(SNP_SIGNATURE_SIZE)

    def __post_init__(self) -> None:
        for name, size in _SIZES.items():
            value = getattr(self, name)
            if len(value) != size:
                raise ConfigError(f"SNP report {name}: expected {size} bytes, got {len(value)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                continue
            top = 0xFF if f.name in _U8 else _U32_MAX if f.name in _U32 else _U64_MAX
            if not 0 <= value <= top:
                raise ConfigError(f"SNP report {f.name}: must be 0..{top:#x}, got {value}")

    def _values(self) -> tuple[object, ...]:
        return (self.version, self.guest_svn, self.policy, self.family_id, self.image_id,
                self.vmpl, self.signature_algo, self.current_tcb, self.platform_info, self.flags,
                0, self.report_data, self.measurement, self.host_data, self.id_key_digest,
                self.author_key_digest, self.report_id, self.report_id_ma, self.reported_tcb,
                self.chip_id, self.committed_tcb, self.current_build, self.current_minor,
                self.current_major, self.committed_build, self.committed_minor,
                self.committed_major, self.launch_tcb, self.signature)

    def pack(self) -> bytes:
        """The report as the firmware writes it."""
        return _LAYOUT.pack(*self._values())

    @classmethod
    def unpack(cls, data: bytes) -> SnpReport:
        """Parse a report.

        Raises:
            ConfigError: ``data`` is not exactly :data:`SNP_REPORT_SIZE` bytes.
        """
        if len(data) != SNP_REPORT_SIZE:
            raise ConfigError(f"SNP attestation report: expected {SNP_REPORT_SIZE} bytes, got "
                              f"{len(data)}")
        (version, guest_svn, policy, family_id, image_id, vmpl, algo, current_tcb,
         platform_info, flags, _reserved, report_data, measurement, host_data, id_key_digest,
         author_key_digest, report_id, report_id_ma, reported_tcb, chip_id, committed_tcb,
         cur_build, cur_minor, cur_major, com_build, com_minor, com_major, launch_tcb,
         signature) = _LAYOUT.unpack(data)
        return cls(report_data, measurement, policy, vmpl, version, guest_svn, family_id,
                   image_id, algo, current_tcb, platform_info, flags, host_data, id_key_digest,
                   author_key_digest, report_id, report_id_ma, reported_tcb, chip_id,
                   committed_tcb, cur_build, cur_minor, cur_major, com_build, com_minor,
                   com_major, launch_tcb, signature)

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers (0x000-0x29F)."""
        return self.pack()[:SNP_SIGNED_END]

    def rs(self) -> bytes:
        """The signature's ``r || s`` (72-byte little-endian each), without the padding."""
        return self.signature[:SIGNATURE_SIZE]


def snp_policy_problem(policy: int, firmware: tuple[int, int] = SNP_FIRMWARE_ABI) -> str | None:
    """Why SNP firmware of ABI version ``firmware`` (major, minor) answers POLICY_FAILURE to
    SNP_LAUNCH_START with ``policy`` (``None``: it accepts it)."""
    if not 0 <= policy <= _U64_MAX:
        return f"policy {policy:#x} does not fit the 64-bit SNP policy field"
    if not policy & SNP_POLICY_MUST_BE_ONE:
        return f"policy {policy:#x} has bit 17 clear (reserved, must be one)"
    if policy & SNP_POLICY_RESERVED:
        return f"policy {policy:#x} sets reserved bits 63:26 ({policy & SNP_POLICY_RESERVED:#x})"
    abi = ((policy >> 8) & 0xFF, policy & 0xFF)
    if abi > firmware:
        return (f"policy {policy:#x} asks for ABI {abi[0]}.{abi[1]} or later; the firmware is "
                f"{firmware[0]}.{firmware[1]}")
    return None


def sign_snp_report(report: SnpReport, vcek: SigningKey) -> SnpReport:
    """``report`` with ``signature_algo`` = ECDSA P-384/SHA-384, signed by ``vcek``."""
    body = replace(report, signature_algo=SnpSigAlgo.ECDSA_P384_SHA384,
                   signature=bytes(SNP_SIGNATURE_SIZE))
    rs = vcek.sign(body.signed_bytes(), "sha384")
    assert len(rs) == 2 * COMPONENT_SIZE
    return replace(body, signature=rs.ljust(SNP_SIGNATURE_SIZE, b"\0"))
