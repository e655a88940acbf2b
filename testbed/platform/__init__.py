"""The emulated machine. Knows nothing of attacks; usable directly from a notebook."""

from __future__ import annotations

from .allocator import PageAllocator
from .directmap import DIRECT_MAP_BASE, DirectMap
from .engines import (
    ENGINES,
    Engine,
    EngineWithRmp,
    MktmeEngine,
    NoEngine,
    PconfigCommand,
    PconfigStatus,
    SevEngine,
    SevSnpEngine,
    TmeEngine,
    make_engine,
)
from .keys import KeySource
from .livepatch import LivePatch
from .machine import Domain, DomainKind, Machine, Mitigations
from .memory import BusTap, PhysicalMemory
from .secretmem import SecretmemArea, SecretmemFile
from .textpatch import Patcher, TextSegment
from .vfio import VfioContainer

__all__ = [
    "DIRECT_MAP_BASE",
    "ENGINES",
    "BusTap",
    "DirectMap",
    "Domain",
    "DomainKind",
    "Engine",
    "EngineWithRmp",
    "KeySource",
    "LivePatch",
    "Machine",
    "Mitigations",
    "MktmeEngine",
    "NoEngine",
    "PageAllocator",
    "Patcher",
    "PconfigCommand",
    "PconfigStatus",
    "PhysicalMemory",
    "SecretmemArea",
    "SecretmemFile",
    "SevEngine",
    "SevSnpEngine",
    "TextSegment",
    "TmeEngine",
    "VfioContainer",
    "make_engine",
]
