"""A small emulated machine and the known keys it draws, for the platform tests."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from testbed.platform import (
    EngineOptions,
    KeySource,
    Machine,
    Mitigations,
    MktmeEngine,
    make_engine,
)

PAGE = 4096
LINE = 64
SEED = 1234
SECRET = bytes((i * 37 + 11) & 0xFF for i in range(PAGE))


def machine(
    name: str,
    mitigations: Mitigations | None = None,
    pages: int = 64,
    *,
    keyid_bits: int = EngineOptions.keyid_bits,
    asids: int = EngineOptions.asids,
    ciphertext_hiding: bool = False,
) -> Machine:
    """A machine with engine ``name`` whose keys come from a KeySource seeded with SEED."""
    engine = make_engine(name, KeySource(np.random.default_rng(SEED)), keyid_bits=keyid_bits,
                         asids=asids, ciphertext_hiding=ciphertext_hiding)
    return Machine(engine, memory_pages=pages, mitigations=mitigations)


def mktme_engine(m: Machine) -> MktmeEngine:
    """The machine's engine as the MKTME engine it was built with (PCONFIG, KeyIDs)."""
    assert isinstance(m.engine, MktmeEngine)
    return m.engine


def keys_drawn(*sizes: int) -> list[bytes]:
    """The keys a machine built with SEED draws, in order (the KeySource is seeded)."""
    source = KeySource(np.random.default_rng(SEED))
    return [source.key(size) for size in sizes]


def addrs_of(pa: int, length: int = PAGE) -> NDArray[np.uint64]:
    """The line addresses of ``length`` bytes from ``pa``."""
    return np.arange(pa, pa + length, LINE, dtype=np.uint64)


def kernel_read_page(m: Machine, pa: int) -> bytes:
    """The page at ``pa`` read through the kernel's KeyID-0 direct map."""
    return m.kernel_read(m.direct_map.virt(pa), PAGE)
