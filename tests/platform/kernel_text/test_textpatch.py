"""Live kernel-text patching: decoder, INT3 handler, CPUs and syncs, exploration."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.attacks.torn_live_patch import TornLivePatchParams, build
from testbed.errors import (
    ConfigError,
    DecodeError,
    InvalidPatch,
    TestbedError,
    TooManyInterleavings,
)
from testbed.platform.kernel_text.interleavings import (
    count_interleavings,
    explore_all,
    explore_random,
)
from testbed.platform.kernel_text.livepatch import PATCHER, ExecClass, LivePatch
from testbed.platform.kernel_text.patching import (
    OpKind,
    Patcher,
    PokeSite,
    Regs,
    TextSegment,
    poke_int3_handler,
    poke_site,
    text_poke_bp_ops,
    text_poke_ops,
)
from testbed.platform.kernel_text.x86 import NOP2, NOP5, InsnKind, decode, encode, insn_length

BASE = 0xFFFF_FFFF_8100_0000


# -- decoder ------------------------------------------------------------------------------
@pytest.mark.parametrize(("hexbytes", "kind", "length", "rel"), [
    ("e8 fb 07 00 00", InsnKind.CALL, 5, 0x7FB),
    ("e8 fb ff ff ff", InsnKind.CALL, 5, -5),
    ("e9 00 00 00 80", InsnKind.JMP32, 5, -(1 << 31)),
    ("e9 ff ff ff 7f", InsnKind.JMP32, 5, (1 << 31) - 1),
    ("eb 7f", InsnKind.JMP8, 2, 127),
    ("eb fe", InsnKind.JMP8, 2, -2),
    ("eb 80", InsnKind.JMP8, 2, -128),
    ("66 90", InsnKind.NOP2, 2, 0),
    ("0f 1f 44 00 00", InsnKind.NOP5, 5, 0),
    ("0f 1f 44 00 07", InsnKind.NOPL, 5, 0),
    ("0f 1f 00", InsnKind.NOPL, 3, 0),
    ("0f 1f c0", InsnKind.NOPL, 3, 0),
    ("0f 1f 40 00", InsnKind.NOPL, 4, 0),
    ("0f 1f 05 00 00 00 00", InsnKind.NOPL, 7, 0),
    ("0f 1f 80 00 00 00 00", InsnKind.NOPL, 7, 0),
    ("0f 1f 84 00 00 00 00 00", InsnKind.NOPL, 8, 0),
    ("0f 1f 04 25 00 00 00 00", InsnKind.NOPL, 8, 0),
    ("cc", InsnKind.INT3, 1, 0),
])
def test_decoder_table(hexbytes: str, kind: InsnKind, length: int, rel: int) -> None:
    raw = bytes.fromhex(hexbytes)
    insn = decode(raw + b"\xcc\xcc")  # bytes after the instruction are ignored
    assert (insn.kind, insn.length, insn.rel, insn.raw) == (kind, length, rel, raw)
    assert insn_length(raw) == length


def test_branch_targets_sign_extend_and_wrap() -> None:
    assert decode(bytes.fromhex("e8 fb ff ff ff")).target(BASE) == BASE
    assert decode(bytes.fromhex("eb fe")).target(BASE) == BASE
    assert decode(bytes.fromhex("eb 7f")).target(BASE) == BASE + 2 + 127
    assert decode(bytes.fromhex("e9 f0 ff ff ff")).target(0) == (1 << 64) - 11
    assert decode(NOP5).target(BASE) is None
    assert decode(bytes.fromhex("e8 00 01 00 00")).text(BASE) == f"call {BASE + 0x105:#x}"


def test_length_is_known_from_the_fewest_bytes() -> None:
    assert insn_length(b"\xe8") == 5
    assert insn_length(b"\x66") is None
    assert insn_length(b"\x0f") is None
    assert insn_length(b"\x0f\x1f") is None
    assert insn_length(b"\x0f\x1f\x44") == 5
    assert insn_length(b"\x0f\x1f\x04") is None  # mod 0, SIB: the base decides disp32
    assert insn_length(b"\x0f\x1f\x04\x25") == 8


@pytest.mark.parametrize(("hexbytes", "message"), [
    ("90", "invalid opcode 90"),
    ("66 05", "invalid opcode 66 05"),
    ("0f e8", "invalid opcode 0f e8"),
    ("0f 1f 48 00", "reg 1, not 0"),
    ("e8 00 00", "incomplete instruction"),
    ("0f 1f 44 00", "incomplete instruction"),
])
def test_decoder_refuses_garbage(hexbytes: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        decode(bytes.fromhex(hexbytes))
    assert isinstance(info.value, TestbedError)


@pytest.mark.parametrize(("kind", "target"), [
    ("call", BASE + 0x800), ("call", BASE - 0x1000),
    ("jmp32", (BASE + 0x7FFF_0000) & ((1 << 64) - 1)),  # past the top of the address space
    ("jmp8", BASE + 2 + 127), ("jmp8", BASE + 2 - 128)])
def test_encode_round_trips(kind: str, target: int) -> None:
    assert decode(encode(kind, BASE, target)).target(BASE) == target


def test_encode_refuses_out_of_reach_targets() -> None:
    with pytest.raises(ConfigError, match="rel8 reaches -128..127"):
        encode("jmp8", BASE, BASE + 2 + 128)
    with pytest.raises(ConfigError, match="needs a target"):
        encode("call", BASE)
    assert encode("nop2") == NOP2 and encode("nop5") == NOP5 and encode("int3") == b"\xcc"


# -- the INT3 handler -----------------------------------------------------------------------
def trap(site: PokeSite, at: int | None = None) -> tuple[bool, Regs]:
    regs = Regs((site.address if at is None else at) + 1)
    return poke_int3_handler({site.address: site}, regs), regs


def test_handler_emulates_call_by_pushing_the_return_address() -> None:
    site = poke_site(BASE, encode("call", BASE, BASE + 0x800))
    assert trap(site) == (True, Regs(BASE + 0x800, [BASE + 5]))


@pytest.mark.parametrize(("kind", "target", "length"), [
    ("jmp32", BASE + 0x900, 5), ("jmp8", BASE + 16, 2), ("jmp8", BASE - 100, 2)])
def test_handler_emulates_jumps(kind: str, target: int, length: int) -> None:
    site = poke_site(BASE, encode(kind, BASE, target))
    assert site.length == length
    assert trap(site) == (True, Regs(target, []))


@pytest.mark.parametrize(("nop", "emulated_as"), [(NOP2, "eb 00"), (NOP5, "e9 00 00 00 00")])
def test_handler_emulates_nops_as_jumps_by_zero(nop: bytes, emulated_as: str) -> None:
    site = poke_site(BASE, nop)
    assert site.emulate.raw == bytes.fromhex(emulated_as) and site.emulate.rel == 0
    assert trap(site) == (True, Regs(BASE + len(nop), []))


def test_handler_does_not_consume_an_explicit_int3() -> None:
    site = poke_site(BASE, encode("call", BASE, BASE + 0x800))
    assert trap(site, at=BASE + 16) == (False, Regs(BASE + 17, []))  # padding INT3, not ours
    assert poke_int3_handler({}, Regs(BASE + 1)) is False  # no patch in progress
    int3_site = poke_site(BASE, b"\xcc")  # a patch that writes an INT3: someone else's trap
    assert trap(int3_site) == (False, Regs(BASE + 1, []))


def test_handler_emulates_the_given_instruction_for_restored_text() -> None:
    # A kprobe's text: INT3 then stale bytes; meanwhile the handler emulates the detour jump.
    detour = encode("jmp32", BASE, BASE + 0xA00)
    site = poke_site(BASE, b"\xcc\x01\x02\x03\x04", emulate=detour)
    assert trap(site) == (True, Regs(BASE + 0xA00, []))
    ops = text_poke_bp_ops([site], 4)
    assert [op.data for op in ops if op.kind is OpKind.WRITE][-1] == b"\x01\x02\x03\x04"


@pytest.mark.parametrize(("text", "emulate", "message"), [
    (b"\xeb\x05\x90", None, "3 bytes given, but the instruction to emulate .jmp8, eb 05. is 2"),
    (NOP5, encode("jmp8", BASE, BASE + 4), "5 bytes given, but the instruction to emulate"),
    (bytes.fromhex("0f 1f 40 00"), None, "only 66 90 and 0f 1f 44 00 00"),
    (bytes.fromhex("0f 1f 44 00 01"), None, "only 66 90 and 0f 1f 44 00 00"),
    (b"\x90\x90", None, "does not decode: invalid opcode 90"),
    (b"\xe8\x00", None, "does not decode: incomplete"),
    (NOP5 + b"\x90", None, "6 bytes; a patch is 1..5"),
])
def test_patches_that_text_poke_bp_refuses(text: bytes, emulate: bytes | None,
                                           message: str) -> None:
    with pytest.raises(InvalidPatch, match=message) as info:
        poke_site(BASE, text, emulate)
    assert isinstance(info.value, ConfigError)


# -- patchers, CPUs and syncs ---------------------------------------------------------------
def text_with(*insns: bytes, stride: int = 16) -> TextSegment:
    data = bytearray(b"\xcc" * 256)
    for i, insn in enumerate(insns):
        data[stride * i : stride * i + len(insn)] = insn
    return TextSegment(BASE, data)


CALL = encode("call", BASE, BASE + 0x80)


def test_patch_plans_follow_the_source() -> None:
    sites = [poke_site(BASE, CALL), poke_site(BASE + 16, encode("jmp8", BASE + 16, BASE + 32))]
    plain = text_poke_ops(sites, 2)
    assert [(op.address - BASE, op.data) for op in plain] == [
        (0, CALL[:2]), (2, CALL[2:4]), (4, CALL[4:]), (16, b"\xeb\x0e")]
    bp = text_poke_bp_ops(sites, 4)
    assert [(op.kind.value, op.address - BASE if op.data else None, op.data) for op in bp] == [
        ("write", 0, b"\xcc"), ("write", 16, b"\xcc"), ("ipi", None, b""), ("wait", None, b""),
        ("write", 1, CALL[1:]), ("write", 17, b"\x0e"), ("ipi", None, b""), ("wait", None, b""),
        ("write", 0, b"\xe8"), ("write", 16, b"\xeb"), ("ipi", None, b""), ("wait", None, b"")]
    assert bp[0].publish == tuple(sites) and bp[-1].retract
    assert not any(op.publish or op.retract for op in bp[1:-1])


def test_sync_waits_for_a_cpu_in_the_middle_of_a_fetch() -> None:
    live = LivePatch(text_with(NOP5), [poke_site(BASE, CALL)], patcher="text_poke_bp", cpus=2,
                     fetch_chunk=2, trace=True)
    live.step(1)  # cpu1 fetches 0f 1f of the old NOP5
    live.step(PATCHER)  # INT3 on the first byte
    live.step(PATCHER)  # the IPI: cpu1 is mid-fetch, cpu2 at a boundary takes it at once
    assert not live.patcher_enabled() and live.enabled() == [1, 2]
    live.step(2)  # cpu2 starts after the IPI: it sees the INT3, the handler emulates the CALL
    assert not live.patcher_enabled()
    live.step(1)  # cpu1 reads 44 00: it still needs the fifth byte
    assert not live.patcher_enabled()
    live.step(1)  # cpu1 finishes its fetch from the unchanged tail: the whole old NOP5
    assert live.patcher_enabled()
    assert [(e.cpu, e.fetched, e.category) for e in live.executions] == [
        (2, b"\xcc", ExecClass.EMULATED), (1, NOP5, ExecClass.OLD)]
    assert live.executions[0].pushed == BASE + 5 and live.executions[0].next_ip == BASE + 0x80
    with pytest.raises(ConfigError, match="thread 2 cannot take a step"):
        live.step(2)
    assert live.schedule_text() == "1PP211"
    assert live.events is not None and "mid-fetch, to finish first: cpu1" in live.events[2]


def test_byte_wise_write_tears_a_fetch() -> None:
    live = LivePatch(text_with(NOP5), [poke_site(BASE, CALL)], patcher="text_poke", cpus=2)
    for thread in [PATCHER, 1, 1, 1, 1, 1]:  # e8 written, then cpu1 fetches byte by byte
        live.step(thread)
    torn = live.torn()
    assert len(torn) == 1 and torn[0].fetched == b"\xe8" + NOP5[1:]
    assert torn[0].kind is InsnKind.CALL and torn[0].next_ip == BASE + 5 + 0x441F


def test_explicit_int3_in_the_text_goes_to_the_normal_path() -> None:
    # A site that already holds an INT3 (a debugger's breakpoint) is executed as it is.
    live = LivePatch(text_with(b"\xcc"), [poke_site(BASE, b"\xcc")], patcher="text_poke_bp",
                     cpus=1)
    live.step(1)
    (e,) = live.executions
    assert (e.kind, e.emulated, e.next_ip, e.category) == (InsnKind.INT3, False, None,
                                                            ExecClass.OLD)


def test_live_patch_refuses_bad_setups() -> None:
    site = poke_site(BASE, CALL)
    with pytest.raises(InvalidPatch, match="overlap"):
        LivePatch(text_with(NOP5), [site, poke_site(BASE + 2, NOP2)], patcher="text_poke",
                  cpus=1)
    with pytest.raises(InvalidPatch, match="does not hold an instruction"):
        LivePatch(text_with(b"\x90"), [site], patcher="text_poke", cpus=1)
    with pytest.raises(ConfigError, match="cpus: must be 1..8, got 9"):
        LivePatch(text_with(NOP5), [site], patcher="text_poke", cpus=9)
    with pytest.raises(ConfigError, match="outside the text segment"):
        LivePatch(text_with(NOP5), [poke_site(BASE + 250, CALL)], patcher="text_poke", cpus=1)


# -- exploring interleavings ----------------------------------------------------------------
PATCHES = [("nop5", "call"), ("call", "nop5"), ("jmp32", "jmp32"), ("call", "call"),
           ("nop2", "jmp8"), ("jmp8", "nop2"), ("nop5", "jmp32")]
"""Pairs that differ in at least two bytes: a patch that changes one byte cannot tear."""


def live_patch(old: str, new: str, patcher: Patcher, cpus: int = 1, sites: int = 1,
               fetch_chunk: int = 1) -> LivePatch:
    """The attack's text and batch, with any number of CPUs (the attack wants 2..8)."""
    params = TornLivePatchParams.model_validate(
        {"sites": sites, "old": old, "new": new, "explore": "random"})
    return build(params.model_copy(update={"cpus": cpus, "fetch_chunk": fetch_chunk}), patcher)


@pytest.mark.parametrize(("old", "new"), PATCHES)
def test_every_interleaving_byte_wise_tears_and_the_protocol_never_does(old: str,
                                                                        new: str) -> None:
    plain = explore_all(live_patch(old, new, Patcher.TEXT_POKE))
    assert plain.exhaustive and plain.torn_interleavings > 0
    assert plain.first_torn is not None and plain.first_torn.torn()[0].fetched not in (
        plain.first_torn.old_insn(0).raw, plain.first_torn.sites[0].text)
    bp = explore_all(live_patch(old, new, Patcher.TEXT_POKE_BP))
    assert bp.torn_interleavings == 0 and bp.first_torn is None
    assert bp.counts[ExecClass.TORN] == 0 and bp.counts[ExecClass.EMULATED] > 0
    assert bp.interleavings == count_interleavings(live_patch(old, new, Patcher.TEXT_POKE_BP))
    assert bp.torn_instructions == frozenset()
    assert plain.torn_instructions == explore_all(live_patch(old, new, Patcher.TEXT_POKE),
                                                  reduction=False).torn_instructions


def test_a_patch_that_changes_one_byte_cannot_tear() -> None:
    old, new = encode("call", BASE, BASE + 0x800), encode("call", BASE, BASE + 0x900)
    assert sum(a != b for a, b in zip(old, new, strict=True)) == 1
    found = explore_all(LivePatch(text_with(old), [poke_site(BASE, new)], patcher="text_poke",
                                  cpus=1))
    assert found.torn_interleavings == 0
    assert found.counts[ExecClass.OLD] > 0 and found.counts[ExecClass.NEW] > 0


def test_exhaustive_count_of_a_small_case() -> None:
    # One CPU fetching a 5-byte instruction byte by byte against five single-byte writes: the
    # CPU's 5 steps go anywhere among the patcher's 5, C(10, 5) = 252 ways, minus those where
    # the CPU reads an invalid first pair and stops early; all of them are run by the naive
    # explorer. Fetch i conflicts only with write i, so the reduced one runs a schedule for
    # each choice of the bytes fetched after their write, as far as the CPU fetches: 16 after
    # the new first byte (a CALL), 4 after the old 0f 1f 44 (a NOPL), one each for 0f 1f 07
    # (a shorter NOPL) and for 0f fb (invalid).
    live = live_patch("nop5", "call", Patcher.TEXT_POKE)
    found = explore_all(live, reduction=False)
    assert found.interleavings == count_interleavings(live, reduction=False) <= 252
    assert sum(found.counts.values()) == found.interleavings  # one execution per schedule
    reduced = explore_all(live)
    assert reduced.interleavings == count_interleavings(live) == 16 + 4 + 1 + 1
    assert sum(reduced.counts.values()) == reduced.interleavings
    two = live_patch("nop5", "call", Patcher.TEXT_POKE, cpus=2, fetch_chunk=3)
    assert explore_all(two, reduction=False).interleavings == 483
    assert count_interleavings(two, reduction=False) == 483
    assert explore_all(two).interleavings == count_interleavings(two) == 12 * 12


def test_too_large_for_exhaustive_is_refused_before_running() -> None:
    with pytest.raises(TooManyInterleavings, match="more than 100 interleavings"):
        explore_all(live_patch("nop5", "call", Patcher.TEXT_POKE), limit=100, reduction=False)
    with pytest.raises(TooManyInterleavings, match="more than 4 classes of interleavings"):
        explore_all(live_patch("nop5", "call", Patcher.TEXT_POKE), limit=4)
    with pytest.raises(TooManyInterleavings,
                       match="more than 100000 classes of interleavings for 8 CPUs"):
        count_interleavings(live_patch("nop5", "call", Patcher.TEXT_POKE, cpus=8, sites=4))


def test_random_scheduler_is_deterministic_for_a_seed() -> None:
    live = live_patch("nop5", "call", Patcher.TEXT_POKE, cpus=4, sites=3)
    a, b, c = (explore_random(live, 60, np.random.default_rng(seed)) for seed in (5, 5, 6))
    assert a.first_torn is not None and b.first_torn is not None and c.first_torn is not None
    assert a.first_torn.schedule == b.first_torn.schedule
    assert (a.torn_interleavings, dict(a.counts)) == (b.torn_interleavings, dict(b.counts))
    assert a.first_torn.schedule != c.first_torn.schedule
    bp = explore_random(live_patch("nop5", "call", Patcher.TEXT_POKE_BP, cpus=4, sites=3), 60,
                        np.random.default_rng(5))
    assert bp.interleavings == 60 and bp.counts[ExecClass.TORN] == 0




