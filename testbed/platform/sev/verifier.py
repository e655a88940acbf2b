"""The guest owner's verifier: issue nonces, check attestation replies, decide whether to trust.

Source: B. Singh, "[PATCH] target/i386/sev: add the support to query the attestation report"
(qemu-devel, 4 December 2020), and its review: the owner sends a 16-byte ``mnonce`` and checks that
the PEK-signed report echoes it and carries the launch digest of the image it meant to launch.

Under SEV-SNP (:class:`~testbed.platform.sev.psp.ReportFormat`) the owner sends a 64-byte nonce
that the guest puts in the report's REPORT_DATA, and checks the SNP report: its format (size,
version 2, SIGNATURE_ALGO 1), the X.509 chain ARK -> ASK -> VCEK up to the ARK it pinned, the
VCEK's ECDSA P-384 / SHA-384 signature over bytes 0x000-0x29F, the nonce, the 48-byte
measurement, the policy (the expected one, and never DEBUG), the VMPL (0: the report came
from the guest's most privileged level) and, if the owner asks for them, bits of PLATFORM_INFO
(ciphertext hiding enabled, bit 4; ALIAS_CHECK_COMPLETE, bit 5, the BadRAM fix). Source:
SEV-SNP Firmware ABI specification (AMD publication 56860), ATTESTATION_REPORT, guest policy and
PLATFORM_INFO.

It can also check legacy firmware's LAUNCH_MEASURE blob (:meth:`Verifier.verify_measure`): the
HMAC-SHA256 under the TIK it shares with the PSP, over the expected digest and policy (SEV API
specification, AMD publication 55766, LAUNCH_MEASURE).

This is the remote party's code: it uses only the public report and certificate types
(:mod:`testbed.platform.sev.report`, :mod:`testbed.platform.sev.certs`) and the vendor-neutral
reply of :func:`~testbed.platform.sev.psp.query_attestation_report`, never the PSP's state. Each
failing check raises :class:`~testbed.errors.VerificationFailed` with a message that starts with
the check's name (:class:`Check`).
"""

from __future__ import annotations

import binascii
import enum
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from ...crypto.signing import VerifyingKey, x509_subject_key
from ...errors import ConfigError, VerificationFailed
from .certs import CHAIN_CHECK, CHAIN_ORDER, Certificate, chain_problem
from .measure import MEASURE_BLOB_SIZE, TIK_SIZE, MeasureBlob, measure_hmac
from .psp import AttestationReport, ReportFormat, encode_mnonce
from .report import (
    REPORT_SIZE,
    U32_MAX,
    KeyUsage,
    SevReport,
    SigAlgo,
)
from .snp_certs import SNP_CHAIN_NAMES, snp_chain_problem
from .snp_report import (
    SNP_POLICY_DEBUG,
    SNP_REPORT_SIZE,
    SNP_REPORT_VERSION,
    SNP_SIGNED_END,
    SnpReport,
    SnpSigAlgo,
)

__all__ = ["Check", "CheckResult", "Verifier"]


# -- the guest owner's verifier -------------------------------------------------------------
class Check(enum.StrEnum):
    """The verifier's checks, in the order it makes them."""

    FORMAT = "report format"
    CHAIN = CHAIN_CHECK
    SIGNATURE = "signature"
    NONCE = "nonce freshness"
    DIGEST = "launch digest"
    POLICY = "policy"
    VMPL = "vmpl"
    PLATFORM = "platform info"
    """PLATFORM_INFO bits the owner requires (SNP; a legacy report carries none)."""
    MEASURE = "launch measure"
    """The LAUNCH_MEASURE blob's HMAC (legacy firmware, before launch)."""


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
        expected_digest: the launch digest of the image (and VMSA) the owner meant to launch:
            32 bytes (SEV) or 48 bytes (SEV-SNP).
        expected_policy: the guest policy the owner asked for.
        rng: where nonces come from.
        report_format: the attestation the owner expects from the platform.
        trusted_ark: SEV-SNP: the ARK certificate (DER) obtained from the vendor.
        tik: the transport integrity key the owner gave the PSP at launch (for
            :meth:`verify_measure`).
        required_platform_info: PLATFORM_INFO bits the report must have set (0: none
            required).

    Raises:
        ConfigError: ``expected_digest`` is not of the format's size, the policy is out of
            range, SNP without ``trusted_ark``, a TIK that is not 16 bytes, or required
            PLATFORM_INFO bits outside the u64.
    """

    def __init__(
        self, trusted_root: VerifyingKey, expected_digest: bytes, expected_policy: int,
        rng: np.random.Generator, *, report_format: ReportFormat = ReportFormat.SEV,
        trusted_ark: bytes | None = None, tik: bytes | None = None,
        required_platform_info: int = 0,
    ) -> None:
        size = report_format.digest_size
        if len(expected_digest) != size:
            raise ConfigError(f"expected_digest: expected {size} bytes, got "
                              f"{len(expected_digest)}")
        top = U32_MAX if report_format is ReportFormat.SEV else (1 << 64) - 1
        if not 0 <= expected_policy <= top:
            raise ConfigError(f"expected_policy: must be 0..{top:#x}, got {expected_policy}")
        if report_format is ReportFormat.SNP and trusted_ark is None:
            raise ConfigError("trusted_ark: an SEV-SNP owner needs the vendor's ARK certificate")
        if tik is not None and len(tik) != TIK_SIZE:
            raise ConfigError(f"tik: expected {TIK_SIZE} bytes, got {len(tik)}")
        if not 0 <= required_platform_info < 1 << 64:
            raise ConfigError("required_platform_info: must fit in a u64, got "
                              f"{required_platform_info}")
        self.required_platform_info = required_platform_info
        self.trusted_root = trusted_root
        self.trusted_ark = trusted_ark
        self.expected_digest = expected_digest
        self.expected_policy = expected_policy
        self.report_format = report_format
        self.tik = tik
        self._rng = rng
        self._nonce: bytes | None = None
        self.results: list[CheckResult] = []
        """The checks of the last verification, in order, up to the first that failed."""

    @property
    def checks_passed(self) -> int:
        """How many checks the last verification passed."""
        return sum(r.passed for r in self.results)

    def new_nonce(self) -> str:
        """A fresh nonce (16 bytes for SEV, 64 for SEV-SNP), base64-encoded. Only the latest
        one is accepted, once."""
        self._nonce = self._rng.bytes(self.report_format.nonce_size)
        return encode_mnonce(self._nonce)

    def _fail(self, check: Check, detail: str) -> NoReturn:
        self.results.append(CheckResult(check, False, detail))
        raise VerificationFailed(f"{check}: {detail}")

    def _pass(self, check: Check, detail: str) -> None:
        self.results.append(CheckResult(check, True, detail))

    def verify(
        self, reply: AttestationReport, chain: Sequence[Certificate] | Sequence[bytes]
    ) -> SevReport | SnpReport:
        """Check a reply of :func:`query_attestation_report` (see :meth:`verify_report` and
        :meth:`verify_snp_report`); ``chain`` is the PEK's (SEV) or the VCEK's (SNP)."""
        self.results = []
        snp = self.report_format is ReportFormat.SNP
        component = reply.snp if snp else reply.sev
        if component is None:
            self._nonce = None
            self._fail(Check.FORMAT, f"the reply has no {self.report_format.value.upper()} "
                       "component")
        try:
            data = component.raw()
        except (binascii.Error, ValueError) as exc:
            self._nonce = None
            self._fail(Check.FORMAT, f"report data is not base64 ({exc})")
        if snp:
            return self.verify_snp_report(data, [c for c in chain if isinstance(c, bytes)])
        return self.verify_report(data, [c for c in chain if isinstance(c, Certificate)])

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
        if self.report_format is not ReportFormat.SEV:
            self._fail(Check.FORMAT, "the owner expects an SEV-SNP report")
        try:
            report = SevReport.unpack(data)
        except ConfigError as exc:
            self._fail(Check.FORMAT, str(exc))
        self._pass(Check.FORMAT, f"{REPORT_SIZE} bytes")
        problem = chain_problem(chain, self.trusted_root)
        if problem is not None:
            self._fail(Check.CHAIN, problem)
        self._pass(Check.CHAIN, " -> ".join(u.name for u in CHAIN_ORDER))
        self._check_signature(report, chain[-1].key())
        self._check_nonce(report.mnonce, nonce)
        self._check_digest(report.launch_digest)
        if report.policy != self.expected_policy:
            self._fail(Check.POLICY, f"the report says {report.policy:#x}, expected "
                       f"{self.expected_policy:#x}")
        self._pass(Check.POLICY, f"{report.policy:#x}")
        if self.required_platform_info:
            self._fail(Check.PLATFORM, "a legacy SEV report carries no PLATFORM_INFO, and the "
                       f"owner requires bits {self.required_platform_info:#x}")
        return report

    def verify_snp_report(self, data: bytes, chain: Sequence[bytes]) -> SnpReport:
        """Accept an SNP report only if every check passes; the outstanding nonce is used up.

        Checks, in order: 1184 bytes, version 2, SIGNATURE_ALGO ECDSA P-384/SHA-384; the chain
        ARK -> ASK -> VCEK up to the pinned ARK; the VCEK's signature over bytes
        0x000-0x29F; REPORT_DATA is the nonce just issued; the measurement; the policy (the
        expected one, without DEBUG); the VMPL is 0.

        Raises:
            VerificationFailed: the first failing check; the message starts with its name.
        """
        self.results = []
        nonce, self._nonce = self._nonce, None
        if self.report_format is not ReportFormat.SNP or self.trusted_ark is None:
            self._fail(Check.FORMAT, "the owner expects a legacy SEV report")
        try:
            report = SnpReport.unpack(data)
        except ConfigError as exc:
            self._fail(Check.FORMAT, str(exc))
        if report.version != SNP_REPORT_VERSION:
            self._fail(Check.FORMAT, f"report version {report.version}, expected "
                       f"{SNP_REPORT_VERSION}")
        if report.signature_algo != SnpSigAlgo.ECDSA_P384_SHA384:
            self._fail(Check.FORMAT, f"signature_algo {report.signature_algo:#x}, expected "
                       f"ECDSA P-384 with SHA-384 ({SnpSigAlgo.ECDSA_P384_SHA384:#x})")
        self._pass(Check.FORMAT, f"{SNP_REPORT_SIZE} bytes, version {report.version}")
        problem = snp_chain_problem(chain, self.trusted_ark)
        if problem is not None:
            self._fail(Check.CHAIN, problem)
        self._pass(Check.CHAIN, " -> ".join(SNP_CHAIN_NAMES))
        # Over the bytes received, reserved ones included, not over a re-packing of the fields.
        if not x509_subject_key(chain[-1]).verify(data[:SNP_SIGNED_END], report.rs(), "sha384"):
            self._fail(Check.SIGNATURE, "the signature over bytes 0x000-0x29F does not verify "
                       "with the VCEK")
        self._pass(Check.SIGNATURE, "VCEK, ECDSA P-384 with SHA-384")
        self._check_nonce(report.report_data, nonce)
        self._check_digest(report.measurement)
        if report.policy & SNP_POLICY_DEBUG:
            self._fail(Check.POLICY, f"the report says {report.policy:#x}: DEBUG (bit 19) is "
                       "allowed, so the hypervisor can decrypt the guest")
        if report.policy != self.expected_policy:
            self._fail(Check.POLICY, f"the report says {report.policy:#x}, expected "
                       f"{self.expected_policy:#x}")
        self._pass(Check.POLICY, f"{report.policy:#x}")
        if report.vmpl != 0:
            self._fail(Check.VMPL, f"the report was requested at VMPL {report.vmpl}, expected 0")
        self._pass(Check.VMPL, "0")
        if self.required_platform_info:
            missing = self.required_platform_info & ~report.platform_info
            if missing:
                self._fail(Check.PLATFORM, f"the report's PLATFORM_INFO is "
                           f"{report.platform_info:#x}: required bits {missing:#x} are clear")
            self._pass(Check.PLATFORM, f"{report.platform_info:#x}")
        return report

    def verify_measure(self, blob: bytes) -> MeasureBlob:
        """Check legacy firmware's LAUNCH_MEASURE blob, before any secret goes in: its HMAC
        under the owner's TIK must cover the expected policy and launch digest with the blob's
        mnonce.

        Raises:
            VerificationFailed: the format, or ``launch measure`` when the HMAC differs.
        """
        self.results = []
        if self.report_format is not ReportFormat.SEV or self.tik is None:
            self._fail(Check.FORMAT, "LAUNCH_MEASURE needs legacy SEV firmware and the TIK")
        try:
            measured = MeasureBlob.unpack(blob)
        except ConfigError as exc:
            self._fail(Check.FORMAT, str(exc))
        self._pass(Check.FORMAT, f"{MEASURE_BLOB_SIZE} bytes")
        expected = measure_hmac(self.tik, self.expected_policy, self.expected_digest,
                                measured.mnonce)
        if not hmac.compare_digest(measured.measure, expected):
            self._fail(Check.MEASURE, f"MEASURE {measured.measure.hex()} is not the HMAC of the "
                       f"expected digest and policy ({expected.hex()})")
        self._pass(Check.MEASURE, "HMAC-SHA256 under the TIK over the expected digest and "
                   "policy")
        return measured

    def _check_nonce(self, got: bytes, nonce: bytes | None) -> None:
        if nonce is None:
            self._fail(Check.NONCE, "no nonce was issued for this report")
        if not hmac.compare_digest(got, nonce):
            self._fail(Check.NONCE, f"the report carries nonce {encode_mnonce(got)}, the owner "
                       f"issued {encode_mnonce(nonce)}")
        self._pass(Check.NONCE, encode_mnonce(nonce))

    def _check_digest(self, got: bytes) -> None:
        if not hmac.compare_digest(got, self.expected_digest):
            self._fail(Check.DIGEST, f"measured {got.hex()}, expected "
                       f"{self.expected_digest.hex()}")
        self._pass(Check.DIGEST, got.hex())

    def _check_signature(self, report: SevReport, pek: VerifyingKey) -> None:
        if report.sig_usage != KeyUsage.PEK or report.sig_algo != SigAlgo.ECDSA_SHA256:
            self._fail(Check.SIGNATURE, f"sig_usage {report.sig_usage:#x} / sig_algo "
                       f"{report.sig_algo:#x}: expected the PEK ({KeyUsage.PEK:#x}) and "
                       f"ECDSA-SHA256 ({SigAlgo.ECDSA_SHA256:#x})")
        if not pek.verify(report.signed_bytes(), report.signature):
            self._fail(Check.SIGNATURE, "the signature over bytes 0x00-0x33 does not verify "
                       "with the PEK")
        self._pass(Check.SIGNATURE, "PEK, ECDSA-SHA256")
