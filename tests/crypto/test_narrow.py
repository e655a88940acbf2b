"""The reduced-width cipher (NarrowLineCipher): a keyed permutation of n-bit words, XEX-style
per address, narrow enough that its collisions are reachable (key wear-out)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from testbed.crypto import NarrowLineCipher
from testbed.errors import ConfigError

LINE = 64
NARROW_KEY = bytes(range(100, 132))


def test_narrow_16_bit_permutation_is_bijective() -> None:
    cipher = NarrowLineCipher(NARROW_KEY, 16)
    every = np.arange(1 << 16, dtype=np.uint32)
    image = cipher.permute(every)
    assert int(image.max()) < 1 << 16
    assert np.unique(image).size == 1 << 16
    assert np.array_equal(cipher.unpermute(image), every)
    # With a tweak (one word address) it is still a permutation of the 2^16 values.
    words = cipher.encrypt_words(np.full(every.size, 0x40, dtype=np.uint64), every)
    assert np.unique(words).size == 1 << 16


@pytest.mark.parametrize("bits", [16, 20, 24, 32])
def test_narrow_words_roundtrip(bits: int) -> None:
    cipher = NarrowLineCipher(NARROW_KEY, bits)
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 1 << bits, size=2000, dtype=np.uint64).astype(np.uint32)
    values[:2] = [0, (1 << bits) - 1]
    addrs = rng.integers(0, 1 << 30, size=2000, dtype=np.uint64) * np.uint64(4)
    ct = cipher.encrypt_words(addrs, values)
    assert int(ct.max()) < 1 << bits
    assert not np.array_equal(ct, values)
    assert np.array_equal(cipher.decrypt_words(addrs, ct), values)


@pytest.mark.parametrize("bits", [16, 20, 24])
def test_narrow_lines_roundtrip(bits: int) -> None:
    cipher = NarrowLineCipher(NARROW_KEY, bits)
    words = np.arange(32, dtype=np.uint32).reshape(2, 16) * np.uint32(997) % np.uint32(1 << bits)
    lines = words.astype("<u4").view(np.uint8)
    addrs = [0x1000, 0x2040]
    ct = cipher.encrypt(addrs, lines)
    assert ct.shape == (2, LINE)
    assert int(ct.view("<u4").max()) < 1 << bits
    assert np.array_equal(cipher.decrypt(addrs, ct), lines)
    # Each 32-bit word is one block at its own address.
    word_addrs = np.array([a + 4 * i for a in addrs for i in range(16)], dtype=np.uint64)
    assert np.array_equal(
        ct.view("<u4").reshape(-1), cipher.encrypt_words(word_addrs, words.reshape(-1))
    )


@pytest.mark.parametrize(("bits", "value"), [(16, 1 << 16), (20, 1 << 20), (24, 0xFFFF_FFFF)])
def test_narrow_value_too_wide(bits: int, value: int) -> None:
    cipher = NarrowLineCipher(NARROW_KEY, bits)
    with pytest.raises(ConfigError, match=f"holds {bits}-bit values"):
        cipher.encrypt_words([0, 4], [1, value])
    with pytest.raises(ConfigError, match=f"holds {bits}-bit values"):
        cipher.decrypt_words([0], [value])


def test_narrow_value_beyond_32_bits_is_config_error() -> None:
    cipher = NarrowLineCipher(NARROW_KEY, 16)
    with pytest.raises(ConfigError, match="holds 16-bit values; got 0x100000000"):
        cipher.encrypt_words([0], [1 << 32])


@pytest.mark.parametrize("bits", [0, 14, 15, 17, 23, 31, 33, 34, 64])
def test_narrow_bad_width(bits: int) -> None:
    with pytest.raises(ConfigError, match="block_bits: must be an even number from 16 to 32"):
        NarrowLineCipher(NARROW_KEY, bits)


def test_narrow_bad_key() -> None:
    with pytest.raises(ConfigError, match="expected 32 bytes, got 16"):
        NarrowLineCipher(bytes(16), 16)


def test_narrow_xex_collision_structure() -> None:
    """An internal collision P1^D1 == P2^D2 shows as P1^P2 == C1^C2 and gives D1^D2."""
    cipher = NarrowLineCipher(NARROW_KEY, 16)
    t1, t2 = 0x1000, 0x2004
    rng = np.random.default_rng(7)
    n = 4096
    p1 = rng.integers(0, 1 << 16, size=n, dtype=np.uint64).astype(np.uint32)
    p2 = rng.integers(0, 1 << 16, size=n, dtype=np.uint64).astype(np.uint32)
    c1 = cipher.encrypt_words(np.full(n, t1, dtype=np.uint64), p1)
    c2 = cipher.encrypt_words(np.full(n, t2, dtype=np.uint64), p2)

    # Brute force: pairs with P1^C1 == P2^C2, i.e. P1^P2 == C1^C2. The true internal
    # collisions all share delta = D1^D2; chance matches spread over all 2^16 values.
    by_key: dict[int, list[int]] = {}
    for j in range(n):
        by_key.setdefault(int(p2[j] ^ c2[j]), []).append(j)
    deltas: Counter[int] = Counter()
    pairs: list[tuple[int, int]] = []
    for i in range(n):
        for j in by_key.get(int(p1[i] ^ c1[i]), []):
            assert p1[i] ^ p2[j] == c1[i] ^ c2[j]
            deltas[int(p1[i] ^ p2[j])] += 1
            pairs.append((i, j))
    (delta, hits), (_, runner_up) = deltas.most_common(2)
    assert hits >= 100 and runner_up <= 10

    d1, d2 = (int(x) for x in cipher.tweak_masks(np.array([t1, t2], dtype=np.uint64)))
    assert delta == d1 ^ d2

    # Moving C1 ^ delta to T2 decrypts to P1 ^ delta, for a colliding pair and for every word.
    i, j = next((i, j) for i, j in pairs if int(p1[i] ^ p2[j]) == delta)
    moved = cipher.decrypt_words([t2], [int(c1[i]) ^ delta])
    assert int(moved[0]) == int(p1[i]) ^ delta == int(p2[j])
    moved_all = cipher.decrypt_words(np.full(n, t2, dtype=np.uint64), c1 ^ np.uint32(delta))
    assert np.array_equal(moved_all, p1 ^ np.uint32(delta))
