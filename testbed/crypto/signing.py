"""ECDSA signing for the attestation model: P-384 keys, SHA-256 or SHA-384 digests, SEV's byte
layout, and the X.509 certificates of the SEV-SNP chain.

SEV firmware signs with ECDSA on the NIST P-384 curve and stores a signature as ``r`` then ``s``,
each a 72-byte little-endian integer (144 bytes in all); a public key is stored the same way, as
the coordinates ``qx`` then ``qy``. The legacy SEV report hashes with SHA-256, the SEV-SNP
ATTESTATION_REPORT with SHA-384 (SEV-SNP Firmware ABI specification, publication 56860,
"Signature Format" and ATTESTATION_REPORT's SIGNATURE_ALGO = 1, ECDSA P-384 with SHA-384). Callers
never see DER signatures.

The SEV-SNP chain ARK -> ASK -> VCEK is X.509 (:func:`issue_x509`, :func:`x509_issue_problem`).
AMD signs its ARK and ASK certificates with RSASSA-PSS 4096; this model signs every link with
ECDSA P-384 / SHA-384 instead (the model's choice: RSA keys cannot be derived from a seed, so a
seeded run would not reproduce, and 4096-bit key generation takes seconds). Certificates carry a
fixed validity window and a serial number derived from the subject key, so equal seeds give equal
certificates.

Keys are derived from seed bytes drawn from the run's seeded random generator, and signatures
are deterministic (RFC 6979) where the installed ``cryptography`` and OpenSSL offer it
(:data:`DETERMINISTIC_SIGNING`): the same seed then gives the same signatures, byte for byte.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ..errors import ConfigError

__all__ = [
    "COMPONENT_SIZE",
    "CURVE_NAME",
    "DETERMINISTIC_SIGNING",
    "KEY_SEED_SIZE",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "Digest",
    "SigningKey",
    "VerifyingKey",
    "issue_x509",
    "x509_issue_problem",
    "x509_subject_key",
]

Digest = Literal["sha256", "sha384"]
"""The hash an ECDSA signature is computed over."""
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256,
                                                   "sha384": hashes.SHA384}

CURVE_NAME = "P-384"
_CURVE = ec.SECP384R1()
_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
    "581a0db248b0a77aecec196accc52973", 16,
)
"""Order of the P-384 base point."""
COMPONENT_SIZE = 72
"""Bytes of one little-endian component (r, s, qx or qy) in SEV structures."""
SIGNATURE_SIZE = 2 * COMPONENT_SIZE
PUBLIC_KEY_SIZE = 2 * COMPONENT_SIZE
KEY_SEED_SIZE = 64
"""Seed bytes a key needs: 512 bits reduced modulo a 384-bit order leaves no visible bias."""


def _probe_deterministic() -> bool:
    key = ec.derive_private_key(1, _CURVE)
    try:
        key.sign(b"", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except (TypeError, UnsupportedAlgorithm):
        return False
    return True


DETERMINISTIC_SIGNING = _probe_deterministic()
"""Whether signatures follow RFC 6979 (same key and message: same signature)."""


def _le(value: int) -> bytes:
    return value.to_bytes(COMPONENT_SIZE, "little")


class VerifyingKey:
    """A P-384 public key in SEV's encoding (``qx || qy``, 72-byte little-endian each).

    Args:
        encoded: 144 bytes.

    Raises:
        ConfigError: wrong length, or the coordinates are not a point of the curve.
    """

    def __init__(self, encoded: bytes) -> None:
        if len(encoded) != PUBLIC_KEY_SIZE:
            raise ConfigError(f"public key: expected {PUBLIC_KEY_SIZE} bytes, got {len(encoded)}")
        x = int.from_bytes(encoded[:COMPONENT_SIZE], "little")
        y = int.from_bytes(encoded[COMPONENT_SIZE:], "little")
        try:
            self._key = ec.EllipticCurvePublicNumbers(x, y, _CURVE).public_key()
        except ValueError:
            raise ConfigError("public key: the coordinates are not a point on P-384") from None
        self.encoded = bytes(encoded)

    def verify(self, data: bytes, signature: bytes, digest: Digest = "sha256") -> bool:
        """Whether ``signature`` (``r || s``, 72-byte little-endian each) signs ``data``,
        hashed with ``digest``."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        r = int.from_bytes(signature[:COMPONENT_SIZE], "little")
        s = int.from_bytes(signature[COMPONENT_SIZE:], "little")
        if not (0 < r < _ORDER and 0 < s < _ORDER):
            return False
        try:
            self._key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_HASHES[digest]()))
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyingKey) and other.encoded == self.encoded

    def __hash__(self) -> int:
        return hash(self.encoded)

    def __repr__(self) -> str:
        return f"VerifyingKey({self.encoded[:8].hex()}...)"


class SigningKey:
    """A P-384 private key derived from seed bytes; signs with ECDSA over SHA-256.

    Args:
        seed: at least :data:`KEY_SEED_SIZE` bytes from a seeded generator; the private scalar
            is ``int(seed) mod (n - 1) + 1``.

    Raises:
        ConfigError: the seed is too short.
    """

    def __init__(self, seed: bytes) -> None:
        if len(seed) < KEY_SEED_SIZE:
            raise ConfigError(f"key seed: expected at least {KEY_SEED_SIZE} bytes, got "
                              f"{len(seed)}")
        scalar = int.from_bytes(seed, "big") % (_ORDER - 1) + 1
        self._key = ec.derive_private_key(scalar, _CURVE)
        numbers = self._key.public_key().public_numbers()
        self.public_key = VerifyingKey(_le(numbers.x) + _le(numbers.y))

    def sign(self, data: bytes, digest: Digest = "sha256") -> bytes:
        """ECDSA signature of ``data`` hashed with ``digest``, as ``r || s`` (72-byte
        little-endian each)."""
        # Older cryptography releases lack the keyword altogether: pass it only when it works.
        hash_ = _HASHES[digest]()
        algorithm = (ec.ECDSA(hash_, deterministic_signing=True)
                     if DETERMINISTIC_SIGNING else ec.ECDSA(hash_))
        r, s = decode_dss_signature(self._key.sign(data, algorithm))
        return _le(r) + _le(s)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public_key!r})"


# -- X.509 certificates (the SEV-SNP chain) --------------------------------------------------
_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2045, 1, 1, tzinfo=datetime.UTC)
"""A fixed validity window: certificates depend on the seed alone, never on the clock."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Model Vendor"),
                      x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])


def _sign_x509(builder: x509.CertificateBuilder, issuer: SigningKey) -> x509.Certificate:
    if DETERMINISTIC_SIGNING:
        try:
            return builder.sign(issuer._key, hashes.SHA384(), ecdsa_deterministic=True)
        except TypeError:  # a cryptography release without the keyword
            pass
    return builder.sign(issuer._key, hashes.SHA384())


def issue_x509(
    subject_name: str, subject: VerifyingKey, issuer_name: str, issuer: SigningKey, *, ca: bool
) -> bytes:
    """A DER X.509 certificate for ``subject``, signed by ``issuer`` with ECDSA P-384 / SHA-384.

    Args:
        subject_name: the certified key's common name (``ARK-Model``, ``VCEK``...).
        subject: the certified key.
        issuer_name: the signer's common name (equal to ``subject_name`` for a root).
        issuer: the signer.
        ca: whether the certified key may sign certificates (basic constraints).
    """
    serial = int.from_bytes(hashlib.sha256(subject.encoded).digest()[:16], "big") >> 1
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject_name)).issuer_name(_name(issuer_name))
               .public_key(subject._key).serial_number(serial)
               .not_valid_before(_NOT_BEFORE).not_valid_after(_NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return _sign_x509(builder, issuer).public_bytes(serialization.Encoding.DER)


def _load(der: bytes, what: str) -> x509.Certificate | str:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return f"{what}: not a DER X.509 certificate"


def x509_subject_key(der: bytes) -> VerifyingKey:
    """The P-384 key a DER certificate certifies.

    Raises:
        ConfigError: not a certificate, or its key is not a P-384 key.
    """
    cert = _load(der, "certificate")
    if isinstance(cert, str):
        raise ConfigError(cert)
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _CURVE.name:
        raise ConfigError("certificate: the certified key is not an ECDSA P-384 key")
    numbers = key.public_numbers()
    return VerifyingKey(_le(numbers.x) + _le(numbers.y))


def x509_issue_problem(der: bytes, issuer_der: bytes, name: str, issuer_name: str) -> str | None:
    """Why ``der`` was not issued by ``issuer_der`` (names, signature, CA flag), or ``None``.

    Args:
        der: the certificate to check.
        issuer_der: the certificate of the key that should have signed it.
        name: what ``der`` is, for the message (``ASK``...).
        issuer_name: what ``issuer_der`` is.
    """
    cert, issuer = _load(der, name), _load(issuer_der, issuer_name)
    if isinstance(cert, str):
        return cert
    if isinstance(issuer, str):
        return issuer
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"{issuer_name} certificate has no basic constraints"
    if not constraints.ca:
        return f"{issuer_name} certificate is not a CA: it may not sign {name}"
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError as exc:
        return f"{name} certificate was not issued by the {issuer_name} ({exc})"
    except (InvalidSignature, TypeError):
        return f"{name} certificate: signature does not verify with the {issuer_name} key"
    return None
