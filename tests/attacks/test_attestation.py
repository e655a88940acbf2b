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
from testbed.platform import (
    Engine,
    EngineWithSnpAttestation,
    KeySource,
    Machine,
    SevEngine,
    TmeEngine,
)
from testbed.platform.sev import (
    REPORT_DATA_OFFSET,
    REPORT_DATA_SIZE,
    ReportFormat,
    decode_nonce,
)
from testbed.platform.sev.psp import decode_mnonce
from testbed.results import ResultRow
from testbed.scenarios import Job, load_scenario, run_job
from testbed.types import PAGE_SIZE, Outcome

S, B, NA = Outcome.SUCCEEDED, Outcome.BLOCKED, Outcome.NOT_APPLICABLE
REPORT_BYTES = {"sev": 208, "sev-snp": 0x4A0}


def _att(row: ResultRow) -> AttestationMetrics:
    return row.metrics_as(AttestationMetrics)


def _log_metrics(ctx: AttackContext) -> AttestationMetrics:
    assert isinstance(ctx.log.metrics, AttestationMetrics)
    return ctx.log.metrics


def rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


FAILED_CHECK = {"image": "launch digest", "replay": "nonce freshness", "forge": "certificate chain",
                "vmsa": "launch digest"}


PASSED_BEFORE = {"image": 4, "replay": 3, "forge": 1, "vmsa": 4}


@pytest.mark.parametrize("tamper", ["image", "replay", "forge", "vmsa"])
@pytest.mark.parametrize("engine", ["sev", "sev-snp"])
def test_attack_is_blocked_by_the_owners_verifier(engine: str, tamper: str) -> None:
    row = run("attestation", engine, params={"tamper": tamper})
    assert row.outcome is B, row.reason
    assert row.reason.startswith(f"the platform refused a step: {FAILED_CHECK[tamper]}: ")
    assert _att(row).check_failed == FAILED_CHECK[tamper]
    assert _att(row).checks_passed == PASSED_BEFORE[tamper]
    assert _att(row).report_bytes == REPORT_BYTES[engine]
    assert _att(row).report_format == engine
    assert _att(row).secret_provisioned is False
    assert _att(row).guest_runs_modified_image is True
    assert _att(row).digest_measured != _att(row).digest_expected
    assert row.evidence.secret is not None and row.evidence.recovered is None
    assert row.steps[-1].actor == "owner" and "rejects" in row.steps[-1].action


@pytest.mark.parametrize("tamper", ["image", "replay", "forge", "vmsa"])
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


@pytest.mark.parametrize(("engine", "checks"), [("sev", 6), ("sev-snp", 7)])
def test_replay_uses_a_report_the_owner_once_accepted(engine: str, checks: int) -> None:
    row = run("attestation", engine, params={"tamper": "replay"})
    accepted = [s for s in row.steps if s.action.startswith("earlier boot: verifies")]
    assert len(accepted) == 1 and accepted[0].detail.startswith(f"{checks} checks passed")
    assert _att(row).digest_reported == _att(row).digest_expected


def test_forged_report_claims_the_genuine_digest_and_the_owners_nonce() -> None:
    row = run("attestation", "sev", params={"tamper": "forge"})
    assert _att(row).digest_reported == _att(row).digest_expected
    assert row.evidence.captured is not None
    asked = next(s for s in row.steps if s.action.startswith("asks the host"))
    assert row.evidence.captured[:16] == decode_mnonce(asked.detail.removeprefix("mnonce "))


def test_forged_snp_report_carries_the_owners_64_byte_nonce_in_report_data() -> None:
    row = run("attestation", "sev-snp", params={"tamper": "forge"})
    assert _att(row).digest_reported == _att(row).digest_expected
    assert len(_att(row).digest_expected) == 96  # 48-byte SHA-384 launch digest
    captured = row.evidence.captured
    assert captured is not None and len(captured) == 0x4A0
    asked = next(s for s in row.steps if s.action.startswith("asks the host"))
    nonce = decode_nonce(asked.detail.removeprefix("report_data "), REPORT_DATA_SIZE)
    assert captured[REPORT_DATA_OFFSET:REPORT_DATA_OFFSET + REPORT_DATA_SIZE] == nonce


@pytest.mark.parametrize("engine", ["sev", "sev-snp"])
def test_a_moved_rip_changes_the_measurement_not_the_image(engine: str) -> None:
    row = run("attestation", engine, params={"tamper": "vmsa", "backdoor_rip": 0x20_0000})
    assert row.outcome is B
    assert _att(row).initial_rip == "0x200000" and _att(row).guest_runs_modified_image is True
    control = run("attestation", "none", params={"tamper": "vmsa", "backdoor_rip": 0x20_0000})
    assert control.outcome is S and _att(control).initial_rip == "0x200000"


@pytest.mark.parametrize(("tamper", "passed"), [("image", 1), ("vmsa", 1), ("forge", 1)])
def test_launch_measure_blob_is_checked_with_the_tik(tamper: str, passed: int) -> None:
    row = run("attestation", "sev", params={"tamper": tamper, "evidence": "launch_measure"})
    assert row.outcome is B, row.reason
    assert _att(row).check_failed == "launch measure" and _att(row).checks_passed == passed
    assert _att(row).report_bytes == 48


def test_launch_measure_does_not_apply_to_snp_firmware() -> None:
    row = run("attestation", "sev-snp", params={"tamper": "vmsa", "evidence": "launch_measure"})
    assert row.outcome is NA and "no LAUNCH_MEASURE" in row.reason
    assert run("attestation", "tme", params={"tamper": "vmsa",
                                             "evidence": "launch_measure"}).outcome is S


@pytest.mark.parametrize(("engine", "launched"), [("sev", "0x4"), ("sev-snp", "0xb0000")])
def test_a_debug_policy_is_caught_by_the_policy_check(engine: str, launched: str) -> None:
    row = run("attestation", engine, params={"tamper": "debug"})
    assert row.outcome is B, row.reason
    assert _att(row).check_failed == "policy" and _att(row).checks_passed == 5
    assert _att(row).digest_measured == _att(row).digest_expected  # the genuine launch
    assert _att(row).guest_runs_modified_image is False
    changed = next(s for s in row.steps if "allows debugging" in s.action)
    assert changed.detail.endswith(f"-> {launched}")


def test_an_owner_that_asks_for_a_debug_policy_loses_its_key_to_dbg_decrypt() -> None:
    row = run("attestation", "sev", params={"tamper": "debug", "policy": 0,
                                            "secret": "disk-key-0123"})
    assert row.outcome is S, row.reason
    assert row.evidence.recovered == b"disk-key-0123"
    assert any("DBG_DECRYPT" in s.action for s in row.steps)
    # An SNP owner refuses a debuggable guest whatever policy it asked for.
    snp = run("attestation", "sev-snp", params={"tamper": "debug", "policy": 0xB0000})
    assert snp.outcome is B and "DEBUG (bit 19)" in snp.reason


@pytest.mark.parametrize(("engine", "want"), [("none", S), ("tme", S),
                                              ("mktme", Outcome.MITIGATED)])
def test_without_a_psp_the_debug_read_sees_what_the_engine_shows(engine: str,
                                                                  want: Outcome) -> None:
    row = run("attestation", engine, params={"tamper": "debug", "secret": "disk-key-0123"})
    assert row.outcome is want, row.reason
    assert row.evidence.recovered is not None and len(row.evidence.recovered) == 13
    assert (row.evidence.recovered == b"disk-key-0123") is (want is S)


def test_the_measure_hmac_covers_the_policy() -> None:
    row = run("attestation", "sev", params={"tamper": "debug", "evidence": "launch_measure"})
    assert row.outcome is B and _att(row).check_failed == "launch measure"


class SevWithSnpFirmware(SevEngine, EngineWithSnpAttestation):
    pass


def test_report_format_follows_the_snp_interface_not_the_name() -> None:
    m = Machine(SevWithSnpFirmware(KeySource(rng())), 64)
    ctx = AttackContext(m, rng(2), lambda: m)
    with pytest.raises(VerificationFailed, match="launch digest"):
        AttestationBypass().run(ctx, AttestationParams(tamper="image"))
    assert _log_metrics(ctx).report_bytes == 0x4A0
    assert _log_metrics(ctx).report_format == "sev-snp"


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


@pytest.mark.parametrize("engine", ["sev", "sev-snp"])
def test_attack_is_reproducible(engine: str) -> None:
    a, b = (run("attestation", engine, seed=11, params={"tamper": "image"}) for _ in range(2))
    assert a.metrics == b.metrics and a.steps == b.steps
    if DETERMINISTIC_SIGNING:
        assert a.evidence == b.evidence and a.evidence.captured is not None
        assert len(a.evidence.captured) == REPORT_BYTES[engine]


def test_attack_params_are_bounded() -> None:
    with pytest.raises(ValidationError, match="cmdline \\+ backdoor must be under 256 bytes"):
        AttestationParams.model_validate({"cmdline": "x" * 200, "backdoor": "y" * 60})
    with pytest.raises(ValidationError, match="less than or equal to 65536"):
        AttestationParams.model_validate({"image_bytes": 16 * PAGE_SIZE + 1})
    with pytest.raises(ValidationError, match="tamper"):
        AttestationParams.model_validate({"tamper": "rowhammer"})
    with pytest.raises(ValidationError, match="replay needs evidence: report"):
        AttestationParams.model_validate({"tamper": "replay", "evidence": "launch_measure"})
    with pytest.raises(ValidationError, match="must differ from the reset RIP"):
        AttestationParams.model_validate({"tamper": "vmsa", "backdoor_rip": 0xFFF0})
    with pytest.raises(ValidationError, match="less than or equal to"):
        AttestationParams.model_validate({"backdoor_rip": 1 << 64})
    # image pages, the VMSA page and the secret's page
    assert AttestationParams.model_validate({"image_bytes": 4097}).pages_needed() == 4


@pytest.mark.parametrize("name", ["18-attestation-tampered-image.yaml",
                                  "19-attestation-replayed-report.yaml",
                                  "20-attestation-forged-report.yaml",
                                  "28-attestation-tampered-vmsa.yaml",
                                  "29-attestation-launch-measure.yaml",
                                  "30-attestation-debug-policy.yaml",
                                  "42-attestation-plain-sev-vmsa.yaml"])
def test_shipped_scenarios_reproduce_their_expectations(name: str) -> None:
    scenario, source = load_scenario(SCENARIOS / name)
    assert scenario.attack == "attestation"
    assert set(scenario.expect) == {"none", "tme", "mktme", "mktme-i", "sev", "sev-snp"}
    for engine in scenario.engines:
        row = run_job(Job(scenario, source, engine, 1))
        assert row.outcome is scenario.expect[engine], f"{engine}: {row.reason}"


# -- the guest policy: SEV-ES by default, checked at load and by LAUNCH_START ----------------
def test_a_plain_sev_policy_leaves_the_vmsa_unmeasured_and_the_moved_rip_wins() -> None:
    """Policy 0x1 (NODBG, no ES): LAUNCH_UPDATE_VMSA does not exist, the launch digest is the
    SHA-256 of the image alone, and the owner, who checks it, accepts a guest whose first
    instruction is the hypervisor's."""
    row = run("attestation", "sev", params={"tamper": "vmsa", "policy": 0x1,
                                            "secret": "disk-key-0123"})
    assert row.outcome is S, row.reason
    assert row.evidence.recovered == b"disk-key-0123"
    metrics = _att(row)
    assert metrics.initial_rip == "0x100000" and metrics.guest_runs_modified_image is True
    assert metrics.digest_measured == metrics.digest_expected == metrics.digest_reported
    assert not any("LAUNCH_UPDATE_VMSA," in s.detail for s in row.steps)
    assert any("sets the victim guest's initial registers itself" in s.action for s in row.steps)
    # The default policy (0x5, ES) measures the VMSA: the same tamper is caught.
    default = run("attestation", "sev", params={"tamper": "vmsa"})
    assert default.outcome is B and _att(default).check_failed == "launch digest"
    assert any("policy 0x5" in s.detail for s in default.steps)


@pytest.mark.parametrize(("policy", "message"), [
    (1 << 32, "less than or equal to 4294967295"), (1 << 40, "less than or equal to"),
    (0x40, "no firmware would launch a guest under it"), (0x1_0000, "no firmware would"),
    (0x3_0040 | (1 << 26), "no firmware would")])
def test_a_policy_no_firmware_accepts_is_refused_at_load(policy: int, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AttestationParams.model_validate({"policy": policy})


@pytest.mark.parametrize("policy", [0x0, 0x1, 0x5, 0x3_0000, 0x2_0000, 0xB_0000])
def test_a_policy_some_firmware_accepts_loads(policy: int) -> None:
    assert AttestationParams.model_validate({"policy": policy}).policy == policy


@pytest.mark.parametrize(("engine", "want"), [("none", S), ("tme", S), ("mktme", S),
                                              ("sev", NA), ("sev-snp", B)])
def test_an_snp_policy_does_not_apply_to_legacy_firmware(engine: str, want: Outcome) -> None:
    """0x30000 is SNP's default; legacy firmware reads bits 23:16 as an API major of 3 and
    would answer POLICY_FAILURE to the owner's launch: the owner's guest cannot exist there.
    Without a PSP the policy means nothing and no verifier is built."""
    row = run("attestation", engine, params={"tamper": "image", "policy": 0x3_0000})
    assert row.outcome is want, row.reason
    if want is NA:
        assert "POLICY_FAILURE" in row.reason and "API 3.0" in row.reason


def test_a_legacy_policy_does_not_apply_to_snp_firmware() -> None:
    row = run("attestation", "sev-snp", params={"tamper": "image", "policy": 0x5})
    assert row.outcome is NA and "bit 17 clear" in row.reason, row.reason


def test_the_hypervisors_debug_policy_is_one_the_firmware_accepts() -> None:
    """tamper: debug changes only NODBG / DEBUG, so LAUNCH_START never refuses it for a policy
    the owner could ask for: the policy check, not a POLICY_FAILURE, is what stops it."""
    for fmt, policy in ((ReportFormat.SEV, 0x5), (ReportFormat.SEV, 0x1 | (24 << 24)),
                        (ReportFormat.SNP, 0x3_0000), (ReportFormat.SNP, 0x2_013A)):
        assert fmt.policy_problem(policy) is None
        assert fmt.policy_problem(fmt.allow_debug(policy)) is None


@pytest.mark.parametrize("engine_cls", [TmeEngine, SevWithoutPsp])
def test_no_verifier_is_built_where_there_is_no_psp(engine_cls: type[Engine]) -> None:
    """The platform side does not rely on the load-time check: a policy no verifier could hold
    (bypassing validation) changes nothing where there is no PSP."""
    m = Machine(engine_cls(KeySource(rng())), 64)
    ctx = AttackContext(m, rng(2), lambda: m)
    params = AttestationParams.model_construct(**{
        **AttestationParams().model_dump(), "tamper": "image", "policy": 1 << 40})
    verdict = AttestationBypass().run(ctx, params)
    assert verdict.outcome is S
    assert _log_metrics(ctx).attestation_available is False


# -- PLATFORM_INFO the owner may require ----------------------------------------------------
def test_require_platform_info_is_validated() -> None:
    params = AttestationParams.model_validate(
        {"require_platform_info": ["alias_check", "ciphertext_hiding"]})
    assert params.required_platform_info == 0x30
    with pytest.raises(ValidationError, match="must not repeat"):
        AttestationParams.model_validate({"require_platform_info": ["alias_check"] * 2})
    with pytest.raises(ValidationError, match="require_platform_info"):
        AttestationParams.model_validate({"require_platform_info": ["smt"]})


@pytest.mark.parametrize(("required", "want"), [([], S), (["alias_check"], B),
                                                (["ciphertext_hiding"], B)])
def test_a_legacy_report_fails_an_owner_that_requires_platform_info(
    required: list[str], want: Outcome
) -> None:
    """An owner that itself allows debugging (policy 0x4: ES, NODBG clear) accepts the genuine
    report and loses its key to DBG_DECRYPT; one that also requires PLATFORM_INFO bits refuses
    every legacy report, which has no such field."""
    row = run("attestation", "sev", params={"tamper": "debug", "policy": 0x4,
                                            "require_platform_info": required})
    assert row.outcome is want, row.reason
    if want is B:
        assert _att(row).check_failed == "platform info"
        assert _att(row).checks_passed == 6  # format, chain, signature, nonce, digest, policy


@pytest.mark.parametrize(("hiding", "info"), [(False, "0x0"), (True, "0x10")])
def test_the_snp_report_says_whether_the_platform_hides_ciphertext(hiding: bool,
                                                                    info: str) -> None:
    row = run("attestation", "sev-snp", params={"tamper": "image"},
              platform={"ciphertext_hiding": hiding})
    assert row.outcome is B and _att(row).platform_info == info, row.reason
    assert _att(row).check_failed == "launch digest"
