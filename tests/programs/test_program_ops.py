"""Each operation's effect on the machine, asserted exactly, and the phases of a run."""

from __future__ import annotations

import re
from typing import Any

import pytest
from _support import programs
from _support.program_steps import EXAMPLES, SECRET, build, step

from testbed.attacks import AttackContext, Phase
from testbed.errors import AttackError, PageFault, RmpViolation
from testbed.platform import HOST, Domain, Mitigations
from testbed.programs._interpreter import execute
from testbed.programs._runtime import Runtime
from testbed.programs._values import Location
from testbed.results import Actor
from testbed.types import PAGE_SIZE, PhysAddr

ME = [step("create_domain", "attacker", "me", kind="guest"),
      step("alloc_pages", "attacker", "mine", domain="$me")]
CAPTURE = step("capture", "attacker", "line", address="$secret")


def run(steps: list[dict[str, Any]], threat: list[str] | tuple[str, ...] = (),
        engine: str = "none", mitigations: Mitigations | None = None,
        **kw: Any) -> tuple[Runtime, AttackContext]:
    ctx = programs.context(engine, mitigations=mitigations)
    return execute(ctx, build(steps, threat, **kw)), ctx


def loc(rt: Runtime, name: str) -> Location:
    value = rt.values[name]
    assert isinstance(value, Location)
    return value


def test_create_domain_gives_each_domain_its_key_where_the_engine_does() -> None:
    rt, ctx = run(ME, engine="mktme")
    victim, me = rt.values["victim"], rt.values["me"]
    assert isinstance(victim, Domain) and isinstance(me, Domain)
    assert victim.kind.value == me.kind.value == "guest"
    assert HOST != victim.slot != me.slot != HOST
    first = ctx.log.steps[0]
    assert (first.actor, first.action, first.capability) == (Actor.VICTIM, "creates a guest", "")
    assert first.detail == f"guest with key slot {victim.slot}; as victim"


def test_alloc_pages_owns_frames_and_maps_guest_pages() -> None:
    rt, ctx = run([step("alloc_pages", "victim", "three", domain="$victim", count=3)])
    three, victim = loc(rt, "three"), rt.values["victim"]
    assert len(three.addrs) == 3 and three.size == PAGE_SIZE
    assert all(ctx.machine.owner(pa) is victim for pa in three.addrs)
    assert isinstance(victim, Domain)
    assert [victim.npt[g] * PAGE_SIZE for g in three.gpns] == list(three.addrs)


def test_alloc_until_takes_the_victims_freed_frame_or_fails() -> None:
    taken = [step("destroy_domain", "victim", domain="$victim"), *ME[:1],
             step("alloc_pages", "attacker", "frame", domain="$me", until="$secret")]
    rt, ctx = run(taken)
    assert loc(rt, "frame").addrs == loc(rt, "secret").addrs
    assert ctx.machine.owner(loc(rt, "secret").addrs[0]) is rt.values["me"]
    with pytest.raises(AttackError, match="did not get frame 1 back in 1 allocation"):
        run([*ME[:1], step("alloc_pages", "attacker", "frame", domain="$me", until="$secret")])


def test_a_secret_page_leaves_the_direct_map_under_secretmem() -> None:
    steps = [step("alloc_pages", "victim", "hidden", domain="$victim", secret=True),
             step("read_direct_map", "attacker", "x", address="$hidden", length=8)]
    run(steps, ["kernel_read_bug"])
    # The mitigation's default secretmem=2M reservation needs more than 512 frames.
    ctx = programs.context("none", pages=1024, mitigations=Mitigations(secretmem=True))
    with pytest.raises(PageFault, match="removed from the direct map"):
        execute(ctx, build(steps, ["kernel_read_bug"]))


@pytest.mark.parametrize(("init", "left"), [(False, SECRET.encode()), (True, bytes(32))])
def test_free_pages_gives_the_frame_back_cleared_by_init_on_free(init: bool,
                                                                 left: bytes) -> None:
    rt, ctx = run([step("free_pages", "victim", address="$vpage")],
                  mitigations=Mitigations(init_on_free=init))
    pa = loc(rt, "secret").addrs[0]
    assert ctx.machine.owner(pa) is None
    assert ctx.machine.dram(pa, 32) == left


def test_destroy_domain_frees_everything_and_releases_the_key() -> None:
    rt, ctx = run([step("destroy_domain", "victim", domain="$victim")], engine="mktme")
    victim = rt.values["victim"]
    assert isinstance(victim, Domain) and not victim.alive and victim.pages == []
    assert ctx.machine.owner(loc(rt, "secret").addrs[0]) is None


def test_store_secret_writes_text_records_the_truth() -> None:
    rt, ctx = run([])
    pa = loc(rt, "secret").addrs[0]
    assert ctx.machine.dram(pa, 32) == SECRET.encode() == ctx.log.secret
    assert ctx.log.address == pa and rt.space_log2 is None


def test_store_secret_pin_and_random_bytes() -> None:
    pin = [step("create_domain", "victim", "v", kind="process"),
           step("alloc_pages", "victim", "p", domain="$v"),
           step("store_secret", "victim", "s", address="$p", offset=128, digits=6,
                prefix="PIN:", pad_to=64)]
    data = build([*pin, step("constant", "attacker", "k", text="x")], goal={"recovered": "k"},
                 prelude=False)
    ctx = programs.context("none")
    state = execute(ctx, data)
    secret = ctx.log.secret
    assert secret is not None and re.fullmatch(rb"PIN:\d{6}", secret)
    pa = loc(state, "s").addrs[0]
    assert pa % PAGE_SIZE == 128 and ctx.machine.dram(pa, 64) == secret.ljust(64, b"\0")
    assert state.space_log2 == pytest.approx(6 * 3.321928094887362)
    rand = [*pin[:2], step("store_secret", "victim", "s", address="$p", size=24),
            step("constant", "attacker", "k", text="x")]
    ctx = programs.context("none")
    state = execute(ctx, build(rand, goal={"recovered": "k"}, prelude=False))
    assert ctx.log.secret is not None and len(ctx.log.secret) == 24
    assert ctx.machine.dram(loc(state, "s").addrs[0], 24) == ctx.log.secret


def test_store_and_read_own() -> None:
    steps = [*ME, step("store", "attacker", "mark", address="$mine", offset=5, hex="c0ffee"),
             step("read_own", "attacker", "back", address="$mark"),
             step("store", "victim", "note", address="$vpage", offset=100, text="hello")]
    rt, ctx = run(steps, ["chosen_plaintext"], engine="tme")
    mark = loc(rt, "mark")
    assert mark.data == b"\xc0\xff\xee" and mark.addrs[0] == loc(rt, "mine").addrs[0] + 5
    assert rt.values["back"] == b"\xc0\xff\xee"
    assert ctx.machine.dram(mark.addrs[0], 3) != b"\xc0\xff\xee"  # TME encrypts it in DRAM
    note = loc(rt, "note")
    assert ctx.machine.read(note.domain, note.addrs[0], 5) == b"hello"
    assert rt.victim_writes[(note.domain.name, note.addrs[0])] == b"hello"


@pytest.mark.parametrize(("init", "want"), [(False, SECRET.encode()), (True, bytes(32))])
def test_read_uninit_reads_the_reallocated_frame(init: bool, want: bytes) -> None:
    steps = [step("destroy_domain", "victim", domain="$victim"), *ME[:1],
             step("alloc_pages", "attacker", "frame", domain="$me", until="$secret"),
             step("read_uninit", "attacker", "got", address="$frame")]
    rt, _ = run(steps, ["uninit_page_read"], mitigations=Mitigations(init_on_free=init))
    assert rt.values["got"] == want


@pytest.mark.parametrize(("engine", "equal"), [("tme", True), ("mktme", False)])
def test_read_direct_map_decrypts_with_keyid_0(engine: str, equal: bool) -> None:
    rt, ctx = run(EXAMPLES["read_direct_map"][0], ["kernel_read_bug"], engine=engine)
    pa = loc(rt, "secret").addrs[0]
    assert rt.values["got"] == ctx.machine.kernel_read(ctx.machine.direct_map.virt(pa), 32)
    assert (rt.values["got"] == SECRET.encode()) is equal
    va = ctx.machine.direct_map.virt(pa)
    assert ctx.log.steps[3].detail == f"virtual address {va:#x}; as got"


def test_read_keyid_map_reads_with_the_victims_keyid() -> None:
    rt, _ = run(EXAMPLES["read_keyid_map"][0], ["uninit_page_read"], engine="mktme")
    assert rt.values["got"] == SECRET.encode()  # the key is still programmed
    gone = [step("destroy_domain", "victim", domain="$victim"), *EXAMPLES["read_keyid_map"][0]]
    rt, _ = run(gone, ["uninit_page_read"], engine="mktme")
    assert rt.values["got"] != SECRET.encode()  # CLEAR_KEY: the KeyID now uses the TME key


def test_capture_and_write_bus_move_raw_lines() -> None:
    steps = [CAPTURE, step("write_bus", "attacker", address="$vpage", offset=64, data="$line")]
    rt, ctx = run(steps, ["bus_interposer"], engine="tme")
    pa = loc(rt, "secret").addrs[0]
    assert rt.values["line"] == ctx.machine.dram(pa, 64)  # 32 bytes asked: one whole line
    assert ctx.machine.dram(PhysAddr(pa + 64), 64) == rt.values["line"]
    assert ctx.log.captured == rt.values["line"]
    assert ctx.machine.bus.lines_read == 1 and ctx.machine.bus.lines_written == 1


def test_hv_read_sees_ciphertext_or_the_hidden_ff() -> None:
    rt, ctx = run(EXAMPLES["hv_read"][0], ["malicious_hypervisor"], engine="sev")
    assert rt.values["saved"] == ctx.machine.dram(loc(rt, "vpage").addrs[0], 64)
    assert ctx.log.steps[3].action == "reads guest memory through its own mapping"
    ctx = programs.context("sev-snp", ciphertext_hiding=True)
    state = execute(ctx, build(EXAMPLES["hv_read"][0], ["malicious_hypervisor"]))
    assert state.values["saved"] == b"\xff" * 64


def test_hv_write_lands_under_sev_and_faults_under_snp() -> None:
    steps = [CAPTURE, step("hv_write", "hypervisor", address="$vpage", offset=128,
                           data="$line")]
    rt, ctx = run(steps, ["bus_interposer", "malicious_hypervisor"], engine="sev")
    assert ctx.machine.dram(PhysAddr(loc(rt, "vpage").addrs[0] + 128), 64) == rt.values["line"]
    with pytest.raises(RmpViolation):
        run(steps, ["bus_interposer", "malicious_hypervisor"], engine="sev-snp")


def test_remap_then_guest_read_sees_the_other_frame_or_faults_under_snp() -> None:
    steps = [*EXAMPLES["remap_guest_page"][0][:1],
             step("store", "victim", "there", address="$other", text="other page"),
             EXAMPLES["remap_guest_page"][0][1],
             step("guest_read", "victim", "seen", address="$vpage", length=10)]
    rt, ctx = run(steps, ["malicious_hypervisor"], engine="sev")
    victim, vpage, other = rt.values["victim"], loc(rt, "vpage"), loc(rt, "other")
    assert isinstance(victim, Domain)
    assert victim.npt[vpage.gpns[0]] * PAGE_SIZE == other.addrs[0]
    assert rt.values["seen"] == b"other page"
    ctx = programs.context("sev-snp")
    with pytest.raises(RmpViolation, match="remapped"):
        execute(ctx, build(steps, ["malicious_hypervisor"]))
    assert ctx.log.victim_refusal is not None  # the guest met it: a failed run, not a block
    assert ctx.log.phase is Phase.ATTACK


def test_rotate_key_reencrypts_and_keeps_the_plaintext() -> None:
    ctx = programs.context("mktme")
    prog = build([step("read_own", "victim", "before", address="$secret"),
                  *EXAMPLES["rotate_key"][0],
                  step("read_own", "victim", "after", address="$secret")])
    first = programs.context("mktme")
    execute(first, build([]))
    rt = execute(ctx, prog)
    pa = loc(rt, "secret").addrs[0]
    assert ctx.machine.rotations == 1
    assert rt.values["before"] == rt.values["after"] == SECRET.encode()
    assert ctx.machine.dram(pa, 32) != first.machine.dram(pa, 32)


def test_reboot_replaces_the_machine_and_sets_the_victim_up_again() -> None:
    ctx = programs.context("tme")
    old = ctx.machine
    steps = [CAPTURE, step("reboot", "kernel"),
             step("create_domain", "victim", "v2", kind="guest"),
             step("alloc_pages", "victim", "p2", domain="$v2"),
             step("store", "victim", "x2", address="$p2", text="after the reboot")]
    rt = execute(ctx, build(steps, ["bus_interposer"], goal={"victim_reads": "x2"}))
    assert ctx.machine is not old and ctx.machine.memory.pages == old.memory.pages
    pa = loc(rt, "secret").addrs[0]
    assert loc(rt, "p2").addrs[0] == pa  # the same frame, on a new machine with a new key
    assert ctx.machine.dram(pa, 64) != old.dram(pa, 64) and ctx.machine.bus.lines_read == 0
    assert rt.values["line"] == old.dram(pa, 64)  # bytes survive
    assert ctx.log.phase is Phase.SETUP  # no attacker step since: the victim is set up again
    assert [s.actor for s in ctx.log.steps[-4:]] == [Actor.KERNEL, *[Actor.VICTIM] * 3]
