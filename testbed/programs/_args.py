"""The arguments of every step: their base classes, and the steps on domains and pages.

Each operation has its own model; :meth:`Args.bind` checks it against the names earlier steps
bound (:class:`~._scope.Scope`) and says what its result will be. Sizes are bounded here, when
the model is built; what depends on other steps is checked by ``bind``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..attacks.cost import MachineShape
from ..types import PAGE_SIZE
from ._cost import ACCESS_UNITS, DOMAIN_UNITS, PAGE_UNITS, Charge
from ._scope import Problem, Scope
from ._values import MAX_PAGES, MAX_VALUE_BYTES, Binding, Kind, Ref

__all__ = [
    "ACCESS", "MAX_ALLOC", "AllocPages", "Args", "At", "CreateDomain", "Data", "DestroyDomain",
    "FreePages", "LiteralData", "Read",
]

MAX_ALLOC = 64
"""Pages one ``alloc_pages`` step asks for."""


class Args(BaseModel):
    """Base of every operation's arguments: unknown keys and loose types are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def bind(self, scope: Scope) -> Binding | None:
        """Check against what earlier steps bound; the result's binding (``None``: none)."""
        return None

    def pages_needed(self) -> int:
        """Page frames the step allocates."""
        return 0

    def guesses(self) -> int:
        """Candidates the step tries."""
        return 0

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        """The work the step does on ``machine`` beyond what every step costs
        (:mod:`._cost`); ``pages``: the page frames the whole program allocates at most."""
        return ()


ACCESS = Charge("memory reads and writes", 1, ACCESS_UNITS)
"""One read or write of up to a page, through the engine."""
DOMAIN = Charge("domains created or destroyed", 1, DOMAIN_UNITS)


class At(Args):
    """An address: a name an earlier step bound, a page of it, an offset in that page."""

    address: Ref = Field(description="an address an earlier step bound ($secret, $pages)")
    page: int = Field(0, ge=0, le=MAX_ALLOC - 1, description="which page of a multi-page address")
    offset: int = Field(0, ge=0, le=PAGE_SIZE - 1, description="bytes past the address")

    def at(self, scope: Scope, *, own: bool = False, length: int | None = None) -> Binding:
        return scope.place("address", self.address, self.page, self.offset, own=own,
                           length=length)

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (ACCESS,)


class Read(At):
    """An address and a length."""

    length: int | None = Field(None, ge=1, le=MAX_VALUE_BYTES, description="bytes to read "
                               "(default: what is known there: the secret, the page's rest)")

    def read(self, scope: Scope, *, own: bool = False) -> Binding:
        place = self.at(scope, own=own, length=self.length)
        self.check_place(scope, place)
        return scope.new_bytes(place.size, place.size or 0)

    def check_place(self, scope: Scope, place: Binding) -> None:
        """What the step asks of the place it reads, beyond its bounds (here: nothing)."""


class LiteralData(Args):
    """Bytes given in the program: UTF-8 text or hexadecimal."""

    text: str | None = Field(None, min_length=1, max_length=MAX_VALUE_BYTES,
                             description="the bytes as UTF-8 text")
    hex: str | None = Field(None, min_length=2, max_length=2 * MAX_VALUE_BYTES,
                            description="the bytes in hexadecimal")

    @field_validator("hex")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError("not bytes in hexadecimal (pairs of 0-9a-f)") from None
        return value

    @field_validator("text")
    @classmethod
    def _fits(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            raise ValueError(f"at most {MAX_VALUE_BYTES} bytes in UTF-8")
        return value

    @model_validator(mode="after")
    def _one(self) -> LiteralData:
        given = [k for k in ("text", "hex", "value") if getattr(self, k, None) is not None]
        if len(given) != 1:
            allowed = "text, hex or value" if "value" in type(self).model_fields else "text or hex"
            raise ValueError(f"give exactly one of {allowed}, got {len(given)}")
        return self

    def literal(self) -> bytes | None:
        """The bytes written in the program (``None``: they come from a value)."""
        if self.text is not None:
            return self.text.encode("utf-8")
        return bytes.fromhex(self.hex) if self.hex is not None else None

    def sizes(self, scope: Scope) -> tuple[int | None, int]:
        """(exact size or ``None``, largest size)."""
        data = self.literal()
        assert data is not None
        return len(data), len(data)


class Data(LiteralData):
    """Bytes given in the program, or a value an earlier step produced."""

    value: Ref | None = Field(None, description="bytes an earlier step produced")

    def sizes(self, scope: Scope) -> tuple[int | None, int]:
        if self.value is None:
            return super().sizes(scope)
        found = scope.data("value", self.value)
        return found.size, found.max_size


class CreateDomain(Args):
    kind: Literal["process", "guest"] = Field(description="a host process or a guest VM")

    def bind(self, scope: Scope) -> Binding:
        return Binding(Kind.DOMAIN, scope.step, scope.side, domain=f"#{scope.step}",
                       guest=self.kind == "guest", epoch=scope.epoch)

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (DOMAIN,)


class AllocPages(Args):
    domain: Ref = Field(description="the domain that gets the pages")
    count: int = Field(1, ge=1, le=MAX_ALLOC, description="pages (with until: most tries)")
    secret: bool = Field(False, description="the pages hold a secret: with secretmem they "
                         "leave every kernel direct map")
    until: Ref | None = Field(None, description="allocate until the domain owns the page of "
                              "this address (at most count tries); binds that address")

    def bind(self, scope: Scope) -> Binding:
        owner = scope.domain("domain", self.domain, own=True)
        scope.pages += self.count
        if scope.pages > MAX_PAGES:
            raise Problem("count", f"the program's steps allocate {scope.pages} pages; the "
                          f"limit is {MAX_PAGES}")
        made = Binding(Kind.ADDRESS, scope.step, scope.side, PAGE_SIZE, pages=self.count,
                       domain=owner.domain, root=(scope.step, 0), epoch=scope.epoch,
                       guest=owner.guest)
        if self.until is None:
            return made
        target = scope.address("until", self.until)
        return replace(made, size=target.size if target.pages == 1 else PAGE_SIZE, pages=1,
                       page_offset=target.page_offset)

    def pages_needed(self) -> int:
        return self.count

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (Charge("pages allocated", self.count, PAGE_UNITS * self.count),)


class FreePages(Args):
    address: Ref = Field(description="pages an alloc_pages step bound")
    page: int | None = Field(None, ge=0, le=MAX_ALLOC - 1,
                             description="which page (default: every page of the address)")

    def bind(self, scope: Scope) -> None:
        pages = scope.address("address", self.address, own=True).pages
        for page in range(pages) if self.page is None else [self.page]:
            place = scope.place("address", self.address, page, 0, own=True, length=1)
            scope.freed[place.root] = scope.step


class DestroyDomain(Args):
    domain: Ref = Field(description="the domain to tear down: its pages are freed, its key "
                        "released")

    def bind(self, scope: Scope) -> None:
        scope.destroyed[scope.domain("domain", self.domain, own=True).domain] = scope.step

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (DOMAIN,)
