"""Kernel text: x86 decoding, text patching, the CPUs that run it during a patch, and the
exploration of their interleavings."""

from __future__ import annotations

from .interleavings import (
    MAX_INTERLEAVINGS,
    Exploration,
    count_interleavings,
    explore_all,
    explore_random,
)
from .livepatch import MAX_CPUS, PATCHER, ExecClass, Execution, LivePatch
from .patching import (
    POKE_MAX_OPCODE_SIZE,
    OpKind,
    Patcher,
    PatchOp,
    PokeSite,
    Regs,
    TextSegment,
    poke_int3_handler,
    poke_site,
    text_poke_bp_ops,
    text_poke_ops,
)
from .x86 import (
    ADDRESS_MASK,
    INT3,
    MAX_INSN_LENGTH,
    NOP2,
    NOP5,
    Insn,
    InsnKind,
    decode,
    encode,
    insn_length,
)

__all__ = [
    "ADDRESS_MASK",
    "INT3",
    "MAX_CPUS",
    "MAX_INSN_LENGTH",
    "MAX_INTERLEAVINGS",
    "NOP2",
    "NOP5",
    "PATCHER",
    "POKE_MAX_OPCODE_SIZE",
    "ExecClass",
    "Execution",
    "Exploration",
    "Insn",
    "InsnKind",
    "LivePatch",
    "OpKind",
    "PatchOp",
    "Patcher",
    "PokeSite",
    "Regs",
    "TextSegment",
    "count_interleavings",
    "decode",
    "encode",
    "explore_all",
    "explore_random",
    "insn_length",
    "poke_int3_handler",
    "poke_site",
    "text_poke_bp_ops",
    "text_poke_ops",
]
