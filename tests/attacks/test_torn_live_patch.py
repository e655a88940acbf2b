"""The torn live-patch attack: without the INT3 protocol a CPU executes a torn instruction, with it
the patch is mitigated; its parameters are bounded where they are loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support.paths import SCENARIOS
from _support.scenarios import run
from pydantic import ValidationError

from testbed.attacks.torn_live_patch import TornLivePatchMetrics, TornLivePatchParams
from testbed.errors import ScenarioError
from testbed.platform.kernel_text.x86 import NOP5
from testbed.scenarios import engine_names, load_scenario, run_job
from testbed.scenarios.runner import Job
from testbed.types import Outcome


def test_attack_without_the_protocol_executes_a_torn_instruction() -> None:
    row = run("torn-live-patch", "tme")
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    m = row.metrics_as(TornLivePatchMetrics)
    first = m.first_torn
    assert first is not None
    assert m.patcher == "text_poke" and m.cpus == 2 and m.sites == 1
    # One schedule for each of the 16 x 16 classes of the two CPUs; 220 of them tear.
    assert m.interleavings_explored == 256 and m.torn_interleavings == 220
    assert m.torn_executions == 320 and m.distinct_torn == 4
    assert m.interleavings_total == 3284 and m.por_reduction == 12.83
    assert "220 of 256 classes of interleavings tore" in row.reason
    assert row.evidence.recovered == bytes.fromhex(first.executed)
    assert row.evidence.recovered not in (row.evidence.secret, NOP5)
    assert row.evidence.secret == bytes.fromhex(first.new)
    assert "n" in first.origin and "o" in first.origin
    assert first.timeline[-1].endswith("[torn]")
    assert len(first.schedule) > first.fetch_steps[-1]
    torn_step = next(s for s in row.steps if s.who == f"cpu{first.cpu}")
    assert first.schedule in torn_step.detail
    assert [s.actor for s in row.steps][:3] == ["kernel", "patcher", "attacker"]


def test_attack_with_the_protocol_is_mitigated() -> None:
    row = run("torn-live-patch", "tme", mitigations={"text_poke_bp": True})
    assert row.outcome is Outcome.MITIGATED, row.reason
    m = row.metrics_as(TornLivePatchMetrics)
    assert m.patcher == "text_poke_bp" and m.torn_executions == 0
    assert m.interleavings_explored == 49 and m.first_torn is None
    assert m.interleavings_total == 527 and m.por_reduction == 10.76
    assert m.distinct_torn == 0 and "in all 49 classes of interleavings" in row.reason
    assert "first_torn" not in m.to_json()
    assert row.evidence.recovered == b"\xcc"
    assert row.profile == "tme+text_poke_bp"


@pytest.mark.parametrize(("mitigations", "want"), [
    ({}, Outcome.SUCCEEDED), ({"text_poke_bp": True}, Outcome.MITIGATED)])
def test_attack_sampling_a_batch_on_more_cpus(mitigations: dict[str, bool],
                                              want: Outcome) -> None:
    params = {"cpus": 4, "sites": 3, "visits": 2, "explore": "random", "interleavings": 150}
    row = run("torn-live-patch", "sev", params=params, mitigations=mitigations)
    assert row.outcome is want, row.reason
    m = row.metrics_as(TornLivePatchMetrics)
    assert m.interleavings_explored == 150 and m.exploration == "random"
    assert m.interleavings_total is None and m.por_reduction is None
    assert "150 sampled interleavings" in row.reason


@pytest.mark.parametrize(("params", "message"), [
    ({"cpus": 8, "sites": 4}, "more than 100000 classes of interleavings"),
    ({"old": "nop2", "new": "call"}, "must have the same length"),
    ({"old": "nop5", "new": "nop5"}, "nothing to patch"),
    ({"cpus": 1}, "greater than or equal to 2"),
    ({"explore": "random", "interleavings": 100000, "cpus": 8, "sites": 16, "visits": 4},
     "the limit is 2000000"),
])
def test_attack_params_are_bounded(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TornLivePatchParams.model_validate(params)


def test_loader_names_the_field_of_a_too_large_case(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("id: big\ntitle: Big\nattack: torn-live-patch\nparams:\n  cpus: 8\n"
                    "  sites: 4\nteaching:\n  summary: x\n")
    with pytest.raises(ScenarioError, match=r"big.yaml:4: params: .*more than 100000"):
        load_scenario(path)


@pytest.mark.parametrize("name", ["16-torn-live-patch.yaml", "17-torn-live-patch-int3.yaml"])
def test_shipped_scenarios_match_their_expectations_on_every_engine(name: str) -> None:
    scenario, source = load_scenario(SCENARIOS / name)
    rows = [run_job(Job(scenario, source, engine, 1)) for engine in engine_names()]
    for row in rows:
        assert row.outcome is row.expected, (row.engine, row.reason)
    # The engine does not take part: same interleavings, same executions, same torn bytes.
    assert len({str(row.metrics) for row in rows}) == 1
    assert len({row.evidence.recovered for row in rows}) == 1
    plaintext = {row.engine: row.evidence.captured == row.evidence.secret for row in rows}
    assert plaintext["none"] and not plaintext["tme"] and not plaintext["mktme"]
