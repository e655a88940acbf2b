"""How likely a guess does as well: the chance against which every verdict is weighed.

A verdict states, as log2 odds, the probability that an attacker *without* the capability, just
guessing, would have got at least the same result: ``-248`` for 31 random bytes recovered
exactly, ``-13.3`` for a 4-digit PIN, ``0`` for a result any guess reaches. The numbers come
from the secret's space (random bytes, the digits of a PIN, independent bits, a chosen value of
n bits) and the count of what matched, as a binomial tail.

Bytes a defence writes itself (the zeros ``init_on_free`` and secret memory clear pages with,
the 0xff that ciphertext hiding returns) are the same under every key: a match on them is
never counted as recovered.
"""

from __future__ import annotations

import math

__all__ = ["DEFENCE_BYTES", "chance_text", "log2_tail", "matched_bytes"]

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
