"""The serve and request_page steps (a guest's network service returns the page the victim
chose to serve) and SEVered: a remapped nested page table makes the service return another
page's plaintext under SEV; under SEV-SNP the RMP check of the access the attacker's request
causes fails (a nested page fault), so the attack is blocked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from _support import programs
from _support.paths import SCENARIOS
from _support.program_steps import SECRET, build, step
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from testbed.errors import RmpViolation, ScenarioError
from testbed.platform import ENGINES as BUILTIN_ENGINES
from testbed.platform import Domain, KeySource
from testbed.programs import Program
from testbed.programs._interpreter import ProgramMetrics, execute
from testbed.programs._values import Location
from testbed.scenarios import Job, load_scenario, run_job
from testbed.types import PAGE_SIZE, Outcome, PhysAddr

ENGINES = list(BUILTIN_ENGINES)
INDEX = "<html>index</html>"
SEVERED = [
    step("alloc_pages", "victim", "served", domain="$victim"),
    step("store", "victim", "index", address="$served", text=INDEX),
    step("serve", "victim", address="$served"),
    step("remap_guest_page", "hypervisor", address="$served", to="$vpage"),
    step("request_page", "attacker", "leaked", address="$index", length=len(SECRET)),
]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_service_returns_its_page_in_plaintext_under_every_engine(engine: str) -> None:
    steps = [step("alloc_pages", "victim", "served", domain="$victim"),
             step("store", "victim", "index", address="$served", text=INDEX),
             step("serve", "victim", address="$served"),
             step("request_page", "attacker", "reply", address="$index")]
    ctx = programs.context(engine)
    rt = execute(ctx, build(steps))
    assert rt.values["reply"] == INDEX.encode()
    assert ctx.log.captured == INDEX.encode()  # what the attacker saw is its evidence
    last = ctx.log.steps[-2]  # the last is the constant build() adds
    assert last.action.startswith("asks the guest's network service for its guest page 1")


def _xex(key: bytes, pa: int, data: bytes) -> bytes:
    """SEV's XEX model, block by block with AES-ECB: C = AES_K(P ^ T) ^ T, T = AES_K(pa)."""
    ecb = Cipher(algorithms.AES(key), modes.ECB())
    out = b""
    for i in range(0, len(data), 16):
        enc = ecb.encryptor()
        t = enc.update((pa + i).to_bytes(16, "little"))
        block = bytes(a ^ b for a, b in zip(data[i : i + 16].ljust(16, b"\0"), t, strict=True))
        out += bytes(a ^ b for a, b in zip(enc.update(block), t, strict=True))
    return out


def test_severed_under_sev_the_service_sends_the_other_pages_plaintext() -> None:
    ctx = programs.context("sev")
    rt = execute(ctx, build(SEVERED, ["malicious_hypervisor"]))
    assert rt.values["leaked"] == SECRET.encode()
    victim, vpage, served = rt.values["victim"], rt.values["vpage"], rt.values["served"]
    assert isinstance(victim, Domain) and isinstance(vpage, Location)
    assert isinstance(served, Location)
    # The served guest page is now backed by the secret's frame...
    assert victim.npt[served.gpns[0]] * PAGE_SIZE == vpage.addrs[0]
    # ...which still holds the guest's ciphertext of the secret, recomputed independently: the
    # guest decrypted it with its own key, the hypervisor never had one.
    (key,) = [KeySource(np.random.default_rng(1)).key(16)]
    secret = SECRET.encode()
    padded = len(secret) + (-len(secret)) % 16
    dram = ctx.machine.dram(PhysAddr(vpage.addrs[0]), padded)
    assert dram == _xex(key, vpage.addrs[0], secret.ljust(padded, b"\0"))
    assert secret not in dram


def test_severed_under_snp_the_rmp_refuses_the_access_the_request_causes() -> None:
    ctx = programs.context("sev-snp")
    with pytest.raises(RmpViolation, match=r"^#NPF \(RMP\): .* validated for guest page 0, "
                       "not 1"):
        execute(ctx, build(SEVERED, ["malicious_hypervisor"]))
    assert ctx.log.victim_refusal is None  # the attacker's step met it: a block, not an error
    m = ctx.log.metrics
    assert isinstance(m, ProgramMetrics) and m.refused_step == 3 + len(SEVERED) - 1


def test_severed_outcomes_sev_succeeded_snp_blocked_elsewhere_not_applicable() -> None:
    prog = build(SEVERED, ["malicious_hypervisor"], goal={"recovered": "leaked"})
    rows = {engine: programs.run(prog, engine) for engine in ENGINES}
    assert rows["sev"].outcome is Outcome.SUCCEEDED, rows["sev"].reason
    assert rows["sev"].evidence.recovered == SECRET.encode() == rows["sev"].evidence.secret
    assert rows["sev-snp"].outcome is Outcome.BLOCKED, rows["sev-snp"].reason
    assert rows["sev-snp"].evidence.recovered is None
    for engine in ("none", "tme", "mktme"):
        assert rows[engine].outcome is Outcome.NOT_APPLICABLE, rows[engine].reason


_SERVED = [step("alloc_pages", "victim", "served", domain="$victim"),
           step("serve", "victim", address="$served")]


@pytest.mark.parametrize(("steps", "threat", "words"), [
    ([step("create_domain", "victim", "proc", kind="process"),
      step("alloc_pages", "victim", "ppage", domain="$proc"),
      step("request_page", "attacker", "r", address="$ppage", length=8)], [],
     "is a process's page"),
    ([step("create_domain", "victim", "proc", kind="process"),
      step("alloc_pages", "victim", "ppage", domain="$proc"),
      step("serve", "victim", address="$ppage")], [],
     "a guest's network service serves a page of guest memory"),
    ([step("create_domain", "attacker", "me", kind="guest"),
      step("alloc_pages", "attacker", "mine", domain="$me"),
      step("serve", "attacker", address="$mine")], [],
     "serve is done by the victim"),
    ([step("serve", "victim", address="$vpage"),
      step("request_page", "hypervisor", "r", address="$secret")], [],
     "needs capability malicious_hypervisor"),
    ([step("request_page", "attacker", "r", address="$secret", length=5000)], [],
     "less than or equal to 4096"),
    # No capability and no served page: the secret's page cannot be asked for.
    ([step("request_page", "attacker", "r", address="$secret")], [],
     "not a page the guest's service serves: no earlier serve step"),
    ([*_SERVED, step("request_page", "attacker", "r", address="$secret")], [],
     r"not a page the guest's service serves: the service serves only the page\(s\) named "
     r"by step\(s\) 4"),
    ([*_SERVED, step("request_page", "hypervisor", "r", address="$secret")],
     ["malicious_hypervisor"], "not a page the guest's service serves"),
    # Served later does not count.
    ([step("request_page", "attacker", "r", address="$secret"),
      step("serve", "victim", address="$vpage")], [], "no earlier serve step"),
])
def test_request_page_is_checked_when_the_program_loads(
        steps: list[dict[str, object]], threat: list[str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Program.model_validate(programs_doc(steps, threat))


def programs_doc(steps: list[dict[str, object]], threat: list[str],
                 goal: dict[str, object] | None = None) -> dict[str, object]:
    from _support.program_steps import doc

    return doc(steps, threat, goal)


def test_the_shipped_severed_scenario_matches_its_expectations() -> None:
    scenario, source = load_scenario(SCENARIOS / "34-severed-remap.yaml")
    assert sorted(scenario.expect) == sorted(ENGINES)
    for engine in scenario.engines:
        row = run_job(Job(scenario, source, engine, seed=2))
        assert row.outcome is scenario.expect[engine], (engine, row.reason)
    sev = run_job(Job(scenario, source, "sev", seed=2))
    assert sev.evidence.recovered == sev.evidence.secret


def test_the_refused_request_is_in_the_timeline_with_the_rmp_check() -> None:
    ctx = programs.context("sev-snp")
    with pytest.raises(RmpViolation):
        execute(ctx, build(SEVERED, ["malicious_hypervisor"]))
    last = ctx.log.steps[-1]
    assert last.action == "request_page: refused"
    assert "#NPF (RMP)" in last.detail
    assert "validated for guest page 0, not 1" in last.detail
    assert ctx.log.steps[-2].action.startswith("points guest page 1 at frame")


def test_an_unserved_request_in_a_scenario_file_names_file_line_and_argument(
        tmp_path: Path) -> None:
    """The program that read the secret's page with no capability under every engine."""
    data = programs_doc([step("request_page", "attacker", "leaked", address="$secret")], [],
                        goal={"recovered": "leaked"})
    text = yaml.safe_dump({"id": "ask-for-the-key", "title": "ask for the key", **data,
                           "teaching": {"summary": "x"}}, sort_keys=False)
    path = tmp_path / "ask.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    lines = text.splitlines()
    op = next(i for i, t in enumerate(lines, 1) if "op: request_page" in t)
    line = next(i for i, t in enumerate(lines[op:], op + 1) if "address: $secret" in t)
    assert info.value.one_line() == (
        f"{path}:{line}: program[3].args.address: page 0 of $secret is not a page the guest's "
        "service serves: no earlier serve step names a page for the service; a request gets "
        "the served page, whatever frame the nested page table puts behind it")


def test_the_served_page_is_what_any_request_gets_and_no_secret_without_the_hypervisor(
) -> None:
    """Served, requested, no remap: the reply is the index page under every engine; judged
    against the secret it is no success anywhere, and not applicable where the hypervisor is
    trusted (the step needs an engine that protects guests from it)."""
    steps = [*_SERVED, step("store", "victim", "index", address="$served", text=INDEX),
             step("request_page", "attacker", "reply", address="$index", length=len(SECRET))]
    prog = build(steps, [], goal={"recovered": "reply"})
    for engine in ENGINES:
        row = programs.run(prog, engine)
        if engine in ("sev", "sev-snp"):
            assert row.outcome is not Outcome.SUCCEEDED, (engine, row.reason)
            assert row.evidence.recovered is not None
            assert row.evidence.recovered.startswith(INDEX.encode())
        else:
            assert row.outcome is Outcome.NOT_APPLICABLE, (engine, row.reason)
