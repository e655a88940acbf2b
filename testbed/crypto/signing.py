"""ECDSA signing for the attestation model: P-384 keys, SHA-256 digests, SEV's byte layout.

SEV firmware signs with ECDSA on the NIST P-384 curve and stores a signature as ``r`` then ``s``,
each a 72-byte little-endian integer (144 bytes in all); a public key is stored the same way, as
the coordinates ``qx`` then ``qy``. This module speaks only that layout, so callers never see DER.

Keys are derived from seed bytes drawn from the run's seeded random generator, and signatures
are deterministic (RFC 6979) where the installed ``cryptography`` and OpenSSL offer it
(:data:`DETERMINISTIC_SIGNING`): the same seed then gives the same signatures, byte for byte.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
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
    "SigningKey",
    "VerifyingKey",
]

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

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (``r || s``, 72-byte little-endian each) signs ``data``."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        r = int.from_bytes(signature[:COMPONENT_SIZE], "little")
        s = int.from_bytes(signature[COMPONENT_SIZE:], "little")
        if not (0 < r < _ORDER and 0 < s < _ORDER):
            return False
        try:
            self._key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
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

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 signature of ``data`` as ``r || s`` (72-byte little-endian each)."""
        # Older cryptography releases lack the keyword altogether: pass it only when it works.
        algorithm = (ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
                     if DETERMINISTIC_SIGNING else ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(self._key.sign(data, algorithm))
        return _le(r) + _le(s)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public_key!r})"
