"""Who a platform refusal is charged to: the attacker (blocked), or the victim (a failed run)."""

from __future__ import annotations

import pytest
from _support.programs import leak
from _support.scenarios import scenario

from testbed.attacks import Actor, Attack, AttackContext, AttackParams, BaseMetrics, Verdict
from testbed.errors import PageFault
from testbed.scenarios import Job, run_trials
from testbed.types import Outcome


class _RefusedIn(Attack[AttackParams]):
    """Meets a page fault in the phase named by ``where``."""

    kind = "refused-in"
    title = "refused in a phase"
    capabilities = ()
    Params = AttackParams
    Metrics = BaseMetrics

    def __init__(self, where: str) -> None:
        self.where = where

    def run(self, ctx: AttackContext, params: AttackParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        victim = m.create_domain("process", "victim")
        stranger = m.create_domain("process", "stranger")
        pa = m.alloc_page(stranger)
        log.step(Actor.VICTIM, "sets up")
        if self.where == "setup":
            m.write(victim, pa, b"x")  # not the victim's page: a page fault
        log.begin_attack()
        if self.where == "victim":
            with log.victim_acts():
                m.write(victim, pa, b"x")
        m.write(victim, pa, b"x")  # the attacker's step (here: also the victim's domain)
        return Verdict(Outcome.SUCCEEDED, "unreachable")


@pytest.mark.parametrize(("where", "outcome", "reason"), [
    ("setup", Outcome.ERROR, "setting up the victim failed: page fault"),
    ("victim", Outcome.ERROR, "the platform refused the victim a step: page fault"),
    ("attack", Outcome.BLOCKED, "the platform refused a step: page fault"),
])
def test_a_refusal_is_charged_to_the_phase_it_happens_in(
    where: str, outcome: Outcome, reason: str
) -> None:
    # The run itself, before the control: the control refuses the same step, so run_job would
    # make the blocked row ineffective (tests/scenarios/test_controls.py).
    row = run_trials(Job(scenario("program", params=leak()), "<test>", "tme", 1,
                         attack=_RefusedIn(where)))
    assert row.outcome is outcome, row.reason
    assert row.reason.startswith(reason)


def test_the_victim_phase_ends_with_its_block() -> None:
    from testbed.attacks import AttackLog, Phase

    log = AttackLog()

    def phase() -> Phase:  # read afresh each time (the context manager changes it)
        return log.phase

    log.begin_attack()
    with log.victim_acts():
        assert phase() is Phase.VICTIM and not log.attacking
    assert phase() is Phase.ATTACK and log.attacking
    refused = PageFault("refused")
    with pytest.raises(PageFault), log.victim_acts():
        raise refused
    assert phase() is Phase.ATTACK and log.victim_refusal is refused  # charged to the victim
    with log.victim_acts():
        try:
            raise PageFault("caught by the attack")
        except PageFault:
            pass
    assert phase() is Phase.ATTACK
