"""The SEV model cipher (XexLineCipher): AES-128 XEX per 16-byte block, the physical address as
tweak."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from testbed.crypto import XexLineCipher
from testbed.errors import ConfigError

LINE = 64
XEX_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def _aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


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






