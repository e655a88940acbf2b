"""The SEV platform security processor (PSP): launch measurement and signed attestation reports.

Source: the patch adding an attestation-report query to QEMU and its review
(``seeds/sev-attestation-report.txt``). From SEV firmware 0.23 the PSP can return a report that
holds the SHA-256 digest of the guest memory encrypted through LAUNCH_UPDATE, signed with the
platform endorsement key (PEK); unlike LAUNCH_MEASURE it can be asked for while the guest runs,
and the caller supplies a 16-byte ``mnonce`` that the report echoes.

What this module models:

- **Launch.** :meth:`Psp.launch_start`, :meth:`Psp.launch_update_data` (the PSP encrypts what
  the host hands it into guest memory, under the guest's key, and folds the same bytes into a
  SHA-256 launch digest), :meth:`Psp.launch_measure`, :meth:`Psp.launch_finish`.
- **The report** (:class:`SevReport`), in the legacy SEV layout::

      0x00  mnonce          16 bytes   signed
      0x10  launch_digest   32 bytes   signed
      0x30  policy          u32 LE     signed
      0x34  sig_usage       u32 LE     0x1002: the PEK
      0x38  sig_algo        u32 LE     0x0002: ECDSA with SHA-256
      0x3C  reserved        u32        zero
      0x40  signature       144 bytes  r then s, 72-byte little-endian each
      0xD0  (end: 208 bytes)

  The signature covers bytes 0x00-0x33 only: ``sig_usage``, ``sig_algo`` and ``reserved`` are
  outside it, so the verifier checks the first two by value and ignores the third.
- **The PEK's certificate chain**, ARK -> ASK -> CEK -> PEK. Real SEV signs the ARK and ASK with
  RSA; here every link is ECDSA P-384, and a certificate is this model's own small struct
  (:class:`Certificate`), neither X.509 nor the SEV certificate format.
- **The host interface** :func:`query_attestation_report`: one vendor-neutral call whose reply
  has an optional SEV component (as the review asked), with the mnonce given as base64 of
  exactly 16 bytes (as the review asked too).
- **The guest owner's verifier** (:class:`Verifier`): each failing check raises
  :class:`~testbed.errors.VerificationFailed` with a message that starts with the check's name.

The model leaves out the VMSA measurement (SEV-ES), the HMAC'd LAUNCH_MEASURE blob, the
transport keys of LAUNCH_SECRET and the SEV-SNP report format: SEV-SNP guests get the legacy
report here too.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NoReturn

import numpy as np

from ..crypto.signing import (
    KEY_SEED_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    SigningKey,
    VerifyingKey,
)
from ..errors import ConfigError, InvalidArgument, VerificationFailed
from .machine import Domain, DomainKind, Machine

__all__ = [
    "CERT_SIZE",
    "CHAIN_ORDER",
    "CERT_SIGNED_END",
    "LAUNCH_DIGEST_OFFSET",
    "LAUNCH_DIGEST_SIZE",
    "MNONCE_OFFSET",
    "MNONCE_SIZE",
    "POLICY_NODBG",
    "POLICY_OFFSET",
    "REPORT_SIZE",
    "RESERVED_OFFSET",
    "SIGNATURE_OFFSET",
    "SIGNED_END",
    "SIG_ALGO_OFFSET",
    "SIG_USAGE_OFFSET",
    "AttestationReport",
    "Certificate",
    "Check",
    "CheckResult",
    "KeyUsage",
    "LaunchState",
    "Psp",
    "SevAttestationReport",
    "SevReport",
    "SigAlgo",
    "Vendor",
    "Verifier",
    "decode_mnonce",
    "encode_mnonce",
    "issue_certificate",
    "query_attestation_report",
    "sign_report",
    "verify_chain",
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
"""Guest policy bit 0: debugging of the guest is disallowed (QEMU's default guest policy)."""
_U32 = 0xFFFF_FFFF


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
            if not 0 <= number <= _U32:
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


def sign_report(report: SevReport, key: SigningKey) -> SevReport:
    """``report`` with ``sig_usage`` = PEK, ``sig_algo`` = ECDSA-SHA256 and signed by ``key``."""
    body = replace(report, sig_usage=KeyUsage.PEK, sig_algo=SigAlgo.ECDSA_SHA256)
    return replace(body, signature=key.sign(body.signed_bytes()))


# -- certificates ---------------------------------------------------------------------------
CERT_VERSION = 1
CURVE_P384 = 2
"""SEV's curve identifier for NIST P-384."""
_CERT = struct.Struct(f"<IIII{PUBLIC_KEY_SIZE}sII{SIGNATURE_SIZE}s")
CERT_SIZE = _CERT.size
"""312 bytes: version, usage, algo, curve (u32 each), public key (qx, qy), signer usage, a
reserved u32, signature."""
CERT_SIGNED_END = CERT_SIZE - SIGNATURE_SIZE
"""A certificate's signature covers every byte before it."""
CHAIN_ORDER = (KeyUsage.ARK, KeyUsage.ASK, KeyUsage.CEK, KeyUsage.PEK)
"""Usages of the chain a PSP exports, root first."""


@dataclass(frozen=True)
class Certificate:
    """A public key, what it is for, and the signature of the key one step up the chain.

    Attributes:
        usage: what the certified key is (:class:`KeyUsage`).
        public_key: the certified key, 144 bytes (see :class:`VerifyingKey`).
        signer_usage: usage of the key that signed this certificate (the ARK signs itself).
        signature: ECDSA-SHA256 over the first :data:`CERT_SIGNED_END` bytes.
    """

    usage: int
    public_key: bytes
    signer_usage: int
    signature: bytes = bytes(SIGNATURE_SIZE)
    version: int = CERT_VERSION
    algo: int = SigAlgo.ECDSA_SHA256
    curve: int = CURVE_P384

    def pack(self) -> bytes:
        """The certificate's bytes."""
        return _CERT.pack(self.version, self.usage, self.algo, self.curve, self.public_key,
                          self.signer_usage, 0, self.signature)

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers."""
        return self.pack()[:CERT_SIGNED_END]

    def key(self) -> VerifyingKey:
        """The certified key.

        Raises:
            ConfigError: the key bytes are not a P-384 point.
        """
        return VerifyingKey(self.public_key)


def issue_certificate(
    usage: KeyUsage, subject: VerifyingKey, signer_usage: KeyUsage, signer: SigningKey
) -> Certificate:
    """A certificate for ``subject``, signed by ``signer`` (whose usage is ``signer_usage``)."""
    cert = Certificate(int(usage), subject.encoded, int(signer_usage))
    return replace(cert, signature=signer.sign(cert.signed_bytes()))


def _chain_problem(chain: Sequence[Certificate], root: VerifyingKey) -> str | None:
    usages = tuple(cert.usage for cert in chain)
    if usages != CHAIN_ORDER:
        want = " -> ".join(u.name for u in CHAIN_ORDER)
        return f"expected certificates {want}, got usages {[hex(u) for u in usages]}"
    try:
        keys = [cert.key() for cert in chain]
    except ConfigError as exc:
        return str(exc)
    if keys[0] != root:
        return "the ARK is not the root the owner trusts"
    signers = [keys[0], *keys[:-1]]
    for cert, signer, signer_usage in zip(chain, signers, (KeyUsage.ARK, *CHAIN_ORDER[:-1]),
                                          strict=True):
        name = KeyUsage(cert.usage).name
        if cert.algo != SigAlgo.ECDSA_SHA256 or cert.curve != CURVE_P384:
            return f"{name} certificate: unsupported algorithm {cert.algo:#x}/curve {cert.curve}"
        if cert.signer_usage != signer_usage:
            return (f"{name} certificate claims signer usage {cert.signer_usage:#x}, expected "
                    f"{signer_usage.name}")
        if not signer.verify(cert.signed_bytes(), cert.signature):
            return f"{name} certificate: signature does not verify with the {signer_usage.name} key"
    return None


def verify_chain(chain: Sequence[Certificate], trusted_root: VerifyingKey) -> VerifyingKey:
    """Check ARK -> ASK -> CEK -> PEK up to ``trusted_root``; return the PEK.

    Raises:
        VerificationFailed: the chain is malformed, does not start at ``trusted_root`` or a
            link's signature does not verify. The message starts with ``certificate chain:``.
    """
    problem = _chain_problem(chain, trusted_root)
    if problem is not None:
        raise VerificationFailed(f"{Check.CHAIN}: {problem}")
    return chain[-1].key()


class Vendor:
    """The silicon vendor: its root key (ARK) and signing key (ASK), from seeded randomness.

    A guest owner gets :attr:`root` from the vendor, never from the host it attests.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self._ark = SigningKey(rng.bytes(KEY_SEED_SIZE))
        self._ask = SigningKey(rng.bytes(KEY_SEED_SIZE))
        self.ark_cert = issue_certificate(KeyUsage.ARK, self._ark.public_key, KeyUsage.ARK,
                                          self._ark)
        self.ask_cert = issue_certificate(KeyUsage.ASK, self._ask.public_key, KeyUsage.ARK,
                                          self._ark)

    @property
    def root(self) -> VerifyingKey:
        """The ARK's public key: the trust anchor guest owners pin."""
        return self._ark.public_key

    def certify_chip(self, cek: VerifyingKey) -> Certificate:
        """Sign a chip endorsement key with the ASK (done once, at manufacture)."""
        return issue_certificate(KeyUsage.CEK, cek, KeyUsage.ASK, self._ask)


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
        rng: seeded randomness for the chip's CEK and the PEK.

    Raises:
        ConfigError: the engine has no PSP.
    """

    def __init__(self, machine: Machine, vendor: Vendor, rng: np.random.Generator) -> None:
        if not machine.engine.attests:
            raise ConfigError(f"engine {machine.engine.name} has no platform security processor")
        self.machine = machine
        cek = SigningKey(rng.bytes(KEY_SEED_SIZE))
        self._pek = SigningKey(rng.bytes(KEY_SEED_SIZE))
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
        if not 0 <= policy <= _U32:
            raise InvalidArgument(f"LAUNCH_START: policy must fit in a u32, got {policy}")
        handle = self._next_handle
        self._next_handle += 1
        self._launches[handle] = _Launch(guest, policy)
        return handle

    def launch_update_data(self, handle: int, pa: int, data: bytes) -> None:
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


# -- the guest owner's verifier -------------------------------------------------------------
class Check(enum.StrEnum):
    """The verifier's checks, in the order it makes them."""

    FORMAT = "report format"
    CHAIN = "certificate chain"
    SIGNATURE = "signature"
    NONCE = "nonce freshness"
    DIGEST = "launch digest"
    POLICY = "policy"


@dataclass(frozen=True)
class CheckResult:
    """One check of one verification."""

    check: Check
    passed: bool
    detail: str


class Verifier:
    """The guest owner's side: issue nonces, check reports, decide whether to trust a guest.

    Args:
        trusted_root: the vendor's ARK key, obtained from the vendor (not from the host).
        expected_digest: SHA-256 of the image the owner meant to launch.
        expected_policy: the guest policy the owner asked for.
        rng: where nonces come from.

    Raises:
        ConfigError: ``expected_digest`` is not 32 bytes or the policy does not fit in a u32.
    """

    def __init__(
        self, trusted_root: VerifyingKey, expected_digest: bytes, expected_policy: int,
        rng: np.random.Generator,
    ) -> None:
        if len(expected_digest) != LAUNCH_DIGEST_SIZE:
            raise ConfigError(f"expected_digest: expected {LAUNCH_DIGEST_SIZE} bytes, got "
                              f"{len(expected_digest)}")
        if not 0 <= expected_policy <= _U32:
            raise ConfigError(f"expected_policy: must fit in a u32, got {expected_policy}")
        self.trusted_root = trusted_root
        self.expected_digest = expected_digest
        self.expected_policy = expected_policy
        self._rng = rng
        self._nonce: bytes | None = None
        self.results: list[CheckResult] = []
        """The checks of the last verification, in order, up to the first that failed."""

    @property
    def checks_passed(self) -> int:
        """How many checks the last verification passed."""
        return sum(r.passed for r in self.results)

    def new_nonce(self) -> str:
        """A fresh 16-byte mnonce, base64-encoded. Only the latest one is accepted, once."""
        self._nonce = self._rng.bytes(MNONCE_SIZE)
        return encode_mnonce(self._nonce)

    def _fail(self, check: Check, detail: str) -> NoReturn:
        self.results.append(CheckResult(check, False, detail))
        raise VerificationFailed(f"{check}: {detail}")

    def _pass(self, check: Check, detail: str) -> None:
        self.results.append(CheckResult(check, True, detail))

    def verify(self, reply: AttestationReport, chain: Sequence[Certificate]) -> SevReport:
        """Check a reply of :func:`query_attestation_report` (see :meth:`verify_report`)."""
        self.results = []
        if reply.sev is None:
            self._nonce = None
            self._fail(Check.FORMAT, "the reply has no SEV component")
        try:
            data = reply.sev.raw()
        except (binascii.Error, ValueError) as exc:
            self._nonce = None
            self._fail(Check.FORMAT, f"report data is not base64 ({exc})")
        return self.verify_report(data, chain)

    def verify_report(self, data: bytes, chain: Sequence[Certificate]) -> SevReport:
        """Accept ``data`` only if every check passes; the outstanding nonce is used up.

        Checks, in order: the report is exactly 208 bytes; ``chain`` leads from the trusted
        root to a PEK; ``sig_usage``/``sig_algo`` name the PEK and ECDSA-SHA256 and the PEK's
        signature over bytes 0x00-0x33 verifies; the mnonce is the one just issued; the launch
        digest and the policy are the expected ones.

        Raises:
            VerificationFailed: the first failing check; the message starts with its name.
        """
        self.results = []
        nonce, self._nonce = self._nonce, None
        try:
            report = SevReport.unpack(data)
        except ConfigError as exc:
            self._fail(Check.FORMAT, str(exc))
        self._pass(Check.FORMAT, f"{REPORT_SIZE} bytes")
        problem = _chain_problem(chain, self.trusted_root)
        if problem is not None:
            self._fail(Check.CHAIN, problem)
        self._pass(Check.CHAIN, " -> ".join(u.name for u in CHAIN_ORDER))
        self._check_signature(report, chain[-1].key())
        if nonce is None:
            self._fail(Check.NONCE, "no nonce was issued for this report")
        if not hmac.compare_digest(report.mnonce, nonce):
            self._fail(Check.NONCE, f"the report carries mnonce {encode_mnonce(report.mnonce)}, "
                       f"the owner issued {encode_mnonce(nonce)}")
        self._pass(Check.NONCE, encode_mnonce(nonce))
        if not hmac.compare_digest(report.launch_digest, self.expected_digest):
            self._fail(Check.DIGEST, f"measured {report.launch_digest.hex()}, expected "
                       f"{self.expected_digest.hex()}")
        self._pass(Check.DIGEST, report.launch_digest.hex())
        if report.policy != self.expected_policy:
            self._fail(Check.POLICY, f"the report says {report.policy:#x}, expected "
                       f"{self.expected_policy:#x}")
        self._pass(Check.POLICY, f"{report.policy:#x}")
        return report

    def _check_signature(self, report: SevReport, pek: VerifyingKey) -> None:
        if report.sig_usage != KeyUsage.PEK or report.sig_algo != SigAlgo.ECDSA_SHA256:
            self._fail(Check.SIGNATURE, f"sig_usage {report.sig_usage:#x} / sig_algo "
                       f"{report.sig_algo:#x}: expected the PEK ({KeyUsage.PEK:#x}) and "
                       f"ECDSA-SHA256 ({SigAlgo.ECDSA_SHA256:#x})")
        if not pek.verify(report.signed_bytes(), report.signature):
            self._fail(Check.SIGNATURE, "the signature over bytes 0x00-0x33 does not verify "
                       "with the PEK")
        self._pass(Check.SIGNATURE, "PEK, ECDSA-SHA256")
