"""The step registry: every operation a program may use, with its arguments, who may do it, the
capability each actor needs, and what it does on the machine.

This table is the one definition of the language: the model validates ``op`` and ``args``
against it, the load-time checks take actors and capabilities from it, the interpreter runs
its functions, and the reference page can be generated from it.

The system steps at its end each run one built-in attack's machinery (:mod:`._ops_systems`):
their arguments are that attack's parameters, their capabilities and platform settings come
from its class, their actor and engine check are the ones its threat model has, and each
names the goal that judges its result with that attack's judge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..attacks import (
    AttestationBypass,
    DirtyPageLeak,
    KeyWearout,
    SecretmemExhaustion,
    TornLivePatch,
    attestation,
)
from ..attacks import dirty_page_leak as dirty_pages
from ..attacks import key_wearout as wearout
from ..attacks import secretmem_exhaustion as secretmem
from ..attacks import torn_live_patch as torn
from ..attacks._base import Attack
from ..platform import Engine, EngineWithIntegrity, EngineWithRmp, EngineWithRuntimeRotation
from ..results.verdicts import Verdict
from . import _ops as ops
from . import _ops_attack as attack
from . import _ops_firmware as firmware
from . import _ops_sealed as sealed
from . import _ops_systems as systems
from ._args import AllocPages, Args, CreateDomain, DestroyDomain, FreePages
from ._args_attack import (
    Capture,
    Concat,
    Constant,
    Guess,
    HvRead,
    HvWrite,
    Reboot,
    RemapGuestPage,
    RequestPage,
    RotateKey,
    Serve,
    Slice,
    WriteBus,
    Xor,
)
from ._args_firmware import AliasDimm, AliasRead, AliasWrite, FeedGuess, MoveGuestPage
from ._args_memory import (
    GuestRead,
    ReadDirectMap,
    ReadKeyidMap,
    ReadOwn,
    ReadUninit,
    Store,
    StoreSecret,
)
from ._args_sealed import CaptureSealed, WriteSealed
from ._args_systems import Attest, ExhaustSecretmem, LivePatching, TrackDirtyPages, WearOut
from ._guess import guess
from ._runtime import Runtime
from ._values import Value

__all__ = ["OPS", "OpSpec", "goal_op", "op_names", "system_goals"]

EngineCheck = Callable[[type[Engine]], "str | None"]


_UNTRUSTED = "an engine that protects guests from the hypervisor"


def _untrusted_hypervisor(engine: type[Engine]) -> str | None:
    if not engine.isolates_guests:
        return (f"engine {engine.name} does not protect guests from the hypervisor: the "
                "hypervisor is trusted there, so a malicious one is out of scope")
    return None


def _rotates(engine: type[Engine]) -> str | None:
    if not issubclass(engine, EngineWithRuntimeRotation):
        return f"engine {engine.name} cannot rotate keys at run time"
    return None


def _aliases_cells(engine: type[Engine]) -> str | None:
    if issubclass(engine, EngineWithIntegrity):
        return (f"engine {engine.name} keeps integrity bits per physical address, but an alias "
                "shares the cell and its ECC bits: aliasing under memory integrity is not "
                "modelled")
    return None


def _moves_pages(engine: type[Engine]) -> str | None:
    if not issubclass(engine, EngineWithRmp):
        return (f"engine {engine.name} has no SEV-SNP firmware to move guest pages "
                "(SNP_PAGE_MOVE)")
    return None


@dataclass(frozen=True)
class OpSpec:
    """One operation of the language.

    Attributes:
        actors: who may do it, and the capabilities each needs (none: housekeeping).
        engine: why the operation means nothing on an engine (``None``: it always does);
            a program using it is ``not_applicable`` there.
        needs: what ``engine`` asks of an engine, in words (for the reference).
        binds: whether it produces a value for ``as:``.
        platform_settings: the settings of ``platform:`` made for one experiment that the
            operation makes use of (:data:`~testbed.scenarios.model.EXPERIMENT_SETTINGS`).
        attack: a system step: the kind of the built-in attack whose machinery it runs.
        goal: a system step: the goal kind that judges the value it binds...
        judge: ...with the built-in attack's judge, from the record the step kept.
        reboots: the step boots a new machine: the victim is set up again after it.
    """

    name: str
    args: type[Args]
    actors: Mapping[str, tuple[str, ...]]
    run: Callable[[Runtime, Any], Value]
    summary: str
    example: str
    binds: bool = True
    engine: EngineCheck | None = None
    needs: str = ""
    platform_settings: frozenset[str] = frozenset()
    attack: str = ""
    goal: str = ""
    judge: Callable[[Any], Verdict] | None = None
    reboots: bool = False


def _system(name: str, builtin: type[Attack[Any]], args: type[Args], actor: str,
            run: Callable[[Runtime, Any], Value], judge: Callable[[Any], Verdict], goal: str,
            summary: str, example: str, *, engine: EngineCheck | None = None,
            needs: str = "") -> OpSpec:
    """A system step: actor, capabilities and platform settings from ``builtin``'s class."""
    return OpSpec(name, args, {actor: builtin.capabilities}, run, summary, example,
                  engine=engine, needs=needs,
                  platform_settings=builtin.platform_settings or frozenset(),
                  attack=builtin.kind, goal=goal, judge=judge)


_V, _A, _H, _K = "victim", "attacker", "hypervisor", "kernel"
_OWNERS: Mapping[str, tuple[str, ...]] = {_V: (), _A: ()}
_BUS = {_A: ("bus_interposer",)}
_HV = {_H: ("malicious_hypervisor",)}

_TABLE = (
    OpSpec("create_domain", CreateDomain, _OWNERS, ops.create_domain,
           "a new process or guest, with its own key where the engine gives one",
           "{op: create_domain, by: victim, args: {kind: guest}, as: victim}"),
    OpSpec("alloc_pages", AllocPages, _OWNERS, ops.alloc_pages,
           "page frames for a domain; with until, allocate until the domain owns the frame of "
           "an address (the attacker taking a freed frame)",
           "{op: alloc_pages, by: attacker, args: {domain: $me, until: $secret}, as: frame}"),
    OpSpec("free_pages", FreePages, _OWNERS, ops.free_pages,
           "give pages back (init_on_free clears them first)",
           "{op: free_pages, by: victim, args: {address: $pages}}", binds=False),
    OpSpec("destroy_domain", DestroyDomain, _OWNERS, ops.destroy_domain,
           "tear a domain down: its pages are freed and its key released",
           "{op: destroy_domain, by: victim, args: {domain: $victim}}", binds=False),
    OpSpec("store_secret", StoreSecret, {_V: ()}, ops.store_secret,
           "the victim stores its secret (text, random bytes or a PIN); binds its address",
           "{op: store_secret, by: victim, args: {address: $page, size: 32}, as: secret}"),
    OpSpec("store", Store, {_V: (), _A: ("chosen_plaintext",)}, ops.store,
           "a domain writes bytes to its own page with its own key",
           "{op: store, by: victim, args: {address: $page, text: balance=100}, as: old}"),
    OpSpec("read_own", ReadOwn, _OWNERS, ops.read_own,
           "a domain reads its own page (the attacker only a page it wrote)",
           "{op: read_own, by: attacker, args: {address: $frame, length: 32}, as: got}"),
    OpSpec("read_uninit", ReadUninit, {_A: ("uninit_page_read",)}, ops.read_uninit,
           "the attacker reads a page it was given before writing it",
           "{op: read_uninit, by: attacker, args: {address: $frame}, as: leaked}"),
    OpSpec("read_direct_map", ReadDirectMap, {_A: ("kernel_read_bug",)}, ops.read_direct_map,
           "a kernel read bug reads any address through the KeyID-0 direct map",
           "{op: read_direct_map, by: attacker, args: {address: $secret}, as: leaked}"),
    OpSpec("read_keyid_map", ReadKeyidMap, {_A: ("uninit_page_read",)}, ops.read_keyid_map,
           "read a frame through a stale kernel mapping carrying a domain's (old) KeyID",
           "{op: read_keyid_map, by: attacker, args: {address: $secret, keyid_of: $victim}, "
           "as: leaked}"),
    OpSpec("guest_read", GuestRead, {_V: ()}, ops.guest_read,
           "a guest reads its page through its nested page table (SEV-SNP checks the RMP)",
           "{op: guest_read, by: victim, args: {address: $page, length: 16}, as: seen}"),
    OpSpec("capture", Capture, _BUS, attack.capture,
           "read raw DRAM lines on the memory bus (length rounded up to whole lines)",
           "{op: capture, by: attacker, args: {address: $secret, length: 64}, as: line}"),
    OpSpec("write_bus", WriteBus, _BUS, attack.write_bus,
           "drive raw lines onto the bus, bypassing every engine and check",
           "{op: write_bus, by: attacker, args: {address: $frame, data: $line}}", binds=False),
    OpSpec("capture_sealed", CaptureSealed, _BUS, sealed.capture_sealed,
           "read raw DRAM lines on the memory bus with their sideband (ECC) bits, where memory "
           "integrity keeps each line's MAC; binds 72 bytes a line: the data, then the word",
           "{op: capture_sealed, by: attacker, args: {address: $secret}, as: old}"),
    OpSpec("write_sealed", WriteSealed, _BUS, sealed.write_sealed,
           "drive lines and their sideband bits onto the bus (what capture_sealed bound), "
           "bypassing every engine and check",
           "{op: write_sealed, by: attacker, args: {address: $secret, data: $old}}",
           binds=False),
    OpSpec("hv_read", HvRead, _HV, attack.hv_read,
           "the hypervisor reads guest memory through its own mapping (SEV-SNP's ciphertext "
           "hiding makes it read 0xff)",
           "{op: hv_read, by: hypervisor, args: {address: $old, length: 64}, as: saved}",
           engine=_untrusted_hypervisor, needs=_UNTRUSTED,
           platform_settings=frozenset({"ciphertext_hiding"})),
    OpSpec("hv_write", HvWrite, _HV, attack.hv_write,
           "the hypervisor writes guest memory through its own mapping (SEV-SNP's RMP refuses)",
           "{op: hv_write, by: hypervisor, args: {address: $old, data: $saved}}", binds=False,
           engine=_untrusted_hypervisor, needs=_UNTRUSTED),
    OpSpec("remap_guest_page", RemapGuestPage, _HV, attack.remap_guest_page,
           "the hypervisor points a guest page at another frame in the nested page table",
           "{op: remap_guest_page, by: hypervisor, args: {address: $page, to: $other}}",
           binds=False, engine=_untrusted_hypervisor, needs=_UNTRUSTED),
    OpSpec("serve", Serve, {_V: ()}, attack.serve,
           "the victim's guest runs a network service that returns this page of its memory to "
           "whoever asks (request_page may ask for no other page)",
           "{op: serve, by: victim, args: {address: $page}}", binds=False),
    OpSpec("request_page", RequestPage, {_A: (), _H: ("malicious_hypervisor",)},
           attack.request_page,
           "ask the guest's network service for the page a serve step named: the guest reads "
           "that guest page through its nested page table (SEV-SNP checks the RMP) and sends "
           "the plaintext out; binds what the attacker receives",
           "{op: request_page, by: attacker, args: {address: $page, length: 32}, as: reply}",
           engine=_untrusted_hypervisor, needs=_UNTRUSTED),
    OpSpec("rotate_key", RotateKey, {_K: ()}, attack.rotate_key,
           "the kernel replaces a domain's key at run time and re-encrypts its pages",
           "{op: rotate_key, by: kernel, args: {domain: $victim}}", binds=False,
           engine=_rotates, needs="an engine that rotates keys at run time"),
    OpSpec("reboot", Reboot, {_K: ()}, attack.reboot,
           "a new machine: new keys, memory lost; only bytes survive in the attacker's notes",
           "{op: reboot, by: kernel}", binds=False, reboots=True),
    OpSpec("guess", Guess, {_A: ("bus_interposer", "chosen_plaintext")}, guess,
           "write each candidate at an address the attacker owns and compare the bus with a "
           "captured line; binds the matching candidate, or nothing",
           "{op: guess, by: attacker, args: {address: $frame, target: $line, prefix: 'PIN:', "
           "digits: 4}, as: pin}"),
    OpSpec("constant", Constant, {_A: ()}, attack.constant,
           "bytes the attacker knows, written in the program",
           "{op: constant, by: attacker, args: {text: 'PIN:'}, as: known}"),
    OpSpec("slice", Slice, {_A: ()}, attack.slice_bytes, "some bytes of a value",
           "{op: slice, by: attacker, args: {value: $line, start: 0, length: 16}, as: block}"),
    OpSpec("xor", Xor, {_A: ()}, attack.xor, "two values of the same length, xored",
           "{op: xor, by: attacker, args: {a: $c1, b: $c2}, as: delta}"),
    OpSpec("concat", Concat, {_A: ()}, attack.concat, "values joined in order",
           "{op: concat, by: attacker, args: {values: [$a, $b]}, as: both}"),
    OpSpec("alias_dimm", AliasDimm, _HV, firmware.alias_dimm,
           "reprogram the DIMM's SPD to report twice its capacity and reboot: two physical "
           "addresses reach each cell (alias_check refuses the boot)",
           "{op: alias_dimm, by: hypervisor}", binds=False, reboots=True,
           engine=_aliases_cells, needs="an engine without memory integrity"),
    OpSpec("alias_read", AliasRead, _HV, firmware.alias_read,
           "the hypervisor reads a page's cells through their alias address with its own "
           "mapping (the RMP checks the address used)",
           "{op: alias_read, by: hypervisor, args: {address: $old, length: 64}, as: saved}",
           engine=_untrusted_hypervisor, needs=_UNTRUSTED),
    OpSpec("alias_write", AliasWrite, _HV, firmware.alias_write,
           "the hypervisor writes a page's cells through their alias address with its own "
           "mapping (the RMP checks the address used, not the cell)",
           "{op: alias_write, by: hypervisor, args: {address: $old, data: $saved}}",
           binds=False, engine=_untrusted_hypervisor, needs=_UNTRUSTED),
    OpSpec("move_guest_page", MoveGuestPage, _HV, firmware.move_guest_page,
           "the hypervisor has the firmware move a guest page to another frame, re-encrypted "
           "for its new address (SNP_PAGE_MOVE; restrict_page_move refuses); binds its new "
           "address",
           "{op: move_guest_page, by: hypervisor, args: {address: $pages, page: 1, to: $pin}, "
           "as: buffer}",
           engine=_moves_pages, needs="an engine with SEV-SNP firmware (an RMP)"),
    OpSpec("feed_guess", FeedGuess, {_H: ("malicious_hypervisor", "chosen_plaintext")},
           firmware.feed_guess,
           "the guest receives each candidate into its page (the attacker's packets) and the "
           "hypervisor compares the ciphertext there with a captured line; binds the matching "
           "candidate, or nothing",
           "{op: feed_guess, by: hypervisor, args: {address: $buffer, target: $line, "
           "prefix: 'PIN:', digits: 4}, as: pin}",
           engine=_untrusted_hypervisor, needs=_UNTRUSTED),
    _system("wear_out", KeyWearout, WearOut, _A, systems.wear_out, wearout.judge_wearout,
            "modified",
            "capture the victim's blocks over the bus until the cipher's internal collision "
            "gives delta, then make the victim read a value of the attacker's choosing, in each "
            "trial (each after the first on a rebooted machine); binds that value, from the "
            "first trial",
            "{op: wear_out, by: attacker, args: {max_pairs: 32768, trials: 8}, as: target}",
            engine=wearout.engine_problem, needs="an engine that encrypts"),
    _system("exhaust_secretmem", SecretmemExhaustion, ExhaustSecretmem, _A,
            systems.exhaust_secretmem, secretmem.judge_exhaustion, "denied",
            "an unprivileged task maps and touches all the secret memory (memfd_secret) it may, "
            "then the victim asks for one secret page for its key; binds what the victim read "
            "back from it (the victim's value), nothing when its allocation was refused",
            "{op: exhaust_secretmem, by: attacker, args: {pages_per_file: 4096}, as: victim_key}"),
    _system("track_dirty_pages", DirtyPageLeak, TrackDirtyPages, _H,
            systems.track_dirty_pages, dirty_pages.judge_leak, "recovered_bits",
            "a guest whose device requests depend on its key, one bit per interval; the "
            "hypervisor reads the VFIO dirty bitmaps after each interval and binds the key as it "
            "decodes it",
            "{op: track_dirty_pages, by: hypervisor, args: {secret: 'AES-key:9f2c7e1b', "
            "background_pages: 2}, as: leaked}"),
    _system("live_patch", TornLivePatch, LivePatching, _A, systems.live_patch,
            torn.judge_patch, "torn",
            "the kernel patches instructions (text_poke, or text_poke_bp with the mitigation) "
            "while CPUs run them, over the interleavings an adversarial scheduler explores; "
            "binds the bytes of the first torn instruction a CPU executed, nothing if none",
            "{op: live_patch, by: attacker, args: {old: nop5, new: call}, as: executed}"),
    _system("attest", AttestationBypass, Attest, _H, systems.attest,
            attestation.judge_attestation, "accepted",
            "the hypervisor launches the owner's image with a backdoor and answers the owner's "
            "attestation request (tamper: the real report, a replayed or a forged one); the "
            "owner releases its disk key to a guest it trusts; binds what the backdoor sent out",
            "{op: attest, by: hypervisor, args: {tamper: replay}, as: disk_key}"),
)

OPS: Mapping[str, OpSpec] = MappingProxyType({spec.name: spec for spec in _TABLE})
"""Every operation, by name, in reference order."""


def op_names() -> tuple[str, ...]:
    """The vocabulary, in reference order."""
    return tuple(OPS)


def system_goals() -> tuple[str, ...]:
    """The goal kinds of the system steps, in reference order."""
    return tuple(spec.goal for spec in OPS.values() if spec.goal)


def goal_op(kind: str) -> OpSpec | None:
    """The system step whose result the goal ``kind`` judges (``None``: a goal of its own)."""
    return next((spec for spec in OPS.values() if spec.goal == kind), None)
