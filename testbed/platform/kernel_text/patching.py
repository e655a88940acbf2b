"""Live kernel-text patching: the text, the patch sites, the INT3 handler and the two patchers.

A patch batch is a list of sites (:func:`poke_site`, ``struct text_poke_loc``). A patcher turns
the batch into a list of operations (:class:`PatchOp`), one per scheduler step: writes of
``poke_chunk`` bytes, and syncs. A sync (``on_each_cpu(do_sync_core)``) takes two steps: the IPI
and the wait. :func:`text_poke_ops` writes the new bytes in place; :func:`text_poke_bp_ops`
follows the INT3 protocol, under which a CPU whose fetch yields INT3 traps to
:func:`poke_int3_handler`: at a site of the batch in progress the handler emulates that site's
new instruction, otherwise the trap goes on to the normal INT3 path.

The CPUs that run the text during a patch are in :mod:`testbed.platform.kernel_text.livepatch`;
the exploration of their interleavings with the patcher is in
:mod:`testbed.platform.kernel_text.interleavings`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...errors import ConfigError, DecodeError, InvalidPatch
from .x86 import ADDRESS_MASK, Insn, InsnKind, decode

__all__ = [
    "POKE_MAX_OPCODE_SIZE",
    "OpKind",
    "PatchOp",
    "Patcher",
    "PokeSite",
    "Regs",
    "TextSegment",
    "poke_int3_handler",
    "poke_site",
    "text_poke_bp_ops",
    "text_poke_ops",
]

POKE_MAX_OPCODE_SIZE = 5
"""Longest patch ``text_poke_bp()`` accepts."""


class TextSegment:
    """Kernel text: bytes at a virtual base address.

    Raises:
        ConfigError: empty text, or an access outside it.
    """

    def __init__(self, base: int, data: bytes | bytearray) -> None:
        if not data:
            raise ConfigError("a text segment needs at least one byte")
        self.base = base
        self._data = bytearray(data)

    @property
    def size(self) -> int:
        """Bytes in the segment."""
        return len(self._data)

    def _offset(self, address: int, length: int) -> int:
        offset = address - self.base
        if offset < 0 or offset + length > len(self._data):
            raise ConfigError(f"{length} byte(s) at {address:#x} are outside the text segment "
                              f"{self.base:#x}..{self.base + len(self._data):#x}")
        return offset

    def read(self, address: int, length: int) -> bytes:
        """``length`` bytes at ``address``."""
        offset = self._offset(address, length)
        return bytes(self._data[offset : offset + length])

    def write(self, address: int, data: bytes) -> None:
        """Store ``data`` at ``address``."""
        offset = self._offset(address, len(data))
        self._data[offset : offset + len(data)] = data

    def snapshot(self) -> bytes:
        """The whole segment."""
        return bytes(self._data)

    def copy(self) -> TextSegment:
        """An independent copy."""
        return TextSegment(self.base, self._data)


# -- text_poke_bp(): the batch entries and the INT3 handler ------------------------------------
@dataclass(frozen=True)
class PokeSite:
    """One entry of a patch batch (``struct text_poke_loc``): where, the new bytes, and the
    instruction the INT3 handler emulates meanwhile (CALL, JMP32, JMP8, or INT3: not consumed).
    """

    address: int
    text: bytes
    emulate: Insn

    @property
    def length(self) -> int:
        """Bytes patched."""
        return len(self.text)


_JMP8_ZERO = Insn(InsnKind.JMP8, b"\xeb\x00", 0)
_JMP32_ZERO = Insn(InsnKind.JMP32, b"\xe9\x00\x00\x00\x00", 0)


def poke_site(address: int, text: bytes, emulate: bytes | None = None) -> PokeSite:
    """Check and build one batch entry, as ``text_poke_loc_init()`` does.

    Args:
        address: where the patch goes.
        text: the new bytes (1..5).
        emulate: the instruction the handler emulates, when it is not ``text`` itself (a site
            whose new text starts with an explicit INT3 still needs its detour emulated).

    Raises:
        InvalidPatch: too long, not one known instruction, a length that does not match the
            instruction to emulate, or a NOP other than the ideal NOP2 or NOP5.
    """
    where = f"patch at {address:#x}"
    if not 1 <= len(text) <= POKE_MAX_OPCODE_SIZE:
        raise InvalidPatch(f"{where}: {len(text)} bytes; a patch is 1..{POKE_MAX_OPCODE_SIZE}")
    try:
        insn = decode(text if emulate is None else emulate)
    except DecodeError as exc:
        raise InvalidPatch(f"{where}: the instruction to emulate does not decode: {exc}") from None
    if insn.length != len(text):
        raise InvalidPatch(f"{where}: {len(text)} bytes given, but the instruction to emulate "
                           f"({insn.kind.value}, {insn.raw.hex(' ')}) is {insn.length} bytes")
    if insn.kind is InsnKind.NOP2:
        insn = _JMP8_ZERO
    elif insn.kind is InsnKind.NOP5:
        insn = _JMP32_ZERO
    elif insn.kind is InsnKind.NOPL:
        raise InvalidPatch(f"{where}: {insn.raw.hex(' ')} is not an instruction the handler "
                           "emulates (of the NOPs, only 66 90 and 0f 1f 44 00 00)")
    return PokeSite(address, bytes(text), insn)


@dataclass
class Regs:
    """The registers the INT3 handler touches: the instruction pointer and the stack."""

    ip: int
    stack: list[int] = field(default_factory=list)


def poke_int3_handler(vector: Mapping[int, PokeSite], regs: Regs) -> bool:
    """The INT3 handler of a patch in progress (``poke_int3_handler()``).

    Args:
        vector: the batch being patched, by address (empty when no patch is in progress).
        regs: the trapping CPU; ``regs.ip`` is the address after the INT3.

    Returns:
        ``True`` when the trap was consumed: the site's instruction was emulated (CALL pushes the
        return address ``site + length`` and jumps; JMP32/JMP8 jump; NOP2 and NOP5 are JMP8 and
        JMP32 with displacement 0). ``False`` for an INT3 that is not ours (an explicit one in
        the text, or a site whose instruction is INT3): it goes to the normal INT3 path.
    """
    site = vector.get((regs.ip - 1) & ADDRESS_MASK) if vector else None
    if site is None or site.emulate.kind is InsnKind.INT3:
        return False
    ip = site.address + site.length
    if site.emulate.kind is InsnKind.CALL:
        regs.stack.append(ip)
    regs.ip = (ip + site.emulate.rel) & ADDRESS_MASK
    return True


# -- the two patchers -----------------------------------------------------------------------
class Patcher(enum.StrEnum):
    """How the patch is written."""

    TEXT_POKE = "text_poke"
    """The new bytes in place, in chunks, first byte first; no protocol."""
    TEXT_POKE_BP = "text_poke_bp"
    """The INT3 protocol: INT3 on every first byte, sync, tails, sync, first bytes, sync."""


class OpKind(enum.StrEnum):
    """One patcher step."""

    WRITE = "write"
    IPI = "ipi"
    WAIT = "wait"


@dataclass(frozen=True)
class PatchOp:
    """One patcher step.

    Attributes:
        publish: before this step, the batch the INT3 handler knows (``bp_patching``).
        retract: after this step the handler knows no batch (``nr_entries = 0``).
    """

    kind: OpKind
    address: int = 0
    data: bytes = b""
    publish: tuple[PokeSite, ...] = ()
    retract: bool = False


_SYNC = (PatchOp(OpKind.IPI), PatchOp(OpKind.WAIT))


def _writes(address: int, data: bytes, chunk: int) -> list[PatchOp]:
    return [PatchOp(OpKind.WRITE, address + i, data[i : i + chunk])
            for i in range(0, len(data), chunk)]


def text_poke_ops(sites: Sequence[PokeSite], chunk: int = 1) -> tuple[PatchOp, ...]:
    """Byte-wise patching: each site's new bytes written in place, ``chunk`` at a time."""
    return tuple(op for s in sites for op in _writes(s.address, s.text, chunk))


def text_poke_bp_ops(sites: Sequence[PokeSite], chunk: int = 1) -> tuple[PatchOp, ...]:
    """``text_poke_bp_batch()``: the steps of the INT3 protocol for a batch of sites.

    The tails are written ``chunk`` bytes at a time, like :func:`text_poke_ops`: the protocol
    does not need atomic writes.
    """
    ops = [PatchOp(OpKind.WRITE, s.address, b"\xcc") for s in sites]
    ops[0] = PatchOp(OpKind.WRITE, sites[0].address, b"\xcc", publish=tuple(sites))
    ops += _SYNC
    tails = [op for s in sites if s.length > 1 for op in _writes(s.address + 1, s.text[1:], chunk)]
    ops += [*tails, *_SYNC] if tails else []
    firsts = [PatchOp(OpKind.WRITE, s.address, s.text[:1]) for s in sites if s.text[0] != 0xCC]
    ops += [*firsts, *_SYNC] if firsts else []
    last = ops[-1]
    ops[-1] = PatchOp(last.kind, last.address, last.data, last.publish, retract=True)
    return tuple(ops)

