"""The emulated machine. Knows nothing of attacks; usable directly from a notebook.

Subsystems, from the bottom up:

- :mod:`.mm`: DRAM and the bus tap, the page allocator, kernel direct maps, secret memory.
- :mod:`.engines`: memory-encryption engines, their capability interfaces and key source.
- :mod:`.machine`: the machine that ties DRAM, an engine, domains and direct maps together.
- :mod:`.sev`: the SEV attestation chain (report, certificates, PSP, verifier).
- :mod:`.kernel_text`: x86 text, text patching, CPUs during a live patch, interleavings.
- :mod:`.vfio`: a VFIO container with dirty-page tracking.

This module is the public API: everything attacks use is exported here.
"""

from __future__ import annotations

from .engines import (
    ENGINES,
    Engine,
    EngineWithRmp,
    KeySource,
    MktmeEngine,
    NoEngine,
    PconfigCommand,
    PconfigStatus,
    SevEngine,
    SevSnpEngine,
    TmeEngine,
    make_engine,
)
from .kernel_text import (
    INT3,
    MAX_INTERLEAVINGS,
    PATCHER,
    ExecClass,
    Execution,
    Exploration,
    InsnKind,
    LivePatch,
    Patcher,
    TextSegment,
    count_interleavings,
    decode,
    encode,
    explore_all,
    explore_random,
    poke_site,
)
from .machine import Domain, DomainKind, Machine, Mitigations
from .mm import (
    DIRECT_MAP_BASE,
    PMD_PAGES,
    BusTap,
    DirectMap,
    PageAllocator,
    PhysicalMemory,
    SecretmemArea,
    SecretmemFile,
)
from .sev import (
    POLICY_NODBG,
    SIGNATURE_OFFSET,
    AttestationReport,
    Certificate,
    KeyUsage,
    Psp,
    SevAttestationReport,
    SevReport,
    Vendor,
    Verifier,
    decode_mnonce,
    issue_certificate,
    query_attestation_report,
    sign_report,
)
from .vfio import VfioContainer, dirty_bitmap_bytes, dirty_page_indexes, open_guest_container

__all__ = [
    "DIRECT_MAP_BASE",
    "ENGINES",
    "INT3",
    "MAX_INTERLEAVINGS",
    "PATCHER",
    "PMD_PAGES",
    "POLICY_NODBG",
    "SIGNATURE_OFFSET",
    "AttestationReport",
    "BusTap",
    "Certificate",
    "DirectMap",
    "Domain",
    "DomainKind",
    "Engine",
    "EngineWithRmp",
    "ExecClass",
    "Execution",
    "Exploration",
    "InsnKind",
    "KeySource",
    "KeyUsage",
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
    "SevAttestationReport",
    "SevEngine",
    "SevReport",
    "SevSnpEngine",
    "TextSegment",
    "TmeEngine",
    "Vendor",
    "Verifier",
    "VfioContainer",
    "count_interleavings",
    "decode",
    "decode_mnonce",
    "dirty_bitmap_bytes",
    "dirty_page_indexes",
    "encode",
    "explore_all",
    "explore_random",
    "issue_certificate",
    "make_engine",
    "open_guest_container",
    "poke_site",
    "query_attestation_report",
    "sign_report",
]
