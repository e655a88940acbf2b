"""The SEV-SNP certificate chain: ARK -> ASK -> VCEK, as X.509 certificates.

Source: SEV-SNP Firmware ABI specification (AMD publication 56860), "Versioned Chip Endorsement
Key" and the ATTESTATION_REPORT signature: the report is signed by the VCEK, a key derived from
the chip's secrets and its TCB version; AMD's Key Distribution Service hands out the VCEK's X.509
certificate, signed by the AMD SEV Key (ASK), whose certificate the AMD Root Key (ARK) signs;
a guest owner pins the ARK, obtained from AMD, never from the host it attests.

The model's choices: every link is ECDSA P-384 with SHA-384 (AMD's ARK and ASK sign with
RSASSA-PSS 4096; see :mod:`testbed.crypto.signing`), the VCEK is drawn from the chip's key
source rather than derived from a TCB-versioned secret, and the certificates carry only names,
the key, a validity window and basic constraints (no AMD extensions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ...crypto.signing import (
    KEY_SEED_SIZE,
    SigningKey,
    VerifyingKey,
    issue_x509,
    x509_issue_problem,
    x509_subject_key,
)
from ...errors import ConfigError

__all__ = ["SNP_CHAIN_NAMES", "SnpVendor", "snp_chain_problem"]

SNP_CHAIN_NAMES = ("ARK", "ASK", "VCEK")
"""The certificates of the SNP chain, root first."""
_COMMON_NAMES = {"ARK": "ARK-Model", "ASK": "SEV-Model", "VCEK": "SEV-VCEK"}


def _derived_seed(seed: bytes, label: str) -> bytes:
    return hashlib.sha512(label.encode("ascii") + seed).digest()


class SnpVendor:
    """The vendor's SNP keys: an ARK and an ASK, with their X.509 certificates.

    Args:
        seed: the vendor's secret seed (at least 64 bytes); the ARK and ASK are derived from it,
            so adding SNP keys to a vendor draws nothing more from a run's random generator.
    """

    def __init__(self, seed: bytes) -> None:
        self._ark = SigningKey(_derived_seed(seed, "snp-ark"))
        self._ask = SigningKey(_derived_seed(seed, "snp-ask"))
        self.ark_cert = issue_x509(_COMMON_NAMES["ARK"], self._ark.public_key,
                                   _COMMON_NAMES["ARK"], self._ark, ca=True)
        self.ask_cert = issue_x509(_COMMON_NAMES["ASK"], self._ask.public_key,
                                   _COMMON_NAMES["ARK"], self._ark, ca=True)

    @classmethod
    def from_rng(cls, rng: np.random.Generator) -> SnpVendor:
        """A vendor with a seed from ``rng``."""
        return cls(rng.bytes(KEY_SEED_SIZE))

    def certify_vcek(self, vcek: VerifyingKey) -> bytes:
        """The VCEK's certificate, signed by the ASK (what the key distribution service serves)."""
        return issue_x509(_COMMON_NAMES["VCEK"], vcek, _COMMON_NAMES["ASK"], self._ask, ca=False)


def snp_chain_problem(chain: Sequence[bytes], trusted_ark: bytes) -> str | None:
    """What is wrong with ``chain`` (ARK, ASK, VCEK certificates, DER) up to ``trusted_ark``.

    Args:
        chain: three DER certificates, root first.
        trusted_ark: the ARK certificate the owner pinned (from the vendor).

    Returns:
        The first problem found, or ``None`` when the ARK is the pinned one, self-signed, and
        signs the ASK, which signs the VCEK.
    """
    if len(chain) != len(SNP_CHAIN_NAMES):
        return f"expected certificates {' -> '.join(SNP_CHAIN_NAMES)}, got {len(chain)}"
    if chain[0] != trusted_ark:
        return "the ARK is not the root the owner trusts"
    links = zip(chain, (chain[0], *chain[:-1]), SNP_CHAIN_NAMES, ("ARK", *SNP_CHAIN_NAMES[:-1]),
                strict=True)
    for der, issuer, name, issuer_name in links:
        problem = x509_issue_problem(der, issuer, name, issuer_name)
        if problem is not None:
            return problem
    try:
        x509_subject_key(chain[-1])
    except ConfigError as exc:
        return f"VCEK {exc}"
    return None
