"""No false successes: attackers without the capability, and defences that write a value of their
own, never reach ``succeeded`` or ``partial`` once a verdict is weighed against chance.

The bound is the one the verdicts are held to (rule 1 of :mod:`testbed.results.verdicts`): a
blind attacker beats chance by 2^-32 at most once in 2^32 verdicts, so over the 2,000 seeds
below the expected count is 2000 x 2^-32 < 10^-6, and the tests demand 0. A defence's own value
(zeros, 0xff, any constant) carries at most one byte of evidence, whatever the secret is.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _support.programs import freed
from _support.scenarios import run
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.attacks import judge_bytes
from testbed.attacks.dirty_page_leak import judge_bits
from testbed.results.chance import PRINTABLE, byte_chance, log2_tail
from testbed.results.verdicts import MARGIN_LOG2, Verdict, weigh
from testbed.types import Outcome

WORKS = (Outcome.SUCCEEDED, Outcome.PARTIAL)
SEEDS = 2000
ALPHABET = np.array(sorted(PRINTABLE), dtype=np.uint8)


def _beats_chance(verdict: Verdict) -> bool:
    return verdict.chance_log2 is not None and verdict.chance_log2 <= MARGIN_LOG2


def _most_false_successes(alpha_log2: float) -> int:
    """How many of :data:`SEEDS` verdicts may beat chance at ``2^alpha_log2``: the expected
    count plus four standard deviations (a bound that a calibrated chance never exceeds)."""
    mean = SEEDS * math.pow(2.0, alpha_log2)
    return math.floor(mean + 4 * math.sqrt(mean) + 1)


# -- (a) blind attackers ----------------------------------------------------------------------

def test_a_blind_attacker_never_succeeds_on_random_bytes() -> None:
    """Random secrets of 1 to 64 bytes, guessed by independent random bytes."""
    assert SEEDS * 2.0**MARGIN_LOG2 < 1e-6  # the bound: no false success is expected
    beat = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        size = int(rng.integers(1, 65))
        secret, guess = rng.bytes(size), rng.bytes(size)
        verdict = weigh(judge_bytes(secret, guess))
        assert verdict.outcome not in WORKS, (secret.hex(), guess.hex(), verdict.reason)
        beat += _beats_chance(verdict)
    assert beat == 0


def test_a_blind_attacker_who_knows_the_secret_is_text_never_succeeds() -> None:
    """Printable secrets of 1 to 64 characters, guessed from the same alphabet (each byte
    1 in 95: the chance a text secret is weighed by)."""
    beat = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng([seed, 95])
        size = int(rng.integers(1, 65))
        secret, guess = (rng.choice(ALPHABET, size).tobytes() for _ in range(2))
        verdict = weigh(judge_bytes(secret, guess))
        assert verdict.outcome not in WORKS, (secret, guess, verdict.reason)
        beat += _beats_chance(verdict)
    assert beat == 0


def test_coin_flips_never_succeed_on_random_bits() -> None:
    """Random secrets of 1 to 32 bytes (and every tenth up to the attack's 128) leaked bit by
    bit, guessed by coin flips."""
    beat = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng([seed, 2])
        bits = 8 * int(rng.integers(1, 129 if seed % 10 == 0 else 33))
        truth = rng.integers(0, 2, bits, dtype=np.uint8)
        coins = rng.integers(0, 2, bits, dtype=np.uint8)
        verdict = weigh(judge_bits(truth, coins))
        assert verdict.outcome not in WORKS, (bits, verdict.reason)
        beat += _beats_chance(verdict)
    assert beat == 0


@pytest.mark.parametrize("alpha_log2", [-2.0, -4.0, -8.0])
def test_the_chance_of_coin_flips_is_not_optimistic(alpha_log2: float) -> None:
    """The stated chance is a valid p-value: coin flips reach 2^a at most a 2^a share of the
    time (with room for sampling), so the 2^-32 margin means what it says."""
    hits = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng([seed, 3])
        bits = int(rng.integers(8, 257))
        truth = rng.integers(0, 2, bits, dtype=np.uint8)
        coins = rng.integers(0, 2, bits, dtype=np.uint8)
        chance = judge_bits(truth, coins).chance_log2
        assert chance is not None
        hits += chance <= alpha_log2
    assert hits <= _most_false_successes(alpha_log2)


@pytest.mark.parametrize("alpha_log2", [-2.0, -4.0])
def test_the_chance_of_random_bytes_is_not_optimistic(alpha_log2: float) -> None:
    hits = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng([seed, 4])
        size = int(rng.integers(1, 600))
        chance = judge_bytes(rng.bytes(size), rng.bytes(size)).chance_log2
        assert chance is not None
        hits += chance <= alpha_log2
    assert hits <= _most_false_successes(alpha_log2)


# -- (b) and (c) a defence's own value --------------------------------------------------------

CONSTANT = st.integers(0, 255)
SECRETS = st.one_of(
    st.binary(min_size=1, max_size=1024),
    st.text(min_size=1, max_size=256).map(lambda s: s.encode("utf-8")),
    st.text(st.sampled_from(sorted(map(chr, PRINTABLE))), min_size=1, max_size=1024)
    .map(str.encode),
    st.tuples(CONSTANT, st.integers(1, 1024)).map(lambda cn: bytes([cn[0]]) * cn[1]),
)
"""Any bytes, any text, printable text, and runs of one value (a defence's own included)."""


@settings(max_examples=400, deadline=None)
@given(secret=SECRETS, c=CONSTANT)
def test_a_defence_writing_a_constant_never_succeeds(secret: bytes, c: int) -> None:
    """init_on_free and secret memory write zeros; any defence writing one value c gives the
    attacker c repeated, which matches a secret made of c but is one byte of evidence."""
    recovered = bytes([c]) * len(secret)
    verdict = weigh(judge_bytes(secret, recovered))
    assert verdict.outcome not in WORKS, verdict.reason
    assert verdict.chance_log2 is not None and verdict.chance_log2 >= -8.0


@settings(max_examples=200, deadline=None)
@given(c=CONSTANT, n=st.integers(1, 1024))
def test_a_secret_made_of_the_defences_value_is_inconclusive(c: int, n: int) -> None:
    """The worst case for (b): the secret is the defence's value repeated, so the read matches
    it exactly, and still only its first byte (none for 0x00 and 0xff) is evidence."""
    own = bytes([c]) * n
    verdict = weigh(judge_bytes(own, own))
    assert verdict.outcome is Outcome.INCONCLUSIVE, verdict.reason
    assert verdict.chance_log2 == (0.0 if c in (0x00, 0xFF) else
                                   pytest.approx(log2_tail(n, 1, byte_chance(own))))


@settings(max_examples=300, deadline=None)
@given(secret=SECRETS)
def test_ciphertext_hiding_never_succeeds(secret: bytes) -> None:
    """SEV-SNP ciphertext hiding returns 0xff for every byte: nothing of it counts."""
    verdict = weigh(judge_bytes(secret, b"\xff" * len(secret)))
    assert verdict.outcome not in WORKS, verdict.reason
    assert verdict.chance_log2 == 0.0


@pytest.mark.parametrize("engine", ["none", "mktme"])
@settings(max_examples=25, deadline=None)
@given(secret=st.one_of(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=64),
    st.integers(1, 64).map(lambda n: "\0" * n),
    st.tuples(st.integers(1, 40), st.text("xyz", min_size=1, max_size=8))
    .map(lambda t: "\0" * t[0] + t[1]),
))
def test_init_on_free_on_the_machine_never_succeeds(engine: str, secret: str) -> None:
    """The whole run: a freed page that init_on_free zeroed, read by the attacker."""
    row = run("program", engine, params=freed(secret), mitigations={"init_on_free": True})
    assert row.outcome not in (*WORKS, Outcome.ERROR), row.reason
