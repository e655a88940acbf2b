"""What the load-time checker knows while it walks a program: the names bound so far.

Each step's arguments look their references up here (:meth:`Scope.domain`,
:meth:`Scope.address`, :meth:`Scope.data`) and say what their result will be; a
:class:`Problem` names the argument at fault. Nothing here touches a machine.
"""

from __future__ import annotations

from dataclasses import replace

from ..types import PAGE_SIZE
from ._values import MAX_VALUE_BYTES, Binding, Kind, side_of

__all__ = ["Poisoned", "Problem", "Scope"]


class Problem(Exception):
    """A load-time error about one argument of a step (``field`` ``""``: the step itself)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Poisoned(Exception):
    """A reference to a name whose own step was refused: that error is the one reported."""


class Scope:
    """The names bound by the steps checked so far, and what those steps did.

    Args:
        later: every name any step binds, with the step (to say "bound later, by step 5").
    """

    def __init__(self, later: dict[str, int]) -> None:
        self.bindings: dict[str, Binding] = {}
        self.poisoned: set[str] = set()
        self.later = later
        self.step = 0
        self.who = "victim"
        self.epoch = 0
        self.reboot_step = -1
        self.alias_step: int | None = None
        """The step that booted the machine with an aliasing DIMM (``alias_dimm``), if any."""
        self.destroyed: dict[str, int] = {}
        """Domain names -> the step that destroyed them."""
        self.freed: dict[tuple[int, int], int] = {}
        """(alloc step, page) -> the step that freed the page."""
        self.written: set[tuple[int, int]] = set()
        """Pages the attacker wrote (through its domain or the bus)."""
        self.served: dict[tuple[int, int], int] = {}
        """(alloc step, page) -> the ``serve`` step by which the victim's service serves it."""
        self.secret: Binding | None = None
        self.guesses = 0
        self.pages = 0

    @property
    def side(self) -> str:
        return side_of(self.who)

    def get(self, field: str, ref: str, kind: Kind) -> Binding:
        """The binding ``ref`` names, which must be of ``kind``."""
        name = ref[1:]
        if name in self.poisoned:
            raise Poisoned(name)
        found = self.bindings.get(name)
        if found is None:
            where = self.later.get(name)
            hint = (f"; it is bound later, by step {where}" if where is not None and
                    where >= self.step else f"; no step has as: {name}")
            raise Problem(field, f"{ref} is not bound by an earlier step{hint}")
        if found.kind is not kind:
            raise Problem(field, f"{ref} is {found.kind.value} (bound by step {found.step}), "
                          f"not {kind.value}")
        if kind is not Kind.BYTES and found.epoch != self.epoch:
            raise Problem(field, f"{ref} was bound before the reboot of step "
                          f"{self.reboot_step}: the machine it named is gone")
        return found

    def domain(self, field: str, ref: str, *, own: bool = False) -> Binding:
        """A domain; ``own``: the step acts as that domain, which must be its side's and alive."""
        found = self.get(field, ref, Kind.DOMAIN)
        if own:
            self._own(field, ref, found.side, found.domain)
        return found

    def address(self, field: str, ref: str, *, own: bool = False) -> Binding:
        """An address; ``own``: the step acts as its owner (the page must still be owned)."""
        found = self.get(field, ref, Kind.ADDRESS)
        if own:
            self._own(field, ref, found.side, found.domain)
        return found

    def data(self, field: str, ref: str) -> Binding:
        """Bytes the step's side knows (the attacker cannot use what only the victim read)."""
        found = self.get(field, ref, Kind.BYTES)
        if found.side != self.side:
            raise Problem(field, f"{ref} is what the {found.side} read (step {found.step}); "
                          f"the {self.side} does not know it")
        return found

    def _own(self, field: str, ref: str, side: str, domain: str) -> None:
        if side != self.side:
            raise Problem(field, f"{ref} belongs to the {side}, not the {self.side}")
        if domain in self.destroyed:
            raise Problem(field, f"the domain of {ref} was destroyed by step "
                          f"{self.destroyed[domain]}")

    def place(self, field: str, ref: str, page: int, offset: int, *, own: bool = False,
              length: int | None = None, page_field: str = "page") -> Binding:
        """The one-page address ``ref`` + ``page`` + ``offset``, checked to hold ``length``
        bytes (``None``: what is known there) within its page."""
        base = self.address(field, ref, own=own)
        if page >= base.pages:
            raise Problem(page_field, f"{ref} spans {base.pages} page(s): page must be 0.."
                          f"{base.pages - 1}, got {page}")
        root = (base.root[0], base.root[1] + page)
        if own and root in self.freed:
            raise Problem(field, f"{ref}: page {page} was freed by step {self.freed[root]}")
        start = base.page_offset + offset
        known = PAGE_SIZE - base.page_offset if base.pages > 1 else base.size or 0
        if length is None:
            if offset >= known:
                raise Problem("offset", f"offset {offset} is past the {known} bytes of {ref}; "
                              "give a length")
            length = known - offset
        if start + length > PAGE_SIZE:
            raise Problem("length", f"{length} bytes at offset {start} of the page pass its "
                          f"end ({PAGE_SIZE} bytes)")
        return replace(base, size=length, pages=1, page_offset=start, root=root)

    def new_bytes(self, size: int | None, max_size: int, *, maybe_none: bool = False) -> Binding:
        """The result of a step that produces bytes."""
        if max_size > MAX_VALUE_BYTES:
            raise Problem("", f"the result would be {max_size} bytes; a value holds at most "
                          f"{MAX_VALUE_BYTES}")
        return Binding(Kind.BYTES, self.step, self.side, size, max_size,
                       maybe_none=maybe_none, epoch=self.epoch)
