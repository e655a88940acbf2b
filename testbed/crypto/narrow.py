"""A *reduced-width* tweakable block cipher, for the key wear-out experiment only.

Real memory encryption uses 128-bit AES blocks, where an internal collision needs about 2^64
blocks under one key. To let students watch a collision happen in seconds, the wear-out
scenarios swap in this cipher: an ``n``-bit block (``n`` even, 16 to 32) built as XEX around a
balanced Feistel permutation whose round function is AES (from ``cryptography``):

    C = E_K(P xor D(T)) xor D(T),   D(T) = low n bits of AES_K'(T)

This is the structure the key wear-out attack exploits: an internal collision
``P1 xor D1 == P2 xor D2`` shows up as ``P1 xor P2 == C1 xor C2`` and reveals ``D1 xor D2``.
It is labelled "reduced-width" wherever it appears; results are extrapolated to n = 128.

In memory a line holds sixteen 32-bit little-endian words; each word holds one n-bit block whose
tweak is the word's physical byte address. Values of ``2**n`` or more cannot be stored.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

from ..errors import ConfigError
from ..types import LINE_SIZE
from ._lines import as_addresses, as_blocks, as_lines, fork_safe_lock, varying_by_lines
from .grid import BlockGrid, search_by_blocks

__all__ = ["NARROW_KEY_SIZE", "WORD_SIZE", "NarrowLineCipher"]

NARROW_KEY_SIZE = 32
WORD_SIZE = 4
_WORDS = LINE_SIZE // WORD_SIZE
_ROUNDS = 6
MIN_BITS = 16
MAX_BITS = 32


class NarrowLineCipher:
    """Reduced-width XEX tweakable cipher over n-bit blocks (n even, 16..32).

    Args:
        key: 32 bytes: round key (first half) and tweak key (second half).
        bits: block width ``n``.

    Raises:
        ConfigError: a bad key size or width.
    """

    reduced_width = True
    blocks_per_line = _WORDS

    def __init__(self, key: bytes, bits: int) -> None:
        if len(key) != NARROW_KEY_SIZE:
            raise ConfigError(f"narrow key: expected {NARROW_KEY_SIZE} bytes, got {len(key)}")
        if not (MIN_BITS <= bits <= MAX_BITS) or bits % 2:
            raise ConfigError(
                f"block_bits: must be an even number from {MIN_BITS} to {MAX_BITS}, got {bits}"
            )
        self.bits = bits
        self.label = f"reduced-width {bits}-bit XEX (AES-Feistel)"
        self._half = bits // 2
        self._half_mask = np.uint32((1 << self._half) - 1)
        self._mask = np.uint64((1 << bits) - 1)
        self._round = Cipher(algorithms.AES(key[:16]), modes.ECB()).encryptor()
        self._tweak = Cipher(algorithms.AES(key[16:]), modes.ECB()).encryptor()
        self._lock = fork_safe_lock(self)  # the contexts are shared: calls take turns

    # -- the n-bit permutation -------------------------------------------------------------
    def _f(self, rnd: int, x: NDArray[np.uint32]) -> NDArray[np.uint32]:
        blocks = np.zeros((x.shape[0], 4), dtype="<u4")
        blocks[:, 0] = x
        blocks[:, 1] = rnd
        with self._lock:
            out = np.frombuffer(self._round.update(blocks.tobytes()), dtype="<u4")
        return out[::4] & self._half_mask

    def permute(self, x: NDArray[np.uint32]) -> NDArray[np.uint32]:
        """The keyed n-bit permutation E_K (no tweak)."""
        left = (x >> np.uint32(self._half)) & self._half_mask
        right = x & self._half_mask
        for rnd in range(_ROUNDS):
            left, right = right, left ^ self._f(rnd, right)
        return (left << np.uint32(self._half)) | right

    def unpermute(self, y: NDArray[np.uint32]) -> NDArray[np.uint32]:
        """Inverse of :meth:`permute`."""
        left = (y >> np.uint32(self._half)) & self._half_mask
        right = y & self._half_mask
        for rnd in reversed(range(_ROUNDS)):
            left, right = right ^ self._f(rnd, left), left
        return (left << np.uint32(self._half)) | right

    def tweak_masks(self, word_addrs: NDArray[np.uint64]) -> NDArray[np.uint32]:
        """D(T) for each word address T."""
        blocks = np.zeros((word_addrs.shape[0], 2), dtype="<u8")
        blocks[:, 0] = word_addrs
        with self._lock:
            out = np.frombuffer(self._tweak.update(blocks.tobytes()), dtype="<u8")[::2]
        return (out & self._mask).astype(np.uint32)

    # -- blocks at word addresses -------------------------------------------------------------
    def encrypt_words(self, word_addrs: object, words: object) -> NDArray[np.uint32]:
        """Encrypt n-bit values, each at its own word address (the tweak)."""
        addrs = as_addresses(word_addrs)
        values = self._check(words)
        masks = self.tweak_masks(addrs)
        return self.permute(values ^ masks) ^ masks

    def decrypt_words(self, word_addrs: object, words: object) -> NDArray[np.uint32]:
        """Inverse of :meth:`encrypt_words`."""
        addrs = as_addresses(word_addrs)
        values = self._check(words)
        masks = self.tweak_masks(addrs)
        return self.unpermute(values ^ masks) ^ masks

    def _check(self, words: object) -> NDArray[np.uint32]:
        try:
            values = np.asarray(words, dtype=np.int64).reshape(-1)
        except (OverflowError, TypeError, ValueError):
            raise ConfigError(f"reduced-width cipher holds {self.bits}-bit integers") from None
        if values.size and (int(values.min()) < 0 or int(values.max()) > int(self._mask)):
            bad = int(values.min()) if int(values.min()) < 0 else int(values.max())
            raise ConfigError(f"reduced-width cipher holds {self.bits}-bit values; got {bad:#x}")
        return values.astype(np.uint32)

    # -- whole lines ----------------------------------------------------------------------
    def _word_addrs(self, addrs: NDArray[np.uint64]) -> NDArray[np.uint64]:
        offsets = np.arange(_WORDS, dtype=np.uint64) * np.uint64(WORD_SIZE)
        return (addrs[:, None] + offsets[None, :]).reshape(-1)

    def encrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]:
        """Encrypt lines: each 32-bit word is one n-bit block at its own address."""
        addr_arr = as_addresses(addrs)
        line_arr = as_lines(lines, addr_arr.shape[0])
        words = line_arr.view("<u4").reshape(-1)
        out = self.encrypt_words(self._word_addrs(addr_arr), words)
        return out.astype("<u4").view(np.uint8).reshape(line_arr.shape)

    def decrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]:
        """Inverse of :meth:`encrypt`."""
        addr_arr = as_addresses(addrs)
        line_arr = as_lines(lines, addr_arr.shape[0])
        words = line_arr.view("<u4").reshape(-1)
        out = self.decrypt_words(self._word_addrs(addr_arr), words)
        return out.astype("<u4").view(np.uint8).reshape(line_arr.shape)

    def encrypt_varying(
        self, addr: int, template: object, offset: int, blocks: object
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """``n`` lines at ``addr`` that differ only in the 16 bytes at ``offset``, each line
        encrypted whole (this cipher's blocks are narrower than 16 bytes)."""
        line, column = as_blocks(template, offset, blocks)
        return varying_by_lines(self.encrypt, addr, line, offset, column)

    def search_varying(
        self, addr: int, template: object, offset: int, grid: BlockGrid, target: bytes
    ) -> tuple[int | None, NDArray[np.uint8]]:
        """The lines of :meth:`encrypt_varying` with the blocks of ``grid``, in order, up to the
        first whose ciphertext is ``target``, each encrypted whole. Returns its index
        (``None``: none matched) and the last line written, ``(64,)``."""
        line, _ = as_blocks(template, offset, np.zeros((0, 16), dtype=np.uint8))
        return search_by_blocks(self.encrypt_varying, addr, line, offset, grid, target)
