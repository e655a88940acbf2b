"""What the system steps do: each runs its built-in attack's machinery on the program's machine.

The machinery is the attack module's own function (:func:`~testbed.attacks.key_wearout.wear_out`,
:func:`~testbed.attacks.secretmem_exhaustion.exhaust`,
:func:`~testbed.attacks.dirty_page_leak.track_dirty_pages`,
:func:`~testbed.attacks.torn_live_patch.live_patch`,
:func:`~testbed.attacks.attestation.attest`), called with the program's attack context, so a
step sets its victim up, begins the attack and logs its steps exactly as the built-in does.
The record it returns is kept under the name the step binds, for the system's goal to judge
(:mod:`._goal`), with the evidence it left; the log's evidence stays the program's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..attacks import attestation, dirty_page_leak, key_wearout, secretmem_exhaustion
from ..attacks import torn_live_patch as torn
from ..attacks._base import AttackContext, AttackParams
from ..text import plural
from ._args_systems import Attest, ExhaustSecretmem, LivePatching, TrackDirtyPages, WearOut
from ._runtime import Runtime

__all__ = ["attest", "exhaust_secretmem", "live_patch", "track_dirty_pages", "wear_out"]

P = TypeVar("P", bound=AttackParams)
R = TypeVar("R")


def _run(rt: Runtime, machinery: Callable[[AttackContext, P], R], args: P) -> R:
    before = rt.ctx.log.evidence()
    run = machinery(rt.ctx, args)
    rt.keep(run, before)
    return run


def wear_out(rt: Runtime, args: WearOut) -> bytes | None:
    run = _run(rt, key_wearout.wear_out, args)
    rt.ctx.machine = run.machine  # the last trial's (each after the first rebooted)
    found = sum(t.collision_at is not None for t in run.trials)
    rt.note(f"wears out the key in {plural(len(run.trials), 'trial')}",
            detail=f"{run.block_bits}-bit blocks; a collision confirmed in {found}")
    return run.target


def exhaust_secretmem(rt: Runtime, args: ExhaustSecretmem) -> bytes | None:
    run = _run(rt, secretmem_exhaustion.exhaust, args)
    rt.note(f"holds {plural(run.taken, 'secret page')} while the victim asks for one")
    return run.read_back


def track_dirty_pages(rt: Runtime, args: TrackDirtyPages) -> bytes:
    run = _run(rt, dirty_page_leak.track_dirty_pages, args)
    rt.note(f"decodes {run.recovered.size} bits of the guest's key from the dirty bitmaps")
    return run.recovered_bytes


def live_patch(rt: Runtime, args: LivePatching) -> bytes | None:
    run = _run(rt, torn.live_patch, args)
    found = run.exploration
    scope = "classes of interleavings" if found.exhaustive else "sampled interleavings"
    rt.note(f"runs the CPUs through the patch: {found.torn_interleavings} of "
            f"{found.interleavings} {scope} tore")
    return run.executed


def attest(rt: Runtime, args: Attest) -> bytes | None:
    run = _run(rt, attestation.attest, args)
    what = ("receives the disk key from the backdoor" if run.leaked is not None
            else "gets nothing: the guest runs the owner's image")
    rt.note(what, detail=run.basis)
    return run.leaked
