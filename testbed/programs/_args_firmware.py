"""The arguments of the memory-aliasing steps (BadRAM) and of the SEV-SNP page-move steps
(Heracles): the reprogrammed DIMM, reads and writes through an alias, ``SNP_PAGE_MOVE``, and
the guess loop the hypervisor runs on a guest buffer."""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field

from ..attacks.cost import MachineShape, boot_units
from ._args import ACCESS, MAX_ALLOC, Args, At, Read
from ._args_attack import Guess
from ._cost import PAGE_MOVE_UNITS, PROBE_FRAME_UNITS, REBOOT_FACTOR, Charge
from ._scope import Problem, Scope
from ._values import Binding, Ref

__all__ = ["AliasDimm", "AliasRead", "AliasWrite", "FeedGuess", "MoveGuestPage"]


class AliasDimm(Args):
    def bind(self, scope: Scope) -> None:
        scope.epoch += 1
        scope.reboot_step = scope.alias_step = scope.step

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        frames = machine.memory_pages
        return (Charge("reboots", 1, REBOOT_FACTOR * boot_units(frames)),
                Charge("frames probed for aliases", frames, PROBE_FRAME_UNITS * frames))


def _aliased(scope: Scope) -> None:
    if scope.alias_step is None:
        raise Problem("", "there is no alias to go through: an alias_dimm step must boot the "
                      "machine with the reprogrammed DIMM first")


class AliasRead(Read):
    def bind(self, scope: Scope) -> Binding:
        _aliased(scope)
        return self.read(scope)


class AliasWrite(At):
    data: Ref = Field(description="bytes to write through the alias (what an alias_read got)")

    def bind(self, scope: Scope) -> None:
        _aliased(scope)
        self.at(scope, length=scope.data("data", self.data).max_size)


class MoveGuestPage(Args):
    address: Ref = Field(description="a guest page: the firmware moves it to another frame")
    page: int = Field(0, ge=0, le=MAX_ALLOC - 1, description="which page of that address")
    to: Ref | None = Field(None, description="an address whose (free) frame is the destination "
                           "(default: the next free frame)")
    to_page: int = Field(0, ge=0, le=MAX_ALLOC - 1, description="which page of that address")

    def bind(self, scope: Scope) -> Binding:
        place = scope.place("address", self.address, self.page, 0)
        if not place.guest:
            raise Problem("address", f"{self.address} is not a guest's page")
        if self.to is not None:
            scope.place("to", self.to, self.to_page, 0, length=1, page_field="to_page")
        return replace(place, step=scope.step, page_offset=place.page_offset)

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (Charge("guest pages moved", 1, PAGE_MOVE_UNITS),)


class FeedGuess(Guess):
    """Candidates the guest receives one by one into its page at the address (the attacker's
    packets), each compared with target through the hypervisor's mapping."""

    def bind(self, scope: Scope) -> Binding:
        place = self.at(scope, length=1)
        if not place.guest:
            raise Problem("address", f"{self.address} is not a guest's page")
        return self.candidates(scope, place)

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (ACCESS, *super().cost(machine, pages))
