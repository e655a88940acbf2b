"""The programs under ``tests/programs/`` give what the built-in attacks they replaced gave.

Four of the five attacks of the MKTME document and the hypervisor replay were Python attacks
before they became programs. Each case ran under the built-in attack and was recorded
(``tests/vectors/retired-attacks.json``); the program runs with the same scenario id, seed,
platform, mitigations and trials, so it draws the same keys and the same secret: the outcome
(raw, and judged against the control), the chance, the evidence (the secret, what was
recovered), the control and the guesses must be equal under every engine. Where the README's
reference table gives the outcome, it is checked too, so equality cannot hold by both being
wrong the same way.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _support import paths, programs

from testbed.programs import ProgramMetrics
from testbed.types import Outcome

ENGINES = ("none", "tme", "mktme", "sev", "sev-snp")
S, M, B, NA = Outcome.SUCCEEDED, Outcome.MITIGATED, Outcome.BLOCKED, Outcome.NOT_APPLICABLE
INIT, SECRETMEM = {"init_on_free": True}, {"secretmem": True}
ROOM = {"platform": {"memory_pages": 1024}}
"""The secretmem mitigation's cases run with room for its default secretmem=2M reservation
(512 frames). The built-ins were recorded on the default 256 frames, when the mitigation
removed single pages from the direct map and needed no reservation: their record is looked up
without this platform, and must still agree."""

KML = {"victim": "guest", "secret": "db-password=Tr0ub4dor&3 (guest)"}
FDL = {"victim": "guest", "attacker": "process", "secret": "ssh-private-key-material-0xC0FFEE",
       "victim_pages": 4}
STALE = {"victim": "guest", "secret": "session-key=7f3a9c1e55d2b804", "read_with": "victim_key"}
CDR = {"victim": "guest", "attacker": "guest", "secret": "wallet-seed: abandon ability able"}
CC = {"victim": "guest", "attacker": "guest", "pin_digits": 4}

# (program, built-in attack, its params, scenario fields, the reference row or None)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], tuple[Outcome, ...] | None]] = [
    ("kernel-map-leak", "kernel-map-leak", KML, {}, (S, S, M, M, M)),
    ("kernel-map-leak", "kernel-map-leak", KML, {"mitigations": SECRETMEM, **ROOM},
     (B, B, B, B, B)),
    ("kernel-map-leak", "kernel-map-leak", KML, {"mitigations": INIT}, None),
    ("freed-data-leak", "freed-data-leak", FDL, {}, (S, S, M, M, M)),
    ("freed-data-leak", "freed-data-leak", FDL, {"mitigations": INIT}, (M, M, M, M, M)),
    ("freed-data-leak", "freed-data-leak", FDL, {"mitigations": SECRETMEM, **ROOM}, None),
    ("freed-data-leak-stale-keyid", "freed-data-leak", STALE, {}, (S, S, M, B, B)),
    ("freed-data-leak-stale-keyid", "freed-data-leak", STALE, {"mitigations": INIT}, None),
    ("cross-domain-replay", "cross-domain-replay", CDR, {}, (S, S, M, M, M)),
    ("cross-domain-replay", "cross-domain-replay", CDR, {"mitigations": INIT}, None),
    ("cross-domain-replay", "cross-domain-replay", CDR, {"mitigations": SECRETMEM, **ROOM}, None),
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


RECORDED = json.loads((paths.TESTS / "vectors" / "retired-attacks.json").read_text("utf-8"))
"""What the built-in attacks these programs replaced gave for each case and engine (outcome,
raw outcome, chance, evidence, control, successes, guesses), recorded from them before they
were retired: the programs are their one definition now."""


def _recorded(case: tuple[Any, ...], engine: str) -> dict[str, Any]:
    name, _, _, fields, _ = case
    if fields.get("mitigations") == SECRETMEM:
        fields = {k: v for k, v in fields.items() if k != "platform"}
    found = [r for r in RECORDED if (r["program"], r["fields"], r["engine"]) ==
             (name, fields, engine)]
    assert len(found) == 1, (name, fields, engine)
    record: dict[str, Any] = found[0]
    return record


def test_every_case_was_recorded() -> None:
    assert len(RECORDED) == len(CASES) * len(ENGINES)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[_label(c) for c in CASES])
def test_program_equals_the_retired_builtin(case: tuple[Any, ...], engine: str) -> None:
    name, attack, _, fields, reference = case
    sid = f"t-{attack}"  # the built-in's scenario id: the same random streams
    mine = programs.run(programs.program(name), engine, id=sid, **fields)
    theirs = _recorded(case, engine)
    assert mine.outcome.value == theirs["outcome"], mine.reason
    if reference is not None:
        assert mine.outcome is reference[ENGINES.index(engine)], mine.reason
    assert mine.chance_log2 == pytest.approx(theirs["chance_log2"])
    secret, recovered = mine.evidence.secret, mine.evidence.recovered
    assert (secret.hex() if secret is not None else None) == theirs["secret"]
    assert (recovered.hex() if recovered is not None else None) == theirs["recovered"]
    control = None if mine.control is None else {"profile": mine.control.profile,
                                                  "outcome": mine.control.outcome.value}
    assert control == theirs["control"]
    assert (None if mine.trials is None else mine.trials.successes) == theirs["successes"]
    if theirs["guesses"] is not None:
        assert mine.metrics_as(ProgramMetrics).guesses == theirs["guesses"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[_label(c) for c in CASES])
def test_raw_outcome_equals_the_retired_builtin(case: tuple[Any, ...], engine: str) -> None:
    name, attack, _, fields, _ = case
    mine = programs.raw(programs.program(name), engine, id=f"t-{attack}", **fields)
    assert mine.outcome.value == _recorded(case, engine)["raw_outcome"], mine.reason
    assert mine.control is None


def test_the_capture_compare_program_counts_each_candidate_it_wrote() -> None:
    mine = programs.run(programs.program("capture-compare"), "tme", id="t-capture-compare")
    secret = mine.evidence.secret
    assert secret is not None and secret.startswith(b"PIN:")
    guesses = mine.metrics_as(ProgramMetrics).guesses
    assert guesses == int(secret[4:]) + 1  # candidates 0000 .. the PIN
    assert mine.metrics_as(ProgramMetrics).guess_space == 10_000


def test_a_refused_step_is_where_the_program_stopped() -> None:
    row = programs.run(programs.program("hypervisor-replay"), "sev-snp")
    assert row.outcome is B and "RMP" in row.reason
    m = row.metrics_as(ProgramMetrics)
    assert m.refused_step == 5 and m.steps_run == 5 and m.steps == 6
    assert row.steps[-1].action == "writes guest memory through its own mapping"
    assert row.steps[-1].who == "hypervisor"
    assert row.steps[-1].capability == "malicious_hypervisor"
