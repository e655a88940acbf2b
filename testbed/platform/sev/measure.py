"""Launch measurements: the SEV launch digest and LAUNCH_MEASURE blob, the SEV-SNP launch digest.

Sources:

- SEV API specification (AMD publication 55766), LAUNCH_UPDATE_DATA and LAUNCH_UPDATE_VMSA: the
  firmware folds each region it encrypts, guest memory and (SEV-ES) the VMSA, into the launch
  digest GCTX.LD, a SHA-256 over the bytes in the order given; LAUNCH_MEASURE returns
  ``MEASURE = HMAC-SHA256(TIK, 0x04 || API_MAJOR || API_MINOR || BUILD || GCTX.POLICY || GCTX.LD
  || MNONCE)`` followed by the 16-byte MNONCE (48 bytes). The constant 0x04 and the three
  version fields are one byte each, the policy a 4-byte little-endian integer, the digest 32
  bytes. B. Singh's attestation-report patch (qemu-devel, December 2020) describes the same
  digest "of the guest memory and VMSA encrypted with the LAUNCH_UPDATE".
- SEV-SNP Firmware ABI specification (AMD publication 56860), SNP_LAUNCH_UPDATE and the PAGE_INFO
  structure (section 8.17.2, "Layout of the PAGE_INFO structure"): each page updates the 48-byte
  launch digest as ``LD = SHA-384(PAGE_INFO)``, where PAGE_INFO (0x70 bytes) is DIGEST_CUR (the
  digest so far, 48 bytes at 0x00), CONTENTS (SHA-384 of the page, 48 bytes at 0x30), LENGTH (u16
  0x70 at 0x60), PAGE_TYPE (u8 at 0x62), IMI_PAGE (u8 at 0x63), the VMPL3/2/1 permissions (u8 each
  at 0x64-0x66), a reserved byte, and the page's guest-physical address (u64 at 0x68).

The layouts were cross-checked against public guest-owner tools: AMD's sev-tool
(``calc_measurement``: context byte, API major, minor, build, policy, digest, mnonce, TIK) and
virtee/sev-snp-measure (PAGE_INFO, and the VMSA's GPA 0xFFFFFFFFF000: the RMP records the VMSA at
GPA -1, page-aligned, bits above 51 clear).

The model's choices: the guest-physical address of the n-th page of the image is ``n * 4096``
(guest memory is laid out in launch order), no page is an IMI page, the VMPL permissions are
zero, and only NORMAL and VMSA pages occur (no zero, secrets or CPUID pages). The API version in
the LAUNCH_MEASURE blob is 0.24, build 15 (:data:`API_VERSION`).
"""

from __future__ import annotations

import abc
import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass

from ...errors import ConfigError
from ...types import PAGE_SIZE

__all__ = [
    "API_VERSION",
    "MEASURE_BLOB_SIZE",
    "MEASURE_CONTEXT",
    "PAGE_INFO_SIZE",
    "SNP_DIGEST_SIZE",
    "TIK_SIZE",
    "VMSA_GPA",
    "LaunchDigest",
    "MeasureBlob",
    "PageType",
    "SevLaunchDigest",
    "SnpLaunchDigest",
    "measure_hmac",
]

SNP_DIGEST_SIZE = 48
"""SHA-384: the SEV-SNP launch digest (MEASUREMENT in the report)."""
PAGE_INFO_SIZE = 0x70
_PAGE_INFO = struct.Struct("<48s48sHBBBBBxQ")
VMSA_GPA = 0xFFFF_FFFF_F000
"""Guest-physical address the VMSA page is measured at (as the RMP records it)."""
TIK_SIZE = 16
"""The transport integrity key: 128 bits."""
MEASURE_CONTEXT = 0x04
"""The constant byte that opens the LAUNCH_MEASURE HMAC input."""
API_VERSION = (0, 24, 15)
"""API major, API minor and build of the modelled SEV firmware."""
MNONCE_BLOB_SIZE = 16
MEASURE_BLOB_SIZE = 32 + MNONCE_BLOB_SIZE
"""LAUNCH_MEASURE's output: MEASURE (32 bytes) then MNONCE (16 bytes)."""


class PageType(enum.IntEnum):
    """PAGE_TYPE of SNP_LAUNCH_UPDATE (the types the model uses)."""

    NORMAL = 0x01
    VMSA = 0x02


class LaunchDigest(abc.ABC):
    """A launch digest being built page by page, as the firmware does it."""

    size: int

    @abc.abstractmethod
    def add_page(self, data: bytes, gpa: int) -> None:
        """Fold one page of guest memory at ``gpa`` into the digest."""

    @abc.abstractmethod
    def add_vmsa(self, vmsa: bytes) -> None:
        """Fold the initial register state into the digest."""

    @abc.abstractmethod
    def digest(self) -> bytes:
        """The digest so far."""


class SevLaunchDigest(LaunchDigest):
    """GCTX.LD of SEV / SEV-ES: SHA-256 over every encrypted byte, VMSA included, in order."""

    size = 32

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add_page(self, data: bytes, gpa: int) -> None:
        self._hash.update(data)

    def add_vmsa(self, vmsa: bytes) -> None:
        self._hash.update(vmsa)

    def digest(self) -> bytes:
        return self._hash.digest()


class SnpLaunchDigest(LaunchDigest):
    """The SEV-SNP launch digest: ``LD = SHA-384(PAGE_INFO)`` for each page, starting at zero.

    Raises:
        ConfigError: a page longer than 4 KiB or a GPA that is not page-aligned.
    """

    size = SNP_DIGEST_SIZE

    def __init__(self) -> None:
        self._digest = bytes(SNP_DIGEST_SIZE)

    def _update(self, page: bytes, page_type: PageType, gpa: int) -> None:
        if len(page) > PAGE_SIZE:
            raise ConfigError(f"SNP_LAUNCH_UPDATE: a page holds {PAGE_SIZE} bytes, got "
                              f"{len(page)}")
        if gpa % PAGE_SIZE or not 0 <= gpa < 1 << 64:
            raise ConfigError(f"SNP_LAUNCH_UPDATE: GPA {gpa:#x} is not a page address")
        contents = hashlib.sha384(page.ljust(PAGE_SIZE, b"\0")).digest()
        info = _PAGE_INFO.pack(self._digest, contents, PAGE_INFO_SIZE, page_type, 0, 0, 0, 0,
                               gpa)
        self._digest = hashlib.sha384(info).digest()

    def add_page(self, data: bytes, gpa: int) -> None:
        self._update(data, PageType.NORMAL, gpa)

    def add_vmsa(self, vmsa: bytes) -> None:
        self._update(vmsa, PageType.VMSA, VMSA_GPA)

    def digest(self) -> bytes:
        return self._digest


def measure_hmac(tik: bytes, policy: int, digest: bytes, mnonce: bytes,
                 version: tuple[int, int, int] = API_VERSION) -> bytes:
    """MEASURE of LAUNCH_MEASURE: HMAC-SHA256 under the TIK (layout in the module docstring).

    Raises:
        ConfigError: a TIK, digest or mnonce of the wrong size, or a policy beyond a u32.
    """
    for name, value, size in (("TIK", tik, TIK_SIZE), ("launch digest", digest, 32),
                              ("mnonce", mnonce, MNONCE_BLOB_SIZE)):
        if len(value) != size:
            raise ConfigError(f"LAUNCH_MEASURE {name}: expected {size} bytes, got {len(value)}")
    if not 0 <= policy < 1 << 32:
        raise ConfigError(f"LAUNCH_MEASURE policy: must fit in a u32, got {policy}")
    major, minor, build = version
    message = (bytes((MEASURE_CONTEXT, major, minor, build)) + policy.to_bytes(4, "little")
               + digest + mnonce)
    return hmac.new(tik, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class MeasureBlob:
    """LAUNCH_MEASURE's 48-byte output: MEASURE (0x00, 32 bytes), MNONCE (0x20, 16 bytes)."""

    measure: bytes
    mnonce: bytes

    def pack(self) -> bytes:
        """The blob's bytes."""
        return self.measure + self.mnonce

    @classmethod
    def unpack(cls, data: bytes) -> MeasureBlob:
        """Parse a blob.

        Raises:
            ConfigError: ``data`` is not 48 bytes.
        """
        if len(data) != MEASURE_BLOB_SIZE:
            raise ConfigError(f"LAUNCH_MEASURE blob: expected {MEASURE_BLOB_SIZE} bytes, got "
                              f"{len(data)}")
        return cls(data[:32], data[32:])
