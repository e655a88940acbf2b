"""A per-cache-line MAC, truncated, as memory integrity keeps one beside every line.

What Intel's public descriptions say (the Intel TDX whitepaper and the TDX module base
specification, on memory integrity and the TD owner bit, as public summaries such as
enclaive's TDX documentation describe them): with cryptographic integrity, each 64-byte
line carries a 28-bit MAC in its ECC/sideband bits, computed over the line's *ciphertext*, its
encryption tweak and the TD-owner bit, with a SHA-3-based construction under **one MAC key**
that the platform sets up at boot (MCHECK) for every KeyID. The MAC is bound to the KeyID
through the tweak it covers: the tweak is made with the encryption key of the KeyID.

The model's choices, where the exact construction is not public:

- **The MAC is AES-CMAC** (NIST SP 800-38B) under one 128-bit key, not Intel's SHA-3
  construction: both are pseudo-random functions under a secret key, and a truncated PRF is
  forged with probability ``2**-bits`` per try, which is the property every attack here depends
  on. AES-CMAC batches: the message of every line has the same six complete blocks, so a batch
  of ``n`` lines is six AES-ECB calls of ``n`` blocks each (OpenSSL, through ``cryptography``),
  chained with NumPy XORs; the last block is XORed with the subkey ``K1`` (SP 800-38B §6.2,
  complete final block). The tests recompute it line by line with ``cryptography``'s own CMAC.
- **The tweak** (:class:`LineTweak`) of a line is ``AES_K2(LE128(physical address))`` under
  the KeyID's tweak key ``K2``: the tweak AES-XTS itself uses for the line (IEEE 1619, the
  engine's XTS tweak key; :mod:`testbed.crypto.xts`). Intel's is described as the encrypted
  physical address under the KeyID's tweak key; its exact encoding is not published. This one
  differs per KeyID and per address, which is what binds a MAC to both.
- **The message** is ``tweak (16 bytes) || TD-owner bit (one byte, 0 or 1) || fifteen zero
  bytes`` followed by the 64 bytes of ciphertext (:func:`mac_message`).
- **Truncation** keeps the leftmost ``bits`` bits of the tag (SP 800-38B §6.2: the MSBs), read as
  a big-endian integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..types import LINE_SIZE
from ._lines import XTS_MAX_BYTES, as_addresses, as_lines, ecb_via_xts, fork_safe_lock

__all__ = ["LINE_MAC_KEY_SIZE", "TWEAK_KEY_SIZE", "LineMac", "LineTweak", "mac_message"]

LINE_MAC_KEY_SIZE = 16
"""Bytes of one MAC key (AES-128)."""
TWEAK_KEY_SIZE = 16
"""Bytes of one KeyID's tweak key (AES-128, the ``K2`` of its XTS key)."""

_BLOCK = 16
_WORDS_PER_LINE = LINE_SIZE // 8
_CHUNK_LINES = XTS_MAX_BYTES // _BLOCK
"""Lines per OpenSSL call: one block of each, at most one XTS data unit."""
_FEW_LINES = 2
"""Up to this many lines, a MAC is made line by line (fewer calls than one pass per block)."""
_RB = 0x87
"""The constant of the GF(2^128) doubling that makes the CMAC subkeys (SP 800-38B §5.3)."""


def _double(block: bytes) -> bytes:
    """``block`` times x in GF(2^128), big-endian, as CMAC's subkey generation does."""
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value ^ _RB) & ((1 << 128) - 1)
    return value.to_bytes(_BLOCK, "big")


def mac_message(tweak: bytes, owner: bool, ciphertext: bytes) -> bytes:
    """The 96 bytes the MAC of one line is computed over (see the module docstring)."""
    if len(tweak) != _BLOCK:
        raise ConfigError(f"tweak: one {_BLOCK}-byte block expected, got {len(tweak)}")
    if len(ciphertext) != LINE_SIZE:
        raise ConfigError(f"ciphertext: one {LINE_SIZE}-byte line expected, got {len(ciphertext)}")
    return tweak + bytes([int(owner)]) + bytes(_BLOCK - 1) + ciphertext


class LineTweak:
    """The tweak of each line under one KeyID's tweak key: ``AES_K2(LE128(address))``.

    Safe to share between threads, as :class:`LineMac`.

    Args:
        key: the 16-byte tweak key of one KeyID.

    Raises:
        ConfigError: a key of the wrong size.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != TWEAK_KEY_SIZE:
            raise ConfigError(f"tweak key: must be {TWEAK_KEY_SIZE} bytes, got {len(key)}")
        self._ecb = ecb_via_xts(key, encrypt=True)
        self._lock = fork_safe_lock(self)

    def of(self, addrs: NDArray[np.uint64] | Sequence[int]) -> NDArray[np.uint64]:
        """The tweak of the line at each address, ``(n, 2)`` 64-bit words (little-endian)."""
        a = as_addresses(addrs)
        blocks = np.zeros((a.shape[0], 2), dtype="<u8")
        blocks[:, 0] = a
        out = np.empty_like(blocks)
        with self._lock:
            for lo in range(0, a.shape[0], _CHUNK_LINES):
                hi = min(a.shape[0], lo + _CHUNK_LINES)
                done = self._ecb.update(blocks[lo:hi].tobytes())
                out[lo:hi] = np.frombuffer(done, dtype="<u8").reshape(-1, 2)
        return out


class LineMac:
    """AES-CMAC over (tweak, TD-owner bit, ciphertext) of many lines at once, truncated.

    Safe to share between threads: calls take turns on the MAC's OpenSSL context.

    Args:
        key: the 16-byte MAC key (one for the platform).
        bits: MAC width kept (:attr:`MIN_BITS` .. :attr:`MAX_BITS`).

    Raises:
        ConfigError: a key of the wrong size, or a width out of range.
    """

    MIN_BITS: ClassVar[int] = 4
    MAX_BITS: ClassVar[int] = 56

    def __init__(self, key: bytes, bits: int) -> None:
        if len(key) != LINE_MAC_KEY_SIZE:
            raise ConfigError(f"MAC key: must be {LINE_MAC_KEY_SIZE} bytes, got {len(key)}")
        if not self.MIN_BITS <= bits <= self.MAX_BITS:
            raise ConfigError(f"mac_bits: must be {self.MIN_BITS}..{self.MAX_BITS}, got {bits}")
        self.bits = bits
        # AES-ECB under the MAC key, through OpenSSL's faster XTS code (see ecb_via_xts).
        self._ecb = ecb_via_xts(key, encrypt=True)
        self._lock = fork_safe_lock(self)
        k1 = _double(self._ecb.update(bytes(_BLOCK)))
        self._k1 = np.frombuffer(k1, dtype="<u8")
        self._k1_int = int.from_bytes(k1, "little")

    def tags(
        self, tweaks: NDArray[np.uint64], owners: NDArray[np.bool_] | Sequence[bool],
        ciphertext: NDArray[np.uint8] | bytes,
    ) -> NDArray[np.uint64]:
        """The truncated MAC of each line, as ``uint64`` (``bits`` low bits used).

        Args:
            tweaks: the tweak of each line (:meth:`LineTweak.of`), ``(n, 2)`` words.
            owners: TD-owner bit of each line, ``(n,)``.
            ciphertext: the lines as DRAM holds them, ``(n, 64)``.
        """
        t = np.asarray(tweaks, dtype="<u8")
        if t.ndim != 2 or t.shape[1] != 2:
            raise ConfigError(f"tweaks: (n, 2) words expected, got shape {t.shape}")
        n = t.shape[0]
        lines = as_lines(ciphertext, n).view("<u8").reshape(n, _WORDS_PER_LINE)
        second = np.zeros((n, 2), dtype="<u8")
        second[:, 0] = np.asarray(owners, dtype=bool).reshape(n)
        out = np.empty(n, dtype=np.uint64)
        if n <= _FEW_LINES:  # a line or two written: one OpenSSL call per block, no arrays
            with self._lock:
                for i in range(n):
                    out[i] = self._one(t[i].tobytes() + second[i].tobytes()
                                       + lines[i].tobytes())
            return out
        with self._lock:
            for lo in range(0, n, _CHUNK_LINES):
                hi = min(n, lo + _CHUNK_LINES)
                out[lo:hi] = self._chunk(t[lo:hi], second[lo:hi], lines[lo:hi])
        return out

    def _one(self, message: bytes) -> int:
        """The truncated CMAC of one 96-byte message, block by block (the lock is held)."""
        state = 0
        last = len(message) - _BLOCK
        for at in range(0, len(message), _BLOCK):
            state ^= int.from_bytes(message[at : at + _BLOCK], "little")
            if at == last:
                state ^= self._k1_int
            state = int.from_bytes(self._ecb.update(state.to_bytes(_BLOCK, "little")), "little")
        head = int.from_bytes(state.to_bytes(_BLOCK, "little")[:8], "big")
        return head >> (64 - self.bits)

    def _chunk(self, tweaks: NDArray[np.uint64], second: NDArray[np.uint64],
               lines: NDArray[np.uint64]) -> NDArray[np.uint64]:
        """CBC over the six blocks of each line, one ECB call per block position."""
        state = self._aes(tweaks)
        state ^= second
        state = self._aes(state)
        for i in range(0, _WORDS_PER_LINE, 2):
            state ^= lines[:, i : i + 2]
            if i == _WORDS_PER_LINE - 2:
                state ^= self._k1  # a complete final block: K1 (SP 800-38B §6.2)
            state = self._aes(state)
        # The tag's leftmost bytes, as a big-endian number; keep its top ``bits`` bits.
        head = state[:, 0].byteswap()
        return head >> np.uint64(64 - self.bits)

    def _aes(self, blocks: NDArray[np.uint64]) -> NDArray[np.uint64]:
        done = self._ecb.update(np.ascontiguousarray(blocks).tobytes())
        return np.frombuffer(done, dtype="<u8").reshape(-1, 2).copy()
