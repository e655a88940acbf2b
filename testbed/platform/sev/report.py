"""The legacy SEV attestation report: its byte layout, its field codes and how it is signed.

Source: B. Singh, "[PATCH] target/i386/sev: add the support to query the attestation report"
(qemu-devel, 4 December 2020), and its review. From SEV firmware 0.23 the PSP can return a report
that holds the SHA-256 digest of the guest memory encrypted through LAUNCH_UPDATE, signed with the
platform endorsement key (PEK); the caller supplies a 16-byte ``mnonce`` that the report echoes.

The report (:class:`SevReport`), in the legacy SEV layout::

    0x00  mnonce          16 bytes   signed
    0x10  launch_digest   32 bytes   signed
    0x30  policy          u32 LE     signed
    0x34  sig_usage       u32 LE     0x1002: the PEK
    0x38  sig_algo        u32 LE     0x0002: ECDSA with SHA-256
    0x3C  reserved        u32        zero
    0x40  signature       144 bytes  r then s, 72-byte little-endian each
    0xD0  (end: 208 bytes)

The signature covers bytes 0x00-0x33 only: ``sig_usage``, ``sig_algo`` and ``reserved`` are
outside it, so the verifier (:mod:`testbed.platform.sev.verifier`) checks the first two by value and
ignores the third.

SEV-SNP guests get the SNP report instead (:mod:`testbed.platform.sev.snp_report`).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, replace

from ...crypto.signing import SIGNATURE_SIZE, SigningKey
from ...errors import ConfigError

__all__ = [
    "FIRMWARE_API",
    "LAUNCH_DIGEST_OFFSET",
    "LAUNCH_DIGEST_SIZE",
    "MNONCE_OFFSET",
    "MNONCE_SIZE",
    "POLICY_API_MAJOR_SHIFT",
    "POLICY_API_MINOR_SHIFT",
    "POLICY_DEFAULT",
    "POLICY_ES",
    "POLICY_NODBG",
    "POLICY_OFFSET",
    "POLICY_RESERVED",
    "REPORT_SIZE",
    "RESERVED_OFFSET",
    "SIGNATURE_OFFSET",
    "SIGNED_END",
    "SIG_ALGO_OFFSET",
    "SIG_USAGE_OFFSET",
    "U32_MAX",
    "KeyUsage",
    "SevReport",
    "SigAlgo",
    "policy_problem",
    "sign_report",
]

# -- the report layout ----------------------------------------------------------------------
MNONCE_OFFSET = 0x00
MNONCE_SIZE = 16
LAUNCH_DIGEST_OFFSET = 0x10
LAUNCH_DIGEST_SIZE = 32
POLICY_OFFSET = 0x30
SIG_USAGE_OFFSET = 0x34
SIG_ALGO_OFFSET = 0x38
RESERVED_OFFSET = 0x3C
SIGNATURE_OFFSET = 0x40
REPORT_SIZE = 0xD0
SIGNED_END = 0x34
"""The signature covers ``report[0x00:0x34]``: mnonce, launch digest and policy."""
_REPORT = struct.Struct(f"<{MNONCE_SIZE}s{LAUNCH_DIGEST_SIZE}sIIII{SIGNATURE_SIZE}s")

POLICY_NODBG = 0x1
"""Guest policy bit 0: debugging of the guest is disallowed."""
POLICY_ES = 0x4
"""Guest policy bit 2: SEV-ES, the guest's register state (its VMSA) is encrypted and
measured (LAUNCH_UPDATE_VMSA exists only for such guests)."""
POLICY_DEFAULT = POLICY_NODBG | POLICY_ES
"""The policy an owner asks for by default: an SEV-ES guest that cannot be debugged."""
POLICY_RESERVED = 0xFFC0
"""Guest policy bits 15:6: reserved, must be zero."""
POLICY_API_MAJOR_SHIFT = 16
"""Guest policy bits 23:16: the lowest firmware API major version the guest accepts..."""
POLICY_API_MINOR_SHIFT = 24
"""...and bits 31:24, its minor version."""
FIRMWARE_API = (0, 24)
"""The modelled legacy firmware's API version (the attestation report needs 0.23 or later)."""
U32_MAX = 0xFFFF_FFFF
"""Largest value of a u32 field (the policy, ``sig_usage``, ``sig_algo``, ``reserved``)."""


class KeyUsage(enum.IntEnum):
    """Key usage codes of SEV certificates (``sig_usage`` names the key that signed a report)."""

    ARK = 0x0000
    """AMD root key."""
    ASK = 0x0013
    """AMD SEV signing key."""
    OCA = 0x1001
    """Owner certificate authority."""
    PEK = 0x1002
    """Platform endorsement key: signs attestation reports."""
    PDH = 0x1003
    """Platform Diffie-Hellman key."""
    CEK = 0x1004
    """Chip endorsement key."""


class SigAlgo(enum.IntEnum):
    """Signature algorithm codes of the SEV API."""

    ECDSA_SHA256 = 0x0002


@dataclass(frozen=True)
class SevReport:
    """The 208-byte SEV attestation report (layout in the module docstring).

    Raises:
        ConfigError: a field of the wrong size or out of the u32 range.
    """

    mnonce: bytes
    launch_digest: bytes
    policy: int
    sig_usage: int = KeyUsage.PEK
    sig_algo: int = SigAlgo.ECDSA_SHA256
    reserved: int = 0
    signature: bytes = bytes(SIGNATURE_SIZE)

    def __post_init__(self) -> None:
        for name, value, size in (("mnonce", self.mnonce, MNONCE_SIZE),
                                  ("launch_digest", self.launch_digest, LAUNCH_DIGEST_SIZE),
                                  ("signature", self.signature, SIGNATURE_SIZE)):
            if len(value) != size:
                raise ConfigError(f"report {name}: expected {size} bytes, got {len(value)}")
        for name, number in (("policy", self.policy), ("sig_usage", self.sig_usage),
                             ("sig_algo", self.sig_algo), ("reserved", self.reserved)):
            if not 0 <= number <= U32_MAX:
                raise ConfigError(f"report {name}: must fit in a u32, got {number}")

    def pack(self) -> bytes:
        """The report as the firmware writes it."""
        return _REPORT.pack(self.mnonce, self.launch_digest, self.policy, self.sig_usage,
                            self.sig_algo, self.reserved, self.signature)

    @classmethod
    def unpack(cls, data: bytes) -> SevReport:
        """Parse a report.

        Raises:
            ConfigError: ``data`` is not exactly :data:`REPORT_SIZE` bytes.
        """
        if len(data) != REPORT_SIZE:
            raise ConfigError(f"attestation report: expected {REPORT_SIZE} bytes, got {len(data)}")
        return cls(*_REPORT.unpack(data))

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers (0x00-0x33)."""
        return self.pack()[:SIGNED_END]


def policy_problem(policy: int) -> str | None:
    """Why legacy firmware answers POLICY_FAILURE to LAUNCH_START with ``policy`` (``None``: it
    accepts it): not a u32, a reserved bit (15:6) set, or an API minimum (bits 31:16) above
    :data:`FIRMWARE_API`."""
    if not 0 <= policy <= U32_MAX:
        return f"policy {policy:#x} does not fit the 32-bit legacy policy field"
    if policy & POLICY_RESERVED:
        return f"policy {policy:#x} sets reserved bits 15:6 ({policy & POLICY_RESERVED:#x})"
    api = ((policy >> POLICY_API_MAJOR_SHIFT) & 0xFF, (policy >> POLICY_API_MINOR_SHIFT) & 0xFF)
    if api > FIRMWARE_API:
        return (f"policy {policy:#x} asks for firmware API {api[0]}.{api[1]} or later; the "
                f"firmware is {FIRMWARE_API[0]}.{FIRMWARE_API[1]}")
    return None


def sign_report(report: SevReport, key: SigningKey) -> SevReport:
    """``report`` with ``sig_usage`` = PEK, ``sig_algo`` = ECDSA-SHA256 and signed by ``key``."""
    body = replace(report, sig_usage=KeyUsage.PEK, sig_algo=SigAlgo.ECDSA_SHA256)
    return replace(body, signature=key.sign(body.signed_bytes()))
