"""Each attack succeeds without the mitigation and gets the expected outcome with it.

Outcomes come from the evidence: the tests also check the evidence agrees with the verdict.
"""

from __future__ import annotations

from typing import Any

import pytest
from _support.programs import TEXT, freed, leak, pins, replay, rollback
from _support.scenarios import run

from testbed.attacks.key_wearout import KeyWearoutMetrics
from testbed.programs import ProgramMetrics
from testbed.results import ResultRow
from testbed.types import Outcome

S, M, B, NA = Outcome.SUCCEEDED, Outcome.MITIGATED, Outcome.BLOCKED, Outcome.NOT_APPLICABLE
SECRET = {"secret": TEXT}


def _recovered_secret(row: ResultRow) -> bool:
    return row.evidence.recovered == row.evidence.secret


@pytest.mark.parametrize(("engine", "want"), [
    ("none", S), ("tme", S), ("mktme", M), ("mktme-i", M), ("sev", M), ("sev-snp", M)])
def test_kernel_map_leak(engine: str, want: Outcome) -> None:
    row = run("program", engine, params=leak())
    assert row.outcome is want, row.reason
    assert row.evidence.secret == SECRET["secret"].encode()
    assert _recovered_secret(row) is (want is S)


@pytest.mark.parametrize("engine", ["none", "tme", "mktme", "mktme-i", "sev", "sev-snp"])
def test_kernel_map_leak_secretmem_faults(engine: str) -> None:
    row = run("program", engine, params=leak(), mitigations={"secretmem": True},
              platform={"memory_pages": 1024})  # room for the default secretmem=2M
    assert row.outcome is B
    assert "removed from the direct map" in row.reason
    assert row.evidence.recovered is None
    assert row.profile == f"{engine}+secretmem"


def test_kernel_map_leak_process_victim_under_sev_is_not_encrypted() -> None:
    # SEV protects guests only: a host process's memory is plaintext to the host kernel.
    row = run("program", "sev", params=leak(victim="process"))
    assert row.outcome is S


@pytest.mark.parametrize(("engine", "want"), [
    ("none", S), ("tme", S), ("mktme", M), ("mktme-i", M), ("sev", M), ("sev-snp", M)])
def test_freed_data_leak(engine: str, want: Outcome) -> None:
    row = run("program", engine, params=freed())
    assert row.outcome is want, row.reason
    assert _recovered_secret(row) is (want is S)


@pytest.mark.parametrize("engine", ["none", "tme", "mktme", "mktme-i", "sev", "sev-snp"])
def test_freed_data_leak_init_on_free(engine: str) -> None:
    row = run("program", engine, params=freed(), mitigations={"init_on_free": True})
    assert row.outcome is M
    if engine in ("none", "tme"):  # zeroed through the attacker's own key: reads zeros
        assert row.evidence.recovered == bytes(len(SECRET["secret"]))


@pytest.mark.parametrize(("engine", "want"), [
    ("none", S), ("tme", S), ("mktme", M), ("mktme-i", B), ("sev", M),
    ("sev-snp", M)])
def test_cross_domain_replay(engine: str, want: Outcome) -> None:
    row = run("program", engine, params=replay())
    assert row.outcome is want, row.reason
    assert any(step.action.startswith("gains ownership of the address") for step in row.steps)
    if engine != "none":  # the interposer captured ciphertext, not the secret
        assert row.evidence.captured != row.evidence.secret


@pytest.mark.parametrize(("engine", "want"), [
    ("none", NA), ("tme", NA), ("mktme", NA), ("mktme-i", NA), ("sev", S), ("sev-snp", B)])
def test_hypervisor_replay(engine: str, want: Outcome) -> None:
    row = run("program", engine, params=rollback())
    assert row.outcome is want, row.reason
    if want is S:
        assert row.evidence.recovered == b"balance=0000100"
    if want is B:
        assert "RMP violation" in row.reason


def test_hypervisor_replay_with_ciphertext_hiding_is_blocked_by_rmp() -> None:
    row = run("program", "sev-snp", params=rollback(), platform={"ciphertext_hiding": True})
    assert row.outcome is B
    assert row.evidence.captured == b"\xff" * 64  # the line it read: all ones


@pytest.mark.parametrize(("engine", "want"), [
    ("none", S), ("tme", S), ("mktme", M), ("mktme-i", M), ("sev", M), ("sev-snp", M)])
def test_capture_compare(engine: str, want: Outcome) -> None:
    # Four PINs of 3 digits: one alone (2^-10 by chance) would be inconclusive.
    row = run("program", engine, params=pins(3), trials=4)
    assert row.outcome is want, row.reason
    m = row.metrics_as(ProgramMetrics)
    assert m.guess_space == 1000
    if want is S:
        assert row.evidence.recovered == row.evidence.secret
        assert m.guesses is not None and 1 <= m.guesses <= 1000
        assert row.evidence.secret is not None and row.evidence.secret.startswith(b"PIN:")
    else:
        assert m.guesses == 1000  # the whole dictionary, no match


def test_capture_compare_guess_count_is_the_pin_position() -> None:
    row = run("program", "tme", params=pins(4))
    secret = row.evidence.secret
    assert secret is not None and secret.startswith(b"PIN:")
    pin = int(secret[4:])
    assert row.metrics_as(ProgramMetrics).guesses == pin + 1


WEAR: dict[str, Any] = {"platform": {"reduced_width_bits": 20},
                        "params": {"max_pairs": 8192, "trials": 4}}


@pytest.mark.parametrize("engine", ["tme", "mktme", "sev", "sev-snp"])
def test_key_wearout_reduced_width_succeeds(engine: str) -> None:
    row = run("key-wearout", engine, **WEAR)
    assert row.outcome is S, row.reason
    m = row.metrics_as(KeyWearoutMetrics)
    assert m.successes == 4 and m.success_low > 0.5
    assert m.reduced_width is True
    assert all(q is not None and q <= 8192 for q in m.pairs_to_collision)
    assert row.evidence.recovered is not None
    assert row.evidence.recovered.hex() == m.attacker_target
    curve = m.curve
    assert curve[-1].measured == 1.0
    assert all(0.0 <= p.bound <= 1.0 for p in curve)


def test_key_wearout_blocked_by_integrity_keeps_the_collision_it_found() -> None:
    row = run("key-wearout", "mktme-i", **WEAR)
    assert row.outcome is Outcome.BLOCKED, row.reason
    m = row.metrics_as(KeyWearoutMetrics)
    assert m.trials == 1 and m.successes == 0  # the refused trial, counted
    (found,) = m.pairs_to_collision
    assert found is not None and found <= 8192 and m.candidate_collisions >= 1
    assert m.blocks_captured >= found
    assert any(s.detail.startswith("delta = ") for s in row.steps)


def test_key_wearout_not_applicable_without_encryption() -> None:
    assert run("key-wearout", "none", **WEAR).outcome is NA


def test_key_wearout_with_rotation_is_mitigated_on_mktme() -> None:
    row = run("key-wearout", "mktme", mitigations={"key_rotation_blocks": 256},
              platform={"reduced_width_bits": 20}, params={"max_pairs": 8192, "trials": 2})
    assert row.outcome is M, row.reason
    assert row.metrics_as(KeyWearoutMetrics).key_rotations > 0
    assert row.metrics_as(KeyWearoutMetrics).successes == 0


@pytest.mark.parametrize("engine", ["tme", "sev", "sev-snp", "none"])
def test_key_rotation_not_applicable_where_engine_cannot_rotate(engine: str) -> None:
    row = run("key-wearout", engine, mitigations={"key_rotation_blocks": 256}, **WEAR)
    assert row.outcome is NA
    assert "cannot rotate" in row.reason


def test_key_wearout_full_width_finds_no_collision() -> None:
    # Real AES-XTS: 128-bit blocks; no internal collision within a small budget.
    row = run("key-wearout", "tme", params={"max_pairs": 2048, "trials": 1})
    # No defence is in force: the attack cannot work at this width (the control fails too).
    assert row.outcome is Outcome.INEFFECTIVE, row.reason
    assert row.metrics_as(KeyWearoutMetrics).block_bits == 128
    assert row.metrics_as(KeyWearoutMetrics).pairs_to_collision == (None,)
    assert 90 < row.metrics_as(KeyWearoutMetrics).extrapolated_years_for_2pow64_blocks < 97


def test_same_seed_same_row_different_seed_different_secret() -> None:
    a = run("program", "tme", seed=3, params=pins(4)).to_json()
    b = run("program", "tme", seed=3, params=pins(4)).to_json()
    c = run("program", "tme", seed=4, params=pins(4)).to_json()
    assert a == b
    assert a["evidence"]["secret"] != c["evidence"]["secret"]


@pytest.mark.parametrize(("engine", "want"), [
    ("tme", S), ("mktme", M), ("mktme-i", B), ("sev", M),
    ("sev-snp", M)])
def test_key_wearout_of_own_key_only_hurts_a_victim_sharing_it(engine: str,
                                                               want: Outcome) -> None:
    row = run("key-wearout", engine, platform={"reduced_width_bits": 20},
              params={"max_pairs": 8192, "trials": 4, "wear_domain": "attacker",
                      "buffer_pages": 2})
    assert row.outcome is want, row.reason
    if want is B:  # memory integrity: the MAC refuses the forged line when the victim reads it
        assert "integrity failure" in row.reason and "MAC does not match" in row.reason
        return
    # The attacker finds its own collision under every engine; only the victim's key differs.
    assert all(q is not None for q in row.metrics_as(KeyWearoutMetrics).pairs_to_collision)
    if want is M:
        assert "another key" in row.reason


# -- regressions ---------------------------------------------------------------------------

@pytest.mark.parametrize(("engine", "want"), [
    ("none", S), ("tme", S), ("mktme", M), ("mktme-i", B), ("sev", B), ("sev-snp", B)])
def test_freed_data_leak_through_the_victims_old_keyid(engine: str, want: Outcome) -> None:
    row = run("program", engine, params=freed(stale=True))
    assert row.outcome is want, row.reason


def test_without_key_deprogramming_mktme_would_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.platform import MktmeEngine

    monkeypatch.setattr(MktmeEngine, "release_slot", lambda self, slot: None)
    row = run("program", "mktme", params=freed(stale=True))
    assert row.outcome is S  # so the mitigated verdict above really comes from CLEAR_KEY


def test_hypervisor_replay_of_a_value_longer_than_a_line() -> None:
    old, new = "A" * 100, "B" * 100
    row = run("program", "sev", params=rollback(old, new))
    assert row.outcome is S, row.reason
    assert row.evidence.recovered == old.encode()


def test_zeros_read_back_are_not_recovered_bytes() -> None:
    secret = "\0" * 20 + "xyz"
    row = run("program", "none", params=freed(secret), mitigations={"init_on_free": True})
    # Three bytes of evidence (2^-13.3) are all the control can show: no defence is credited.
    assert row.outcome is Outcome.INCONCLUSIVE, row.reason
    assert "zeros" in row.reason
    assert row.control is not None and row.control.outcome is Outcome.INCONCLUSIVE


def test_a_refusal_while_setting_up_the_victim_is_an_error_not_a_block() -> None:
    # 40 victim pages on a machine whose 15 usable frames run out before the attack starts.
    from _support.scenarios import scenario as make

    from testbed.programs import Program
    from testbed.scenarios import Job, run_job

    doc = make("program", params=freed())
    doc = doc.model_copy(update={"params": Program.model_validate(freed(pages=40)),
                                 "platform": doc.platform.model_copy(update={"memory_pages": 16})})
    row = run_job(Job(doc, "<test>", "none", 1))
    assert row.outcome is Outcome.ERROR
    assert "setting up the victim failed: ENOMEM" in row.reason


def test_rotation_interval_counts_the_domains_writes_only() -> None:
    row = run("key-wearout", "mktme", mitigations={"key_rotation_blocks": 4096},
              platform={"reduced_width_bits": 32},
              params={"max_pairs": 8192, "trials": 1, "buffer_pages": 4, "packet_lines": 16})
    # 32 writes of 256 blocks at one rotation per 4096 blocks of the domain's own writes. Had the
    # re-encryption of the 4 pages (4096 blocks) counted, every later write would rotate (~16).
    rotations = row.metrics_as(KeyWearoutMetrics).key_rotations
    assert 1 <= rotations <= 2, rotations


def test_an_exact_pin_is_as_likely_by_chance_as_its_space_says_whatever_its_digits() -> None:
    """A PIN of repeated digits is one of 10^3 like any other: its bytes do not make it likelier
    (the byte count would give 1 informative byte of 3)."""
    import math

    from testbed.attacks._base import judge_bytes

    for pin in (b"777", b"123"):
        verdict = judge_bytes(pin, pin, "PIN", space_log2=math.log2(1000))
        assert verdict.outcome is S and verdict.chance_log2 == pytest.approx(-math.log2(1000))
