"""The arguments of the system steps: each is its built-in attack's parameter model.

A system step (``wear_out``, ``exhaust_secretmem``, ``track_dirty_pages``, ``live_patch``,
``attest``) runs the machinery of one built-in attack on the program's machine, so its
arguments are that attack's parameters: the same fields, ranges, defaults and checks, defined
once in the attack's module (the source each follows is cited there). Each model here adds only
what a step needs: what its result binds, and what it costs (the built-in's own estimate).
"""

from __future__ import annotations

from ..attacks.attestation import AttestationParams
from ..attacks.cost import MachineShape, Work, run_part
from ..attacks.dirty_page_leak import DirtyPageLeakParams
from ..attacks.key_wearout import KeyWearoutParams
from ..attacks.secretmem_exhaustion import SecretmemExhaustionParams
from ..attacks.torn_live_patch import TornLivePatchParams
from ._args import Args
from ._cost import Charge
from ._scope import Scope
from ._values import Binding, Kind

__all__ = [
    "MAX_INSN_BYTES", "Attest", "ExhaustSecretmem", "LivePatching", "System",
    "TrackDirtyPages", "WearOut",
]

MAX_INSN_BYTES = 16
"""Longest instruction a CPU can fetch (x86: 15 bytes), and longest cipher block (16 bytes)."""


class System(Args):
    """A system step's arguments: costed with its built-in attack's own estimate."""

    def work(self, machine: MachineShape) -> Work | None:
        """The built-in attack's estimate of one run (its parameter model's)."""
        return None

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        work = self.work(machine)
        if work is None:
            return ()
        every_run = run_part(machine)  # the program charges the run and its machine once
        return tuple(Charge(what, None, units) for what, units in work.parts
                     if (what, units) != every_run)


class WearOut(KeyWearoutParams, System):
    """Binds the value the attacker wanted the victim to read in the first trial (nothing when
    that trial confirmed no collision). Trials after the first reboot the machine."""

    def bind(self, scope: Scope) -> Binding:
        if self.trials > 1:
            scope.epoch += 1
            scope.reboot_step = scope.step
        return scope.new_bytes(None, MAX_INSN_BYTES, maybe_none=True)


class ExhaustSecretmem(SecretmemExhaustionParams, System):
    """Binds what the victim read back from its secret page: the victim's value (nothing
    when its allocation was refused)."""

    def bind(self, scope: Scope) -> Binding:
        return Binding(Kind.BYTES, scope.step, "victim", self.secret_size, self.secret_size,
                       epoch=scope.epoch, maybe_none=True)


class TrackDirtyPages(DirtyPageLeakParams, System):
    """Binds the guest's key as the hypervisor decoded it from the dirty bitmaps."""

    def bind(self, scope: Scope) -> Binding:
        return scope.new_bytes(self.secret_size, self.secret_size)


class LivePatching(TornLivePatchParams, System):
    """Binds the bytes of the first torn instruction a CPU executed (nothing when none tore)."""

    def bind(self, scope: Scope) -> Binding:
        return scope.new_bytes(None, MAX_INSN_BYTES, maybe_none=True)


class Attest(AttestationParams, System):
    """Binds the disk key the backdoor sent out (nothing when no backdoor ran)."""

    def bind(self, scope: Scope) -> Binding:
        return scope.new_bytes(self.secret_size, self.secret_size, maybe_none=True)

    def pages_needed(self) -> int:
        # Every frame the step allocates: with replay, the earlier boot's image too.
        earlier = self.image_pages if self.tamper == "replay" else 0
        return super().pages_needed() + earlier
