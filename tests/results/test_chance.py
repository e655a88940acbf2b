"""The chance a guess does as well: binomial tails, defence bytes, and blind attackers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from testbed.attacks import judge_bytes
from testbed.attacks.dirty_page_leak import judge_bits
from testbed.results import DEFENCE_BYTES, chance_text, log2_tail, matched_bytes
from testbed.types import Outcome


@pytest.mark.parametrize(("n", "k", "p", "want"), [
    (1, 1, 1 / 256, -8.0),
    (31, 31, 1 / 256, -248.0),
    (2, 1, 0.5, math.log2(0.75)),
    (10, 0, 0.3, 0.0),
    (4096, 4096, 0.5, -4096.0),  # far below what a float holds as a probability
    (3, 4, 0.5, -math.inf),
])
def test_binomial_tail(n: int, k: int, p: float, want: float) -> None:
    assert log2_tail(n, k, p) == pytest.approx(want, abs=1e-9)


def test_binomial_tail_against_a_direct_sum() -> None:
    for n, p in ((12, 0.25), (40, 1 / 256), (7, 0.9)):
        for k in range(n + 1):
            direct = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
            assert 2 ** log2_tail(n, k, p) == pytest.approx(direct, rel=1e-9)


def test_bytes_a_defence_writes_never_count() -> None:
    assert DEFENCE_BYTES == {0x00, 0xFF}
    secret = b"\x00\x00\xff\xffAB"
    assert matched_bytes(secret, b"\x00\x00\xff\xffAB") == 2
    zeros = judge_bytes(bytes(16), bytes(16))  # init_on_free hands back what was zeros anyway
    assert zeros.chance_log2 == 0.0 and "by chance 1" in zeros.reason
    hidden = judge_bytes(b"\xff" * 8, b"\xff" * 8)
    assert hidden.chance_log2 == 0.0


def test_text() -> None:
    assert chance_text(-248.0) == "2^-248" and chance_text(-13.2877) == "2^-13.3"
    assert chance_text(0.0) == "1" and chance_text(None) == "not a guess"
    assert chance_text(-math.inf) == "0"


def test_a_pin_is_weighed_by_its_space() -> None:
    verdict = judge_bytes(b"PIN:4711", b"PIN:4711", "PIN", space_log2=4 * math.log2(10))
    assert verdict.outcome is Outcome.SUCCEEDED
    assert verdict.chance_log2 == pytest.approx(-4 * math.log2(10))
    assert "by chance 2^-13.3" in verdict.reason


def test_blind_attackers_rarely_beat_chance() -> None:
    """2000 blind attackers guess a 32-byte secret and a 128-bit one: how often does the
    evidence look better than 2^-32 (the bound the verdicts will be held to)?"""
    rng = np.random.default_rng(2024)
    below = 0
    worst = 0.0
    for _ in range(2000):
        secret, guess = rng.bytes(32), rng.bytes(32)
        verdict = judge_bytes(secret, guess)
        assert verdict.outcome is Outcome.MITIGATED
        assert verdict.chance_log2 is not None
        worst = min(worst, verdict.chance_log2)
        bits = rng.integers(0, 2, 128, dtype=np.uint8)
        coin = rng.integers(0, 2, 128, dtype=np.uint8)
        judged = judge_bits(bits, coin)
        assert judged.outcome is Outcome.MITIGATED
        assert judged.chance_log2 is not None
        below += (verdict.chance_log2 <= -32) + (judged.chance_log2 <= -32)
    assert below == 0
    assert worst > -32
