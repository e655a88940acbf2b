"""The arguments of the bus, hypervisor and kernel steps, the guess loop and the transforms."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ..attacks.cost import MachineShape, boot_units
from ..types import LINE_SIZE
from ._args import ACCESS, MAX_ALLOC, Args, At, LiteralData, Read
from ._cost import (
    CALL_UNITS,
    CANDIDATE_UNITS,
    NARROW_CANDIDATE_UNITS,
    REBOOT_FACTOR,
    ROTATION_PAGE_UNITS,
    ROTATION_UNITS,
    WORD_UNITS,
    Charge,
)
from ._scope import Problem, Scope
from ._values import MAX_GUESSES, MAX_VALUE_BYTES, Binding, Ref

__all__ = [
    "BATCH", "MAX_WORDS", "Capture", "Concat", "Constant", "Guess", "HvRead", "HvWrite",
    "NumberRange", "Reboot", "RemapGuestPage", "RequestPage", "RotateKey", "Serve", "Slice",
    "WriteBus", "Xor",
]

MAX_WORDS = 100_000
"""Words in one inline word list."""
BATCH = 65536
"""Candidates a ``guess`` step gives the engine in one call."""


def _lines(scope: Scope, field: str, place: Binding) -> None:
    if place.page_offset % LINE_SIZE:
        raise Problem(field, f"the bus carries whole {LINE_SIZE}-byte lines: this address is "
                      f"{place.page_offset % LINE_SIZE} bytes into its line")


def _whole_lines(scope: Scope, field: str, ref: str) -> int:
    found = scope.data(field, ref)
    if found.size is None or found.size % LINE_SIZE:
        got = "varies in length" if found.size is None else f"is {found.size} bytes"
        raise Problem(field, f"{ref} {got}; the bus carries whole {LINE_SIZE}-byte lines")
    return found.size


class Capture(Read):
    def bind(self, scope: Scope) -> Binding:
        place = self.at(scope, length=self.length)
        _lines(scope, "offset", place)
        size = -(-(place.size or 0) // LINE_SIZE) * LINE_SIZE
        self.at(scope, length=size)  # whole lines, still within the page
        return scope.new_bytes(size, size)


class WriteBus(At):
    data: Ref = Field(description="whole lines to drive onto the bus (what a capture got)")

    def bind(self, scope: Scope) -> None:
        place = self.at(scope, length=_whole_lines(scope, "data", self.data))
        _lines(scope, "offset", place)
        scope.written.add(place.root)


class HvRead(Read):
    def bind(self, scope: Scope) -> Binding:
        return self.read(scope)


class HvWrite(At):
    data: Ref = Field(description="bytes to write through the host mapping")

    def bind(self, scope: Scope) -> None:
        place = self.at(scope, length=scope.data("data", self.data).max_size)
        scope.written.add(place.root)


class RemapGuestPage(Args):
    address: Ref = Field(description="a guest page: its nested page table entry changes")
    page: int = Field(0, ge=0, le=MAX_ALLOC - 1, description="which page of that address")
    to: Ref = Field(description="the address whose frame the guest page will map")
    to_page: int = Field(0, ge=0, le=MAX_ALLOC - 1, description="which page of that address")

    def bind(self, scope: Scope) -> None:
        place = scope.place("address", self.address, self.page, 0, length=1)
        if not place.guest:
            raise Problem("address", f"{self.address} is not a guest's page")
        scope.place("to", self.to, self.to_page, 0, length=1, page_field="to_page")

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (ACCESS,)


class Serve(Args):
    address: Ref = Field(description="a page of the victim's guest that its network service "
                         "returns to whoever asks")
    page: int = Field(0, ge=0, le=MAX_ALLOC - 1, description="which page of that address")

    def bind(self, scope: Scope) -> None:
        place = scope.place("address", self.address, self.page, 0, own=True, length=1)
        if not place.guest:
            raise Problem("address", f"{self.address} is a process's page; a guest's network "
                          "service serves a page of guest memory")
        scope.served.setdefault(place.root, scope.step)


class RequestPage(Read):
    """A request to the guest's service: only for the page a ``serve`` step named (the
    victim's choice); what lies behind that guest page is the hypervisor's business."""

    address: Ref = Field(description="the page the guest's service serves (a serve step named "
                         "it)")

    def bind(self, scope: Scope) -> Binding:
        return self.read(scope)

    def check_place(self, scope: Scope, place: Binding) -> None:
        if not place.guest:
            raise Problem("address", f"{self.address} is a process's page; request_page asks a "
                          "guest's service for a page of guest memory")
        if place.root not in scope.served:
            steps = sorted(scope.served.values())
            served = (f"the service serves only the page(s) named by step(s) "
                      f"{', '.join(map(str, steps))}" if steps
                      else "no earlier serve step names a page for the service")
            raise Problem("address", f"page {self.page} of {self.address} is not a page the "
                          f"guest's service serves: {served}; a request gets the served page, "
                          "whatever frame the nested page table puts behind it")


class RotateKey(Args):
    domain: Ref = Field(description="the domain whose key is replaced (its pages re-encrypted)")

    def bind(self, scope: Scope) -> None:
        found = scope.domain("domain", self.domain)
        if found.domain in scope.destroyed:
            raise Problem("domain", f"the domain of {self.domain} was destroyed by step "
                          f"{scope.destroyed[found.domain]}")

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (Charge("key rotations", 1, ROTATION_UNITS + ROTATION_PAGE_UNITS * pages),)


class Reboot(Args):
    def bind(self, scope: Scope) -> None:
        scope.epoch += 1
        scope.reboot_step = scope.step

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        return (Charge("reboots", 1, REBOOT_FACTOR * boot_units(machine.memory_pages)),)


class NumberRange(Args):
    start: int = Field(0, ge=0, description="the first number")
    stop: int = Field(ge=1, description="one past the last number")
    width: int = Field(1, ge=1, le=8, description="bytes per number, little-endian")

    @model_validator(mode="after")
    def _ordered(self) -> NumberRange:
        if not self.start < self.stop <= 256**self.width:
            raise ValueError(f"need start < stop <= 256^{self.width}, got {self.start}, "
                             f"{self.stop}")
        return self


class Guess(At):
    """Candidates written one by one at the address, each compared on the bus with target."""

    target: Ref = Field(description="the captured line (64 bytes) a right guess reproduces")
    prefix: str = Field("", max_length=LINE_SIZE - 1, description="text before each candidate")
    digits: int | None = Field(None, ge=1, le=8, description="every number of that many digits")
    words: list[str] | None = Field(None, min_length=1, max_length=MAX_WORDS,
                                    description="an inline word list")
    range: NumberRange | None = Field(None, description="every number start..stop-1")

    @field_validator("words")
    @classmethod
    def _short(cls, value: list[str] | None) -> list[str] | None:
        for i, word in enumerate(value or []):
            if not word or len(word.encode("utf-8")) > LINE_SIZE:
                raise ValueError(f"word {i} must be 1..{LINE_SIZE} bytes in UTF-8")
        return value

    @model_validator(mode="after")
    def _one(self) -> Guess:
        given = [k for k in ("digits", "words", "range") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of digits, words or range, got {len(given)}")
        return self

    def guesses(self) -> int:
        if self.digits is not None:
            return int(10**self.digits)
        if self.range is not None:
            return self.range.stop - self.range.start
        return len(self.words or ())

    def cost(self, machine: MachineShape, pages: int) -> tuple[Charge, ...]:
        """Every candidate written as a whole line (the dearer of the two ways), made one by
        one for a word list, in batches of :data:`BATCH`."""
        space = self.guesses()
        calls = -(-space // BATCH)
        narrow = machine.options.reduced_width_bits is not None
        each = NARROW_CANDIDATE_UNITS if narrow else CANDIDATE_UNITS
        out = [Charge("candidates guessed", space, each * space),
               Charge("engine calls of guess steps", calls, CALL_UNITS * calls)]
        if self.words is not None:
            out.append(Charge("words of word lists", space, WORD_UNITS * space))
        return tuple(out)

    def widths(self) -> tuple[int, int]:
        """Shortest and longest candidate, prefix included, in bytes."""
        head = len(self.prefix.encode("utf-8"))
        if self.words is not None:
            sizes = [len(w.encode("utf-8")) for w in self.words]
            return head + min(sizes), head + max(sizes)
        width = self.range.width if self.range is not None else self.digits or 0
        return head + width, head + width

    def bind(self, scope: Scope) -> Binding:
        place = self.at(scope, own=True, length=1)
        found = self.candidates(scope, place)
        scope.written.add(place.root)
        return found

    def candidates(self, scope: Scope, place: Binding) -> Binding:
        """Check the target, the candidates' fit in the line and the program's guess space;
        the binding of the matching candidate."""
        target = scope.data("target", self.target)
        if target.size != LINE_SIZE:
            got = "varies in length" if target.size is None else f"is {target.size} bytes"
            raise Problem("target", f"{self.target} {got}; a guess compares one {LINE_SIZE}-"
                          "byte line (capture it with length 64)")
        low, high = self.widths()
        column = place.page_offset % LINE_SIZE
        if column + high > LINE_SIZE:
            raise Problem("offset", f"a candidate of {high} bytes at byte {column} of its line "
                          f"does not fit in the {LINE_SIZE}-byte line")
        scope.guesses += self.guesses()
        if scope.guesses > MAX_GUESSES:
            generator = next(k for k in ("digits", "words", "range") if getattr(self, k))
            raise Problem(generator, f"{self.guesses()} candidates bring the program's guesses "
                          f"to {scope.guesses}; the limit is {MAX_GUESSES}")
        return scope.new_bytes(low if low == high else None, high, maybe_none=True)


class Constant(LiteralData):
    def bind(self, scope: Scope) -> Binding:
        size, _ = self.sizes(scope)
        return scope.new_bytes(size, size or 0)


class Slice(Args):
    value: Ref = Field(description="the bytes to cut")
    start: int = Field(0, ge=0, le=MAX_VALUE_BYTES - 1, description="first byte kept")
    length: int = Field(ge=1, le=MAX_VALUE_BYTES, description="bytes kept")

    def bind(self, scope: Scope) -> Binding:
        found = scope.data("value", self.value)
        have = found.size if found.size is not None else found.max_size
        if self.start + self.length > have:
            raise Problem("length", f"{self.value} has {have} bytes: bytes {self.start}.."
                          f"{self.start + self.length - 1} are not all there")
        return scope.new_bytes(self.length, self.length, maybe_none=found.maybe_none)


class Xor(Args):
    a: Ref = Field(description="bytes")
    b: Ref = Field(description="bytes of the same length")

    def bind(self, scope: Scope) -> Binding:
        a, b = scope.data("a", self.a), scope.data("b", self.b)
        for field, ref, found in (("a", self.a, a), ("b", self.b, b)):
            if found.size is None:
                raise Problem(field, f"{ref} varies in length; xor needs a fixed length")
        if a.size != b.size:
            raise Problem("b", f"{self.b} is {b.size} bytes, {self.a} {a.size}: xor needs "
                          "equal lengths")
        return scope.new_bytes(a.size, a.max_size, maybe_none=a.maybe_none or b.maybe_none)


class Concat(Args):
    values: list[Ref] = Field(min_length=2, max_length=8, description="bytes, joined in order")

    def bind(self, scope: Scope) -> Binding:
        parts = [scope.data("values", ref) for ref in self.values]
        sizes = [p.size for p in parts]
        size = None if None in sizes else sum(s or 0 for s in sizes)
        return scope.new_bytes(size, sum(p.max_size for p in parts),
                               maybe_none=any(p.maybe_none for p in parts))
