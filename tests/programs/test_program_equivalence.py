"""The programs under ``tests/programs/`` give the built-in attacks' outcomes and evidence.

Each program runs beside the built-in attack it spells out, with the same scenario id, seed,
platform, mitigations and trials, so both draw the same keys and the same secret: the outcome
(raw, and judged against the control) and the evidence (the secret, what was recovered) must be
equal under every engine. Where the README's reference table gives the outcome, it is checked
too, so equality cannot hold by both being wrong the same way.
"""

from __future__ import annotations

from typing import Any

import pytest
from _support import programs
from _support.scenarios import run as run_builtin
from _support.scenarios import scenario as builtin_scenario

from testbed.programs import ProgramMetrics
from testbed.scenarios import Job, run_trials
from testbed.types import Outcome

ENGINES = ("none", "tme", "mktme", "sev", "sev-snp")
S, M, B, NA = Outcome.SUCCEEDED, Outcome.MITIGATED, Outcome.BLOCKED, Outcome.NOT_APPLICABLE
INIT, SECRETMEM = {"init_on_free": True}, {"secretmem": True}

KML = {"victim": "guest", "secret": "db-password=Tr0ub4dor&3 (guest)"}
FDL = {"victim": "guest", "attacker": "process", "secret": "ssh-private-key-material-0xC0FFEE",
       "victim_pages": 4}
STALE = {"victim": "guest", "secret": "session-key=7f3a9c1e55d2b804", "read_with": "victim_key"}
CDR = {"victim": "guest", "attacker": "guest", "secret": "wallet-seed: abandon ability able"}
CC = {"victim": "guest", "attacker": "guest", "pin_digits": 4}

# (program, built-in attack, its params, scenario fields, the reference row or None)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], tuple[Outcome, ...] | None]] = [
    ("kernel-map-leak", "kernel-map-leak", KML, {}, (S, S, M, M, M)),
    ("kernel-map-leak", "kernel-map-leak", KML, {"mitigations": SECRETMEM}, (B, B, B, B, B)),
    ("kernel-map-leak", "kernel-map-leak", KML, {"mitigations": INIT}, None),
    ("freed-data-leak", "freed-data-leak", FDL, {}, (S, S, M, M, M)),
    ("freed-data-leak", "freed-data-leak", FDL, {"mitigations": INIT}, (M, M, M, M, M)),
    ("freed-data-leak", "freed-data-leak", FDL, {"mitigations": SECRETMEM}, None),
    ("freed-data-leak-stale-keyid", "freed-data-leak", STALE, {}, (S, S, M, B, B)),
    ("freed-data-leak-stale-keyid", "freed-data-leak", STALE, {"mitigations": INIT}, None),
    ("cross-domain-replay", "cross-domain-replay", CDR, {}, (S, S, M, M, M)),
    ("cross-domain-replay", "cross-domain-replay", CDR, {"mitigations": INIT}, None),
    ("cross-domain-replay", "cross-domain-replay", CDR, {"mitigations": SECRETMEM}, None),
    ("capture-compare", "capture-compare", CC, {"trials": 4}, (S, S, M, M, M)),
    ("capture-compare", "capture-compare", CC, {"trials": 4, "mitigations": INIT}, None),
    ("hypervisor-replay", "hypervisor-replay", {}, {}, (NA, NA, NA, S, B)),
    ("hypervisor-replay", "hypervisor-replay", {},
     {"platform": {"ciphertext_hiding": True}}, (NA, NA, NA, S, B)),
    ("hypervisor-replay", "hypervisor-replay", {}, {"mitigations": INIT}, None),
]


def _label(case: tuple[Any, ...]) -> str:
    name: str = case[0]
    fields: dict[str, Any] = case[3]
    extra = "+".join(sorted({**fields.get("mitigations", {}), **fields.get("platform", {})}))
    return name + (f"+{extra}" if extra else "") + ("-trials" if "trials" in fields else "")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[_label(c) for c in CASES])
def test_program_equals_builtin(case: tuple[Any, ...], engine: str) -> None:
    name, attack, params, fields, reference = case
    sid = f"t-{attack}"  # the built-in's scenario id: the same random streams
    mine = programs.run(programs.program(name), engine, id=sid, **fields)
    theirs = run_builtin(attack, engine, params=params, **fields)
    assert mine.outcome is theirs.outcome, (mine.reason, theirs.reason)
    if reference is not None:
        assert mine.outcome is reference[ENGINES.index(engine)], mine.reason
    assert mine.evidence.secret == theirs.evidence.secret
    assert mine.evidence.recovered == theirs.evidence.recovered
    if mine.control is not None and theirs.control is not None:
        assert mine.control.profile == theirs.control.profile
        assert mine.control.outcome is theirs.control.outcome
    assert (mine.trials is None) == (theirs.trials is None)
    if mine.trials is not None and theirs.trials is not None:
        assert mine.trials.successes == theirs.trials.successes


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[_label(c) for c in CASES])
def test_raw_outcome_equals_builtin(case: tuple[Any, ...], engine: str) -> None:
    name, attack, params, fields, _ = case
    sid = f"t-{attack}"
    mine = programs.raw(programs.program(name), engine, id=sid, **fields)
    theirs = run_trials(Job(builtin_scenario(attack, params=params, **fields), "<test>", engine, 7))
    assert mine.outcome is theirs.outcome, (mine.reason, theirs.reason)
    assert mine.control is None and theirs.control is None


def test_capture_compare_program_counts_the_guesses_the_builtin_does() -> None:
    from testbed.attacks.capture_compare import CaptureCompareMetrics

    mine = programs.run(programs.program("capture-compare"), "tme", id="t-capture-compare")
    theirs = run_builtin("capture-compare", "tme", params=CC)
    secret = mine.evidence.secret
    assert secret is not None and secret.startswith(b"PIN:")
    guesses = mine.metrics_as(ProgramMetrics).guesses
    assert guesses == theirs.metrics_as(CaptureCompareMetrics).guesses == int(secret[4:]) + 1
    assert mine.metrics_as(ProgramMetrics).guess_space == 10_000


def test_a_refused_step_is_where_the_program_stopped() -> None:
    row = programs.run(programs.program("hypervisor-replay"), "sev-snp")
    assert row.outcome is B and "RMP" in row.reason
    m = row.metrics_as(ProgramMetrics)
    assert m.refused_step == 5 and m.steps_run == 5 and m.steps == 6
    assert row.steps[-1].action == "hypervisor writes guest memory through its own mapping"
    assert row.steps[-1].capability == "malicious_hypervisor"
