"""The x86 instructions of live kernel-text patching: a small decoder and encoder.

Only the encodings that ``text_poke_bp()`` deals with are decoded; any other byte sequence is an
invalid opcode (the CPU would raise #UD), which is what a torn fetch often produces.

==================  =======  ======  ==============================================
bytes               kind     length  operand
==================  =======  ======  ==============================================
``E8 rel32``        CALL     5       ``rel32``, little-endian, sign-extended
``E9 rel32``        JMP32    5       ``rel32``, little-endian, sign-extended
``EB rel8``         JMP8     2       ``rel8``, sign-extended
``66 90``           NOP2     2       none (the kernel's 2-byte ideal NOP)
``0F 1F 44 00 00``  NOP5     5       none (the kernel's atomic 5-byte NOP)
``0F 1F /0 ...``    NOPL     3..8    ModRM, SIB, displacement: any other long NOP
``CC``              INT3     1       none
==================  =======  ======  ==============================================

A branch goes to ``ip + length + rel`` (64-bit wrap-around). ``0F 1F`` is only a NOP with
ModRM ``reg = 0``; its length follows the ModRM/SIB rules of 64-bit mode without prefixes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ...errors import ConfigError, DecodeError

__all__ = [
    "ADDRESS_MASK",
    "INT3",
    "MAX_INSN_LENGTH",
    "NOP2",
    "NOP5",
    "Insn",
    "InsnKind",
    "decode",
    "encode",
    "insn_length",
]

ADDRESS_MASK = (1 << 64) - 1
INT3 = b"\xcc"
NOP2 = b"\x66\x90"
"""``ideal_nops[2]`` of the kernel (P6 NOPs): operand-size prefix + NOP."""
NOP5 = b"\x0f\x1f\x44\x00\x00"
"""``ideal_nops[NOP_ATOMIC5]``: ``nopl 0x0(%rax,%rax,1)``, one instruction."""
MAX_INSN_LENGTH = 8
"""Longest instruction this decoder knows (a ``0F 1F`` NOP with SIB and disp32)."""

_INT3_OPCODE, _CALL_OPCODE, _JMP32_OPCODE, _JMP8_OPCODE = 0xCC, 0xE8, 0xE9, 0xEB


class InsnKind(enum.StrEnum):
    """What an instruction does."""

    CALL = "call"
    JMP32 = "jmp32"
    JMP8 = "jmp8"
    NOP2 = "nop2"
    NOP5 = "nop5"
    NOPL = "nopl"
    INT3 = "int3"


BRANCHES = frozenset({InsnKind.CALL, InsnKind.JMP32, InsnKind.JMP8})


@dataclass(frozen=True)
class Insn:
    """One decoded instruction.

    Attributes:
        kind: what it does.
        raw: its bytes.
        rel: the sign-extended displacement of a CALL or JMP (0 for the others).
    """

    kind: InsnKind
    raw: bytes
    rel: int = 0

    @property
    def length(self) -> int:
        """Bytes the instruction takes."""
        return len(self.raw)

    def target(self, ip: int) -> int | None:
        """Where a CALL or JMP at ``ip`` goes (``None`` for the others)."""
        if self.kind not in BRANCHES:
            return None
        return (ip + self.length + self.rel) & ADDRESS_MASK

    def text(self, ip: int) -> str:
        """Assembler-like text of the instruction at ``ip``."""
        target = self.target(ip)
        return self.kind.value if target is None else f"{self.kind.value} {target:#x}"


def _modrm_length(code: bytes) -> int | None:
    """Length of ``0F 1F /0`` from its ModRM (and SIB) byte; ``None`` if they are not read yet."""
    if len(code) < 3:
        return None
    modrm = code[2]
    mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
    if reg != 0:
        raise DecodeError(f"invalid opcode 0f 1f with ModRM {modrm:#04x} (reg {reg}, not 0)")
    length = 3
    if mod == 3:
        return length
    if rm == 4:
        length += 1
        if mod == 0:
            if len(code) < 4:
                return None
            if code[3] & 7 == 5:
                length += 4
    elif mod == 0 and rm == 5:
        length += 4
    return length + (1 if mod == 1 else 4 if mod == 2 else 0)


def insn_length(code: bytes) -> int | None:
    """Length of the instruction that ``code`` starts, from as few bytes as it needs.

    Args:
        code: the bytes fetched so far (at least one).

    Returns:
        The length, or ``None`` when more bytes are needed to know it.

    Raises:
        DecodeError: the bytes read so far already make an invalid opcode.
    """
    if not code:
        return None
    first = code[0]
    if first == _INT3_OPCODE:
        return 1
    if first in (_CALL_OPCODE, _JMP32_OPCODE):
        return 5
    if first == _JMP8_OPCODE:
        return 2
    if first in (0x66, 0x0F):
        if len(code) < 2:
            return None
        if first == 0x66 and code[1] == 0x90:
            return 2
        if first == 0x0F and code[1] == 0x1F:
            return _modrm_length(code)
        raise DecodeError(f"invalid opcode {code[0]:02x} {code[1]:02x}")
    raise DecodeError(f"invalid opcode {first:02x}")


def decode(code: bytes) -> Insn:
    """Decode the instruction at the start of ``code`` (bytes after it are ignored).

    Raises:
        DecodeError: an invalid opcode, or fewer bytes than the instruction needs.
    """
    length = insn_length(code)
    if length is None or length > len(code):
        raise DecodeError(f"incomplete instruction: {len(code)} byte(s) {code.hex(' ')}")
    raw = bytes(code[:length])
    first = raw[0]
    if first == _INT3_OPCODE:
        return Insn(InsnKind.INT3, raw)
    if first in (_CALL_OPCODE, _JMP32_OPCODE):
        kind = InsnKind.CALL if first == _CALL_OPCODE else InsnKind.JMP32
        return Insn(kind, raw, int.from_bytes(raw[1:5], "little", signed=True))
    if first == _JMP8_OPCODE:
        return Insn(InsnKind.JMP8, raw, int.from_bytes(raw[1:2], "little", signed=True))
    if raw == NOP2:
        return Insn(InsnKind.NOP2, raw)
    return Insn(InsnKind.NOP5 if raw == NOP5 else InsnKind.NOPL, raw)


def encode(kind: InsnKind | str, ip: int = 0, target: int | None = None) -> bytes:
    """The bytes of a ``kind`` instruction placed at ``ip`` (branches go to ``target``).

    NOPL is encoded as :data:`NOP5`.

    Raises:
        ConfigError: a branch without a target, or a target out of the displacement's reach.
    """
    kind = InsnKind(kind)
    fixed = {InsnKind.NOP2: NOP2, InsnKind.NOP5: NOP5, InsnKind.NOPL: NOP5, InsnKind.INT3: INT3}
    if kind in fixed:
        return fixed[kind]
    if target is None:
        raise ConfigError(f"{kind.value}: a branch needs a target address")
    size, opcode = {InsnKind.CALL: (5, _CALL_OPCODE), InsnKind.JMP32: (5, _JMP32_OPCODE),
                    InsnKind.JMP8: (2, _JMP8_OPCODE)}[kind]
    rel = ((target - ip - size + (1 << 63)) & ADDRESS_MASK) - (1 << 63)  # 64-bit wrap-around
    bits = 8 * (size - 1)
    if not -(1 << (bits - 1)) <= rel < 1 << (bits - 1):
        raise ConfigError(f"{kind.value}: target {target:#x} is {rel} bytes from the end of the "
                          f"instruction at {ip:#x}; rel{bits} reaches "
                          f"{-(1 << (bits - 1))}..{(1 << (bits - 1)) - 1}")
    return bytes([opcode]) + rel.to_bytes(size - 1, "little", signed=True)
