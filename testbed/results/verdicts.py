"""The rules that turn what attacks achieved into outcomes a researcher can defend.

Three rules apply after an attack has judged its own evidence (:class:`Verdict`):

1. **Against chance** (:func:`weigh`). ``succeeded`` and ``partial`` need evidence that a guess
   reaches at most :data:`MARGIN_LOG2` (2^-32) of the time. Weaker evidence is
   ``inconclusive``: the scenario cannot tell success from luck. A result that is no guess
   (``chance_log2`` of ``None``: a denial of service, a torn instruction) is not weighed.
2. **Over trials** (:func:`combine`). A scenario with ``trials: N`` runs ``N`` times with
   independent streams. With ``k`` trials ``succeeded``, the rate ``k/N`` gets a 95 % Wilson
   score interval; the outcome is ``succeeded`` when the interval's lower bound is at least
   1/2 (the attack works in most runs, at 95 % confidence), ``partial`` when ``k >= 1``
   otherwise, and when no trial succeeded, ``partial`` if one got part of the secret, else the
   most frequent of ``mitigated`` / ``blocked``. The chance of the whole is that of ``k`` or
   more lucky guesses in ``N``, each as likely as the likeliest successful trial; rule 1 then
   applies to it.
3. **Against a control** (:func:`attribute`). Every result is paired with a control: the same
   scenario and seed, the threat present and no defence (the attack's control engine, no
   mitigations, no ciphertext hiding). ``mitigated`` and ``blocked`` stand only when the
   control ``succeeded`` (or got part of the secret). When the control fails too, the outcome
   is ``ineffective``: the attack does not work with these parameters, and no defence can be
   credited. An ``inconclusive`` control makes the result ``inconclusive``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..types import Outcome
from .chance import chance_text, log2_tail

__all__ = [
    "CONFIDENCE_Z",
    "MARGIN_LOG2",
    "MAX_TRIALS",
    "TrialStats",
    "Verdict",
    "attribute",
    "combine",
    "weigh",
    "wilson_interval",
]

MARGIN_LOG2 = -32.0
"""A result beats chance when a guess reaches it at most ``2^MARGIN_LOG2`` of the time."""

CONFIDENCE_Z = 1.959963984540054
"""The normal quantile of a two-sided 95 % interval."""

MAX_TRIALS = 32
"""The most trials a scenario may ask for (each is a whole run of the attack)."""

WORKS: frozenset[Outcome] = frozenset({Outcome.SUCCEEDED, Outcome.PARTIAL})
STOPPED: frozenset[Outcome] = frozenset({Outcome.MITIGATED, Outcome.BLOCKED})


@dataclass(frozen=True)
class Verdict:
    """An outcome, the sentence that explains it, and the chance a guess does as well.

    Attributes:
        chance_log2: log2 of the probability that an attacker without the capability,
            guessing, gets at least this result (:mod:`testbed.results.chance`); ``None``
            where the result is no guess (a denial of service, a torn instruction).
    """

    outcome: Outcome
    reason: str
    chance_log2: float | None = None


def wilson_interval(successes: int, trials: int, z: float = CONFIDENCE_Z) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % for the default ``z``).

    Unlike the normal approximation, it stays inside [0, 1] and is not empty at 0 or ``trials``
    successes (Wilson 1927, "Probable inference, the law of succession, and statistical
    inference", JASA 22).
    """
    if trials <= 0:
        raise ValueError("an interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within 0..{trials}, got {successes}")
    p, z2 = successes / trials, z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class TrialStats:
    """How often the attack succeeded over a scenario's trials."""

    trials: int
    successes: int
    low: float
    """Lower bound of the 95 % Wilson interval of the success rate."""
    high: float

    @classmethod
    def of(cls, successes: int, trials: int) -> TrialStats:
        low, high = wilson_interval(successes, trials)
        return cls(trials, successes, low, high)

    @property
    def rate(self) -> float:
        return self.successes / self.trials

    def text(self) -> str:
        """``success rate 1.00 (95 % interval 0.51-1.00)``."""
        return f"success rate {self.rate:.2f} (95 % interval {self.low:.2f}-{self.high:.2f})"

    def to_json(self) -> dict[str, Any]:
        return {"trials": self.trials, "successes": self.successes, "rate": round(self.rate, 4),
                "low": round(self.low, 4), "high": round(self.high, 4)}


def weigh(verdict: Verdict) -> Verdict:
    """Rule 1: success that a guess reaches more often than 2^-32 is ``inconclusive``."""
    if (verdict.outcome not in WORKS or verdict.chance_log2 is None
            or verdict.chance_log2 <= MARGIN_LOG2):
        return verdict
    return Verdict(Outcome.INCONCLUSIVE,
                   f"{verdict.reason}; but a guess does as well more often than the "
                   f"2^{MARGIN_LOG2:.0f} a verdict needs, so this cannot be told from luck",
                   verdict.chance_log2)


def _tail(count: int, trials: int, chances: Sequence[float | None]) -> float | None:
    """The chance of ``count`` or more lucky trials in ``trials``, each as likely as the
    likeliest of ``chances`` (``None``: no guess)."""
    if any(c is None for c in chances):
        return None
    worst = max((c for c in chances if c is not None), default=0.0)
    return log2_tail(trials, count, 2.0 ** worst)


def combine(verdicts: Sequence[Verdict]) -> tuple[Verdict, TrialStats | None]:
    """Rule 2: one verdict for a scenario's trials (unchanged when there is one).

    Rule 1 is applied to the result.
    """
    if not verdicts:
        raise ValueError("no trial to combine")
    n = len(verdicts)
    if n == 1:
        return weigh(verdicts[0]), None
    for i, v in enumerate(verdicts, 1):
        if v.outcome in (Outcome.ERROR, Outcome.NOT_APPLICABLE):
            return Verdict(v.outcome, f"trial {i} of {n}: {v.reason}", v.chance_log2), None
    wins = [v for v in verdicts if v.outcome is Outcome.SUCCEEDED]
    stats = TrialStats.of(len(wins), n)
    if wins:
        chance = _tail(len(wins), n, [v.chance_log2 for v in wins])
        outcome = Outcome.SUCCEEDED if stats.low >= 0.5 else Outcome.PARTIAL
        reason = (f"succeeded in {len(wins)} of {n} trials, {stats.text()}; by chance "
                  f"{chance_text(chance)}; first success: {wins[0].reason}")
        return weigh(Verdict(outcome, reason, chance)), stats
    partial = [v for v in verdicts if v.outcome is Outcome.PARTIAL]
    if partial:
        chance = _tail(len(partial), n, [v.chance_log2 for v in partial])
        reason = (f"partial in {len(partial)} of {n} trials, succeeded in none, "
                  f"{stats.text()}; by chance {chance_text(chance)}; first: {partial[0].reason}")
        return weigh(Verdict(Outcome.PARTIAL, reason, chance)), stats
    counts = Counter(v.outcome for v in verdicts)
    outcome = max(counts, key=lambda o: (counts[o], o in STOPPED))
    first = next(v for v in verdicts if v.outcome is outcome)
    worst = [v.chance_log2 for v in verdicts if v.chance_log2 is not None]
    chance = max(worst) if worst else None
    reason = (f"{outcome.value} in {counts[outcome]} of {n} trials, {stats.text()}; first: "
              f"{first.reason}")
    return Verdict(outcome, reason, chance), stats


def attribute(verdict: Verdict, control: Verdict | None, control_profile: str) -> Verdict:
    """Rule 3: credit a defence with ``mitigated`` or ``blocked`` only when the control worked.

    ``control`` is ``None`` for the control itself (it is the reference, not judged by one).
    """
    if control is None or verdict.outcome not in STOPPED:
        return verdict
    who = f"the control ({control_profile}, no defence)"
    if control.outcome in WORKS:
        return Verdict(verdict.outcome, f"{verdict.reason}; {who} {control.outcome.value}",
                       verdict.chance_log2)
    if control.outcome is Outcome.INCONCLUSIVE:
        return Verdict(Outcome.INCONCLUSIVE,
                       f"{verdict.reason}; but {who} is inconclusive too, so no defence can be "
                       f"credited", verdict.chance_log2)
    if control.outcome in (*STOPPED, Outcome.INEFFECTIVE):
        return Verdict(Outcome.INEFFECTIVE,
                       f"{verdict.reason}; {who} fails as well ({control.reason}): the attack "
                       f"does not work with these parameters", verdict.chance_log2)
    return Verdict(Outcome.ERROR, f"{verdict.reason}; but {who} could not be run "
                   f"({control.outcome.value}: {control.reason})", verdict.chance_log2)
