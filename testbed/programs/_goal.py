"""The verdict of a program, from what its goal asks and what the run left behind.

``recovered`` is judged by :func:`~testbed.attacks.judge_bytes`, the judge of the built-in
attacks, against the secret the victim stored (with the PIN's space when it stored a PIN),
leaving out the text a ``guess`` step put before each candidate (its ``prefix``: the attacker
wrote those bytes, it did not recover them). The
two goals about what a page holds read it back as its owner and compare bytes; a match counts
only if the owner did not write those very bytes there last itself.

The goal of a system step (``modified``, ``denied``, ``recovered_bits``, ``torn``,
``accepted``) judges the record the step kept with its built-in attack's own judge (the
registry names it), and shows the evidence the step left.
"""

from __future__ import annotations

import math

from ..attacks._base import judge_bytes
from ..errors import AttackError
from ..results import Actor
from ..results.chance import chance_text
from ..results.verdicts import Verdict
from ..types import Outcome, PhysAddr
from ._runtime import Runtime
from ._step import Goal
from ._values import Location
from ._vocabulary import goal_op

__all__ = ["judge"]


def judge(rt: Runtime, goal: Goal) -> Verdict:
    """The outcome the goal's evidence supports."""
    log = rt.ctx.log
    system = goal_op(goal.kind)
    if system is not None:
        assert system.judge is not None  # every system step names its judge
        result = rt.system(f"${goal.name}", system.name)
        rt.show(result)
        return system.judge(result.run)
    if goal.recovered is not None:
        if rt.secret is None:
            raise AttackError("the victim stored no secret")
        log.recovered = rt.data(f"${goal.recovered}")
        secret, got = _unknown(rt.secret, log.recovered, rt.known.get(goal.recovered, b""))
        return judge_bytes(secret, got, rt.secret_kind,
                           space_log2=_space(rt.space_log2, rt.candidates.get(goal.recovered)))
    if goal.victim_reads is not None:
        loc = rt.location(f"${goal.victim_reads}")
        if loc.data is None:
            raise AttackError(f"${goal.victim_reads} holds no stored bytes")
        pa = _where(rt, goal, loc.addrs[0])
        return _reads_back(rt, loc.domain.name, pa, loc.data, owner=loc)
    data = rt.data(f"${goal.page_holds}")
    pa = _where(rt, goal, None)
    owner = rt.machine.owner(pa)
    if data is None:
        log.recovered = None
        return Verdict(Outcome.MITIGATED, f"the attacker has nothing to put there "
                       f"(${goal.page_holds} holds no value)", 0.0)
    if owner is None:
        return Verdict(Outcome.MITIGATED, "no domain owns the page any more", 0.0)
    return _reads_back(rt, owner.name, pa, data, owner=Location((pa,), owner, len(data)))


def _unknown(secret: bytes, recovered: bytes | None,
             known: bytes) -> tuple[bytes, bytes | None]:
    """The secret and the recovered value without the text a ``guess`` step put before every
    candidate itself: those bytes are what the attacker wrote, not what it learnt, so they are
    neither recovered bytes nor evidence against chance. Only when the secret does begin with
    that text (otherwise the guess assumed wrong, and every byte is judged)."""
    k = len(known)
    if not k or recovered is None or not (secret.startswith(known) and
                                          recovered.startswith(known)) or len(secret) == k:
        return secret, recovered
    return secret[k:], recovered[k:]


def _space(secret_log2: float | None, candidates: int | None) -> float | None:
    """log2 of the space a blind guess of the recovered value is drawn from: the secret's
    own (a PIN), or fewer when the value is one of a ``guess`` step's candidates (a word list
    of six holds the word one time in six, at worst)."""
    if candidates is None:
        return secret_log2
    by_list = math.log2(max(candidates, 1))
    return by_list if secret_log2 is None else min(secret_log2, by_list)


def _where(rt: Runtime, goal: Goal, default: PhysAddr | None) -> PhysAddr:
    if goal.at is None:
        if default is None:
            raise AttackError("the goal names no address")
        return default
    loc = rt.location(goal.at)
    return PhysAddr(loc.addrs[goal.page] + goal.offset)


def _reads_back(rt: Runtime, name: str, pa: PhysAddr, want: bytes, *,
                owner: Location) -> Verdict:
    log = rt.ctx.log
    with log.victim_acts():
        got = rt.machine.read(owner.domain, pa, len(want))
    log.step(Actor.VICTIM, "reads the value", address=pa, detail=f"{name}")
    log.address = pa
    if log.secret is None:
        log.secret = want
    log.recovered = got
    last = rt.victim_writes.get((name, pa))
    if got == want and last is not None and last[: len(want)] == want:
        return Verdict(Outcome.MITIGATED, "the victim reads what it last wrote there itself: "
                       "the attack changed nothing", 0.0)
    if got == want:
        odds = -8.0 * len(want)  # a blind write reads back as these bytes 1 in 2^(8 x bytes)
        return Verdict(Outcome.SUCCEEDED, f"the victim read the value the attacker wanted "
                       f"({len(want)} bytes; by chance {chance_text(odds)})", odds)
    if last is not None and got == last[: len(got)]:
        return Verdict(Outcome.MITIGATED, "the victim still reads its current value", 0.0)
    return Verdict(Outcome.MITIGATED, "the victim read garbage: the bytes put there were not "
                   "its ciphertext", 0.0)
