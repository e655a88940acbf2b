"""The attestation bypass: blocked by the owner's verifier where the engine attests, successful
where it does not (whatever the engine is called), reproducible, with bounded parameters."""

from __future__ import annotations

import numpy as np
import pytest
from _support.paths import SCENARIOS
from _support.scenarios import run
from pydantic import ValidationError

from testbed.attacks import AttackContext
from testbed.attacks.attestation import AttestationBypass, AttestationMetrics, AttestationParams
from testbed.crypto.signing import DETERMINISTIC_SIGNING
from testbed.errors import VerificationFailed
from testbed.platform import Engine, KeySource, Machine, SevEngine, TmeEngine
from testbed.platform.sev.psp import decode_mnonce
from testbed.results import ResultRow
from testbed.scenarios import Job, load_scenario, run_job
from testbed.types import PAGE_SIZE, Outcome

S, B = Outcome.SUCCEEDED, Outcome.BLOCKED


def _att(row: ResultRow) -> AttestationMetrics:
    return row.metrics_as(AttestationMetrics)


def _log_metrics(ctx: AttackContext) -> AttestationMetrics:
    assert isinstance(ctx.log.metrics, AttestationMetrics)
    return ctx.log.metrics


def rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


FAILED_CHECK = {"image": "launch digest", "replay": "nonce freshness", "forge": "certificate chain"}


PASSED_BEFORE = {"image": 4, "replay": 3, "forge": 1}


@pytest.mark.parametrize("tamper", ["image", "replay", "forge"])
@pytest.mark.parametrize("engine", ["sev", "sev-snp"])
def test_attack_is_blocked_by_the_owners_verifier(engine: str, tamper: str) -> None:
    row = run("attestation", engine, params={"tamper": tamper})
    assert row.outcome is B, row.reason
    assert row.reason.startswith(f"the platform refused a step: {FAILED_CHECK[tamper]}: ")
    assert _att(row).check_failed == FAILED_CHECK[tamper]
    assert _att(row).checks_passed == PASSED_BEFORE[tamper]
    assert _att(row).report_bytes == 208
    assert _att(row).secret_provisioned is False
    assert _att(row).guest_runs_modified_image is True
    assert _att(row).digest_measured != _att(row).digest_expected
    assert row.evidence.secret is not None and row.evidence.recovered is None
    assert row.steps[-1].actor == "owner" and "rejects" in row.steps[-1].action


@pytest.mark.parametrize("tamper", ["image", "replay", "forge"])
@pytest.mark.parametrize("engine", ["none", "tme", "mktme"])
def test_attack_succeeds_without_attestation(engine: str, tamper: str) -> None:
    row = run("attestation", engine, params={"tamper": tamper, "secret": "disk-key-0123"})
    assert row.outcome is S, row.reason
    assert row.evidence.secret == b"disk-key-0123" == row.evidence.recovered
    assert _att(row).attestation_available is False
    assert _att(row).report_bytes == 0 and _att(row).checks_passed == 0
    assert _att(row).check_failed is None and _att(row).digest_measured is None
    no_check = [s for s in row.steps if s.actor == "owner" and "trusts the host" in s.action]
    assert len(no_check) == 1 and "attestation is not enabled" in no_check[0].detail
    assert not any(s.action.startswith(("answers", "signs")) for s in row.steps)


def test_replay_uses_a_report_the_owner_once_accepted() -> None:
    row = run("attestation", "sev", params={"tamper": "replay"})
    accepted = [s for s in row.steps if s.action.startswith("earlier boot: verifies")]
    assert len(accepted) == 1 and accepted[0].detail.startswith("6 checks passed")
    assert _att(row).digest_reported == _att(row).digest_expected


def test_forged_report_claims_the_genuine_digest_and_the_owners_nonce() -> None:
    row = run("attestation", "sev", params={"tamper": "forge"})
    assert _att(row).digest_reported == _att(row).digest_expected
    assert row.evidence.captured is not None
    asked = next(s for s in row.steps if s.action.startswith("asks the host"))
    assert row.evidence.captured[:16] == decode_mnonce(asked.detail.removeprefix("mnonce "))


class SevWithoutPsp(SevEngine):
    attests = False


class TmeWithPsp(TmeEngine):
    attests = True


@pytest.mark.parametrize(("engine_cls", "want"), [(SevWithoutPsp, S), (TmeWithPsp, B)])
def test_outcome_follows_the_attests_capability_not_the_name(
    engine_cls: type[Engine], want: Outcome
) -> None:
    m = Machine(engine_cls(KeySource(rng())), 64)
    ctx = AttackContext(m, rng(2), lambda: m)
    attack, params = AttestationBypass(), AttestationParams(tamper="image")
    try:
        outcome = attack.run(ctx, params).outcome
    except VerificationFailed:
        outcome = B
    assert outcome is want
    assert _log_metrics(ctx).attestation_available is engine_cls.attests


def test_attack_is_reproducible() -> None:
    a, b = (run("attestation", "sev", seed=11, params={"tamper": "image"}) for _ in range(2))
    assert a.metrics == b.metrics and a.steps == b.steps
    if DETERMINISTIC_SIGNING:
        assert a.evidence == b.evidence and a.evidence.captured is not None
        assert len(a.evidence.captured) == 208


def test_attack_params_are_bounded() -> None:
    with pytest.raises(ValidationError, match="cmdline \\+ backdoor must be under 256 bytes"):
        AttestationParams.model_validate({"cmdline": "x" * 200, "backdoor": "y" * 60})
    with pytest.raises(ValidationError, match="less than or equal to 65536"):
        AttestationParams.model_validate({"image_bytes": 16 * PAGE_SIZE + 1})
    with pytest.raises(ValidationError, match="tamper"):
        AttestationParams.model_validate({"tamper": "rowhammer"})
    assert AttestationParams.model_validate({"image_bytes": 4097}).pages_needed() == 3


@pytest.mark.parametrize("name", ["18-attestation-tampered-image.yaml",
                                  "19-attestation-replayed-report.yaml",
                                  "20-attestation-forged-report.yaml"])
def test_shipped_scenarios_reproduce_their_expectations(name: str) -> None:
    scenario, source = load_scenario(SCENARIOS / name)
    assert scenario.attack == "attestation"
    assert set(scenario.expect) == {"none", "tme", "mktme", "mktme-i", "sev", "sev-snp"}
    for engine in scenario.engines:
        row = run_job(Job(scenario, source, engine, 1))
        assert row.outcome is scenario.expect[engine], f"{engine}: {row.reason}"
