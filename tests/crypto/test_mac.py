"""The per-line MAC of memory integrity: the batched tweaks and AES-CMAC against
``cryptography``'s own AES and CMAC line by line, bit flips, the tweak's binding to a KeyID,
truncation, and the forgery rate a width gives."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from testbed.crypto.mac import LineMac, LineTweak, mac_message
from testbed.errors import ConfigError
from testbed.results.verdicts import wilson_interval

RNG = np.random.default_rng(20260)
KEY = RNG.bytes(16)


TWEAK_KEY = RNG.bytes(16)


def _tweak(key: bytes, addr: int) -> bytes:
    """A line's tweak, computed independently: AES-ECB of LE128(addr) with ``cryptography``."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(addr.to_bytes(16, "little")) + enc.finalize()


def _cmac(key: bytes, tweak: bytes, owner: bool, line: bytes, bits: int) -> int:
    """The truncated MAC of one line, computed independently: the message laid out from the
    documented layout, ``cryptography``'s CMAC, the leftmost ``bits`` bits."""
    assert len(line) == 64 and len(tweak) == 16
    message = tweak + bytes([owner]) + bytes(15) + line
    assert message == mac_message(tweak, owner, line)
    c = CMAC(algorithms.AES(key))
    c.update(message)
    return int.from_bytes(c.finalize(), "big") >> (128 - bits)


def _lines(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    addrs = (RNG.integers(0, 1 << 40, n, dtype=np.uint64) // 64) * 64
    owners = RNG.integers(0, 2, n).astype(bool)
    ct = RNG.integers(0, 256, (n, 64), dtype=np.uint8)
    return addrs, owners, ct


def test_batched_tweaks_equal_aes_of_the_address_line_by_line() -> None:
    addrs, _, _ = _lines(97)
    tweaks = LineTweak(TWEAK_KEY).of(addrs)
    assert tweaks.shape == (97, 2)
    for i, a in enumerate(addrs):
        assert tweaks[i].astype("<u8").tobytes() == _tweak(TWEAK_KEY, int(a))


@pytest.mark.parametrize("bits", [4, 8, 28, 56])
def test_batched_tags_equal_cmac_line_by_line(bits: int) -> None:
    addrs, owners, ct = _lines(97)
    tags = LineMac(KEY, bits).tags(LineTweak(TWEAK_KEY).of(addrs), owners, ct)
    assert tags.dtype == np.uint64
    for i in range(len(addrs)):
        want = _cmac(KEY, _tweak(TWEAK_KEY, int(addrs[i])), bool(owners[i]), ct[i].tobytes(),
                     bits)
        assert int(tags[i]) == want


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_few_lines_equal_cmac_line_by_line(n: int) -> None:
    """A line or two takes the line-by-line path: the same MACs as the batched one."""
    addrs, owners, ct = _lines(n)
    mac, tweaks = LineMac(KEY, 28), LineTweak(TWEAK_KEY).of(addrs)
    tags = mac.tags(tweaks, owners, ct)
    for i in range(n):
        assert int(tags[i]) == _cmac(KEY, _tweak(TWEAK_KEY, int(addrs[i])), bool(owners[i]),
                                     ct[i].tobytes(), 28)
    many = mac.tags(np.tile(tweaks, (4, 1)), np.tile(owners, 4), np.tile(ct, (4, 1)))
    assert (many == np.tile(tags, 4)).all()


def test_every_single_bit_flip_changes_the_mac() -> None:
    mac, tweak = LineMac(KEY, 28), LineTweak(TWEAK_KEY)
    addr, owner, line = 0x12340, True, bytes(range(64))
    base = int(mac.tags(tweak.of([addr]), [owner], line)[0])
    flipped = np.tile(np.frombuffer(line, dtype=np.uint8), (512, 1))
    for bit in range(512):
        flipped[bit, bit // 8] ^= 1 << (bit % 8)
    by_data = mac.tags(tweak.of(np.full(512, addr, dtype=np.uint64)), np.full(512, owner),
                       flipped)
    assert (by_data != base).all()
    addrs = np.array([addr ^ (1 << b) for b in range(6, 48)], dtype=np.uint64)
    same = np.tile(np.frombuffer(line, dtype=np.uint8), (len(addrs), 1))
    by_addr = mac.tags(tweak.of(addrs), np.full(len(addrs), owner), same)
    assert (by_addr != base).all()
    assert int(mac.tags(tweak.of([addr]), [not owner], line)[0]) != base


def test_one_mac_key_is_bound_to_the_keyid_by_its_tweak() -> None:
    """The same line at the same address, MACed under one MAC key: a KeyID with another tweak
    key gets another MAC (one in 2^28 the same, by chance)."""
    mac = LineMac(KEY, 28)
    addrs, owners, ct = _lines(64)
    mine = mac.tags(LineTweak(TWEAK_KEY).of(addrs), owners, ct)
    other = mac.tags(LineTweak(RNG.bytes(16)).of(addrs), owners, ct)
    assert (mine != other).all()


def test_truncation_keeps_the_leftmost_bits() -> None:
    addrs, owners, ct = _lines(64)
    tweaks = LineTweak(TWEAK_KEY).of(addrs)
    wide = LineMac(KEY, 56).tags(tweaks, owners, ct)
    for bits in (4, 8, 28):
        narrow = LineMac(KEY, bits).tags(tweaks, owners, ct)
        assert (narrow == wide >> np.uint64(56 - bits)).all()
        assert int(narrow.max()) < 1 << bits


def test_random_forgeries_pass_an_8_bit_mac_one_time_in_256() -> None:
    """A forged line (random ciphertext) meets the MAC the line had: it passes when the truncated
    MACs collide, which a PRF makes happen with probability 2^-bits."""
    mac = LineMac(KEY, 8)
    n = 40_000
    addr = 0x4000
    tweak = LineTweak(TWEAK_KEY)
    stored = int(mac.tags(tweak.of([addr]), [True], bytes(64))[0])
    forged = RNG.integers(0, 256, (n, 64), dtype=np.uint8)
    passed = int((mac.tags(tweak.of(np.full(n, addr, dtype=np.uint64)), np.ones(n, bool),
                           forged) == stored).sum())
    low, high = wilson_interval(passed, n)
    assert low <= 1 / 256 <= high, (passed, low, high)
    assert high < 2 / 256  # and it is not a much weaker MAC


@pytest.mark.parametrize(("key", "bits"), [(bytes(15), 28), (bytes(16), 3), (bytes(16), 57)])
def test_bad_key_or_width_is_one_clear_error(key: bytes, bits: int) -> None:
    with pytest.raises(ConfigError, match="MAC key|mac_bits"):
        LineMac(key, bits)


def test_bad_tweak_key_or_tweak_shape_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="tweak key"):
        LineTweak(bytes(15))
    with pytest.raises(ConfigError, match="tweaks"):
        LineMac(KEY, 28).tags(np.zeros((2, 3), dtype=np.uint64), [True, True], bytes(128))
    with pytest.raises(ConfigError, match="tweak"):
        mac_message(bytes(15), True, bytes(64))
