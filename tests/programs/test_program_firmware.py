"""The aliasing steps (BadRAM) and the page-move steps (Heracles) in programs: their load-time
checks, and outcomes judged from what the attacker got, with and without each defence."""

from __future__ import annotations

import math
from typing import Any

import pytest
from _support import programs
from _support.paths import SCENARIOS
from _support.program_steps import step

from testbed.errors import FirmwareRefusal
from testbed.platform import Mitigations
from testbed.programs import Program, ProgramMetrics
from testbed.programs._goal import judge
from testbed.programs._interpreter import execute
from testbed.scenarios import load_scenario
from testbed.types import Outcome


def shipped(name: str) -> Program:
    params = load_scenario(SCENARIOS / f"{name}.yaml")[0].params
    assert isinstance(params, Program)
    return params


BADRAM, ALIAS_CHECKED = shipped("36-badram-alias-replay"), shipped("37-badram-alias-check")
HERACLES = shipped("38-heracles-page-move-oracle")


def test_an_alias_step_without_an_aliased_dimm_is_refused_at_load_time() -> None:
    doc: dict[str, Any] = {"threat": ["malicious_hypervisor"], "goal": {"victim_reads": "old"},
                           "program": [
        step("create_domain", "victim", "g", kind="guest"),
        step("alloc_pages", "victim", "p", domain="$g"),
        step("store", "victim", "old", address="$p", text="balance=1"),
        step("alias_read", "hypervisor", "saved", address="$old", length=64)]}
    with pytest.raises(ValueError, match="an alias_dimm step must boot the machine"):
        Program.model_validate(doc)


def test_addresses_from_before_the_aliased_boot_are_gone() -> None:
    doc: dict[str, Any] = {"threat": ["malicious_hypervisor"], "goal": {"victim_reads": "old"},
                           "program": [
        step("create_domain", "victim", "g", kind="guest"),
        step("alloc_pages", "victim", "p", domain="$g"),
        step("store", "victim", "old", address="$p", text="balance=1"),
        step("alias_dimm", "hypervisor"),
        step("alias_read", "hypervisor", "saved", address="$old", length=64)]}
    with pytest.raises(ValueError, match="bound before the reboot of step 3"):
        Program.model_validate(doc)


def test_the_rollback_through_the_alias_is_judged_by_what_the_guest_reads() -> None:
    ctx = programs.context("sev-snp")
    rt = execute(ctx, BADRAM)
    assert ctx.machine.memory.ignored_bit == 17  # the machine the program booted
    old = rt.location("$old")
    assert old.data == b"balance=0000100"
    assert ctx.machine.read(old.domain, old.addrs[0], 15) == b"balance=0000100"
    row = programs.run(BADRAM, "sev-snp")
    assert row.outcome is Outcome.SUCCEEDED and row.evidence.recovered == b"balance=0000100"
    assert row.control is not None and row.control.profile == "sev"


def test_without_the_alias_the_same_write_is_refused_by_the_rmp() -> None:
    """Scenario 06's rollback through the page's own address, for comparison."""
    row = programs.run(programs.program("hypervisor-replay"), "sev-snp")
    assert row.outcome is Outcome.BLOCKED


@pytest.mark.parametrize("engine", ["sev", "sev-snp"])
def test_the_alias_check_blocks_the_boot(engine: str) -> None:
    ctx = programs.context(engine, mitigations=Mitigations(alias_check=True))
    with pytest.raises(FirmwareRefusal, match="boot refused"):
        execute(ctx, ALIAS_CHECKED)
    metrics = ctx.log.metrics
    assert isinstance(metrics, ProgramMetrics) and metrics.refused_step == 0
    row = programs.run(ALIAS_CHECKED, engine, mitigations={"alias_check": True})
    assert row.outcome is Outcome.BLOCKED
    assert row.control is not None and row.control.outcome is Outcome.SUCCEEDED


def test_aliasing_is_not_applicable_under_memory_integrity() -> None:
    """Integrity words are kept per physical address; an alias shares the cell (and, on real
    DIMMs, its ECC bits): the model does not pretend to know what that does."""
    row = programs.run(BADRAM, "mktme-i")
    assert row.outcome is Outcome.NOT_APPLICABLE
    assert "integrity" in row.reason and "alias" in row.reason


def test_aliasing_with_a_boot_reservation_in_the_alias_frames_is_not_applicable() -> None:
    doc: dict[str, Any] = {"threat": ["malicious_hypervisor", "unprivileged_task"],
                           "goal": {"victim_reads": "old"}, "program": [
        step("alias_dimm", "hypervisor"),
        step("create_domain", "victim", "g", kind="guest"),
        step("alloc_pages", "victim", "p", domain="$g"),
        step("store", "victim", "old", address="$p", text="balance=1"),
        step("exhaust_secretmem", "attacker", "key", pages_per_file=8, attacker_files=1,
             victim_resident_pages=8)]}
    prog = Program.model_validate(doc)
    row = programs.run(prog, "sev-snp", platform={"memory_pages": 4096,
                                                  "secretmem_reserve_pages": 512})
    assert row.outcome is Outcome.NOT_APPLICABLE, row.reason
    assert "secretmem=" in row.reason and "alias frames" in row.reason
    assert programs.run(prog, "sev-snp").outcome is not Outcome.ERROR


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_page_move_oracle_finds_the_pin_in_as_many_guesses_as_its_rank(seed: int) -> None:
    ctx = programs.context("sev-snp", seed=seed)
    rt = execute(ctx, HERACLES)
    secret = rt.secret
    assert secret is not None and secret.startswith(b"PIN:")
    assert rt.data("$found") == secret
    assert rt.guesses == int(secret[4:]) + 1  # candidates 0000, 0001, ... up to the PIN
    moved, buffer = rt.location("$moved"), rt.location("$buffer")
    assert buffer.addrs[0] == rt.location("$pin").addrs[0] != moved.addrs[0]


def test_the_oracle_outcomes_with_and_without_restricted_moves() -> None:
    row = programs.run(HERACLES, "sev-snp", trials=4)
    assert row.outcome is Outcome.SUCCEEDED and row.trials is not None
    assert row.trials.successes == 4
    metrics = row.metrics
    assert isinstance(metrics, ProgramMetrics) and metrics.guess_space == 10**4
    restricted = programs.run(HERACLES, "sev-snp", trials=4,
                              mitigations={"restrict_page_move": True})
    assert restricted.outcome is Outcome.BLOCKED
    assert programs.run(HERACLES, "sev").outcome is Outcome.NOT_APPLICABLE


def test_ciphertext_hiding_leaves_the_oracle_nothing_to_compare() -> None:
    ctx = programs.context("sev-snp", ciphertext_hiding=True)
    rt = execute(ctx, HERACLES)
    assert rt.data("$line") == b"\xff" * 64
    # The target and every write read as 0xff: nothing tells one candidate from another, so
    # nothing is compared and nothing bound (not the first candidate as a "match").
    assert rt.data("$found") is None and rt.guesses == 0
    notes = [s.detail or "" for s in ctx.log.steps if "nothing to compare" in s.action]
    assert notes == ["10000 candidates; as found"]
    row = programs.run(HERACLES, "sev-snp", trials=4, platform={"ciphertext_hiding": True})
    assert row.outcome is Outcome.MITIGATED
    assert row.control is not None and row.control.outcome is Outcome.SUCCEEDED


def test_a_wrong_candidate_is_not_credited_with_the_prefix_the_attacker_wrote() -> None:
    """The goal judges the PIN's digits: ``PIN:`` is text the guess step wrote itself."""
    ctx = programs.context("sev-snp")
    rt = execute(ctx, HERACLES)
    secret = rt.secret
    assert secret is not None and rt.known["found"] == b"PIN:"
    wrong = b"PIN:" + bytes(ord("0") + (d - ord("0") + 1) % 10 for d in secret[4:])
    rt.values["found"] = wrong
    verdict = judge(rt, HERACLES.goal)
    assert verdict.outcome is Outcome.MITIGATED, verdict.reason
    assert "0 of 4" in verdict.reason
    rt.values["found"] = secret
    right = judge(rt, HERACLES.goal)
    assert right.outcome is Outcome.SUCCEEDED and "(4 bytes;" in right.reason
    assert right.chance_log2 == pytest.approx(-math.log2(10**4))


def test_a_move_to_a_frame_in_use_is_refused_by_the_firmware() -> None:
    doc: dict[str, Any] = {"threat": ["malicious_hypervisor"], "goal": {"victim_reads": "old"},
                           "program": [
        step("create_domain", "victim", "g", kind="guest"),
        step("alloc_pages", "victim", "p", domain="$g", count=2),
        step("store", "victim", "old", address="$p", text="balance=1"),
        step("move_guest_page", "hypervisor", "moved", address="$p", page=1, to="$old")]}
    with pytest.raises(FirmwareRefusal, match="not a free frame"):
        execute(programs.context("sev-snp"), Program.model_validate(doc))
