"""The per-line MAC of memory integrity: the batched AES-CMAC against ``cryptography``'s own CMAC
line by line, bit flips, truncation, and the forgery rate a width gives."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from testbed.crypto.mac import LineMac, mac_message
from testbed.errors import ConfigError
from testbed.results.verdicts import wilson_interval

RNG = np.random.default_rng(20260)
KEY = RNG.bytes(16)


def _cmac(key: bytes, addr: int, owner: bool, line: bytes, bits: int) -> int:
    """The truncated MAC of one line, computed independently: the message laid out from the
    documented layout, ``cryptography``'s CMAC, the leftmost ``bits`` bits."""
    assert len(line) == 64
    message = addr.to_bytes(8, "little") + bytes([owner]) + bytes(7) + line
    assert message == mac_message(addr, owner, line)
    c = CMAC(algorithms.AES(key))
    c.update(message)
    return int.from_bytes(c.finalize(), "big") >> (128 - bits)


def _lines(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    addrs = (RNG.integers(0, 1 << 40, n, dtype=np.uint64) // 64) * 64
    owners = RNG.integers(0, 2, n).astype(bool)
    ct = RNG.integers(0, 256, (n, 64), dtype=np.uint8)
    return addrs, owners, ct


@pytest.mark.parametrize("bits", [4, 8, 28, 56])
def test_batched_tags_equal_cmac_line_by_line(bits: int) -> None:
    addrs, owners, ct = _lines(97)
    tags = LineMac(KEY, bits).tags(addrs, owners, ct)
    assert tags.dtype == np.uint64
    for i in range(len(addrs)):
        assert int(tags[i]) == _cmac(KEY, int(addrs[i]), bool(owners[i]), ct[i].tobytes(), bits)


def test_every_single_bit_flip_changes_the_mac() -> None:
    mac = LineMac(KEY, 28)
    addr, owner, line = 0x12340, True, bytes(range(64))
    base = int(mac.tags([addr], [owner], line)[0])
    flipped = np.tile(np.frombuffer(line, dtype=np.uint8), (512, 1))
    for bit in range(512):
        flipped[bit, bit // 8] ^= 1 << (bit % 8)
    by_data = mac.tags(np.full(512, addr, dtype=np.uint64), np.full(512, owner), flipped)
    assert (by_data != base).all()
    addrs = np.array([addr ^ (1 << b) for b in range(6, 48)], dtype=np.uint64)
    same = np.tile(np.frombuffer(line, dtype=np.uint8), (len(addrs), 1))
    by_addr = mac.tags(addrs, np.full(len(addrs), owner), same)
    assert (by_addr != base).all()
    assert int(mac.tags([addr], [not owner], line)[0]) != base


def test_truncation_keeps_the_leftmost_bits() -> None:
    addrs, owners, ct = _lines(64)
    wide = LineMac(KEY, 56).tags(addrs, owners, ct)
    for bits in (4, 8, 28):
        narrow = LineMac(KEY, bits).tags(addrs, owners, ct)
        assert (narrow == wide >> np.uint64(56 - bits)).all()
        assert int(narrow.max()) < 1 << bits


def test_random_forgeries_pass_an_8_bit_mac_one_time_in_256() -> None:
    """A forged line (random ciphertext) meets the MAC the line had: it passes when the truncated
    MACs collide, which a PRF makes happen with probability 2^-bits."""
    mac = LineMac(KEY, 8)
    n = 40_000
    addr = 0x4000
    stored = int(mac.tags([addr], [True], bytes(64))[0])
    forged = RNG.integers(0, 256, (n, 64), dtype=np.uint8)
    passed = int((mac.tags(np.full(n, addr, dtype=np.uint64), np.ones(n, bool), forged)
                  == stored).sum())
    low, high = wilson_interval(passed, n)
    assert low <= 1 / 256 <= high, (passed, low, high)
    assert high < 2 / 256  # and it is not a much weaker MAC


@pytest.mark.parametrize(("key", "bits"), [(bytes(15), 28), (bytes(16), 3), (bytes(16), 57)])
def test_bad_key_or_width_is_one_clear_error(key: bytes, bits: int) -> None:
    with pytest.raises(ConfigError, match="MAC key|mac_bits"):
        LineMac(key, bits)
