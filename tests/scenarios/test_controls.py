"""Every result is weighed against a control: the same scenario and seed under the attack's
control engine, with no defence (rule 3 of :mod:`testbed.results.verdicts`).

A defence is credited (``mitigated``, ``blocked``) only where the control succeeded; where the
control fails too, the attack does not work with those parameters (``ineffective``). Below:
the controls the runner builds and shares, the shipped scenarios, for each attack a parameter
set that fails without any defence (or why there is none), the acceptance classes of the
verdict rules, and trials.
"""

from __future__ import annotations

from typing import Any

import pytest
from _support import programs
from _support.paths import SCENARIOS
from _support.programs import freed, leak, pins, replay, rollback
from _support.scenarios import run, scenario
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed import registry
from testbed.attacks import Attack, AttackContext, AttackParams, BaseMetrics, Verdict
from testbed.platform import Mitigations
from testbed.results import ResultRow
from testbed.results.chance import log2_tail
from testbed.scenarios import Job, control_of, load_scenarios, plan, run_job, run_jobs, units
from testbed.types import Outcome

S, IN = Outcome.SUCCEEDED, Outcome.INCONCLUSIVE
M, B, X, E = Outcome.MITIGATED, Outcome.BLOCKED, Outcome.INEFFECTIVE, Outcome.ERROR
FAILS = "fails as well"
DOES_NOT_WORK = "the attack does not work with these parameters"

CHEAP: dict[str, dict[str, Any]] = {
    "key-wearout": {"platform": {"reduced_width_bits": 20},
                    "mitigations": {"key_rotation_blocks": 256},
                    "params": {"max_pairs": 4096, "trials": 4}},
    "secretmem-exhaustion": {"platform": {"memory_pages": 4096, "secretmem_reserve_pages": 1024},
                             "mitigations": {"memlock_limit_pages": 16},
                             "params": {"workload_pages": 0, "victim_resident_pages": 1100}},
    "dirty-page-leak": {"mitigations": {"dirty_all_pages": True},
                        "params": {"secret_bytes": 8}},
    "torn-live-patch": {"mitigations": {"text_poke_bp": True}},
    "attestation": {"params": {"image_bytes": 1024}},
    "ciphertext-side-channel": {"platform": {"ciphertext_hiding": True},
                                "params": {"secret_bytes": 8}},
    "program": {"params": programs.load("freed-data-leak"), "mitigations": {"init_on_free": True}},
}
"""Small scenarios of every built-in attack, each with a defence where the attack has one."""
SHIPPED = set(registry.attacks.builtin_names())
"""The attacks of the shipped scenarios: every built-in one."""


def _job(attack: str, engine: str, seed: int = 7, **fields: Any) -> Job:
    return Job(scenario(attack, **fields), "<test>", engine, seed)


@pytest.fixture(scope="module")
def shipped() -> list[ResultRow]:
    """Every shipped scenario under every engine, judged against its control."""
    loaded, errors = load_scenarios([SCENARIOS])
    assert errors == []
    return run_jobs(plan(loaded, 1))


# -- the controls -----------------------------------------------------------------------------

def test_the_cheap_scenarios_cover_every_built_in_attack() -> None:
    assert set(CHEAP) == set(registry.attacks.builtin_names())


def test_every_shipped_row_carries_a_bare_control_under_its_attacks_control_engine(
    shipped: list[ResultRow],
) -> None:
    assert {row.attack for row in shipped} == SHIPPED
    loaded, _ = load_scenarios([SCENARIOS])
    attacks = {s.id: s.attack_object() for s, _ in loaded}
    for row in shipped:
        assert row.control is not None, (row.scenario, row.profile)
        assert "+" not in row.control.profile
        attack = attacks[row.scenario]
        assert attack is not None and row.control.profile == attack.control_engine


@pytest.mark.parametrize("engine", ["none", "tme", "mktme", "mktme-i", "sev", "sev-snp"])
@pytest.mark.parametrize("attack", sorted(CHEAP))
def test_every_row_carries_its_attacks_control(attack: str, engine: str) -> None:
    row = run(attack, engine, **CHEAP[attack])
    assert row.control is not None and "+" not in row.control.profile
    assert row.control.profile == registry.attacks.get(attack).control_engine
    assert row.outcome not in (E, X), row.reason  # these scenarios work where they apply


def test_control_engines_of_the_built_in_attacks() -> None:
    engines = {name: registry.attacks.get(name).control_engine
               for name in registry.attacks.builtin_names()}
    assert {name: e for name, e in engines.items() if e != "none"} == {
        "key-wearout": "tme", "ciphertext-side-channel": "sev"}
    # The ciphertext side channel's is its observer's: the bus needs only a cipher.
    bus = scenario("ciphertext-side-channel", params={"observer": "bus"}).attack_object()
    assert bus is not None and bus.control_engine == "tme"
    # A program's is its own: the first engine on which every step means something.
    attack = scenario("program", params=rollback()).attack_object()
    assert attack is not None and attack.control_engine == "sev"


def test_a_control_drops_every_defence_and_keeps_the_rest() -> None:
    job = _job("program", "sev-snp", seed=11, platform={"ciphertext_hiding": True},
               mitigations={"init_on_free": True, "memlock_limit_pages": 64}, trials=3,
               params=rollback("balance=0000100", "balance=0009999"))
    control = control_of(job)
    assert control is not None
    assert (control.engine, control.seed, control.profile) == ("sev", 11, "sev")
    bare = control.scenario
    assert bare.mitigations == Mitigations() and bare.mitigation_names() == ()
    assert bare.platform.ciphertext_hiding is False
    assert bare.platform.model_copy(update={"ciphertext_hiding": True}) == job.scenario.platform
    assert (bare.id, bare.params, bare.trials) == (job.scenario.id, job.scenario.params, 3)
    assert control.attack is job.attack


def test_a_job_that_is_its_own_control_runs_once() -> None:
    job = _job("program", "none", params=leak())
    assert control_of(job) == job
    runs, controls = units([job])
    assert runs == [job] and controls == [0]
    row = run_job(job)
    assert row.outcome is S and row.control is not None
    assert (row.control.profile, row.control.outcome, row.control.reason) == (
        "none", S, row.reason)


def test_a_mitigation_adds_one_control_run_shared_by_every_engine() -> None:
    jobs = [_job("program", e, params=leak(), mitigations={"secretmem": True},
                 platform={"memory_pages": 1024}) for e in ("none", "tme", "mktme")]
    runs, controls = units(jobs)
    assert runs[:3] == jobs and len(runs) == 4
    assert controls == [3, 3, 3]
    assert runs[3].profile == "none" and runs[3].scenario.mitigation_names() == ()


def test_engines_without_a_defence_share_the_jobs_own_control() -> None:
    jobs = [_job("program", e, params=freed()) for e in ("mktme", "none", "tme")]
    runs, controls = units(jobs)
    assert runs == jobs and controls == [1, 1, 1]


def test_the_control_is_the_run_under_the_control_engine() -> None:
    fields: dict[str, Any] = {"params": replay("the same secret, the same seed")}
    defended = run_job(_job("program", "mktme", seed=3, **fields))
    plain = run_job(_job("program", "none", seed=3, **fields))
    assert defended.outcome is M and plain.outcome is S
    assert defended.control is not None and plain.control is not None
    assert defended.control == plain.control
    assert (defended.control.outcome, defended.control.reason) == (plain.outcome, plain.reason)
    assert defended.reason.endswith("; the control (none, no defence) succeeded")


def test_shipped_mitigated_and_blocked_rows_have_a_control_that_succeeded(
    shipped: list[ResultRow],
) -> None:
    stopped = [row for row in shipped if row.outcome in (M, B)]
    assert len(stopped) >= 30
    assert {row.attack for row in stopped} == SHIPPED
    for row in stopped:
        assert row.control is not None and row.control.outcome is S, (row.scenario, row.profile)
        assert row.reason.endswith(f"the control ({row.control.profile}, no defence) succeeded")


def test_shipped_rows_are_as_expected(shipped: list[ResultRow]) -> None:
    assert [(r.scenario, r.profile, r.outcome) for r in shipped if r.as_expected is False] == []
    assert not [r for r in shipped if r.outcome in (IN, X, E)]


# -- for each attack: parameters that fail without a defence ----------------------------------

INEFFECTIVE: list[Any] = [
    pytest.param("key-wearout", "mktme",
                 {"platform": {"reduced_width_bits": 20},
                  "params": {"max_pairs": 16, "trials": 1}},
                 {"key_rotation_blocks": 256},
                 {"platform": {"reduced_width_bits": 20},
                  "params": {"max_pairs": 4096, "trials": 4}},
                 id="key-wearout-too-few-pairs"),
    pytest.param("key-wearout", "mktme",
                 {"params": {"max_pairs": 512, "trials": 1}},
                 {"key_rotation_blocks": 256},
                 {"platform": {"reduced_width_bits": 20},
                  "params": {"max_pairs": 4096, "trials": 4}},
                 id="key-wearout-128-bit-blocks"),
    pytest.param("torn-live-patch", "mktme",
                 {"params": {"fetch_chunk": 8, "poke_chunk": 5}},
                 {"text_poke_bp": True},
                 {"params": {"fetch_chunk": 8}},
                 id="torn-live-patch-atomic-fetch-and-poke"),
    pytest.param("torn-live-patch", "mktme",
                 {"params": {"old": "jmp8", "new": "jmp8"}},
                 {"text_poke_bp": True},
                 {"params": {"old": "nop2", "new": "jmp8"}},
                 id="torn-live-patch-one-byte-differs"),
    pytest.param("dirty-page-leak", "mktme",
                 {"params": {"constant_access": True, "secret_bytes": 8}},
                 {"dirty_all_pages": True},
                 {"params": {"secret_bytes": 8}},
                 id="dirty-page-leak-constant-access"),
    pytest.param("secretmem-exhaustion", "mktme",
                 {"platform": {"memory_pages": 4096, "secretmem_reserve_pages": 1024},
                  "params": {"pages_per_file": 16, "workload_pages": 0,
                             "victim_resident_pages": 1100}},
                 {"memlock_limit_pages": 8},
                 {"platform": {"memory_pages": 4096, "secretmem_reserve_pages": 1024},
                  "params": {"pages_per_file": 4096, "workload_pages": 0,
                             "victim_resident_pages": 1100}},
                 id="secretmem-exhaustion-too-few-pages"),
    pytest.param("attestation", "sev",
                 {"params": {"backdoor": "\0\0\0", "image_bytes": 1024}},
                 None,
                 {"params": {"image_bytes": 1024}},
                 id="attestation-nul-backdoor"),
    pytest.param("ciphertext-side-channel", "sev-snp",
                 {"params": {"beside_flag": "counter", "secret_bytes": 16}},
                 None,
                 {"params": {"secret_bytes": 16}},
                 id="ciphertext-side-channel-counter-beside-the-flag"),
]
"""(attack, a defended engine, fields that make the control fail, a mitigation, the nearest
fields under which the control succeeds)."""


@pytest.mark.parametrize(("attack", "engine", "fails", "mitigation", "works"), INEFFECTIVE)
def test_parameters_that_fail_without_a_defence_are_ineffective(
    attack: str, engine: str, fails: dict[str, Any], mitigation: dict[str, Any] | None,
    works: dict[str, Any],
) -> None:
    control_engine = registry.attacks.get(attack).control_engine
    assert run(attack, control_engine, **works).outcome is S  # the contrast: it can work
    profiles = [(engine, fails), (control_engine, fails)]
    if mitigation is not None:
        profiles.append((engine, {**fails, "mitigations": mitigation}))
    for where, fields in profiles:
        row = run(attack, where, **fields)
        assert row.outcome is X, (where, row.reason)
        assert row.control is not None and row.control.profile == control_engine
        assert row.control.outcome in (M, B)
        assert FAILS in row.reason and row.reason.endswith(DOES_NOT_WORK)


@pytest.mark.parametrize(("fields", "want"), [
    ({"fetch_chunk": 8}, S),
    ({"fetch_chunk": 5}, S),
    ({"poke_chunk": 5}, S),
    ({"poke_chunk": 2, "fetch_chunk": 8}, S),
    ({"poke_chunk": 3, "fetch_chunk": 3}, X),
    ({"poke_chunk": 5, "fetch_chunk": 3}, X),
])
def test_a_live_patch_tears_unless_one_fetch_and_one_poke_cover_the_changed_bytes(
    fields: dict[str, int], want: Outcome
) -> None:
    """nop5 (0f 1f 44 00 00) and the call replacing it (e8 fb 07 00 00) differ in their first
    three bytes. A CPU fetching the whole instruction at once still sees it half-written when
    the patcher writes those bytes in two steps, and a write of all of them at once still
    lands between two fetches that split them: only when both steps cover the three bytes does
    no interleaving tear, and then the control fails too."""
    row = run("torn-live-patch", "none", params=fields)
    assert row.outcome is want, row.reason


@settings(max_examples=30, deadline=None)
@given(secret=st.text(st.characters(codec="utf-8"), min_size=8,
                      max_size=200),
       victim=st.sampled_from(["process", "guest"]), offset=st.integers(0, 3000))
def test_kernel_map_leak_has_no_parameters_that_fail_without_a_defence(
    secret: str, victim: str, offset: int
) -> None:
    """No ineffective parameter set exists: with no defence DRAM is plaintext (or TME, one key
    for all), and the KeyID-0 direct map reads any byte of any page. Only the amount of
    evidence varies: a secret too short or too repetitive is inconclusive, never a failure."""
    offset = min(offset, 4096 - len(secret.encode()))
    row = run("program", "none", params=leak(secret, victim=victim, offset=offset))
    _worked(row)


@settings(max_examples=30, deadline=None)
@given(secret=st.binary(min_size=8, max_size=256).map(bytes.hex),
       victim=st.sampled_from(["process", "guest"]),
       attacker=st.sampled_from(["process", "guest"]),
       pages=st.integers(1, 32), read_with=st.sampled_from(["own_key", "victim_key"]))
def test_freed_data_leak_has_no_parameters_that_fail_without_a_defence(
    secret: str, victim: str, attacker: str, pages: int, read_with: str
) -> None:
    """No ineffective parameter set exists: without init_on_free the freed frame keeps the
    secret in plaintext, and the allocator hands the victim's frames back to the next
    allocation, so the attacker finds it among its first ``victim_pages`` pages (or reads it
    through the stale mapping)."""
    row = run("program", "none", params=freed(secret, victim=victim, attacker=attacker,
                                              pages=pages, stale=read_with == "victim_key"))
    _worked(row)


@settings(max_examples=20, deadline=None)
@given(size=st.integers(5, 1024), victim=st.sampled_from(["process", "guest"]),
       attacker=st.sampled_from(["process", "guest"]))
def test_cross_domain_replay_has_no_parameters_that_fail_without_a_defence(
    size: int, victim: str, attacker: str
) -> None:
    """No ineffective parameter set exists: under the control every domain shares one key
    (none: no key at all), so ciphertext written back at the same address decrypts for any
    owner, whatever the secret's size or the domains' kinds."""
    row = run("program", "none", params=replay(size=size, victim=victim, attacker=attacker))
    _worked(row)


@pytest.mark.parametrize(("old", "new"), [
    ("balance=0000100", "balance=0000000"),
    ("ABCD", "ABCE"),
    ("A" * 100, "B" * 100),
    ("x" * 1024, "y" * 1024),
    ("\u00e9t\u00e9", "hiver"),
    ("nonce=00000001", "nonce=00000002"),
])
def test_hypervisor_replay_has_no_parameters_that_fail_without_a_defence(old: str,
                                                                         new: str) -> None:
    """No ineffective parameter set exists: under SEV (the control) nothing checks the
    integrity of guest memory, so any saved ciphertext written back decrypts to the old value,
    of any length the parameters allow."""
    row = run("program", "sev", params=rollback(old, new))
    assert row.outcome is S, row.reason
    assert row.evidence.recovered == old.encode()


def test_a_short_hypervisor_replay_is_inconclusive_not_a_failure() -> None:
    """Three bytes rolled back are 2^-24 by chance: a blind write does that too often."""
    row = run("program", "sev", params=rollback("ok!", "no!"))
    assert row.outcome is IN, row.reason
    assert row.evidence.recovered == b"ok!" and row.chance_log2 == -24.0


@pytest.mark.parametrize(("digits", "trials", "victim", "attacker"), [
    (1, 10, "guest", "guest"),
    (2, 5, "process", "guest"),
    (3, 4, "guest", "process"),
    (4, 4, "process", "process"),
    (6, 4, "guest", "guest"),
])
def test_capture_compare_has_no_parameters_that_fail_without_a_defence(
    digits: int, trials: int, victim: str, attacker: str
) -> None:
    """No ineffective parameter set exists: with one key for all (or none) the dictionary
    always holds the PIN, and its ciphertext at the same address is the captured one. A
    single PIN of at most 8 digits is always inconclusive (2^-26.6 at best); enough trials
    (2^-32 in all) make it succeed."""
    params = pins(digits, victim=victim, attacker=attacker)
    once = run("program", "none", params=params)
    assert once.outcome is IN and once.evidence.recovered == once.evidence.secret
    row = run("program", "none", params=params, trials=trials)
    assert row.outcome is S, row.reason
    assert row.trials is not None and row.trials.successes == trials


def _worked(row: ResultRow) -> None:
    """The attack recovered the secret, and the verdict says so as far as the evidence goes."""
    assert row.evidence.recovered == row.evidence.secret, row.reason
    assert row.chance_log2 is not None
    assert row.outcome is (S if row.chance_log2 <= -32 else IN), row.reason


# -- acceptance classes -----------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["none", "mktme"])
def test_a_secret_of_bytes_a_defence_writes_credits_no_defence(engine: str) -> None:
    row = run("program", engine, params=freed("\0" * 20 + "xyz"),
              mitigations={"init_on_free": True})
    assert row.outcome is IN, row.reason
    assert row.control is not None and row.control.outcome is IN
    assert "is inconclusive too, so no defence can be credited" in row.reason


@pytest.mark.parametrize(("attack", "params"), [
    ("program", leak(size=1)), ("program", freed(size=1)), ("program", replay(size=1)),
    ("dirty-page-leak", {"secret_bytes": 1}), ("attestation", {"secret_bytes": 1})])
def test_a_one_byte_secret_is_inconclusive(attack: str, params: dict[str, Any]) -> None:
    row = run(attack, "none", params=params)
    assert row.outcome is IN, row.reason
    assert row.evidence.recovered == row.evidence.secret
    assert row.chance_log2 is not None and row.chance_log2 >= -8.0
    assert row.control is not None and row.control.outcome is IN


def test_a_victim_without_a_keyid_is_an_error_not_a_block() -> None:
    """One KeyID (keyid_bits 1) for two VMs: the attacker's takes it, and the victim's VM,
    created after it, finds none left. The platform ran out of KeyIDs: the run failed, no
    defence blocked anything."""
    program = leak()
    program["threat"] = [*program["threat"], "chosen_plaintext"]
    program["program"] = [{"op": "create_domain", "by": "attacker", "args": {"kind": "guest"},
                           "as": "mine"}, *program["program"]]
    row = run("program", "mktme", platform={"keyid_bits": 1}, params=program)
    assert row.outcome is E, row.reason
    assert row.reason.startswith("the platform failed: no free KeyID")
    assert row.control is not None and row.control.outcome is S  # the attack itself works


def test_running_out_of_keyids_is_an_error_never_a_block() -> None:
    """The secretmem victim is set up first: with one KeyID it holds it, and the attacker's
    process finds none. A KeyID shortage defends nothing against secretmem exhaustion: the run
    is an error (the platform failed), never ``blocked``; the control, with no KeyIDs to run
    out of, succeeds."""
    row = run("secretmem-exhaustion", "mktme",
              platform={"keyid_bits": 1, "memory_pages": 4096, "secretmem_reserve_pages": 1024},
              params={"workload_pages": 0})
    assert row.outcome is E, row.reason
    assert row.reason == "the platform failed: no free KeyID (all 1 in use)"
    assert row.control is not None and row.control.outcome is S


def test_key_wearout_with_too_few_pairs_under_mktme_is_ineffective_not_mitigated() -> None:
    fields: dict[str, Any] = {"platform": {"reduced_width_bits": 24},
                              "params": {"max_pairs": 64, "trials": 2}}
    for mitigations in ({}, {"key_rotation_blocks": 256}):
        row = run("key-wearout", "mktme", mitigations=mitigations, **fields)
        assert row.outcome is X, row.reason
        assert "no internal collision within 64 blocks" in row.reason
        assert row.control is not None and row.control.profile == "tme"
        assert row.control.outcome is M


# -- trials -----------------------------------------------------------------------------------

def test_four_trials_of_capture_compare_succeed() -> None:
    row = run("program", "none", params=pins(4), trials=4)
    assert row.outcome is S, row.reason
    assert row.trials is not None and row.trials.successes == 4 and row.trials.trials == 4
    assert row.trials.low > 0.5
    assert row.chance_log2 == pytest.approx(log2_tail(4, 4, 1e-4))
    assert row.chance_log2 == pytest.approx(-53.15, abs=0.01)
    assert row.control is not None and row.control.trials == row.trials


def test_defended_trials_are_judged_against_the_controls_trials() -> None:
    row = run("program", "mktme", params=pins(4), trials=4)
    assert row.outcome is M, row.reason
    assert row.trials is not None and row.trials.successes == 0
    assert row.control is not None and row.control.outcome is S
    assert row.control.trials is not None and row.control.trials.successes == 4


def test_the_first_trial_is_the_single_run() -> None:
    once = run("program", "none", params=pins(3))
    four = run("program", "none", params=pins(3), trials=4)
    assert once.evidence == four.evidence and once.steps == four.steps


def test_trials_reproduce() -> None:
    a = run("program", "tme", seed=5, params=pins(4), trials=4).to_json()
    b = run("program", "tme", seed=5, params=pins(4), trials=4).to_json()
    c = run("program", "tme", seed=6, params=pins(4), trials=4).to_json()
    assert a == b
    assert a["evidence"]["secret"] != c["evidence"]["secret"]


def test_results_do_not_depend_on_the_number_of_workers() -> None:
    fields: dict[str, dict[str, Any]] = {
        "pins": {"params": pins(3), "trials": 4},
        "leak": {"params": leak(), "mitigations": {"secretmem": True},
                 "platform": {"memory_pages": 1024}},
        "rollback": {"params": rollback(), "platform": {"ciphertext_hiding": True}},
        "torn": CHEAP["torn-live-patch"]}
    jobs = [_job("program" if name != "torn" else "torn-live-patch", engine, seed=9,
                 **fields[name])
            for name, engine in [("pins", "mktme"), ("pins", "none"), ("leak", "tme"),
                                 ("leak", "sev"), ("rollback", "sev-snp"), ("torn", "mktme")]]
    runs, _ = units(jobs)
    assert len(runs) == 9  # six jobs, three controls (the PINs' is one of the jobs)
    seen: list[ResultRow] = []
    one = run_jobs(jobs, workers=1, progress=seen.append)
    two = run_jobs(jobs, workers=2)
    assert len(seen) == len(runs)
    assert [r.to_json() for r in one] == [r.to_json() for r in two]
    assert [r.to_json() for r in one] == [run_job(job).to_json() for job in jobs]
    assert [r.outcome for r in one] == [M, S, B, B, B, M]


class _AlwaysMitigated(Attack[AttackParams]):
    """Stands in for an attack that never works, whatever the engine."""

    kind = "never"
    title = "never works"
    capabilities = ()
    Params = AttackParams
    Metrics = BaseMetrics

    def run(self, ctx: AttackContext, params: AttackParams) -> Verdict:
        return Verdict(M, "got nothing", 0.0)


def test_a_job_carrying_its_own_attack_gets_a_control_of_its_own() -> None:
    """A job with an attack object of its own never shares the registry attack's control:
    run_jobs and run_job judge it alike."""
    s = scenario("program", params=leak())
    jobs = [Job(s, "<t>", "none", 1), Job(s, "<t>", "tme", 1, attack=_AlwaysMitigated())]
    runs, controls = units(jobs)
    assert len(runs) == 3 and controls == [0, 2]
    together = run_jobs(jobs)
    assert together[0].outcome is S
    assert together[1].outcome is X, together[1].reason
    assert together[1] == run_job(jobs[1])


def test_a_dirty_page_text_secret_is_weighed_by_its_alphabet() -> None:
    """Four text bytes are 2^-26.3 to a guesser who knows they are text, not 2^-32."""
    row = run("dirty-page-leak", "none", params={"secret": "abcd"})
    assert row.outcome is IN, row.reason
    assert row.chance_log2 == pytest.approx(4 * -6.5699, abs=1e-3)
    row = run("dirty-page-leak", "none", params={"secret_bytes": 4})
    assert row.outcome is S and row.chance_log2 == -32.0
