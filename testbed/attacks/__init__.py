"""The built-in attacks: one module each, the same small contract for all (:class:`Attack`).

The registry of every attack a scenario can name, built-in or from a plugin, is
:data:`testbed.registry.attacks`.
"""

from __future__ import annotations

from typing import Any

from ._base import (
    Actor,
    Attack,
    AttackContext,
    AttackLog,
    AttackParams,
    BaseMetrics,
    Phase,
    SecretParams,
    Verdict,
    judge_bytes,
    make_secret,
    plant_secret,
)
from .attestation import AttestationBypass
from .ciphertext_side_channel import CiphertextSideChannel
from .dirty_page_leak import DirtyPageLeak
from .key_wearout import KeyWearout
from .secretmem_exhaustion import SecretmemExhaustion
from .torn_live_patch import TornLivePatch

__all__ = [
    "BUILTIN_ATTACKS",
    "Actor",
    "Attack",
    "AttackContext",
    "AttackLog",
    "AttackParams",
    "AttestationBypass",
    "BaseMetrics",
    "CiphertextSideChannel",
    "DirtyPageLeak",
    "KeyWearout",
    "Phase",
    "SecretParams",
    "SecretmemExhaustion",
    "TornLivePatch",
    "Verdict",
    "judge_bytes",
    "make_secret",
    "plant_secret",
]

BUILTIN_ATTACKS: tuple[type[Attack[Any]], ...] = (
    KeyWearout,
    SecretmemExhaustion,
    DirtyPageLeak,
    TornLivePatch,
    AttestationBypass,
    CiphertextSideChannel,
)
"""The attacks that ship with the testbed, in the order ``testbed list`` shows them."""
