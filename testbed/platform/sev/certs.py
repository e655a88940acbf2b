"""The PEK's certificate chain, ARK -> ASK -> CEK -> PEK, and the vendor that roots it.

Source: B. Singh, "[PATCH] target/i386/sev: add the support to query the attestation report"
(qemu-devel, 4 December 2020), and its review: reports are signed with the platform endorsement key
(PEK), which a guest owner trusts through its certificate chain.

Real SEV signs the ARK and ASK with RSA; here every link is ECDSA P-384, and a certificate is
this model's own small struct (:class:`Certificate`), neither X.509 nor the SEV certificate
format. The vendor (:class:`Vendor`) holds the ARK and ASK; a guest owner pins the ARK's key,
obtained from the vendor, never from the host it attests.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ...crypto.signing import (
    KEY_SEED_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    SigningKey,
    VerifyingKey,
)
from ...errors import ConfigError, VerificationFailed
from .report import KeyUsage, SigAlgo
from .snp_certs import SnpVendor

__all__ = [
    "CERT_SIGNED_END",
    "CERT_SIZE",
    "CHAIN_CHECK",
    "CHAIN_ORDER",
    "Certificate",
    "Vendor",
    "chain_problem",
    "issue_certificate",
    "verify_chain",
]

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
CHAIN_CHECK = "certificate chain"
"""Name of the chain check: :func:`verify_chain`'s errors start with it, and it is the value of
the verifier's ``Check.CHAIN``."""


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


def chain_problem(chain: Sequence[Certificate], root: VerifyingKey) -> str | None:
    """What is wrong with ``chain`` as ARK -> ASK -> CEK -> PEK up to ``root``, or ``None``.

    Args:
        chain: the certificates, root first.
        root: the ARK key the caller trusts.

    Returns:
        The first problem found (usages, key encoding, root, algorithm, signer usage, then each
        link's signature), without the ``certificate chain:`` prefix; ``None`` if the chain is
        sound.
    """
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
    problem = chain_problem(chain, trusted_root)
    if problem is not None:
        raise VerificationFailed(f"{CHAIN_CHECK}: {problem}")
    return chain[-1].key()


class Vendor:
    """The silicon vendor: its root key (ARK) and signing key (ASK), from seeded randomness.

    A guest owner gets :attr:`root` from the vendor, never from the host it attests.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        ark_seed = rng.bytes(KEY_SEED_SIZE)
        self._ark = SigningKey(ark_seed)
        self._ask = SigningKey(rng.bytes(KEY_SEED_SIZE))
        self._snp_seed = ark_seed
        self.ark_cert = issue_certificate(KeyUsage.ARK, self._ark.public_key, KeyUsage.ARK,
                                          self._ark)
        self.ask_cert = issue_certificate(KeyUsage.ASK, self._ask.public_key, KeyUsage.ARK,
                                          self._ark)

    @functools.cached_property
    def snp(self) -> SnpVendor:
        """The vendor's SEV-SNP keys and X.509 certificates (ARK, ASK), derived from its seed
        and made when first asked for."""
        return SnpVendor(self._snp_seed)

    @property
    def root(self) -> VerifyingKey:
        """The ARK's public key: the trust anchor guest owners pin."""
        return self._ark.public_key

    def certify_chip(self, cek: VerifyingKey) -> Certificate:
        """Sign a chip endorsement key with the ASK (done once, at manufacture)."""
        return issue_certificate(KeyUsage.CEK, cek, KeyUsage.ASK, self._ask)
