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
from .machine import MAX_MEMORY_PAGES, Domain, DomainKind, Machine, Mitigations
from .memory import BusTap, PhysicalMemory
from .psp import Psp, query_attestation_report
from .secretmem import SecretmemArea, SecretmemFile
from .textpatch import Patcher, TextSegment
from .verifier import Verifier
from .vfio import VfioContainer

__all__ = [
    "DIRECT_MAP_BASE",
    "ENGINES",
    "MAX_MEMORY_PAGES",
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
    "Psp",
    "SecretmemArea",
    "SecretmemFile",
    "SevEngine",
    "SevSnpEngine",
    "TextSegment",
    "TmeEngine",
    "Verifier",
    "VfioContainer",
    "make_engine",
    "query_attestation_report",
]
