"""How likely a guess does as well: the chance against which every verdict is weighed.

A verdict states, as log2 odds, the probability that an attacker *without* the capability, just
guessing, would have got at least the same result: ``-248`` for 31 random bytes recovered
exactly, ``-13.3`` for a 4-digit PIN, ``0`` for a result any guess reaches. The numbers come
from the secret's space (random bytes, the digits of a PIN, independent bits, a chosen value of
n bits) and the count of what matched, as a binomial tail.

Bytes a defence writes itself (the zeros ``init_on_free`` and secret memory clear pages with,
the 0xff that ciphertext hiding returns) are the same under every key: a match on them is
never counted as recovered. Nor is a repeat: a matched byte equal to the byte before it in what
the attacker read counts only once, so that a page filled with one value (whatever a defence
writes) matches a secret made of that value by at most one byte. A secret of printable ASCII
text is weighed by its alphabet (1 in 95 per byte), not as random bytes.
"""

from __future__ import annotations

import math

__all__ = [
    "DEFENCE_BYTES",
    "byte_chance",
    "chance_text",
    "informative_matches",
    "log2_tail",
    "matched_bytes",
]

DEFENCE_BYTES = frozenset({0x00, 0xFF})
"""Byte values a defence writes or returns in place of data; a match on them counts for nothing."""


def log2_tail(n: int, k: int, p: float) -> float:
    """``log2 P[X >= k]`` for ``X ~ Binomial(n, p)``: the chance of at least ``k`` hits in ``n``
    independent guesses that each hit with probability ``p``.

    Exact for the sizes here (n up to a few thousand), computed in log space so that
    ``2^-8192`` does not underflow.
    """
    if k <= 0:
        return 0.0
    if k > n or p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
             + j * log_p + (n - j) * log_q for j in range(k, n + 1)]
    top = max(terms)
    return min(0.0, (top + math.log(sum(math.exp(t - top) for t in terms))) / math.log(2))


def matched_bytes(secret: bytes, recovered: bytes) -> int:
    """Positions where ``recovered`` holds the secret's byte, not counting defence bytes."""
    return sum(a == b and a not in DEFENCE_BYTES for a, b in zip(secret, recovered, strict=False))


def informative_matches(secret: bytes, recovered: bytes) -> int:
    """Matched bytes that count as evidence: not defence bytes, and not a repeat of the byte
    read just before (a run of one value counts once)."""
    return sum(a == b and a not in DEFENCE_BYTES and (i == 0 or b != recovered[i - 1])
               for i, (a, b) in enumerate(zip(secret, recovered, strict=False)))


PRINTABLE = frozenset(range(0x20, 0x7F))
"""Printable ASCII: the alphabet of a text secret."""


def byte_chance(secret: bytes) -> float:
    """The chance that one guessed byte is right: 1 in 95 when the whole secret is printable
    ASCII (a guesser knows it is text), else 1 in 256."""
    return 1 / len(PRINTABLE) if secret and PRINTABLE.issuperset(secret) else 1 / 256


def chance_text(log2_odds: float | None) -> str:
    """``2^-248``, ``2^-13.3``, or ``1`` (a guess does as well)."""
    if log2_odds is None:
        return "not a guess"
    if log2_odds == -math.inf:
        return "0"
    if log2_odds >= -0.05:
        return "1"
    rounded = round(log2_odds, 1)
    return f"2^{rounded:.0f}" if rounded.is_integer() else f"2^{rounded:.1f}"
