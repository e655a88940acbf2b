"""The SEV platform security processor (PSP): launch measurement and signed attestation reports.

Source: B. Singh, "[PATCH] target/i386/sev: add the support to query the attestation report"
(qemu-devel, 4 December 2020), and its review. From SEV firmware 0.23 the PSP can return a report
that holds the SHA-256 digest of the guest memory encrypted through LAUNCH_UPDATE, signed with the
platform endorsement key (PEK); unlike LAUNCH_MEASURE it can be asked for while the guest runs, and
the caller supplies a 16-byte ``mnonce`` that the report echoes.

What this module models:

- **Launch.** :meth:`Psp.launch_start` (with the owner's transport integrity key, TIK),
  :meth:`Psp.launch_update_data` (the PSP encrypts what the host hands it into guest memory,
  under the guest's key, and folds the same bytes into the launch digest),
  :meth:`Psp.launch_update_vmsa` (the initial register state, measured too; legacy firmware
  has the command only for SEV-ES guests, whose policy sets ES, bit 2: a plain SEV guest's
  registers are neither encrypted nor measured, and the firmware refuses it),
  :meth:`Psp.launch_measure` (closes the digest; legacy firmware returns the HMAC'd
  LAUNCH_MEASURE blob), :meth:`Psp.launch_finish`. Digests and the blob are in
  :mod:`testbed.platform.sev.measure`.
- **The report** it signs: legacy firmware, the 208-byte report signed with its PEK
  (:mod:`testbed.platform.sev.report`, chain in :mod:`testbed.platform.sev.certs`); SEV-SNP
  firmware (an engine implementing
  :class:`~testbed.platform.engines.EngineWithSnpAttestation`), the 1184-byte SNP report signed
  with its VCEK (:mod:`testbed.platform.sev.snp_report`, chain in
  :mod:`testbed.platform.sev.snp_certs`). Which one follows from the engine's interfaces.
- **The guest policy** LAUNCH_START takes: the firmware answers POLICY_FAILURE (a
  :class:`~testbed.errors.FirmwareRefusal`) to one it cannot honour
  (:meth:`ReportFormat.policy_problem`: legacy, reserved bits 15:6 or an API minimum above the
  firmware's, SEV API specification, publication 55766, guest policy; SNP, bit 17 clear,
  reserved bits 63:26 or an ABI minimum above the firmware's, SEV-SNP ABI, publication 56860,
  guest policy and SNP_LAUNCH_START).
- **PLATFORM_INFO** of an SNP report, from the platform: bit 4 when the engine hides guest
  ciphertext from the hypervisor (read from the engine's :class:`EngineWithRmp` interface on
  one of the guest's frames), bit 5 (ALIAS_CHECK_COMPLETE) when the machine's boot firmware
  checks DRAM for aliases (the ``alias_check`` mitigation).
- **The host interface** :func:`query_attestation_report`: one vendor-neutral call whose reply
  has an optional SEV and an optional SNP component (as the review asked), with the nonce given
  as base64 of exactly 16 bytes (legacy mnonce, as the review asked too) or 64 bytes (SNP
  REPORT_DATA). An SNP report is asked for by the guest through its guest-request channel; the
  model has the host relay the owner's nonce to it.

The guest owner's side, which checks the reply, is :mod:`testbed.platform.sev.verifier`.

The model leaves out the key agreement that wraps the TIK in LAUNCH_START's session (the owner
hands the PSP its TIK, which the hypervisor never sees) and the transport keys of
LAUNCH_SECRET.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass, field
from typing import Self

from ...crypto.signing import KEY_SEED_SIZE, SigningKey
from ...errors import ConfigError, FirmwareRefusal, InvalidArgument
from ...types import PAGE_SIZE, PhysAddr
from ..engines import EngineWithRmp, EngineWithSnpAttestation
from ..machine import Domain, DomainKind, Machine
from .certs import Certificate, Vendor, issue_certificate
from .measure import (
    TIK_SIZE,
    LaunchDigest,
    MeasureBlob,
    SevLaunchDigest,
    SnpLaunchDigest,
    measure_hmac,
)
from .report import (
    MNONCE_SIZE,
    POLICY_DEFAULT,
    POLICY_ES,
    POLICY_NODBG,
    KeyUsage,
    SevReport,
    policy_problem,
    sign_report,
)
from .snp_report import (
    PLATFORM_INFO_ALIAS_CHECK,
    PLATFORM_INFO_CIPHERTEXT_HIDING,
    REPORT_DATA_SIZE,
    SNP_POLICY_DEBUG,
    SNP_POLICY_DEFAULT,
    SnpReport,
    sign_snp_report,
    snp_policy_problem,
)
from .vmsa import VMSA_SIZE

__all__ = [
    "AttestationReport",
    "LaunchState",
    "Psp",
    "ReportFormat",
    "SevAttestationReport",
    "SnpAttestationReport",
    "decode_mnonce",
    "decode_nonce",
    "encode_mnonce",
    "query_attestation_report",
]



class ReportFormat(enum.StrEnum):
    """Which attestation a PSP's firmware offers."""

    SEV = "sev"
    """Legacy SEV: SHA-256 launch digest, LAUNCH_MEASURE, the 208-byte PEK-signed report."""
    SNP = "sev-snp"
    """SEV-SNP: SHA-384 launch digest, the 1184-byte VCEK-signed report."""

    @property
    def nonce_size(self) -> int:
        """Bytes of the owner's nonce: the legacy mnonce or the SNP REPORT_DATA."""
        return MNONCE_SIZE if self is ReportFormat.SEV else REPORT_DATA_SIZE

    @property
    def digest_size(self) -> int:
        """Bytes of the launch digest."""
        return SevLaunchDigest.size if self is ReportFormat.SEV else SnpLaunchDigest.size

    def allow_debug(self, policy: int) -> int:
        """``policy`` with debugging allowed: legacy NODBG (bit 0) cleared, SNP DEBUG (bit 19)
        set."""
        if self is ReportFormat.SEV:
            return policy & ~POLICY_NODBG
        return policy | SNP_POLICY_DEBUG

    def debug_allowed(self, policy: int) -> bool:
        """Whether ``policy`` lets the hypervisor use DBG_DECRYPT."""
        if self is ReportFormat.SEV:
            return not policy & POLICY_NODBG
        return bool(policy & SNP_POLICY_DEBUG)

    def default_policy(self) -> int:
        """The guest policy an owner asks for by default: no debugging; on legacy firmware an
        SEV-ES guest (NODBG | ES, 0x5), as SNP guests always are."""
        return POLICY_DEFAULT if self is ReportFormat.SEV else SNP_POLICY_DEFAULT

    def policy_problem(self, policy: int) -> str | None:
        """Why this firmware answers POLICY_FAILURE to a launch under ``policy`` (``None``:
        it accepts it)."""
        return policy_problem(policy) if self is ReportFormat.SEV else snp_policy_problem(policy)

    def encrypts_state(self, policy: int) -> bool:
        """Whether a guest launched under ``policy`` has its register state (VMSA) encrypted and
        measured: SEV-ES (legacy policy bit 2) or SEV-SNP (always)."""
        return self is ReportFormat.SNP or bool(policy & POLICY_ES)

    def new_digest(self) -> LaunchDigest:
        """An empty launch digest of this format."""
        return SevLaunchDigest() if self is ReportFormat.SEV else SnpLaunchDigest()


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
    tik: bytes
    measurement: LaunchDigest
    state: LaunchState = LaunchState.UPDATE
    digest: bytes = b""
    pages: int = 0
    """Pages LAUNCH_UPDATE_DATA took: the next one's guest-physical address is pages * 4096."""
    report_id: bytes = field(default=b"")


class Psp:
    """The platform security processor of one machine.

    Args:
        machine: the machine; its engine must attest (:attr:`Engine.attests`).
        vendor: the vendor that certifies this chip.

    The chip's CEK and its PEK (and, under SNP firmware, its VCEK and chip id) come from the
    machine's own key source (the platform RNG the engine's keys come from), never from an
    attack's randomness.

    Raises:
        ConfigError: the engine has no PSP.
    """

    def __init__(self, machine: Machine, vendor: Vendor) -> None:
        if not machine.engine.attests:
            raise ConfigError(f"engine {machine.engine.name} has no platform security processor")
        self.machine = machine
        self.report_format = (ReportFormat.SNP
                              if isinstance(machine.engine, EngineWithSnpAttestation)
                              else ReportFormat.SEV)
        """The firmware's attestation, from the engine's interfaces."""
        keys = machine.engine.keys
        cek = SigningKey(keys.seed(KEY_SEED_SIZE))
        self._pek = SigningKey(keys.seed(KEY_SEED_SIZE))
        pek_cert = issue_certificate(KeyUsage.PEK, self._pek.public_key, KeyUsage.CEK, cek)
        self.cert_chain: tuple[Certificate, ...] = (
            vendor.ark_cert, vendor.ask_cert, vendor.certify_chip(cek.public_key), pek_cert,
        )
        """ARK, ASK, CEK, PEK: what the host exports for guest owners."""
        self.vcek_chain: tuple[bytes, ...] = ()
        """SNP firmware: the ARK, ASK and VCEK certificates (DER), root first."""
        self.chip_id = b""
        if self.report_format is ReportFormat.SNP:
            self._vcek = SigningKey(keys.seed(KEY_SEED_SIZE))
            self.chip_id = keys.seed(64)
            snp = vendor.snp
            self.vcek_chain = (snp.ark_cert, snp.ask_cert,
                               snp.certify_vcek(self._vcek.public_key))
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

    @property
    def default_policy(self) -> int:
        """The guest policy an owner asks for by default (:meth:`ReportFormat.default_policy`)."""
        return self.report_format.default_policy()

    def platform_info(self, guest: Domain) -> int:
        """The SNP report's PLATFORM_INFO for ``guest``: ciphertext hiding (bit 4) when the
        engine hides the guest's frames from hypervisor reads, ALIAS_CHECK_COMPLETE (bit 5)
        when the boot firmware checked DRAM for aliases."""
        info = 0
        engine = self.machine.engine
        frame = next(iter(guest.npt.values()), None)
        if isinstance(engine, EngineWithRmp) and frame is not None and (
                engine.hides_ciphertext(frame)):
            info |= PLATFORM_INFO_CIPHERTEXT_HIDING
        if self.machine.mitigations.alias_check:
            info |= PLATFORM_INFO_ALIAS_CHECK
        return info

    def policy_of(self, handle: int) -> int:
        """The policy guest ``handle`` was launched under."""
        return self._launch(handle).policy

    def launch_start(self, guest: Domain, policy: int | None = None,
                     tik: bytes | None = None) -> int:
        """Begin launching ``guest`` under ``policy``; returns the guest's handle.

        Args:
            guest: the guest domain.
            policy: the guest policy (u32 legacy, u64 SNP); default :attr:`default_policy`.
            tik: the owner's 16-byte transport integrity key; without one the PSP makes one
                that nobody else knows.

        Raises:
            InvalidArgument: ``guest`` is not a guest or the TIK is not 16 bytes.
            FirmwareRefusal: POLICY_FAILURE, the firmware cannot honour ``policy``
                (:meth:`ReportFormat.policy_problem`).
        """
        if guest.kind is not DomainKind.GUEST:
            raise InvalidArgument(f"LAUNCH_START: {guest.name} is a {guest.kind.value}, not a "
                                  "guest")
        policy = self.default_policy if policy is None else policy
        problem = self.report_format.policy_problem(policy)
        if problem is not None:
            raise FirmwareRefusal(f"LAUNCH_START: POLICY_FAILURE: {problem}")
        if tik is not None and len(tik) != TIK_SIZE:
            raise InvalidArgument(f"LAUNCH_START: the TIK must be {TIK_SIZE} bytes, got "
                                  f"{len(tik)}")
        keys = self.machine.engine.keys
        handle = self._next_handle
        self._next_handle += 1
        self._launches[handle] = _Launch(
            guest, policy, keys.seed(TIK_SIZE) if tik is None else bytes(tik),
            self.report_format.new_digest())
        return handle

    def launch_update_data(self, handle: int, pa: PhysAddr, data: bytes) -> None:
        """Encrypt ``data`` (at most one page) into the guest's page at ``pa`` and add it to the
        launch digest. SNP firmware measures whole pages: the rest of the page is zero-filled.

        Raises:
            InvalidArgument: more than a page, or the launch is no longer being updated.
        """
        launch = self._launch(handle, LaunchState.UPDATE)
        if len(data) > PAGE_SIZE:
            raise InvalidArgument(f"LAUNCH_UPDATE_DATA: at most {PAGE_SIZE} bytes a call, got "
                                  f"{len(data)}")
        if self.report_format is ReportFormat.SNP:
            data = bytes(data).ljust(PAGE_SIZE, b"\0")
        self.machine.write(launch.guest, pa, data)
        launch.measurement.add_page(bytes(data), launch.pages * PAGE_SIZE)
        launch.pages += 1

    def launch_update_vmsa(self, handle: int, pa: PhysAddr, vmsa: bytes) -> None:
        """Encrypt the initial register state ``vmsa`` (one 4 KiB page, see
        :class:`~testbed.platform.sev.vmsa.Vmsa`) into the guest's page at ``pa`` and add it
        to the launch digest (LAUNCH_UPDATE_VMSA; SNP_LAUNCH_UPDATE with PAGE_TYPE_VMSA).

        Raises:
            InvalidArgument: not one page, the launch is no longer being updated, or a legacy
                guest whose policy lacks ES (bit 2): only SEV-ES guests have a VMSA the
                firmware encrypts and measures.
        """
        launch = self._launch(handle, LaunchState.UPDATE)
        if not self.report_format.encrypts_state(launch.policy):
            raise InvalidArgument(f"LAUNCH_UPDATE_VMSA: guest {handle}'s policy "
                                  f"{launch.policy:#x} has no ES bit (bit 2): a plain SEV guest's "
                                  "register state is neither encrypted nor measured")
        if len(vmsa) != VMSA_SIZE:
            raise InvalidArgument(f"LAUNCH_UPDATE_VMSA: the VMSA is {VMSA_SIZE} bytes, got "
                                  f"{len(vmsa)}")
        self.machine.write(launch.guest, pa, vmsa)
        launch.measurement.add_vmsa(bytes(vmsa))

    def launch_measure(self, handle: int) -> bytes | None:
        """Close the measurement. Legacy firmware returns the LAUNCH_MEASURE blob (48 bytes:
        HMAC-SHA256 under the TIK, then a fresh mnonce); SNP firmware has no such command and
        returns ``None``."""
        launch = self._launch(handle, LaunchState.UPDATE)
        launch.digest = launch.measurement.digest()
        launch.state = LaunchState.MEASURED
        if self.report_format is ReportFormat.SNP:
            launch.report_id = self.machine.engine.keys.seed(32)
            return None
        mnonce = self.machine.engine.keys.seed(MNONCE_SIZE)
        measure = measure_hmac(launch.tik, launch.policy, launch.digest, mnonce)
        return MeasureBlob(measure, mnonce).pack()

    def launch_digest(self, handle: int) -> bytes:
        """The launch digest the PSP holds for the guest (for the model's metrics: firmware only
        reveals it inside a MACed blob or a signed report)."""
        return self._launch(handle, LaunchState.MEASURED, LaunchState.RUNNING).digest

    def launch_finish(self, handle: int) -> None:
        """The guest starts running."""
        self._launch(handle, LaunchState.MEASURED).state = LaunchState.RUNNING

    def attestation_report(self, handle: int, mnonce: bytes) -> bytes:
        """Legacy firmware's ATTESTATION command: a signed 208-byte report.

        Raises:
            InvalidArgument: SNP firmware, ``mnonce`` is not 16 bytes, or the launch is not
                measured yet.
        """
        if self.report_format is not ReportFormat.SEV:
            raise InvalidArgument("ATTESTATION: SEV-SNP guests ask for SNP reports")
        if len(mnonce) != MNONCE_SIZE:
            raise InvalidArgument(f"ATTESTATION: mnonce must be {MNONCE_SIZE} bytes, got "
                                  f"{len(mnonce)}")
        launch = self._launch(handle, LaunchState.MEASURED, LaunchState.RUNNING)
        body = SevReport(mnonce, launch.digest, launch.policy)
        return sign_report(body, self._pek).pack()

    def snp_report(self, handle: int, report_data: bytes, vmpl: int = 0) -> bytes:
        """SNP firmware's MSG_REPORT_REQ: a 1184-byte report signed with the VCEK.

        Args:
            handle: the guest.
            report_data: 64 bytes the guest chose (the owner's nonce).
            vmpl: the VMPL the request came from (0..3).

        Raises:
            InvalidArgument: legacy firmware, ``report_data`` not 64 bytes, a VMPL beyond 3, or
                the launch is not measured yet.
        """
        if self.report_format is not ReportFormat.SNP:
            raise InvalidArgument("MSG_REPORT_REQ: this firmware has no SEV-SNP support")
        if len(report_data) != REPORT_DATA_SIZE:
            raise InvalidArgument(f"MSG_REPORT_REQ: REPORT_DATA must be {REPORT_DATA_SIZE} "
                                  f"bytes, got {len(report_data)}")
        if not 0 <= vmpl <= 3:
            raise InvalidArgument(f"MSG_REPORT_REQ: VMPL must be 0..3, got {vmpl}")
        launch = self._launch(handle, LaunchState.MEASURED, LaunchState.RUNNING)
        body = SnpReport(report_data, launch.digest, launch.policy, vmpl,
                         platform_info=self.platform_info(launch.guest),
                         report_id=launch.report_id, chip_id=self.chip_id)
        return sign_snp_report(body, self._vcek).pack()

    def debug_decrypt(self, handle: int, pa: PhysAddr, length: int) -> bytes:
        """DBG_DECRYPT (SEV API; SNP_DBG_DECRYPT): the hypervisor reads guest memory in the
        clear, which the firmware allows only to a guest whose policy permits debugging.

        Raises:
            InvalidArgument: the guest's policy forbids debugging, or an unknown guest.
        """
        launch = self._launch(handle)
        if not self.report_format.debug_allowed(launch.policy):
            raise InvalidArgument(f"DBG_DECRYPT: guest {handle}'s policy {launch.policy:#x} "
                                  "forbids debugging")
        return self.machine.read(launch.guest, pa, length)

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
    def of(cls, raw: bytes) -> Self:
        """The component carrying the report ``raw``."""
        return cls(base64.b64encode(raw).decode("ascii"))

    def raw(self) -> bytes:
        """The report bytes (``ValueError`` if ``data`` is not base64)."""
        return base64.b64decode(self.data, validate=True)


@dataclass(frozen=True)
class SnpAttestationReport(SevAttestationReport):
    """The SEV-SNP component of a reply: the firmware's SNP report, base64-encoded."""


@dataclass(frozen=True)
class AttestationReport:
    """Reply of :func:`query_attestation_report`: one optional component per vendor."""

    sev: SevAttestationReport | None = None
    snp: SnpAttestationReport | None = None


def encode_mnonce(mnonce: bytes) -> str:
    """The base64 text :func:`query_attestation_report` takes."""
    return base64.b64encode(mnonce).decode("ascii")


def decode_nonce(text: str, size: int, name: str = "mnonce") -> bytes:
    """Decode a nonce argument of ``size`` bytes.

    Raises:
        InvalidArgument: not base64, or not exactly ``size`` bytes once decoded.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"{name}: not valid base64 ({exc})") from None
    if len(raw) != size:
        raise InvalidArgument(f"{name}: expected {size} bytes after base64 decoding, "
                              f"got {len(raw)}")
    return raw


def decode_mnonce(text: str) -> bytes:
    """Decode an mnonce argument.

    Raises:
        InvalidArgument: not base64, or not exactly 16 bytes once decoded.
    """
    return decode_nonce(text, MNONCE_SIZE)


def query_attestation_report(
    machine: Machine, psp: Psp | None, handle: int, mnonce: str
) -> AttestationReport:
    """The host's "query attestation report" command for the guest ``handle``.

    Args:
        machine: the host machine.
        psp: its PSP, or ``None`` where it has none.
        handle: the guest, as returned by :meth:`Psp.launch_start`.
        mnonce: base64 of the owner's nonce: exactly 16 bytes (legacy firmware) or 64 bytes
            (SNP firmware, the report's REPORT_DATA).

    Raises:
        ConfigError: attestation is not enabled: the machine's engine has no PSP. This is a
            property of the machine, not a refusal of one call, so it is not a
            :class:`~testbed.errors.PlatformRefusal`.
        InvalidArgument: a bad nonce (not base64, or of the wrong size) or an unknown guest.
    """
    if psp is None or not machine.engine.attests or psp.machine is not machine:
        raise ConfigError(f"attestation is not enabled: engine {machine.engine.name} has no "
                          "platform security processor for this guest")
    if psp.report_format is ReportFormat.SNP:
        raw = psp.snp_report(handle, decode_nonce(mnonce, REPORT_DATA_SIZE, "report_data"))
        return AttestationReport(snp=SnpAttestationReport.of(raw))
    raw = psp.attestation_report(handle, decode_mnonce(mnonce))
    return AttestationReport(sev=SevAttestationReport.of(raw))
