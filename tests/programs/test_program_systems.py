"""The system steps: each gives its built-in attack's outcome and evidence, and composes.

Each program under ``tests/programs/`` that spells out a system attack as one step runs beside
the shipped scenario with the same parameters (``scenarios/08`` to ``21``), with that
scenario's id, seed, platform, mitigations and trials, so both draw the same keys and secrets:
the outcome (raw, and judged against the control), its reason and chance, the evidence and the
control must be equal under every engine, and equal to the scenario's ``expect``, so that
equality cannot hold by both being wrong the same way.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from _support import programs
from _support.paths import SCENARIOS
from _support.program_steps import PRELUDE, SECRET, build, doc, step
from pydantic import ValidationError

from testbed import registry
from testbed.attacks import AttackParams
from testbed.attacks.key_wearout import KeyWearoutMetrics
from testbed.attacks.torn_live_patch import TornLivePatchMetrics
from testbed.programs import (
    GOALS,
    OPS,
    Goal,
    Program,
    ProgramAttack,
    ProgramMetrics,
    reference_markdown,
    run_program,
)
from testbed.programs._interpreter import execute
from testbed.results import ResultRow, WearoutPlot
from testbed.scenarios import Job, Scenario, control_of, load_scenario, run_trials
from testbed.scenarios.runner import judged
from testbed.types import Outcome

ENGINES = ("none", "tme", "mktme", "sev", "sev-snp")
SYSTEMS = {"wear_out": "key-wearout", "exhaust_secretmem": "secretmem-exhaustion",
           "track_dirty_pages": "dirty-page-leak", "live_patch": "torn-live-patch",
           "attest": "attestation"}

# (program under tests/programs/, the shipped scenario with the same parameters)
CASES = [
    ("key-wearout", "08-key-wearout"),
    ("key-wearout-rotation", "09-key-wearout-rotation"),
    ("key-wearout-per-domain-keys", "10-key-wearout-per-domain-keys"),
    ("secretmem-exhaustion", "12-secretmem-pool-exhaustion"),
    ("secretmem-exhaustion", "13-secretmem-pool-exhaustion-memlock"),
    ("secretmem-exhaustion-many-files", "21-secretmem-pool-exhaustion-many-files"),
    ("dirty-page-leak", "14-dirty-page-leak"),
    ("dirty-page-leak", "15-dirty-page-leak-all-dirty"),
    ("torn-live-patch", "16-torn-live-patch"),
    ("torn-live-patch", "17-torn-live-patch-int3"),
    ("attestation-tampered-image", "18-attestation-tampered-image"),
    ("attestation-replayed-report", "19-attestation-replayed-report"),
    ("attestation-forged-report", "20-attestation-forged-report"),
]


def shipped(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.yaml")[0]


@functools.cache
def jobs(name: str, scenario: str, engine: str) -> tuple[Job, Job]:
    """The program's job and the built-in's, for one engine."""
    s = shipped(scenario)
    prog = programs.program(name)
    mine = programs.scenario(prog, s.id, platform=s.platform, mitigations=s.mitigations,
                             trials=s.trials)
    attack = ProgramAttack.for_program(prog, registry.engines)
    return Job(mine, "<program>", engine, 7, attack=attack), Job(s, "<shipped>", engine, 7)


@functools.cache
def control_row(name: str, scenario: str, side: int) -> ResultRow:
    """The control of the program's jobs (``side`` 0) or the built-in's (1): one run for
    every engine of a case."""
    control = control_of(jobs(name, scenario, "none")[side])
    assert control is not None
    return run_trials(control)


@functools.cache
def rows(name: str, scenario: str, engine: str) -> tuple[ResultRow, ...]:
    """(program raw, built-in raw, program judged, built-in judged)."""
    raw, out = [], []
    for side, job in enumerate(jobs(name, scenario, engine)):
        control = control_of(job)
        assert control is not None
        row = run_trials(job)
        own = control.engine == job.engine and control.scenario == job.scenario
        raw.append(row)
        out.append(judged(row, row if own else control_row(name, scenario, side)))
    return (*raw, *out)


def _same(a: ResultRow, b: ResultRow) -> None:
    assert (a.outcome, a.reason, a.chance_log2) == (b.outcome, b.reason, b.chance_log2)
    assert a.evidence == b.evidence
    assert (a.trials is None) == (b.trials is None)
    if a.trials is not None and b.trials is not None:
        assert a.trials.successes == b.trials.successes


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("name", "scenario"), CASES, ids=[c[1] for c in CASES])
def test_program_equals_builtin(name: str, scenario: str, engine: str) -> None:
    mine_raw, theirs_raw, mine, theirs = rows(name, scenario, engine)
    _same(mine_raw, theirs_raw)
    _same(mine, theirs)
    assert mine.outcome is shipped(scenario).expect[engine], mine.reason
    assert mine.control is not None and theirs.control is not None
    assert mine.control.profile == theirs.control.profile
    assert mine.control.outcome is theirs.control.outcome


@pytest.mark.parametrize(("name", "scenario"), CASES, ids=[c[1] for c in CASES])
def test_the_step_has_the_shipped_scenarios_parameters(name: str, scenario: str) -> None:
    prog, s = programs.program(name), shipped(scenario)
    (only,) = prog.steps
    assert isinstance(only.args, type(s.params))  # the built-in's parameter model itself
    assert only.args.model_dump() == s.params.model_dump()
    assert SYSTEMS[only.op] == s.attack
    assert ProgramAttack.for_program(prog, registry.engines).control_engine == (
        registry.attacks.get(s.attack).control_engine)
    assert prog.platform_settings_used() == registry.attacks.get(s.attack).platform_settings


def test_each_system_step_is_its_builtin_attacks_threat_model() -> None:
    for op, kind in SYSTEMS.items():
        spec, attack = OPS[op], registry.attacks.get(kind)
        assert spec.attack == kind and issubclass(spec.args, attack.Params)
        (caps,) = spec.actors.values()
        assert caps == attack.capabilities
        assert spec.platform_settings == attack.platform_settings
        assert spec.goal in GOALS and spec.judge is not None
    assert {s.name for s in OPS.values() if s.attack} == set(SYSTEMS)


@pytest.mark.parametrize("engine", ENGINES)
def test_not_applicable_reads_as_the_builtins(engine: str) -> None:
    from testbed.platform import Machine

    ctx = programs.context(engine)
    m: Machine = ctx.machine
    for op, kind in SYSTEMS.items():
        spec = OPS[op]
        ours = build([step(op, next(iter(spec.actors)), "r")], spec.actors[next(iter(
            spec.actors))], {spec.goal: "r"}, prelude=False)
        attack = registry.attacks.get(kind)
        assert ProgramAttack().precondition(m, ours) == attack.precondition(m, attack.Params())


# -- what each step binds ------------------------------------------------------------------
def _one(op: str, engine: str = "tme", *, before_pool: bool = False,
         **args: Any) -> tuple[Any, Any]:
    """Run a one-step program of ``op``; (the value it bound, the row's log)."""
    spec = OPS[op]
    who = next(iter(spec.actors))
    prog = build([step(op, who, "r", **args)], spec.actors[who], {spec.goal: "r"},
                 prelude=False)
    ctx = programs.context(engine, pages=256, secretmem_before_pmd_pool=before_pool)
    rt = execute(ctx, prog)
    return rt.values["r"], rt


def test_wear_out_binds_the_value_the_attacker_chose() -> None:
    row = programs.run(programs.program("key-wearout"), "tme", id="t",
                       platform={"reduced_width_bits": 16})
    system = row.metrics_as(ProgramMetrics).systems
    assert system is not None
    (wear,) = system
    assert isinstance(wear, KeyWearoutMetrics) and wear.attacker_target is not None
    # what the victim read at the modified address in the first trial is that value
    assert row.outcome is Outcome.SUCCEEDED
    assert row.evidence.recovered == bytes.fromhex(wear.attacker_target)
    assert any(isinstance(p, WearoutPlot) for p in row.metrics_as(ProgramMetrics).plots())


def test_wear_out_without_a_collision_binds_nothing() -> None:
    value, rt = _one("wear_out", max_pairs=64, trials=1)  # 128-bit blocks: no collision
    assert value is None
    assert rt.systems["r"].op == "wear_out"


def test_exhaust_secretmem_binds_the_victims_page_or_nothing() -> None:
    # The code before the PMD pool (no reservation needed): secret pages from the allocator.
    value, _ = _one("exhaust_secretmem", secret="mine", pages_per_file=8, workload_pages=0,
                    before_pool=True)
    assert value == b"mine"  # 8 pages do not exhaust 256 frames: the victim got its page
    denied, _ = _one("exhaust_secretmem", secret="mine", pages_per_file=4096, workload_pages=0,
                     victim_resident_pages=160, before_pool=True)
    assert denied is None  # the heavier victim is killed in its fault
    refused, _ = _one("exhaust_secretmem", secret="mine", workload_pages=0)
    assert refused is None  # no secretmem= reservation: nobody gets secret memory


def test_track_dirty_pages_binds_the_decoded_key() -> None:
    value, rt = _one("track_dirty_pages", secret="AES-key:9f2c7e1b")
    assert value == b"AES-key:9f2c7e1b"
    assert rt.systems["r"].evidence.recovered == value
    assert rt.ctx.log.secret is None  # the program stored no secret: the log's stays its own


def test_live_patch_binds_the_torn_instruction() -> None:
    value, rt = _one("live_patch")
    found = rt.systems["r"].run
    assert value is not None and value == rt.systems["r"].evidence.recovered
    assert value.hex(" ") == found.torn.executed
    mitigated = programs.run(build([step("live_patch", "attacker", "r")],
                                   ["concurrent_execution"], {"torn": "r"}, prelude=False),
                             "tme", mitigations={"text_poke_bp": True})
    assert mitigated.outcome is Outcome.MITIGATED
    metrics = mitigated.metrics_as(ProgramMetrics).systems
    assert metrics is not None and isinstance(metrics[0], TornLivePatchMetrics)


def test_attest_binds_what_the_backdoor_sent_out() -> None:
    value, rt = _one("attest", "tme", secret="the disk key", image_bytes=512)
    assert value == b"the disk key"
    row = programs.run(build([step("attest", "hypervisor", "r", image_bytes=512)],
                             ["malicious_hypervisor"], {"accepted": "r"}, prelude=False), "sev")
    assert row.outcome is Outcome.BLOCKED and "digest" in row.reason
    assert row.metrics_as(ProgramMetrics).refused_step == 0


# -- goals ---------------------------------------------------------------------------------
def _errors(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as info:
        Program.model_validate(data)
    return [(tuple(e["loc"]), e["msg"]) for e in info.value.errors()]


def test_a_system_goal_names_what_its_own_step_bound() -> None:
    wear = step("wear_out", "attacker", "target", max_pairs=64, trials=1)
    found = _errors(doc([wear], ["bus_interposer", "chosen_plaintext"], {"torn": "target"}))
    assert found == [(("goal", "torn"), "$target was bound by step 3, not by a live_patch "
                      "step: torn judges what a live_patch step did")]
    constant = step("constant", "attacker", "k", text="x")
    loc, message = _errors(doc([constant], [], {"modified": "k"}))[0]
    assert loc == ("goal", "modified") and "not by a wear_out step" in message
    loc, message = _errors(doc([], [], {"denied": "nothing"}))[0]
    assert loc == ("goal", "denied") and "no step has as:" in message


def test_at_goes_only_with_the_goals_that_read_a_page() -> None:
    loc, message = _errors(doc([], [], {"torn": "x", "at": "$vpage"}))[0]
    assert message.endswith("at, page and offset go with victim_reads or page_holds")


def test_what_exhaust_secretmem_binds_is_the_victims() -> None:
    body = [step("exhaust_secretmem", "attacker", "kept", pages_per_file=8, workload_pages=0)]
    loc, message = _errors(doc(body, ["unprivileged_task"], {"recovered": "kept"}))[0]
    assert loc == ("goal", "recovered") and "is what the victim read" in message
    leak = step("xor", "attacker", "x", a="$kept", b="$kept")
    loc, message = _errors(doc([*body, leak], ["unprivileged_task"]))[0]
    assert loc == ("program", 4, "args", "a") and "the attacker does not know it" in message


def test_a_wear_out_of_several_trials_reboots_the_machine() -> None:
    wear = step("wear_out", "attacker", "target", max_pairs=64, trials=2)
    after = step("read_own", "victim", "seen", address="$secret")
    loc, message = _errors(doc([wear, after], ["bus_interposer", "chosen_plaintext"]))[0]
    assert loc == ("program", 4, "args", "address")
    assert "bound before the reboot of step 3" in message
    once = step("wear_out", "attacker", "target", max_pairs=64, trials=1)
    rt = execute(programs.context("tme"), build([once, after],
                                                ["bus_interposer", "chosen_plaintext"]))
    assert rt.values["seen"] == SECRET.encode()


# -- composition ---------------------------------------------------------------------------
def test_a_system_step_leaves_the_programs_own_secret_and_evidence() -> None:
    body = [step("track_dirty_pages", "hypervisor", "bits", secret="another key!"),
            step("read_direct_map", "attacker", "leaked", address="$secret")]
    prog = build(body, ["malicious_hypervisor", "kernel_read_bug"], {"recovered": "leaked"})
    row = programs.run(prog, "none")
    assert row.outcome is Outcome.SUCCEEDED
    assert row.evidence.secret == row.evidence.recovered == SECRET.encode()
    assert row.evidence.captured == SECRET.encode()  # DRAM at the secret when it attacked
    mktme = programs.run(prog, "mktme")
    assert mktme.outcome is Outcome.MITIGATED and mktme.evidence.secret == SECRET.encode()


def test_two_system_steps_in_one_program_each_judged_by_its_goal() -> None:
    body = [step("attest", "hypervisor", "key", image_bytes=512, secret="disk-key=0123456789"),
            step("track_dirty_pages", "hypervisor", "bits", secret="the guest's own key")]
    threat = ["malicious_hypervisor"]
    bits, key = ({"recovered_bits": "bits"}, {"accepted": "key"})
    blocked = programs.run(build(body, threat, bits, prelude=False), "sev")
    assert blocked.outcome is Outcome.BLOCKED  # the owner's verifier refused at step 0
    by_key = programs.run(build(body, threat, key, prelude=False), "tme")
    assert by_key.outcome is Outcome.SUCCEEDED
    assert by_key.evidence.secret == by_key.evidence.recovered == b"disk-key=0123456789"
    both = programs.run(build(body, threat, bits, prelude=False), "tme")
    assert both.outcome is Outcome.SUCCEEDED
    assert both.evidence.secret == both.evidence.recovered == b"the guest's own key"
    m = both.metrics_as(ProgramMetrics)
    assert m.systems is not None and len(m.systems) == 2
    as_json = m.to_json()["systems"]
    assert isinstance(as_json, list) and as_json[1] == m.systems[1].to_json()


def test_the_value_a_system_step_binds_feeds_later_steps() -> None:
    body = [step("track_dirty_pages", "hypervisor", "bits", secret=SECRET, guest_pages=4),
            step("slice", "attacker", "head", value="$bits", start=0, length=6),
            step("constant", "attacker", "known", text=SECRET[6:]),
            step("concat", "attacker", "whole", values=["$head", "$known"])]
    prog = build(body, ["malicious_hypervisor"], {"recovered": "whole"})
    ctx = programs.context("sev-snp")
    verdict = run_program(ctx, prog)
    assert verdict.outcome is Outcome.SUCCEEDED and ctx.log.recovered == SECRET.encode()


def test_platform_settings_are_the_union_of_the_steps() -> None:
    body = [step("wear_out", "attacker", "t", max_pairs=64, trials=1),
            step("hv_read", "hypervisor", "saved", address="$vpage", length=64),
            step("exhaust_secretmem", "attacker", "v", pages_per_file=1, workload_pages=0)]
    prog = build(body, ["bus_interposer", "chosen_plaintext", "malicious_hypervisor",
                        "unprivileged_task"])
    assert prog.platform_settings_used() == {"reduced_width_bits", "ciphertext_hiding",
                                             "secretmem_reserve_pages",
                                             "secretmem_before_pmd_pool"}
    attack = ProgramAttack.for_program(prog, registry.engines)
    assert attack.platform_settings == prog.platform_settings_used()
    assert build(PRELUDE[:0] + [step("constant", "attacker", "k", text="x")],
                 goal={"recovered": "k"}).platform_settings_used() == frozenset()


def test_best_chance_is_the_builtins() -> None:
    for name, scenario in CASES:
        prog, s = programs.program(name), shipped(scenario)
        bits = s.platform.reduced_width_bits or 128
        (only,) = prog.steps
        assert isinstance(only.args, AttackParams)
        assert prog.best_chance_log2(block_bits=bits) == s.params.best_chance_log2(
            block_bits=bits)


def test_running_out_of_asids_while_a_system_step_sets_its_victim_up_is_a_failed_run() -> None:
    body = [step("create_domain", "attacker", "me", kind="guest"),  # takes the only ASID
            step("track_dirty_pages", "hypervisor", "bits", secret="the guest's own key")]
    prog = build(body, ["malicious_hypervisor"], {"recovered_bits": "bits"}, prelude=False)
    row = programs.run(prog, "sev", platform={"asids": 1})
    assert row.outcome is Outcome.ERROR and row.reason == (
        "the platform failed: no free ASID (all 1 in use)")
    assert programs.run(prog, "sev").outcome is Outcome.SUCCEEDED


def test_the_reference_lists_every_goal_and_what_each_system_step_is() -> None:
    text = reference_markdown()
    for kind in GOALS:
        assert kind in Goal.model_fields and f"| `{kind}: NAME` |" in text
    for op, kind in SYSTEMS.items():
        assert (f"the built-in attack `{kind}`; the goal `{OPS[op].goal}` judges its result"
                in text)
    assert "It uses the platform setting `reduced_width_bits`." in text
    assert ("Needs an engine that encrypts: on any other a program using it is not "
            "applicable.") in text
    assert "Limits: max_pairs x trials at most 2^22;" in text
