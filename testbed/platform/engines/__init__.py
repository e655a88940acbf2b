"""Memory-encryption engines: what the memory controller does to each line on its way to DRAM.

:mod:`.base` holds the engine base and the capability interfaces, :mod:`.tme` Intel TME and
MKTME (PCONFIG), :mod:`.integrity` TME-MK with memory integrity, :mod:`.sev` AMD SEV and
SEV-SNP (the RMP), :mod:`.builtin` the built-in engines by name.
"""

from __future__ import annotations

from .base import (
    AES_XTS_128,
    HOST,
    Engine,
    EngineOptions,
    EngineWithAttestation,
    EngineWithGuestIsolation,
    EngineWithIntegrity,
    EngineWithKeyIds,
    EngineWithRmp,
    EngineWithRuntimeRotation,
    EngineWithSnpAttestation,
    NoEngine,
    PconfigCommand,
    PconfigStatus,
)
from .builtin import ENGINES, engine_class, make_engine
from .integrity import OWNER_BIT, POISON_BIT, MktmeIntegrityEngine
from .keys import CipherFamily, CipherKind, KeySource
from .sev import RmpEntry, SevEngine, SevSnpEngine
from .tme import MktmeEngine, TmeEngine

__all__ = [
    "AES_XTS_128",
    "ENGINES",
    "HOST",
    "OWNER_BIT",
    "POISON_BIT",
    "CipherFamily",
    "CipherKind",
    "Engine",
    "EngineOptions",
    "EngineWithAttestation",
    "EngineWithGuestIsolation",
    "EngineWithIntegrity",
    "EngineWithKeyIds",
    "EngineWithRmp",
    "EngineWithRuntimeRotation",
    "EngineWithSnpAttestation",
    "KeySource",
    "MktmeEngine",
    "MktmeIntegrityEngine",
    "NoEngine",
    "PconfigCommand",
    "PconfigStatus",
    "RmpEntry",
    "SevEngine",
    "SevSnpEngine",
    "TmeEngine",
    "engine_class",
    "make_engine",
]
