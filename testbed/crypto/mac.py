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
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

from ..errors import ConfigError
from ..types import LINE_SIZE
from ._lines import as_addresses, as_lines

__all__ = ["LINE_MAC_KEY_SIZE", "LineMac", "mac_message"]

LINE_MAC_KEY_SIZE = 16
"""Bytes of one MAC key (AES-128)."""

_BLOCK = 16
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
        self._ecb = Cipher(algorithms.AES(key), modes.ECB())
        k1 = _double(self._aes(bytes(_BLOCK)))
        self._k1 = np.frombuffer(k1, dtype=np.uint8)

    def _aes(self, data: bytes) -> bytes:
        enc = self._ecb.encryptor()
        return enc.update(data) + enc.finalize()

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
        lines = as_lines(ciphertext, n)
        first = np.zeros((n, _BLOCK), dtype=np.uint8)
        first[:, :8] = a.astype("<u8").view(np.uint8).reshape(n, 8)
        first[:, 8] = np.asarray(owners, dtype=bool).reshape(n).astype(np.uint8)
        blocks = [first] + [lines[:, i : i + _BLOCK] for i in range(0, LINE_SIZE, _BLOCK)]
        state = np.zeros((n, _BLOCK), dtype=np.uint8)
        for i, block in enumerate(blocks):
            x = state ^ block
            if i == len(blocks) - 1:
                x ^= self._k1
            state = np.frombuffer(self._aes(np.ascontiguousarray(x).tobytes()),
                                  dtype=np.uint8).reshape(n, _BLOCK)
        head = state[:, :8].copy().view(">u8").reshape(n).astype(np.uint64)
        return head >> np.uint64(64 - self.bits)
