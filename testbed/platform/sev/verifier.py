"""The guest owner's verifier: issue nonces, check attestation replies, decide whether to trust.

Source: B. Singh, "[PATCH] target/i386/sev: add the support to query the attestation report"
(qemu-devel, 4 December 2020), and its review: the owner sends a 16-byte ``mnonce`` and checks that
the PEK-signed report echoes it and carries the launch digest of the image it meant to launch.

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

from ...crypto.signing import VerifyingKey
from ...errors import ConfigError, VerificationFailed
from .certs import CHAIN_CHECK, CHAIN_ORDER, Certificate, chain_problem
from .psp import AttestationReport, encode_mnonce
from .report import (
    LAUNCH_DIGEST_SIZE,
    MNONCE_SIZE,
    REPORT_SIZE,
    U32_MAX,
    KeyUsage,
    SevReport,
    SigAlgo,
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
        if not 0 <= expected_policy <= U32_MAX:
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
        problem = chain_problem(chain, self.trusted_root)
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
