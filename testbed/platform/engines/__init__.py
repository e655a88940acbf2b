"""Memory-encryption engines."""

from __future__ import annotations

from .base import (
    ENGINES,
    Engine,
    EngineWithRmp,
    MktmeEngine,
    NoEngine,
    PconfigCommand,
    PconfigStatus,
    RmpEntry,
    SevEngine,
    SevSnpEngine,
    TmeEngine,
    make_engine,
)
from .keys import CipherKind, KeySource

__all__ = [
    "ENGINES",
    "CipherKind",
    "Engine",
    "EngineWithRmp",
    "KeySource",
    "MktmeEngine",
    "NoEngine",
    "PconfigCommand",
    "PconfigStatus",
    "RmpEntry",
    "SevEngine",
    "SevSnpEngine",
    "TmeEngine",
    "make_engine",
]
