"""Small shared types: address and key identifiers, outcomes, sizes."""

from __future__ import annotations

import enum
from typing import NewType

__all__ = [
    "LINE_SIZE",
    "PAGE_SIZE",
    "PMD_SIZE",
    "Asid",
    "KeyId",
    "KeySlot",
    "Outcome",
    "Pfn",
    "PhysAddr",
]

LINE_SIZE = 64
"""Bytes in one cache line: the unit the memory controller encrypts."""
PAGE_SIZE = 4096
PMD_SIZE = 2 * 1024 * 1024

PhysAddr = NewType("PhysAddr", int)
"""A physical (DRAM) byte address."""
Pfn = NewType("Pfn", int)
"""A page frame number: the physical address divided by :data:`PAGE_SIZE`."""
KeySlot = NewType("KeySlot", int)
"""The key an access carries to the memory controller: an MKTME KeyID, a SEV ASID, or 0 (the
host: the TME key, or no C-bit)."""
KeyId = NewType("KeyId", KeySlot)
"""An MKTME KeyID (a key slot carried in the upper physical-address bits)."""
Asid = NewType("Asid", KeySlot)
"""A SEV guest's address-space ID (a key slot selected by the C-bit)."""


class Outcome(enum.StrEnum):
    """What one attack achieved under one profile, decided from the evidence."""

    SUCCEEDED = "succeeded"
    """The attacker got exactly what it wanted."""
    PARTIAL = "partial"
    """The attacker got part of it; a metric says how much."""
    INCONCLUSIVE = "inconclusive"
    """What the attacker got, a guess gets too often (more than 2^-32): success cannot be told
    from luck."""
    MITIGATED = "mitigated"
    """The attack ran to the end but got only garbage or ciphertext, where the control without
    the defence succeeded."""
    BLOCKED = "blocked"
    """A platform check refused a step (fault, RMP violation, ENOMEM, signature)."""
    INEFFECTIVE = "ineffective"
    """The attack failed, but it fails without any defence too (the control): it does not work
    with these parameters, and no defence is credited."""
    ERROR = "error"
    """The run itself failed."""
    NOT_APPLICABLE = "not_applicable"
    """The threat does not exist under this profile (a precondition is not met)."""
