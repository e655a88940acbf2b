"""A per-cache-line MAC, truncated, as memory integrity keeps one beside every line.

What Intel documents (TDX and TME-MK integrity): with cryptographic integrity, each 64-byte line
carries a 28-bit MAC stored in the line's ECC/sideband bits, keyed per KeyID, computed over the
line's *ciphertext*, its encryption tweak (derived from the physical address) and the TD-owner
bit; the public descriptions name a SHA-3-256-based MAC (Intel TDX whitepaper and the Intel TDX
Module architecture specification, "Memory Integrity"; Linux ``Documentation/arch/x86/tdx.rst``,
"TDX private memory" and machine checks on poisoned lines).

The model's choices, where the exact construction is not public:

- **The MAC is AES-CMAC** (NIST SP 800-38B) with a 128-bit key per KeyID, not Intel's SHA-3
  construction: both are pseudo-random functions under a secret key, and a truncated PRF is
  forged with probability ``2**-bits`` per try, which is the property every attack here depends
  on. AES-CMAC batches: the message of every line has the same five complete blocks, so a batch
  of ``n`` lines is five AES-ECB calls of ``n`` blocks each (OpenSSL, through ``cryptography``),
  chained with NumPy XORs; the last block is XORed with the subkey ``K1`` (SP 800-38B §6.2,
  complete final block). The tests recompute it line by line with ``cryptography``'s own CMAC.
- **The message** is the 16-byte block ``LE64(physical address of the line) || TD-owner bit (one
  byte, 0 or 1) || seven zero bytes`` followed by the 64 bytes of ciphertext. The address stands
  for Intel's encrypted-address tweak: under a keyed MAC any injective encoding of the address
  binds the MAC to it equally.
- **Truncation** keeps the leftmost ``bits`` bits of the tag (SP 800-38B §6.2: the MSBs), read as
  a big-endian integer.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..types import LINE_SIZE
from ._lines import XTS_MAX_BYTES, as_addresses, as_lines, ecb_via_xts, fork_safe_lock

__all__ = ["LINE_MAC_KEY_SIZE", "LineMac", "mac_message"]

LINE_MAC_KEY_SIZE = 16
"""Bytes of one MAC key (AES-128)."""

_BLOCK = 16
_WORDS_PER_LINE = LINE_SIZE // 8
_CHUNK_LINES = XTS_MAX_BYTES // _BLOCK
"""Lines per OpenSSL call: one block of each, at most one XTS data unit."""
_RB = 0x87
"""The constant of the GF(2^128) doubling that makes the CMAC subkeys (SP 800-38B §5.3)."""


def _double(block: bytes) -> bytes:
    """``block`` times x in GF(2^128), big-endian, as CMAC's subkey generation does."""
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value ^ _RB) & ((1 << 128) - 1)
    return value.to_bytes(_BLOCK, "big")


def mac_message(addr: int, owner: bool, ciphertext: bytes) -> bytes:
    """The 80 bytes the MAC of one line is computed over (see the module docstring)."""
    if len(ciphertext) != LINE_SIZE:
        raise ConfigError(f"ciphertext: one {LINE_SIZE}-byte line expected, got {len(ciphertext)}")
    return addr.to_bytes(8, "little") + bytes([int(owner)]) + bytes(7) + ciphertext


class LineMac:
    """AES-CMAC over (address, TD-owner bit, ciphertext) of many lines at once, truncated.

    Safe to share between threads: calls take turns on the MAC's OpenSSL context.

    Args:
        key: the 16-byte MAC key of one KeyID.
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

    def tags(
        self, addrs: object, owners: object, ciphertext: object
    ) -> NDArray[np.uint64]:
        """The truncated MAC of each line, as ``uint64`` (``bits`` low bits used).

        Args:
            addrs: physical address of each line, ``(n,)``.
            owners: TD-owner bit of each line, ``(n,)`` (bool or 0/1).
            ciphertext: the lines as DRAM holds them, ``(n, 64)``.
        """
        a = as_addresses(addrs)
        n = a.shape[0]
        lines = as_lines(ciphertext, n).view("<u8").reshape(n, _WORDS_PER_LINE)
        first = np.zeros((n, 2), dtype="<u8")
        first[:, 0] = a
        first[:, 1] = np.asarray(owners, dtype=bool).reshape(n)
        out = np.empty(n, dtype=np.uint64)
        with self._lock:
            for lo in range(0, n, _CHUNK_LINES):
                hi = min(n, lo + _CHUNK_LINES)
                out[lo:hi] = self._chunk(first[lo:hi], lines[lo:hi])
        return out

    def _chunk(self, first: NDArray[np.uint64], lines: NDArray[np.uint64]) -> NDArray[np.uint64]:
        """CBC over the five blocks of each line, one ECB call per block position."""
        state = self._aes(first)
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
