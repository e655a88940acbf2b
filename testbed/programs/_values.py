"""Names, references, limits, and the values a program's steps pass to each other.

A step binds its result with ``as: NAME``; a later step refers to it as ``$NAME``. A value is
one of three kinds: a *domain* (a process or guest), an *address* (a place in memory, with the
domain that owns it and how many bytes are known there) or *bytes*. The load-time checker
knows of each name only a :class:`Binding` (its kind, sizes, who produced it); the interpreter
holds the value itself (a :class:`~testbed.platform.Domain`, a :class:`Location` or bytes).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator

from ..platform import Domain
from ..types import PhysAddr

__all__ = [
    "CAPABILITIES",
    "MAX_GUESSES",
    "MAX_PAGES",
    "MAX_STEPS",
    "MAX_VALUE_BYTES",
    "SIDES",
    "Binding",
    "Capability",
    "Kind",
    "Location",
    "Name",
    "Ref",
    "Value",
    "Who",
    "side_of",
]

MAX_STEPS = 64
"""Steps in one program."""
MAX_VALUE_BYTES = 4096
"""Bytes in one value (a read, a capture, a transform's result): one page."""
MAX_GUESSES = 100_000_000
"""Candidates all the ``guess`` steps of one program may try together."""
MAX_PAGES = 1024
"""Page frames all the ``alloc_pages`` steps of one program may ask for together."""

Capability = Literal["kernel_read_bug", "uninit_page_read", "bus_interposer",
                     "malicious_hypervisor", "chosen_plaintext", "unprivileged_task",
                     "concurrent_execution"]
"""An attacker capability, as the README's threat model names it."""
CAPABILITIES: tuple[str, ...] = get_args(Capability)

Who = Literal["victim", "attacker", "hypervisor", "kernel"]
"""Who performs a step. The hypervisor is the attacker's (a malicious one); the kernel does
housekeeping that is neither side's (key rotation, reboot)."""
SIDES: tuple[str, ...] = get_args(Who)

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def side_of(who: str) -> str:
    """``attacker`` for the attacker and the hypervisor, else ``who`` itself."""
    return "attacker" if who in ("attacker", "hypervisor") else who


def _name(value: str) -> str:
    if value.startswith("$"):
        raise ValueError(f"a name is written without $ here, got {value!r}")
    if not _NAME.fullmatch(value):
        raise ValueError(f"a name is a lower-case letter, then up to 31 lower-case letters, "
                         f"digits or _, got {value!r}")
    return value


def _ref(value: str) -> str:
    if not value.startswith("$") or not _NAME.fullmatch(value[1:]):
        raise ValueError(f"a reference is $ and the name an earlier step bound with as: "
                         f"(lower-case letters, digits, _), got {value!r}")
    return value


Name = Annotated[str, AfterValidator(_name)]
"""What ``as:`` binds (``secret_page``)."""
Ref = Annotated[str, AfterValidator(_ref)]
"""A reference to an earlier step's result (``$secret_page``)."""


class Kind(enum.Enum):
    """What a name holds."""

    DOMAIN = "a domain"
    ADDRESS = "an address"
    BYTES = "bytes"


@dataclass(frozen=True)
class Binding:
    """What the load-time checker knows of a name, from the step that bound it.

    Attributes:
        size: ``ADDRESS``: the bytes known from the address on (the secret's size, a page's
            rest); ``BYTES``: the exact length, ``None`` when it varies.
        max_size: ``BYTES``: the longest it can be.
        pages: ``ADDRESS``: pages it spans (``page:`` picks one).
        page_offset: ``ADDRESS``: its offset in its page.
        domain: ``ADDRESS``: the name of the domain binding owning it; ``DOMAIN``: its own.
        root: ``ADDRESS``: the ``alloc_pages`` step and the page index it lies in.
        epoch: reboots before it was bound (an address or a domain does not survive one).
    """

    kind: Kind
    step: int
    side: str
    size: int | None = None
    max_size: int = 0
    pages: int = 1
    page_offset: int = 0
    domain: str = ""
    root: tuple[int, int] = (-1, 0)
    epoch: int = 0
    guest: bool = False
    maybe_none: bool = False
    """``BYTES``: the step may produce nothing (a guess that found no match)."""
    system: str = ""
    """``BYTES``: the system step that produced the value (``wear_out``...), whose goal can
    judge it; ``""``: another step."""


@dataclass(frozen=True)
class Location:
    """A place in memory at run time: the page frames it names, the owner, what was put there."""

    addrs: tuple[PhysAddr, ...]
    domain: Domain
    size: int
    gpns: tuple[int, ...] = ()
    """Guest page numbers of ``addrs`` when the owner is a guest (for guest-physical reads)."""
    data: bytes | None = None
    """What a ``store`` or ``store_secret`` wrote there."""


Value = Domain | Location | bytes | None
"""A name's value at run time (``None``: a guess found nothing)."""
