"""Tests for the SEV model cipher (XEX), the reduced-width cipher and GF(2^128) doubling."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from testbed.crypto import NarrowLineCipher, XexLineCipher, _kernels
from testbed.crypto._kernels import KernelError, address_blocks, xts_mask_lines
from testbed.errors import ConfigError

LINE = 64
XEX_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NARROW_KEY = bytes(range(100, 132))


def _aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# -- XEX (SEV) ---------------------------------------------------------------------------------
def test_xex_roundtrip() -> None:
    cipher = XexLineCipher(XEX_KEY)
    data = np.random.default_rng(1).integers(0, 256, size=(8, LINE), dtype=np.uint8)
    addrs = np.array(
        [0, 64, 4096, 8192, 0x10_0000, 0x7FFF_FFC0, 0x1234_5640, 0xFFFF_FFFF_C0], dtype=np.uint64
    )
    ct = cipher.encrypt(addrs, data)
    assert ct.shape == (8, LINE)
    assert not np.array_equal(ct, data)
    assert np.array_equal(cipher.decrypt(addrs, ct), data)


def test_xex_address_tweak_and_determinism() -> None:
    cipher = XexLineCipher(XEX_KEY)
    line = bytes(range(LINE))
    at_a = cipher.encrypt(0x2000, line).tobytes()
    at_b = cipher.encrypt(0x2040, line).tobytes()
    assert at_a != at_b
    assert cipher.encrypt(0x2000, line).tobytes() == at_a
    assert XexLineCipher(XEX_KEY).encrypt(0x2000, line).tobytes() == at_a
    # The four identical 16-byte blocks of a line also differ from each other (own tweaks).
    same_blocks = cipher.encrypt(0x2000, bytes(LINE)).tobytes()
    assert len({same_blocks[i : i + 16] for i in range(0, LINE, 16)}) == 4


def test_xex_reference_blocks() -> None:
    # C = AES_K(P ^ T) ^ T with T = AES_K(a) for the block at byte address a = addr + 16 j.
    addr = 0x0003_4560
    line = bytes((7 * i + 3) & 0xFF for i in range(LINE))
    ct = XexLineCipher(XEX_KEY).encrypt(addr, line).tobytes()
    for j in range(4):
        t = _aes(XEX_KEY, (addr + 16 * j).to_bytes(16, "little"))
        expected = _xor(_aes(XEX_KEY, _xor(line[16 * j : 16 * j + 16], t)), t)
        assert ct[16 * j : 16 * j + 16] == expected


@pytest.mark.parametrize("count", [1, 4095, 4096, 4097, 9000])
def test_xex_batches_equal_the_formula_block_by_block(count: int) -> None:
    """Batches cross the 4096-line steps: every block is still AES_K(P ^ T) ^ T with
    T = AES_K(its own address), computed here with plain AES-ECB."""
    rng = np.random.default_rng(count)
    addrs = rng.integers(0, 2**40, count, dtype=np.uint64) * np.uint64(LINE)
    lines = rng.integers(0, 256, (count, LINE), dtype=np.uint8)
    ecb = Cipher(algorithms.AES(XEX_KEY), modes.ECB())
    blocks = (addrs[:, None] + np.arange(0, LINE, 16, dtype=np.uint64)[None, :]).reshape(-1)
    pairs = np.zeros((blocks.size, 2), dtype="<u8")
    pairs[:, 0] = blocks
    tweaks = np.frombuffer(ecb.encryptor().update(pairs.tobytes()), dtype=np.uint8)
    plain = lines.reshape(-1)
    expected = np.frombuffer(ecb.encryptor().update((plain ^ tweaks).tobytes()),
                             dtype=np.uint8) ^ tweaks
    cipher = XexLineCipher(XEX_KEY)
    ct = cipher.encrypt(addrs, lines)
    assert np.array_equal(ct.reshape(-1), expected)
    assert np.array_equal(cipher.decrypt(addrs, ct), lines)


def test_xex_key_size() -> None:
    with pytest.raises(ConfigError, match="expected 16 bytes, got 32"):
        XexLineCipher(bytes(32))


# -- reduced-width cipher ----------------------------------------------------------------------
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
    with pytest.raises(ConfigError):
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


# -- GF(2^128) doubling ------------------------------------------------------------------------
def _double_int(x: int) -> int:
    x <<= 1
    if x >> 128:
        x = (x ^ (1 << 128)) ^ 0x87
    return x


def _to_pairs(values: list[int]) -> np.ndarray:
    raw = b"".join(v.to_bytes(16, "little") for v in values)
    return np.frombuffer(raw, dtype="<u8").reshape(-1, 2).copy()


def _from_pairs(arr: np.ndarray) -> list[int]:
    raw = np.ascontiguousarray(arr, dtype="<u8").tobytes()
    return [int.from_bytes(raw[i : i + 16], "little") for i in range(0, len(raw), 16)]


def _alpha_powers(values: list[int], count: int) -> np.ndarray:
    """``values[n] * alpha**j`` for ``j < count`` through the mask pass in charge: zero data,
    zero chain, so what comes out is the masks themselves."""
    tweaks = _to_pairs(values)
    rows = -(-count // 4)
    out = np.empty((len(values), rows * 4, 2), dtype="<u8")
    for r in range(rows):  # each call gives four powers; the next call starts from alpha**4
        src = np.zeros((len(values), 8), dtype="<u8")
        dst = np.empty_like(src)
        xts_mask_lines(src, tweaks, dst)
        out[:, 4 * r : 4 * r + 4] = dst.reshape(-1, 4, 2)
        tweaks = _to_pairs([_double_int(v) for v in _from_pairs(dst.reshape(-1, 4, 2)[:, 3])])
    return out[:, :count]


def test_gf128_double_matches_integer_model(backend: str) -> None:
    rng = np.random.default_rng(128)
    values = [int.from_bytes(rng.bytes(16), "little") for _ in range(500)]
    values += [v | (1 << 127) for v in values[:100]]  # top bit set: reduction
    values += [0, 1, 1 << 63, 1 << 64, 1 << 127, (1 << 128) - 1, (1 << 127) | (1 << 63)]
    masks = _alpha_powers(values, 4)  # one vector computes all four: check each power
    expected = values
    for j in range(4):
        assert _from_pairs(masks[:, j, :]) == expected, f"alpha**{j}"
        expected = [_double_int(v) for v in expected]
    assert _double_int(1 << 127) == 0x87


def test_gf128_alpha_powers(backend: str) -> None:
    values = [0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210, (1 << 128) - 1]
    out = _alpha_powers(values, 6)
    assert out.shape == (2, 6, 2)
    for n, v in enumerate(values):
        expected = [v]
        for _ in range(5):
            expected.append(_double_int(expected[-1]))
        assert _from_pairs(out[n]) == expected


def test_mask_loop_xors_masks_into_data_in_place(backend: str) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 2**63, (33, 8), dtype="<u8")
    tweaks = rng.integers(0, 2**63, (33, 2), dtype="<u8")
    masks = _alpha_powers(_from_pairs(tweaks), 4).reshape(33, 8)
    work = data.copy()
    xts_mask_lines(work, tweaks, work)  # dst may be src
    assert np.array_equal(work, data ^ masks)


def test_kernels_refuse_arrays_they_cannot_use(backend: str) -> None:
    lines = np.zeros((4, 8), dtype="<u8")
    pairs = np.zeros((4, 2), dtype="<u8")
    with pytest.raises(KernelError, match="uint64"):
        xts_mask_lines(lines.astype(np.int64), pairs, lines)
    with pytest.raises(KernelError, match=r"at least \(4, 8\)"):
        xts_mask_lines(lines[:3], pairs, lines)
    with pytest.raises(KernelError, match="C-contiguous"):
        xts_mask_lines(lines, np.zeros((4, 4), dtype="<u8")[:, ::2], lines)
    frozen = lines.copy()
    frozen.flags.writeable = False
    with pytest.raises(KernelError, match="read-only"):
        xts_mask_lines(lines, pairs, frozen)
    with pytest.raises(KernelError, match="1-D"):
        address_blocks(pairs, pairs)
    with pytest.raises(KernelError, match=r"at least \(5, 2\)"):
        address_blocks(np.zeros(5, dtype="<u8"), pairs)
    assert not lines.any()  # nothing was written on the way


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 8, 4099])
def test_address_blocks_are_little_endian_128_bit(count: int, backend: str) -> None:
    rng = np.random.default_rng(count)
    addrs = rng.integers(0, 2**64 - 1, count, dtype="<u8", endpoint=True)
    out = np.full((count, 2), 7, dtype="<u8")
    address_blocks(addrs, out)
    assert out.tobytes() == b"".join(int(a).to_bytes(16, "little") for a in addrs)


def test_mask_pair_is_two_mask_calls(backend: str) -> None:
    rng = np.random.default_rng(11)
    src = rng.integers(0, 2**63, (9, 8), dtype="<u8")
    tweaks = rng.integers(0, 2**63, (9, 2), dtype="<u8")
    expected = np.empty_like(src)
    xts_mask_lines(src, tweaks, expected)
    got = np.zeros_like(src)
    passes = _kernels.mask_passes()
    assert passes.name == backend
    at = [passes.handle(a) for a in (src, tweaks, got)]
    passes.mask_pair(at[0], 0, at[1], 0, at[2], 0, 4, at[0], 4, at[1], 4, at[2], 4, 5)
    assert np.array_equal(got, expected)
