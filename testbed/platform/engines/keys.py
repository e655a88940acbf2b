"""Key material from an injected, seeded random source."""

from __future__ import annotations

import enum

import numpy as np

from ...crypto import (
    NARROW_KEY_SIZE,
    XEX_KEY_SIZE,
    XTS_KEY_SIZE,
    LineCipher,
    NarrowLineCipher,
    XexLineCipher,
    XtsLineCipher,
)

__all__ = ["CipherFamily", "CipherKind", "KeySource"]


class CipherFamily(enum.Enum):
    """The full-width line cipher an engine's keys use."""

    XTS = "xts"
    """AES-XTS-128 (TME/MKTME)."""
    XEX = "xex"
    """AES-128 XEX (SEV)."""


class CipherKind:
    """Which cipher an engine builds for each key: the engine's own, or the reduced-width one.

    Args:
        family: the engine's own cipher.
        reduced_width_bits: when set, every key uses the reduced-width cipher of that width
            instead (the wear-out experiment).
    """

    def __init__(self, family: CipherFamily, reduced_width_bits: int | None = None) -> None:
        self.family = family
        self.reduced_width_bits = reduced_width_bits

    @property
    def key_size(self) -> int:
        """Bytes of key material one key needs."""
        if self.reduced_width_bits is not None:
            return NARROW_KEY_SIZE
        return XTS_KEY_SIZE if self.family is CipherFamily.XTS else XEX_KEY_SIZE

    def build(self, key: bytes) -> LineCipher:
        """A cipher for ``key``."""
        if self.reduced_width_bits is not None:
            return NarrowLineCipher(key, self.reduced_width_bits)
        if self.family is CipherFamily.XTS:
            return XtsLineCipher(key)
        return XexLineCipher(key)


class KeySource:
    """The platform RNG that makes keys. Seeded, so that runs reproduce to the byte."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def seed(self, size: int) -> bytes:
        """Fresh random bytes for a key of another kind (a signing key's seed)."""
        return self._rng.bytes(size)

    def key(self, size: int) -> bytes:
        """Fresh key bytes. A key whose two halves are equal is never returned (XTS weak key)."""
        while True:
            key = self._rng.bytes(size)
            if size % 2 or key[: size // 2] != key[size // 2 :]:
                return key
