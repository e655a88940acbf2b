"""The arguments of the bus steps that carry a line's sideband (ECC) bits with its data."""

from __future__ import annotations

from pydantic import Field

from ..types import LINE_SIZE
from ._args import At, Read
from ._scope import Problem, Scope
from ._values import Binding, Ref

__all__ = ["SEALED_LINE", "CaptureSealed", "WriteSealed"]

SIDEBAND_BYTES = 8
"""Bytes of a line's sideband word in a value: little-endian, as the engine keeps it."""
SEALED_LINE = LINE_SIZE + SIDEBAND_BYTES
"""Bytes of one line with its sideband word in a value: the 64 data bytes, then the word."""


class CaptureSealed(Read):
    def bind(self, scope: Scope) -> Binding:
        place = self.at(scope, length=self.length)
        if place.page_offset % LINE_SIZE:
            raise Problem("offset", f"the bus carries whole {LINE_SIZE}-byte lines: this address "
                          f"is {place.page_offset % LINE_SIZE} bytes into its line")
        lines = -(-(place.size or 0) // LINE_SIZE)
        self.at(scope, length=lines * LINE_SIZE)  # whole lines, still within the page
        return scope.new_bytes(lines * SEALED_LINE, lines * SEALED_LINE)


class WriteSealed(At):
    data: Ref = Field(description="lines with their sideband words, as capture_sealed bound "
                      f"them ({SEALED_LINE} bytes a line)")

    def bind(self, scope: Scope) -> None:
        found = scope.data("data", self.data)
        if found.size is None or found.size % SEALED_LINE:
            got = "varies in length" if found.size is None else f"is {found.size} bytes"
            raise Problem("data", f"{self.data} {got}; a line with its sideband word is "
                          f"{SEALED_LINE} bytes (what capture_sealed binds)")
        place = self.at(scope, length=found.size // SEALED_LINE * LINE_SIZE)
        if place.page_offset % LINE_SIZE:
            raise Problem("offset", f"the bus carries whole {LINE_SIZE}-byte lines: this address "
                          f"is {place.page_offset % LINE_SIZE} bytes into its line")
        scope.written.add(place.root)
