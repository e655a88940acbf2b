"""A program's work estimate: what each step is charged, that the loader bounds a program with
it, and that measured runs take less than their estimate.

The runs are timed as ``tests/attacks/test_work_estimates.py`` times the built-in attacks:
against the estimate scaled by how much slower this machine is than the reference one
(its ``slowdown`` fixture), with the better of two runs when the first is over.
"""

from __future__ import annotations

from typing import Any

import pytest
from _support import programs
from _support.paths import SCENARIOS
from _support.program_steps import PRELUDE, build, step
from pydantic import ValidationError

from testbed import registry
from testbed.attacks.cost import JOB_LIMIT_UNITS, UNIT_SECONDS, MachineShape, boot_units, run_part
from testbed.platform import EngineOptions
from testbed.programs import Program, ProgramAttack
from testbed.programs._cost import (
    ACCESS_UNITS,
    CALL_UNITS,
    CANDIDATE_UNITS,
    DOMAIN_UNITS,
    NARROW_CANDIDATE_UNITS,
    NARROW_FACTOR,
    PAGE_UNITS,
    REBOOT_FACTOR,
    ROTATION_PAGE_UNITS,
    ROTATION_UNITS,
    STEP_UNITS,
    WORD_UNITS,
)
from testbed.scenarios import Job, Scenario, load_scenario
from testbed.scenarios.model import WORK_LIMIT_CONTEXT

_estimates = programs.work_estimates()
slowdown = _estimates.slowdown  # the fixture, shared with the built-in attacks' timing tests
measured = _estimates.measured

SYSTEM_CASES = [
    ("key-wearout", "08-key-wearout"), ("key-wearout-rotation", "09-key-wearout-rotation"),
    ("secretmem-exhaustion", "12-secretmem-pool-exhaustion"),
    ("secretmem-exhaustion-many-files", "21-secretmem-pool-exhaustion-many-files"),
    ("dirty-page-leak", "14-dirty-page-leak"), ("torn-live-patch", "17-torn-live-patch-int3"),
    ("attestation-replayed-report", "19-attestation-replayed-report"),
]


def shipped(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.yaml")[0]


@pytest.mark.parametrize(("name", "scenario"), SYSTEM_CASES, ids=[c[1] for c in SYSTEM_CASES])
def test_a_system_step_costs_what_its_builtin_estimates(name: str, scenario: str) -> None:
    prog, s = programs.program(name), shipped(scenario)
    for control in (False, True):
        shape = s.machine_shape(control=control)
        theirs = s.params.work(shape)
        assert theirs is not None
        ours = prog.work(shape)
        # the run and its machine once, the step itself, then the built-in's own parts
        assert ours.parts[:2] == (run_part(shape), ("1 steps", STEP_UNITS))
        assert ours.parts[2:] == tuple((f"step 0 ({prog.steps[0].op}): {what}", units)
                                       for what, units in theirs.parts[1:])
        assert ours.units == pytest.approx(theirs.units + STEP_UNITS)
    scenario_of_program = programs.scenario(prog, platform=s.platform, mitigations=s.mitigations,
                                            trials=s.trials)
    assert scenario_of_program.job_units() == pytest.approx(
        (s.job_units() or 0) + STEP_UNITS * s.trials)


def test_every_kind_of_step_is_charged() -> None:
    body = [step("alloc_pages", "victim", "more", domain="$victim", count=10),
            step("rotate_key", "kernel", domain="$victim"),
            step("capture", "attacker", "line", address="$secret", length=64),
            step("create_domain", "attacker", "me", kind="guest"),
            step("alloc_pages", "attacker", "mine", domain="$me"),
            step("guess", "attacker", "w", address="$mine", target="$line", words=["a", "b"]),
            step("guess", "attacker", "d", address="$mine", target="$line", digits=5),
            step("read_keyid_map", "attacker", "k", address="$secret", keyid_of="$victim"),
            step("reboot", "kernel")]
    prog = build(body, ["bus_interposer", "chosen_plaintext", "uninit_page_read"])
    shape = MachineShape(1024)
    work = dict(prog.work(shape).parts)
    pages = 1 + 10 + 1
    assert prog.pages_needed() == pages
    assert work == {
        run_part(shape)[0]: run_part(shape)[1],
        f"{len(prog.steps)} steps": STEP_UNITS * len(prog.steps),
        "2 domains created or destroyed": 2 * DOMAIN_UNITS,
        "12 pages allocated": PAGE_UNITS * pages,
        # store_secret, capture, read_keyid_map
        "3 memory reads and writes": 3 * ACCESS_UNITS,
        "1 key rotations": ROTATION_UNITS + ROTATION_PAGE_UNITS * pages,
        "100,002 candidates guessed": CANDIDATE_UNITS * 100_002,
        "3 engine calls of guess steps": 3 * CALL_UNITS,
        "2 words of word lists": 2 * WORD_UNITS,
        "1 KeyID direct maps": 0.1 * 1024,
        "1 reboots": REBOOT_FACTOR * boot_units(1024),
    }
    narrow = MachineShape(1024, EngineOptions(reduced_width_bits=24))
    assert dict(prog.work(narrow).parts)["100,002 candidates guessed"] == (
        NARROW_CANDIDATE_UNITS * 100_002)


def test_a_system_step_is_charged_more_on_a_cipher_its_builtin_never_runs_on() -> None:
    narrow = MachineShape(16384, EngineOptions(reduced_width_bits=32),
                          secretmem_reserve_pages=2048)
    plain = MachineShape(16384, secretmem_reserve_pages=2048)
    secretmem = programs.program("secretmem-exhaustion")
    extra = secretmem.work(plain).units - run_part(plain)[1] - STEP_UNITS
    assert secretmem.work(narrow).units - run_part(narrow)[1] - STEP_UNITS == pytest.approx(
        NARROW_FACTOR * extra)
    assert "on the reduced-width cipher" in secretmem.work(narrow).largest()
    wear = programs.program("key-wearout")  # the wear-out's own estimate covers that cipher
    theirs = shipped("08-key-wearout").params.work(narrow)
    assert theirs is not None
    assert wear.work(narrow).units == pytest.approx(theirs.units + STEP_UNITS)


def test_the_loader_bounds_a_program_naming_its_largest_part() -> None:
    prog = programs.program("key-wearout")
    fields = {"id": "w", "title": "w", "attack": "program", "params": prog,
              "teaching": {"summary": "w"}, "platform": {"reduced_width_bits": 24}}
    s = Scenario.model_validate(fields)
    units = s.job_units()
    assert units is not None and units < JOB_LIMIT_UNITS
    with pytest.raises(ValidationError) as info:
        Scenario.model_validate(fields, context={WORK_LIMIT_CONTEXT: units / 2})
    message = str(info.value)
    assert "step 0 (wear_out): 8 trials x " in message
    assert "wear_out args.max_pairs or wear_out args.trials" in message


def test_platform_settings_of_the_attack_of_a_program() -> None:
    prog = programs.program("dirty-page-leak")
    assert prog.platform_settings_used() == frozenset()
    assert ProgramAttack.for_program(prog, registry.engines).platform_settings == frozenset()
    assert programs.program("hypervisor-replay").platform_settings_used() == {
        "ciphertext_hiding"}


# -- runs against their estimates -----------------------------------------------------------
def _pages(count: int) -> list[dict[str, Any]]:
    return [step("alloc_pages", "victim", f"p{i}", domain="$victim", count=64)
            for i in range(count)]


ROTATIONS = build([*_pages(14), *[step("rotate_key", "kernel", domain="$victim")] * 8])
FREED = build([*_pages(15), step("destroy_domain", "victim", domain="$victim")])
REBOOTS = build([step("reboot", "kernel")] * 40)
DIGIT_STEPS = [step("capture", "attacker", "line", address="$secret", length=64),
               step("create_domain", "attacker", "me", kind="guest"),
               step("alloc_pages", "attacker", "mine", domain="$me"),
               step("guess", "attacker", "found", address="$mine", offset=12, target="$line",
                    digits=5)]
DIGITS = build(DIGIT_STEPS, ["bus_interposer", "chosen_plaintext"])
WEAR = step("wear_out", "attacker", "worn", max_pairs=16, trials=1)
"""A short wear-out: what puts a program on the reduced-width cipher (the setting is refused
for a program none of whose steps uses it)."""
NARROW_DIGITS = build([WEAR, *DIGIT_STEPS], ["bus_interposer", "chosen_plaintext"])
NARROW_SECRETMEM = build([WEAR, *programs.load("secretmem-exhaustion")["program"]],
                         ["bus_interposer", "chosen_plaintext", "unprivileged_task"],
                         programs.load("secretmem-exhaustion")["goal"], prelude=False)
COMBINED = build([step("track_dirty_pages", "hypervisor", "bits", secret="a guest's own key"),
                  step("attest", "hypervisor", "key", tamper="forge"),
                  step("read_direct_map", "attacker", "leaked", address="$secret")],
                 ["malicious_hypervisor", "kernel_read_bug"], {"recovered": "leaked"})
MOVES = build([step("move_guest_page", "hypervisor", "m0", address="$vpage"),
               *[step("move_guest_page", "hypervisor", f"m{i + 1}", address=f"$m{i}")
                 for i in range(59)]], ["malicious_hypervisor"])
ALIASES = build([*[step("alias_dimm", "hypervisor")] * 30, *PRELUDE], ["malicious_hypervisor"],
                prelude=False)


def _program_of(name: str) -> Program:
    params = shipped(name).params
    assert isinstance(params, Program)
    return params


SAMPLES: list[tuple[str, str, Program, dict[str, Any]]] = [
    ("capture-compare", "mktme", programs.program("capture-compare"), {"trials": 4}),
    ("dictionary-words", "tme", programs.program("dictionary-words"), {}),
    ("rotations", "mktme", ROTATIONS, {"platform": {"memory_pages": 2048}}),
    ("freed-pages", "tme", FREED, {"platform": {"memory_pages": 2048},
                                   "mitigations": {"init_on_free": True}}),
    ("reboots", "sev", REBOOTS, {"platform": {"memory_pages": 65536}}),
    ("guess-narrow", "tme", NARROW_DIGITS, {"platform": {"reduced_width_bits": 32}}),
    ("key-wearout", "mktme", programs.program("key-wearout"),
     {"platform": {"reduced_width_bits": 24}}),
    ("secretmem", "tme", programs.program("secretmem-exhaustion"),
     {"platform": {"memory_pages": 16384, "secretmem_reserve_pages": 2048}}),
    ("secretmem-narrow", "tme", NARROW_SECRETMEM,
     {"platform": {"memory_pages": 16384, "secretmem_reserve_pages": 2048,
                   "reduced_width_bits": 32}}),
    ("dirty-pages", "sev", programs.program("dirty-page-leak"), {"trials": 4}),
    ("live-patch", "tme", programs.program("torn-live-patch"),
     {"mitigations": {"text_poke_bp": True}}),
    ("attestation", "sev-snp", programs.program("attestation-replayed-report"), {}),
    ("combined", "tme", COMBINED, {}),
    # Memory integrity initialises each page a domain is given and MACs every line written.
    ("rotations-integrity", "mktme-i", ROTATIONS, {"platform": {"memory_pages": 2048}}),
    ("freed-pages-integrity", "mktme-i", FREED, {"platform": {"memory_pages": 2048},
                                                 "mitigations": {"init_on_free": True}}),
    ("secretmem-integrity", "mktme-i", programs.program("secretmem-exhaustion"),
     {"platform": {"memory_pages": 16384, "secretmem_reserve_pages": 2048}}),
    ("alias-boots", "sev", ALIASES, {"platform": {"memory_pages": 65536}}),
    ("alias-replay", "sev-snp", _program_of("36-badram-alias-replay"),
     {"platform": {"memory_pages": 65536}}),
    ("alias-check", "sev-snp", _program_of("37-badram-alias-check"),
     {"platform": {"memory_pages": 65536}, "mitigations": {"alias_check": True}}),
    ("page-moves", "sev-snp", MOVES, {}),
    ("page-move-oracle", "sev-snp", _program_of("38-heracles-page-move-oracle"), {"trials": 4}),
]


def ratio(prog: Program, engine: str, fields: dict[str, Any], bound_scale: float) -> float:
    """The time of a run over its estimate, scaled by ``bound_scale``."""
    s = programs.scenario(prog, **fields)
    units = s.job_units()
    assert units is not None
    bound = units * UNIT_SECONDS * bound_scale
    attack = ProgramAttack.for_program(prog, registry.engines)
    return float(measured(Job(s, "<sample>", engine, 3, attack=attack), bound)) / bound


@pytest.mark.parametrize(("name", "engine", "prog", "fields"), SAMPLES,
                         ids=[s[0] for s in SAMPLES])
def test_a_run_takes_less_than_its_estimate(name: str, engine: str, prog: Program,
                                            fields: dict[str, Any], slowdown: float) -> None:
    assert ratio(prog, engine, fields, slowdown) <= 1.0


def test_the_samples_cover_every_system_step() -> None:
    used = {s.op for _, _, prog, _ in SAMPLES for s in prog.steps}
    assert {"wear_out", "exhaust_secretmem", "track_dirty_pages", "live_patch",
            "attest"} <= used
