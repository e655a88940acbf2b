"""The arguments of the steps that store data in memory and read it back."""

from __future__ import annotations

import math
from dataclasses import replace

from pydantic import Field, model_validator

from ..attacks._base import MAX_SECRET_BYTES
from ..attacks.cost import MachineShape
from ..types import PAGE_SIZE
from ._args import ACCESS, At, Data, Read
from ._cost import DIRECT_MAP_PAGE_UNITS, Charge
from ._scope import Problem, Scope
from ._values import Binding, Ref

__all__ = [
    "GuestRead", "ReadDirectMap", "ReadKeyidMap", "ReadOwn", "ReadUninit", "Store",
    "StoreSecret",
]


class StoreSecret(At):
    text: str | None = Field(None, min_length=1, max_length=MAX_SECRET_BYTES,
                             description="the secret as text")
    size: int | None = Field(None, ge=1, le=MAX_SECRET_BYTES, description="random bytes")
    digits: int | None = Field(None, ge=1, le=8, description="a random PIN of that many digits")
    prefix: str = Field("", max_length=16, description="text before the PIN's digits (PIN:)")
    pad_to: int | None = Field(None, ge=1, le=PAGE_SIZE, description="write a zero-filled "
                               "buffer of this many bytes holding the secret")

    @model_validator(mode="after")
    def _one(self) -> StoreSecret:
        given = [k for k in ("text", "size", "digits") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, size or digits, got {len(given)}")
        if self.prefix and self.digits is None:
            raise ValueError("prefix goes with digits")
        if self.secret_size > MAX_SECRET_BYTES:
            raise ValueError(f"the secret is {self.secret_size} bytes in UTF-8; the limit is "
                             f"{MAX_SECRET_BYTES}")
        if self.pad_to is not None and self.pad_to < self.secret_size:
            raise ValueError(f"pad_to ({self.pad_to}) is smaller than the secret "
                             f"({self.secret_size} bytes)")
        return self

    @property
    def secret_size(self) -> int:
        if self.text is not None:
            return len(self.text.encode("utf-8"))
        return self.size if self.size is not None else len(self.prefix.encode()) + (
            self.digits or 0)

    @property
    def space_log2(self) -> float | None:
        """log2 of how many secrets a PIN can be (``None``: the bytes tell)."""
        return None if self.digits is None else self.digits * math.log2(10)

    def bind(self, scope: Scope) -> Binding:
        if scope.secret is not None:
            raise Problem("", f"the victim stores one secret; step {scope.secret.step} did")
        place = self.at(scope, own=True, length=max(self.secret_size, self.pad_to or 0))
        scope.secret = replace(place, step=scope.step, size=self.secret_size)
        return scope.secret


class Store(At, Data):
    def bind(self, scope: Scope) -> Binding:
        size, largest = self.sizes(scope)
        place = self.at(scope, own=True, length=largest)
        if scope.side == "attacker":
            scope.written.add(place.root)
        return replace(place, step=scope.step, size=size if size is not None else largest)


class ReadOwn(Read):
    def bind(self, scope: Scope) -> Binding:
        place = self.at(scope, own=True, length=self.length)
        if scope.side == "attacker" and place.root not in scope.written:
            raise Problem("address", f"the attacker reads {self.address} before writing it: "
                          "that is read_uninit (capability uninit_page_read)")
        return scope.new_bytes(place.size, place.size or 0)


class ReadUninit(Read):
    def bind(self, scope: Scope) -> Binding:
        return self.read(scope, own=True)


class ReadDirectMap(Read):
    def bind(self, scope: Scope) -> Binding:
        return self.read(scope)


class ReadKeyidMap(Read):
    keyid_of: Ref = Field(description="the domain whose (old) KeyID the mapping carries")

    def bind(self, scope: Scope) -> Binding:
        scope.domain("keyid_of", self.keyid_of)
        return self.read(scope)

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        units = DIRECT_MAP_PAGE_UNITS * machine.memory_pages
        return (ACCESS, Charge("KeyID direct maps", 1, units))


class GuestRead(Read):
    def bind(self, scope: Scope) -> Binding:
        if not scope.address("address", self.address, own=True).guest:
            raise Problem("address", f"{self.address} is a process's page; guest_read reads "
                          "a guest's page through its nested page table")
        return self.read(scope, own=True)
