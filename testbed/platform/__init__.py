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
from .machine import Domain, DomainKind, Machine, Mitigations
from .memory import BusTap, PhysicalMemory

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
    "Machine",
    "MktmeEngine",
    "Mitigations",
    "NoEngine",
    "PageAllocator",
    "PconfigCommand",
    "PconfigStatus",
    "PhysicalMemory",
    "SevEngine",
    "SevSnpEngine",
    "TmeEngine",
    "make_engine",
]
