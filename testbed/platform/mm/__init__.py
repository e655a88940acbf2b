"""Memory management: DRAM and the bus tap, the page allocator, kernel direct maps, secret
memory."""

from __future__ import annotations

from .allocator import RESERVED_FRAMES, PageAllocator
from .directmap import DIRECT_MAP_BASE, DIRECT_MAP_STRIDE, DirectMap
from .memory import BusTap, Capture, PhysicalMemory
from .secretmem import PMD_PAGES, SecretmemArea, SecretmemFile, SecretmemTask, SecretPagePool

__all__ = [
    "DIRECT_MAP_BASE",
    "DIRECT_MAP_STRIDE",
    "PMD_PAGES",
    "RESERVED_FRAMES",
    "BusTap",
    "Capture",
    "DirectMap",
    "PageAllocator",
    "PhysicalMemory",
    "SecretPagePool",
    "SecretmemArea",
    "SecretmemFile",
    "SecretmemTask",
]
