"""The three rules of :mod:`testbed.results.verdicts`: against chance, over trials, against a
control; and the Wilson interval the trials are judged by."""

from __future__ import annotations

import math

import pytest

from testbed.results.chance import log2_tail
from testbed.results.verdicts import (
    MARGIN_LOG2,
    TrialStats,
    Verdict,
    attribute,
    combine,
    weigh,
    wilson_interval,
)
from testbed.types import Outcome

S, P, IN = Outcome.SUCCEEDED, Outcome.PARTIAL, Outcome.INCONCLUSIVE
M, B, X = Outcome.MITIGATED, Outcome.BLOCKED, Outcome.INEFFECTIVE
E, NA = Outcome.ERROR, Outcome.NOT_APPLICABLE


def _v(outcome: Outcome, chance: float | None = -100.0, reason: str = "why") -> Verdict:
    return Verdict(outcome, reason, chance)


# -- the Wilson interval -----------------------------------------------------------------

@pytest.mark.parametrize(("k", "n", "low", "high"), [
    # 95 % score intervals without continuity correction, as printed in textbooks:
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (1, 10, 0.0179, 0.4042),
    (5, 10, 0.2366, 0.7634),
    # Newcombe, "Two-sided confidence intervals for the single proportion" (Statistics in
    # Medicine 17, 1998), Table I, method 3:
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0),
])
def test_wilson_interval_against_published_values(k: int, n: int, low: float,
                                                  high: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-4)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 10, 32])
def test_all_successes_have_lower_bound_n_over_n_plus_z_squared(n: int) -> None:
    # At k = n the score interval's lower end is n / (n + z^2): 4 trials are the fewest
    # whose bound reaches 1/2.
    low, high = wilson_interval(n, n)
    assert low == pytest.approx(n / (n + 1.959963984540054**2), rel=1e-12)
    assert high == 1.0
    assert (low >= 0.5) is (n >= 4)


def test_interval_holds_the_rate_and_stays_in_the_unit_interval() -> None:
    for n in range(1, 33):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0
            assert (low == 0.0) is (k == 0) and (high == 1.0) is (k == n)


@pytest.mark.parametrize(("k", "n"), [(0, 0), (1, 0), (-1, 4), (5, 4)])
def test_interval_refuses_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson_interval(k, n)


def test_trial_stats() -> None:
    stats = TrialStats.of(4, 4)
    assert (stats.trials, stats.successes, stats.rate) == (4, 4, 1.0)
    assert stats.text() == "success rate 1.00 (95 % interval 0.51-1.00)"
    assert stats.to_json() == {"trials": 4, "successes": 4, "rate": 1.0, "low": 0.5101,
                               "high": 1.0}


# -- rule 1: against chance -----------------------------------------------------------------

def test_margin_is_two_to_the_minus_32() -> None:
    assert MARGIN_LOG2 == -32


@pytest.mark.parametrize("outcome", [S, P])
def test_success_at_the_margin_stands(outcome: Outcome) -> None:
    verdict = _v(outcome, -32.0)
    assert weigh(verdict) == verdict


@pytest.mark.parametrize("outcome", [S, P])
@pytest.mark.parametrize("chance", [-31.9, -13.3, 0.0])
def test_success_a_guess_reaches_more_often_is_inconclusive(outcome: Outcome,
                                                            chance: float) -> None:
    weighed = weigh(_v(outcome, chance, "the attacker recovered it"))
    assert weighed.outcome is IN
    assert weighed.chance_log2 == chance
    assert weighed.reason.startswith("the attacker recovered it; but a guess does as well")
    assert "cannot be told from luck" in weighed.reason


@pytest.mark.parametrize("outcome", [S, P])
def test_a_result_that_is_no_guess_is_not_weighed(outcome: Outcome) -> None:
    verdict = _v(outcome, None)
    assert weigh(verdict) == verdict


@pytest.mark.parametrize("outcome", [o for o in Outcome if o not in (S, P)])
@pytest.mark.parametrize("chance", [None, -math.inf, -100.0, -32.0, -31.9, 0.0])
def test_weigh_changes_only_successes(outcome: Outcome, chance: float | None) -> None:
    verdict = _v(outcome, chance)
    assert weigh(verdict) == verdict


# -- rule 2: over trials --------------------------------------------------------------------

def test_one_trial_is_only_weighed() -> None:
    assert combine([_v(S, -40.0)]) == (_v(S, -40.0), None)
    verdict, stats = combine([_v(S, -10.0)])
    assert verdict.outcome is IN and stats is None


def test_no_trial_cannot_be_combined() -> None:
    with pytest.raises(ValueError):
        combine([])


def test_four_successes_succeed() -> None:
    verdict, stats = combine([_v(S, -40.0)] * 4)
    assert verdict.outcome is S
    assert stats is not None and (stats.successes, stats.trials) == (4, 4)
    assert stats.low == pytest.approx(0.5101, abs=1e-4) and stats.low >= 0.5
    assert verdict.chance_log2 == pytest.approx(-160.0)
    assert verdict.reason.startswith("succeeded in 4 of 4 trials, success rate 1.00")


def test_three_successes_of_three_are_only_partial() -> None:
    verdict, stats = combine([_v(S, -40.0)] * 3)
    assert verdict.outcome is P
    assert stats is not None and stats.low < 0.5
    assert stats.low == pytest.approx(0.4385, abs=1e-4)


def test_weak_trials_together_beat_chance() -> None:
    # One 3-digit PIN (2^-10) is inconclusive; four in a row are 2^-40.
    verdict, _ = combine([_v(S, -10.0)] * 4)
    assert verdict.outcome is S
    assert verdict.chance_log2 == pytest.approx(log2_tail(4, 4, 2.0**-10))


def test_combined_evidence_still_weighed() -> None:
    verdict, stats = combine([_v(S, -5.0)] * 4)
    assert verdict.outcome is IN
    assert verdict.chance_log2 == pytest.approx(-20.0)
    assert stats is not None and stats.successes == 4


def test_combined_chance_is_the_tail_of_the_likeliest_success() -> None:
    trials = [_v(S, -40.0), _v(M, 0.0), _v(S, -35.0), _v(S, -50.0), _v(S, -60.0)]
    verdict, stats = combine(trials)
    assert stats is not None and (stats.successes, stats.trials) == (4, 5)
    assert verdict.outcome is P  # 4 of 5: lower bound 0.38
    assert verdict.chance_log2 == pytest.approx(log2_tail(5, 4, 2.0**-35))


def test_a_success_that_is_no_guess_makes_the_whole_no_guess() -> None:
    verdict, _ = combine([_v(S, None), _v(S, -40.0), _v(S, None), _v(S, None)])
    assert verdict.outcome is S and verdict.chance_log2 is None


@pytest.mark.parametrize("failure", [E, NA])
@pytest.mark.parametrize("where", [0, 2, 3])
def test_a_failed_trial_fails_the_whole(failure: Outcome, where: int) -> None:
    trials = [_v(S, -40.0)] * 4
    trials[where] = _v(failure, None, "it broke")
    verdict, stats = combine(trials)
    assert verdict.outcome is failure and stats is None
    assert verdict.reason == f"trial {where + 1} of 4: it broke"


def test_partials_without_success_are_partial() -> None:
    verdict, stats = combine([_v(M, 0.0), _v(P, -60.0), _v(M, 0.0), _v(P, -40.0)])
    assert verdict.outcome is P
    assert stats is not None and stats.successes == 0 and stats.low == 0.0
    assert verdict.chance_log2 == pytest.approx(log2_tail(4, 2, 2.0**-40))
    assert verdict.reason.startswith("partial in 2 of 4 trials, succeeded in none")


@pytest.mark.parametrize(("trials", "want"), [
    ([B, B, M], B),
    ([M, B, B], B),
    ([M, M, B], M),
    ([B, M, M, M], M),
    ([M, M, M, M], M),
])
def test_the_most_frequent_failure_is_the_outcome(trials: list[Outcome],
                                                  want: Outcome) -> None:
    verdict, stats = combine([_v(o, -3.0 if o is M else None) for o in trials])
    assert verdict.outcome is want
    assert stats is not None and stats.successes == 0
    assert verdict.reason.startswith(f"{want.value} in {trials.count(want)} of {len(trials)}")
    # The likeliest failure's chance is kept; a blocked trial has none.
    assert verdict.chance_log2 == (-3.0 if M in trials else None)


# -- rule 3: against a control --------------------------------------------------------------

STANDS = None
"""The defence is credited: the result keeps its outcome."""
CONTROL_DECIDES: dict[Outcome, Outcome | None] = {
    S: STANDS,
    P: STANDS,
    IN: IN,
    M: X,
    B: X,
    X: X,
    E: E,
    NA: E,
}
"""What becomes of a mitigated or blocked result, by its control's outcome."""


def test_the_table_names_every_outcome() -> None:
    assert set(CONTROL_DECIDES) == set(Outcome)


@pytest.mark.parametrize("control", list(Outcome))
@pytest.mark.parametrize("row", list(Outcome))
def test_attribute(row: Outcome, control: Outcome) -> None:
    own = _v(row, -7.0, "what the attack got")
    got = attribute(own, _v(control, -200.0, "what the control got"), "none")
    assert got.chance_log2 == -7.0
    if row not in (M, B):
        assert got == own  # only a defence's credit is in question
        return
    want = CONTROL_DECIDES[control]
    assert got.outcome is (row if want is STANDS else want)
    assert got.reason.startswith("what the attack got; ")
    who = "the control (none, no defence)"
    if want is STANDS:
        assert got.reason.endswith(f"{who} {control.value}")
    elif want is X:
        assert f"{who} fails as well (what the control got)" in got.reason
        assert got.reason.endswith("the attack does not work with these parameters")
    elif want is IN:
        assert f"{who} is inconclusive too" in got.reason
    else:
        assert f"{who} could not be run ({control.value}: what the control got)" in got.reason


@pytest.mark.parametrize("row", list(Outcome))
def test_the_control_itself_is_not_judged(row: Outcome) -> None:
    own = _v(row)
    assert attribute(own, None, "none") == own
