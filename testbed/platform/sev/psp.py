"""The SEV platform security processor (PSP): launch measurement and signed attestation reports.

Source: B. Singh, "[PATCH] target/i386/sev: add the support to query the attestation report"
(qemu-devel, 4 December 2020), and its review. From SEV firmware 0.23 the PSP can return a report
that holds the SHA-256 digest of the guest memory encrypted through LAUNCH_UPDATE, signed with the
platform endorsement key (PEK); unlike LAUNCH_MEASURE it can be asked for while the guest runs, and
the caller supplies a 16-byte ``mnonce`` that the report echoes.

What this module models:

- **Launch.** :meth:`Psp.launch_start`, :meth:`Psp.launch_update_data` (the PSP encrypts what
  the host hands it into guest memory, under the guest's key, and folds the same bytes into a
  SHA-256 launch digest), :meth:`Psp.launch_measure`, :meth:`Psp.launch_finish`.
- **The report** it signs with its PEK: the layout is in :mod:`testbed.platform.sev.report`, the
  PEK's certificate chain in :mod:`testbed.platform.sev.certs`.
- **The host interface** :func:`query_attestation_report`: one vendor-neutral call whose reply
  has an optional SEV component (as the review asked), with the mnonce given as base64 of
  exactly 16 bytes (as the review asked too).

The guest owner's side, which checks the reply, is :mod:`testbed.platform.sev.verifier`.

The model leaves out the VMSA measurement (SEV-ES), the HMAC'd LAUNCH_MEASURE blob and the
transport keys of LAUNCH_SECRET.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from dataclasses import dataclass, field

from ...crypto.signing import KEY_SEED_SIZE, SigningKey
from ...errors import ConfigError, InvalidArgument
from ...types import PhysAddr
from ..machine import Domain, DomainKind, Machine
from .certs import Certificate, Vendor, issue_certificate
from .report import MNONCE_SIZE, POLICY_NODBG, U32_MAX, KeyUsage, SevReport, sign_report

__all__ = [
    "AttestationReport",
    "LaunchState",
    "Psp",
    "SevAttestationReport",
    "decode_mnonce",
    "encode_mnonce",
    "query_attestation_report",
]


# -- the PSP --------------------------------------------------------------------------------
class LaunchState(enum.StrEnum):
    """Where a guest is in its launch."""

    UPDATE = "launch update"
    MEASURED = "measured"
    RUNNING = "running"


@dataclass
class _Launch:
    guest: Domain
    policy: int
    state: LaunchState = LaunchState.UPDATE
    digest: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    """What LAUNCH_UPDATE_DATA took, in order: the launch digest covers exactly these bytes."""


class Psp:
    """The platform security processor of one machine.

    Args:
        machine: the machine; its engine must attest (:attr:`Engine.attests`).
        vendor: the vendor that certifies this chip.

    The chip's CEK and its PEK come from the machine's own key source (the platform RNG the
    engine's keys come from), never from an attack's randomness.

    Raises:
        ConfigError: the engine has no PSP.
    """

    def __init__(self, machine: Machine, vendor: Vendor) -> None:
        if not machine.engine.attests:
            raise ConfigError(f"engine {machine.engine.name} has no platform security processor")
        self.machine = machine
        keys = machine.engine.keys
        cek = SigningKey(keys.seed(KEY_SEED_SIZE))
        self._pek = SigningKey(keys.seed(KEY_SEED_SIZE))
        pek_cert = issue_certificate(KeyUsage.PEK, self._pek.public_key, KeyUsage.CEK, cek)
        self.cert_chain: tuple[Certificate, ...] = (
            vendor.ark_cert, vendor.ask_cert, vendor.certify_chip(cek.public_key), pek_cert,
        )
        """ARK, ASK, CEK, PEK: what the host exports for guest owners."""
        self._launches: dict[int, _Launch] = {}
        self._next_handle = 1

    def _launch(self, handle: int, *states: LaunchState) -> _Launch:
        launch = self._launches.get(handle)
        if launch is None:
            raise InvalidArgument(f"PSP: no guest with handle {handle}")
        if states and launch.state not in states:
            allowed = " or ".join(s.value for s in states)
            raise InvalidArgument(f"PSP: guest {handle} is in state '{launch.state}', the "
                                  f"command needs '{allowed}'")
        return launch

    def launch_start(self, guest: Domain, policy: int = POLICY_NODBG) -> int:
        """Begin launching ``guest`` under ``policy``; returns the guest's handle.

        Raises:
            InvalidArgument: ``guest`` is not a guest, or ``policy`` does not fit in a u32.
        """
        if guest.kind is not DomainKind.GUEST:
            raise InvalidArgument(f"LAUNCH_START: {guest.name} is a {guest.kind.value}, not a "
                                  "guest")
        if not 0 <= policy <= U32_MAX:
            raise InvalidArgument(f"LAUNCH_START: policy must fit in a u32, got {policy}")
        handle = self._next_handle
        self._next_handle += 1
        self._launches[handle] = _Launch(guest, policy)
        return handle

    def launch_update_data(self, handle: int, pa: PhysAddr, data: bytes) -> None:
        """Encrypt ``data`` into the guest's page at ``pa`` and add it to the launch digest."""
        launch = self._launch(handle, LaunchState.UPDATE)
        self.machine.write(launch.guest, pa, data)
        launch.chunks.append(bytes(data))

    def launch_measure(self, handle: int) -> bytes:
        """Close the measurement: the SHA-256 digest of everything LAUNCH_UPDATE_DATA took."""
        launch = self._launch(handle, LaunchState.UPDATE)
        launch.digest = hashlib.sha256(b"".join(launch.chunks)).digest()
        launch.state = LaunchState.MEASURED
        return launch.digest

    def launch_finish(self, handle: int) -> None:
        """The guest starts running."""
        self._launch(handle, LaunchState.MEASURED).state = LaunchState.RUNNING

    def attestation_report(self, handle: int, mnonce: bytes) -> bytes:
        """The firmware's ATTESTATION command: a signed 208-byte report.

        Raises:
            InvalidArgument: ``mnonce`` is not 16 bytes, or the launch is not measured yet.
        """
        if len(mnonce) != MNONCE_SIZE:
            raise InvalidArgument(f"ATTESTATION: mnonce must be {MNONCE_SIZE} bytes, got "
                                  f"{len(mnonce)}")
        launch = self._launch(handle, LaunchState.MEASURED, LaunchState.RUNNING)
        body = SevReport(mnonce, launch.digest, launch.policy)
        return sign_report(body, self._pek).pack()

    def decommission(self, handle: int) -> None:
        """Forget the guest (its handle is no longer valid)."""
        self._launch(handle)
        del self._launches[handle]


# -- the vendor-neutral host interface ------------------------------------------------------
@dataclass(frozen=True)
class SevAttestationReport:
    """The SEV component of a reply: the firmware's report, base64-encoded."""

    data: str

    @classmethod
    def of(cls, raw: bytes) -> SevAttestationReport:
        """The component carrying the report ``raw``."""
        return cls(base64.b64encode(raw).decode("ascii"))

    def raw(self) -> bytes:
        """The report bytes (``ValueError`` if ``data`` is not base64)."""
        return base64.b64decode(self.data, validate=True)


@dataclass(frozen=True)
class AttestationReport:
    """Reply of :func:`query_attestation_report`: one optional component per vendor."""

    sev: SevAttestationReport | None = None


def encode_mnonce(mnonce: bytes) -> str:
    """The base64 text :func:`query_attestation_report` takes."""
    return base64.b64encode(mnonce).decode("ascii")


def decode_mnonce(text: str) -> bytes:
    """Decode an mnonce argument.

    Raises:
        InvalidArgument: not base64, or not exactly 16 bytes once decoded.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"mnonce: not valid base64 ({exc})") from None
    if len(raw) != MNONCE_SIZE:
        raise InvalidArgument(f"mnonce: expected {MNONCE_SIZE} bytes after base64 decoding, "
                              f"got {len(raw)}")
    return raw


def query_attestation_report(
    machine: Machine, psp: Psp | None, handle: int, mnonce: str
) -> AttestationReport:
    """The host's "query attestation report" command for the guest ``handle``.

    Args:
        machine: the host machine.
        psp: its PSP, or ``None`` where it has none.
        handle: the guest, as returned by :meth:`Psp.launch_start`.
        mnonce: base64 of exactly 16 bytes chosen by the guest owner.

    Raises:
        ConfigError: attestation is not enabled: the machine's engine has no PSP. This is a
            property of the machine, not a refusal of one call, so it is not a
            :class:`~testbed.errors.PlatformRefusal`.
        InvalidArgument: a bad mnonce (not base64, or not 16 bytes) or an unknown guest.
    """
    if psp is None or not machine.engine.attests or psp.machine is not machine:
        raise ConfigError(f"attestation is not enabled: engine {machine.engine.name} has no "
                          "platform security processor for this guest")
    raw = psp.attestation_report(handle, decode_mnonce(mnonce))
    return AttestationReport(sev=SevAttestationReport.of(raw))
