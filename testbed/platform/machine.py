"""The emulated machine: DRAM, an engine, the page allocator, domains and kernel direct maps.

All CPU accesses go through :class:`Machine`, which encrypts and decrypts with the key slot of the
accessing context; the bus tap (:attr:`Machine.bus`) bypasses all of it. Under an engine with
memory integrity the machine also keeps each line's sideband word (ECC bits), which the engine
writes on CPU writes and checks on CPU reads; the bus tap's data does not include it
(:meth:`Machine.bus_sideband` and :meth:`Machine.bus_write_sideband` reach it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..crypto import BlockGrid
from ..errors import ConfigError, OutOfMemory, PageFault, UnsupportedMitigation
from ..types import LINE_SIZE, PAGE_SIZE, KeySlot, Pfn, PhysAddr
from .engines.base import (
    HOST,
    Engine,
    EngineWithIntegrity,
    EngineWithRmp,
    EngineWithRuntimeRotation,
    NoEngine,
)
from .mm.allocator import PageAllocator
from .mm.directmap import DIRECT_MAP_BASE, DIRECT_MAP_STRIDE, DirectMap
from .mm.memory import BusTap, PhysicalMemory
from .mm.oom import select_bad_process
from .mm.secretmem import PMD_PAGES, SecretmemArea, SecretmemFile

__all__ = [
    "DEFAULT_SECRETMEM_RESERVE",
    "Domain",
    "DomainKind",
    "Machine",
    "Mitigations",
    "effective_secretmem_reserve",
]

DEFAULT_SECRETMEM_RESERVE = PMD_PAGES
"""The ``secretmem=`` reservation (frames) of a machine with the ``secretmem`` mitigation and
none of its own: ``secretmem=2M``, one PMD-size chunk."""
MAX_MEMORY_PAGES = 65536
"""256 MiB of emulated DRAM at most."""
_BOOT_BATCH = 256
"""Frames whose boot-time sideband words one engine call makes."""


class DomainKind(enum.StrEnum):
    """Who owns pages."""

    KERNEL = "kernel"
    PROCESS = "process"
    GUEST = "guest"


@dataclass
class Domain:
    """A host kernel, process or guest: a key slot and the frames it owns."""

    name: str
    kind: DomainKind
    slot: KeySlot
    pages: list[Pfn] = field(default_factory=list)
    alive: bool = True
    npt: dict[int, Pfn] = field(default_factory=dict)
    """Guests: the nested page table the hypervisor keeps, guest page number -> frame."""
    locked_pages: int = 0
    """Pages charged to the task's locked-memory limit (secret memory)."""
    cached_pages: int = 0
    """Of :attr:`pages`, the secret pages its secretmem files keep in their page cache while
    the task has them unmapped."""

    @property
    def rss(self) -> int:
        """Pages mapped into the task (its resident set, what the OOM killer weighs)."""
        return len(self.pages) - self.cached_pages


def effective_secretmem_reserve(
    mitigations: Mitigations, reserve_pages: int, before_pmd_pool: bool = False,
) -> int:
    """The ``secretmem=`` reservation a machine boots with: ``reserve_pages``, or, when that is
    0 and the ``secretmem`` mitigation is on (with the PMD-pool code),
    :data:`DEFAULT_SECRETMEM_RESERVE`."""
    if reserve_pages or before_pmd_pool or not mitigations.secretmem:
        return reserve_pages
    return DEFAULT_SECRETMEM_RESERVE


def secretmem_min_pages(reserve_pages: int) -> int:
    """The least ``memory_pages`` a ``secretmem=`` reservation of ``reserve_pages`` boots in:
    the pool starts at a 2 MiB boundary and frame 0 is the kernel's, so the first 512 frames
    cannot hold it."""
    return reserve_pages + PMD_PAGES if reserve_pages else 0


def _mitigation(profile: str, description: str, *, maximum: int | None = None) -> Any:
    """A field of :class:`Mitigations`: its name in profile names, what it does, its limit."""
    default: bool | int = False if maximum is None else 0
    return field(default=default, metadata={"profile": profile, "description": description,
                                            "maximum": maximum})


@dataclass(frozen=True)
class Mitigations:
    """Software mitigations that combine with any engine: the one definition of each.

    Each field is the setting a scenario's ``mitigations:`` uses; its metadata gives the name
    the mitigation takes in profile names (``tme+memlock_limit``), its description and, for a
    limit, the largest value (0 turns it off). ``testbed.registry.MITIGATIONS`` lists them.
    """

    init_on_free: bool = _mitigation("init_on_free", "zero every page when it is freed")
    secretmem: bool = _mitigation(
        "secretmem", "pages allocated as secret come from secret memory (memfd_secret) and "
        "leave every kernel direct map; without a secretmem= reservation of the platform's "
        "own, the kernel boots with secretmem=2M (one 2 MiB chunk of 512 frames, so memory "
        "needs at least 1024 frames)")
    memlock_limit_pages: int = _mitigation(
        "memlock_limit", "per-task RLIMIT_MEMLOCK charged for secret memory, in pages "
        "(0: none)", maximum=MAX_MEMORY_PAGES)
    key_rotation_blocks: int = _mitigation(
        "key_rotation", "rotate a domain key after this many blocks were encrypted under it "
        "(0: never; needs an engine that rotates keys at run time)", maximum=1 << 40)
    dirty_all_pages: bool = _mitigation(
        "dirty_all_pages", "VFIO: report every mapped page dirty (no pinned-page scope)")
    text_poke_bp: bool = _mitigation(
        "text_poke_bp", "live patching uses the INT3 breakpoint protocol (text_poke_bp)")
    alias_check: bool = _mitigation(
        "alias_check", "boot firmware probes DRAM for aliased addresses (an SPD reporting more "
        "than the DIMM holds) and refuses to boot")
    restrict_page_move: bool = _mitigation(
        "restrict_page_move", "SEV-SNP firmware refuses SNP_PAGE_MOVE of guest pages")

    def __post_init__(self) -> None:
        for f in fields(self):
            limit = f.metadata["maximum"]
            value = getattr(self, f.name)
            if limit is not None and not 0 <= value <= limit:
                raise ConfigError(f"{f.name}: must be 0 (off) .. {limit}, got {value}")

    def names(self) -> tuple[str, ...]:
        """Names of the mitigations in force, as used in profile names (``tme+init_on_free``)."""
        return tuple(f.metadata["profile"] for f in fields(self) if getattr(self, f.name))


@dataclass(frozen=True)
class _SecretPool:
    """The machine as the secretmem files of one task see it (:class:`SecretPagePool`)."""

    machine: Machine
    task: Domain

    def take_page(self, file: SecretmemFile) -> Pfn:
        return self.machine._secretmem_take_page(self.task, file)

    def release(self, file: SecretmemFile) -> None:
        self.machine._secretmem_release(self.task, file)

    def out_of_memory(self, file: SecretmemFile) -> Domain | None:
        return self.machine._oom_kill()


class Machine:
    """One emulated machine.

    Args:
        engine: the memory-encryption engine.
        memory_pages: 4 KiB frames of DRAM (1 .. 65536).
        mitigations: software mitigations in force.
        secretmem_reserve_pages: the ``secretmem=`` boot reservation in frames, a multiple of
            512 (0: none, and ``memfd_secret`` fails with ENOMEM; but with the ``secretmem``
            mitigation, :data:`DEFAULT_SECRETMEM_RESERVE` unless the code before the PMD pool
            is asked for).
        secretmem_before_pmd_pool: ``memfd_secret`` as before the PMD-pool patch, for
            comparison: no reservation, secret pages come from the page allocator one by one.

    Raises:
        ConfigError: a size out of range, or a mitigation the engine cannot provide.
    """

    def __init__(
        self, engine: Engine, memory_pages: int, mitigations: Mitigations | None = None,
        secretmem_reserve_pages: int = 0, secretmem_before_pmd_pool: bool = False,
    ) -> None:
        if not 16 <= memory_pages <= MAX_MEMORY_PAGES:
            raise ConfigError(f"memory_pages: must be 16..{MAX_MEMORY_PAGES}, got {memory_pages}")
        self.mitigations = mitigations or Mitigations()
        rotates = isinstance(engine, EngineWithRuntimeRotation)
        if self.mitigations.key_rotation_blocks and not rotates:
            why = ("it has no keys" if not engine.encrypts else
                   "a new key needs a reboot, which loses memory" if not engine.per_domain_keys
                   else "a guest keeps its key for its whole life")
            raise UnsupportedMitigation(
                f"key_rotation: engine {engine.name} cannot rotate keys while the system runs "
                f"({why})"
            )
        self.engine = engine
        self.memory = PhysicalMemory(memory_pages)
        self.bus = BusTap(self.memory)
        self.allocator = PageAllocator(memory_pages)
        self.kernel = Domain("host-kernel", DomainKind.KERNEL, HOST)
        self.direct_map = DirectMap(HOST, memory_pages, DIRECT_MAP_BASE)
        self._keyid_maps: dict[KeySlot, DirectMap] = {}
        self._owner: dict[Pfn, Domain] = {}
        self._secret_frames: dict[Pfn, SecretmemFile] = {}
        """Frames secretmem files hold -> the file."""
        self._secret_backing: dict[int, SecretmemFile] = {}
        """Domain (by identity) -> the secretmem file its secret pages come from under the
        ``secretmem`` mitigation."""
        self._hidden: dict[Pfn, int] = {}
        """Ranges removed from every direct map: first frame -> frames."""
        self.secretmem_area: SecretmemArea | None = None
        if secretmem_reserve_pages and secretmem_before_pmd_pool:
            raise ConfigError("secretmem_before_pmd_pool: the code before the PMD-pool patch "
                              "has no secretmem= reservation; set secretmem_reserve_pages to 0")
        self.secretmem_before_pmd_pool = secretmem_before_pmd_pool
        self._tasks: list[Domain] = []
        """Processes and guests, in creation order (what the OOM killer walks)."""
        self._secret_files: list[SecretmemFile] = []
        self.oom_kills: list[str] = []
        """Tasks the OOM killer killed, in order."""
        given = secretmem_reserve_pages
        secretmem_reserve_pages = effective_secretmem_reserve(
            self.mitigations, secretmem_reserve_pages, secretmem_before_pmd_pool)
        least = secretmem_min_pages(secretmem_reserve_pages)
        if secretmem_reserve_pages != given and memory_pages < least:
            raise ConfigError(
                f"secretmem: the mitigation's default secretmem=2M reservation "
                f"({DEFAULT_SECRETMEM_RESERVE} frames) needs memory_pages of at least {least} "
                f"(the pool starts at a 2 MiB boundary, above frame 0), got {memory_pages}")
        if secretmem_reserve_pages:
            if secretmem_reserve_pages % PMD_PAGES or memory_pages < least:
                raise ConfigError(
                    f"secretmem_reserve_pages: must be a multiple of {PMD_PAGES}, with "
                    f"memory_pages at least 512 above it ({least}; the pool starts at a 2 MiB "
                    f"boundary, above frame 0), got {secretmem_reserve_pages} in "
                    f"{memory_pages}")
            start = self.allocator.reserve_contiguous(secretmem_reserve_pages, PMD_PAGES)
            self.secretmem_area = SecretmemArea(start, secretmem_reserve_pages)
        self.rotations = 0
        self._count = 0
        self._sideband: NDArray[np.uint64] | None = None
        self._booted = np.zeros(memory_pages, dtype=bool)
        """Frames whose sideband words hold their boot-time MACs (made when first needed)."""
        self._integrity = engine if isinstance(engine, EngineWithIntegrity) else None
        if self._integrity is not None:
            self._sideband = np.zeros(memory_pages * PAGE_SIZE // LINE_SIZE, dtype=np.uint64)
        self._wear_at_rotation: dict[KeySlot, int] = {}

    def scratch(
        self, memory_pages: int, mitigations: Mitigations | None = None, *,
        secretmem_reserve_pages: int = 0, secretmem_before_pmd_pool: bool = False,
    ) -> Machine:
        """A new machine without memory encryption, for a side measurement (direct-map
        fragmentation, say) that must leave this one alone.

        It is built from this machine's key source but draws nothing from it (it has no keys),
        so the keys of this machine, and of any machine built after it, are unchanged.

        Raises:
            ConfigError: as the constructor does.
        """
        return Machine(NoEngine(self.engine.keys), memory_pages, mitigations,
                       secretmem_reserve_pages=secretmem_reserve_pages,
                       secretmem_before_pmd_pool=secretmem_before_pmd_pool)

    # -- domains ------------------------------------------------------------------------
    def create_domain(self, kind: DomainKind | str, name: str | None = None) -> Domain:
        """A new process or guest, with its own key where the engine offers one."""
        kind = DomainKind(kind)
        if kind is DomainKind.KERNEL:
            raise ConfigError("there is one host kernel; create a process or a guest")
        self._count += 1
        slot = self.engine.domain_slot(kind.value)
        domain = Domain(name or f"{kind.value}-{self._count}", kind, slot)
        self._tasks.append(domain)
        return domain

    def destroy_domain(self, domain: Domain) -> None:
        """Free every page of ``domain`` and release its key (MKTME CLEAR_KEY, SEV decommission)."""
        for file in [f for f in self._secret_files if f.owner is domain]:
            file.close()  # its files go first, as at exit: their pages are not the allocator's
        for pfn in list(domain.pages):
            self._free_frame(domain, pfn)
        self.engine.release_slot(domain.slot)
        domain.alive = False

    def keyid_direct_map(self, slot: KeySlot) -> DirectMap:
        """The kernel's direct map for KeyID ``slot`` (KeyID 0: :attr:`direct_map`)."""
        if slot == HOST:
            return self.direct_map
        if slot not in self._keyid_maps:
            base = DIRECT_MAP_BASE + slot * DIRECT_MAP_STRIDE
            dmap = DirectMap(slot, self.memory.pages, base)
            for pfn, count in self._hidden.items():
                dmap.unmap(pfn, count)
            self._keyid_maps[slot] = dmap
        return self._keyid_maps[slot]

    def _all_direct_maps(self) -> list[DirectMap]:
        return [self.direct_map, *self._keyid_maps.values()]

    # -- pages --------------------------------------------------------------------------
    def alloc_page(self, domain: Domain, *, secret: bool = False) -> PhysAddr:
        """Give ``domain`` a frame; returns its physical address (page-aligned).

        Args:
            secret: the page holds a secret; with ``secretmem`` it comes from the domain's
                secretmem file (:meth:`memfd_secret`'s pool, out of every direct map).

        Raises:
            OutOfMemory: no free frame, or (a secret page) the secretmem fault met
                VM_FAULT_OOM and the OOM killer killed the domain (:class:`OomKilled`).
            ResourceLimit: a secret page over the locked-memory limit.
        """
        if secret and self.mitigations.secretmem:
            return self._secret_backing_page(domain)
        pfn = self.allocator.alloc()
        self._give(domain, pfn)
        return PhysAddr(pfn * PAGE_SIZE)

    def _give(self, domain: Domain, pfn: Pfn) -> None:
        """Make ``pfn`` ``domain``'s: owned, initialised for its key, in a guest's nested page
        table (and RMP)."""
        domain.pages.append(pfn)
        self._owner[pfn] = domain
        self._initialise(domain, pfn)
        if domain.kind is DomainKind.GUEST:
            gpn = next(g for g in range(len(domain.npt) + 1) if g not in domain.npt)
            domain.npt[gpn] = pfn
            if isinstance(self.engine, EngineWithRmp):
                self.engine.rmp_assign(pfn, domain.slot, gpn)

    def _take_back(self, domain: Domain, pfn: Pfn) -> None:
        """Undo :meth:`_give` (the frame's contents and the free list are the caller's)."""
        domain.pages.remove(pfn)
        del self._owner[pfn]
        for gpn in [g for g, f in domain.npt.items() if f == pfn]:
            del domain.npt[gpn]
        if isinstance(self.engine, EngineWithRmp):
            self.engine.rmp_reclaim(pfn)

    def _secret_backing_page(self, domain: Domain) -> PhysAddr:
        """One more page of ``domain``'s secretmem file (the ``secretmem`` mitigation): mapped
        and faulted in as :meth:`memfd_secret`'s files are. A guest's comes from the file its
        VMM backs guest memory with."""
        file = self._secret_backing.get(id(domain))
        if file is None or not file.open:
            if not domain.alive:
                raise ConfigError(f"{domain.name} has been destroyed")
            why = self.secretmem_unavailable()
            if why is not None:
                raise OutOfMemory(why)
            file = SecretmemFile(_SecretPool(self, domain), domain,
                                 self.mitigations.memlock_limit_pages)
            self._secret_files.append(file)
            self._secret_backing[id(domain)] = file
        file.mmap(1)
        return file.fault(file.mapped_pages - 1)

    def free_page(self, domain: Domain, pa: PhysAddr) -> None:
        """Give back the page at ``pa`` (as :meth:`alloc_page` returned it), clearing it first
        where a mitigation says so.

        Raises:
            ConfigError: ``pa`` is not page-aligned, or ``domain`` does not own the page.
        """
        if pa % PAGE_SIZE:
            raise ConfigError(f"{domain.name} frees {pa:#x}, which is not page-aligned")
        self._free_frame(domain, Pfn(pa // PAGE_SIZE))

    def _free_frame(self, domain: Domain, pfn: Pfn) -> None:
        if self._owner.get(pfn) is not domain:
            raise ConfigError(f"{domain.name} frees frame {pfn} it does not own")
        file = self._secret_frames.get(pfn)
        if file is not None:
            self._secretmem_punch(domain, file, pfn)
            return
        if self.mitigations.init_on_free:
            self._clear(pfn, 1)
        self._take_back(domain, pfn)
        self.allocator.free(pfn)

    def _secretmem_punch(self, task: Domain, file: SecretmemFile, pfn: Pfn) -> None:
        """A secret page of ``file`` freed on its own (a hole punched in the file): cleared and
        back in the file's pool, still out of the direct maps; before the PMD pool, mapped
        again and back to the page allocator."""
        index = next(i for i, f in file.pages.items() if f == pfn)
        del file.pages[index]
        if index in file.resident:
            file.resident.discard(index)
        else:
            task.cached_pages -= 1
        del self._secret_frames[pfn]
        self._take_back(task, pfn)
        if self.secretmem_area is None:
            self._unhide(pfn)
            self._clear(pfn, 1)
            self.allocator.free(pfn)
        else:
            self._clear(pfn, 1)
            file.pool_free.append(pfn)

    # -- secret memory (memfd_secret) ----------------------------------------------------
    def memfd_secret(self, task: Domain) -> SecretmemFile:
        """A new secret-memory file for ``task`` (a process); see :mod:`.secretmem`.

        Raises:
            OutOfMemory: there is no ``secretmem=`` reservation (ENOMEM, as the PMD-pool patch
                answers when ``secretmem_cma`` is NULL).
        """
        if task.kind is not DomainKind.PROCESS or not task.alive:
            raise ConfigError(f"memfd_secret: {task.name} is not a live process")
        why = self.secretmem_unavailable()
        if why is not None:
            raise OutOfMemory(why)
        file = SecretmemFile(_SecretPool(self, task), task, self.mitigations.memlock_limit_pages)
        self._secret_files.append(file)
        return file

    def secretmem_unavailable(self) -> str | None:
        """Why ``memfd_secret`` fails for every task on this machine (``None``: it does not):
        the PMD-pool kernel serves secret memory only from the ``secretmem=`` reservation."""
        if self.secretmem_area is None and not self.secretmem_before_pmd_pool:
            return ("ENOMEM: memfd_secret needs the secretmem= boot reservation, and this "
                    "kernel has none")
        return None

    def _oom_kill(self) -> Domain | None:
        """The OOM killer after a fault's VM_FAULT_OOM (:mod:`.mm.oom`): kill the heaviest live
        task; returns it (``None``: no task left)."""
        task = select_bad_process(self._tasks)
        if task is not None:
            self.destroy_domain(task)
            self.oom_kills.append(task.name)
        return task

    def _secretmem_take_page(self, task: Domain, file: SecretmemFile) -> Pfn:
        """A zeroed frame, out of every direct map, for ``file`` of ``task``.

        Raises:
            OutOfMemory: the page allocator, or the ``secretmem=`` reservation, is exhausted.
        """
        if self.secretmem_area is None:
            pfn = self.allocator.alloc()
            self._clear(pfn, 1)
            self._hide(pfn, 1)
        else:
            if not file.pool_free:
                chunk = self.secretmem_area.alloc_chunk()
                self._clear(chunk, PMD_PAGES)
                self._hide(chunk, PMD_PAGES)
                file.chunks.append(chunk)
                file.pool_free = [Pfn(f) for f in range(chunk + PMD_PAGES - 1, chunk - 1, -1)]
            pfn = file.pool_free.pop()
        self._secret_frames[pfn] = file
        self._give(task, pfn)
        return pfn

    def _secretmem_release(self, task: Domain, file: SecretmemFile) -> None:
        """Tear ``file`` of ``task`` down: its pages mapped again and cleared, memory given
        back."""
        for pfn in file.pages.values():
            del self._secret_frames[pfn]
            self._take_back(task, pfn)
            if self.secretmem_area is None:
                self._unhide(pfn)
                self._clear(pfn, 1)
                self.allocator.free(pfn)
        file.pages.clear()
        if self.secretmem_area is not None:
            for chunk in file.chunks:
                self._unhide(chunk)
                self._clear(chunk, PMD_PAGES)
                self.secretmem_area.release_chunk(chunk)
            file.chunks.clear()
            file.pool_free.clear()

    def _hide(self, pfn: Pfn, count: int) -> None:
        """set_direct_map_invalid: remove frames from every direct map."""
        self._hidden[pfn] = count
        for dmap in self._all_direct_maps():
            dmap.unmap(pfn, count)

    def _unhide(self, pfn: Pfn) -> None:
        """set_direct_map_default: map a hidden range again."""
        count = self._hidden.pop(pfn)
        for dmap in self._all_direct_maps():
            dmap.restore(pfn, count)

    def _clear(self, pfn: Pfn, count: int) -> None:
        """clear_highpage, through the kernel's own key."""
        zeros = np.zeros((count * PAGE_SIZE // LINE_SIZE, LINE_SIZE), dtype=np.uint8)
        self._write_lines(HOST, pfn * PAGE_SIZE, zeros)

    def _initialise(self, domain: Domain, pfn: Pfn) -> None:
        """Under memory integrity, a frame given to ``domain`` is written with zeros through
        its key where the engine says so (a private page accepted by its owner)."""
        if self._integrity is not None and self._integrity.initialises(domain.slot):
            zeros = np.zeros((PAGE_SIZE // LINE_SIZE, LINE_SIZE), dtype=np.uint8)
            self._write_lines(domain.slot, pfn * PAGE_SIZE, zeros)

    def owner(self, pa: PhysAddr) -> Domain | None:
        """The domain owning the frame at ``pa``, if any."""
        return self._owner.get(Pfn(pa // PAGE_SIZE))

    @property
    def direct_map_splits(self) -> int:
        """Large direct-map mappings split so far (1 GiB and 2 MiB), over all direct maps."""
        return sum(dmap.split_count for dmap in self._all_direct_maps())

    # -- the CPU data path ----------------------------------------------------------------
    @staticmethod
    def _span(pa: int, length: int) -> tuple[int, int]:
        start = pa - pa % LINE_SIZE
        end = -(-(pa + length) // LINE_SIZE) * LINE_SIZE
        return start, end

    @staticmethod
    def _addrs(start: int, end: int) -> NDArray[np.uint64]:
        return np.arange(start, end, LINE_SIZE, dtype=np.uint64)

    def _read_lines(self, slot: KeySlot, start: int, end: int) -> NDArray[np.uint8]:
        raw = self.memory.load(start, end - start)
        addrs = self._addrs(start, end)
        if self._integrity is None:
            return self.engine.decrypt(slot, addrs, raw)
        hidden = self._integrity.verify(slot, addrs, raw, self._words(start, end))
        plain = self.engine.decrypt(slot, addrs, raw)
        plain[hidden] = 0
        return plain

    def _write_lines(self, slot: KeySlot, start: int, lines: NDArray[np.uint8]) -> None:
        end = start + lines.shape[0] * LINE_SIZE
        out = self.engine.encrypt(slot, self._addrs(start, end), lines)
        self.memory.store(start, out)
        self._seal(slot, start, out)

    def _seal(self, slot: KeySlot, start: int, ciphertext: NDArray[np.uint8]) -> None:
        """Under memory integrity, the sideband words of lines just written at ``start``."""
        if self._integrity is None:
            return
        end = start + ciphertext.shape[0] * LINE_SIZE
        words = self._integrity.seal(slot, self._addrs(start, end), ciphertext)
        self._words(start, end, overwrite=True)[:] = words

    def _words(self, start: int, end: int, *, overwrite: bool = False) -> NDArray[np.uint64]:
        """The sideband words of the lines in ``[start, end)`` (a writable view).

        The firmware initialised all of DRAM with integrity on, through KeyID 0, while it held
        zeros: a frame's words are made from that content the first time they are needed, which
        gives what initialising every frame at boot would have given, and no boot cost. With
        ``overwrite`` the caller replaces every word of the range, so frames it covers whole
        need none made.
        """
        integrity, sideband = self._integrity, self._sideband
        if integrity is None or sideband is None:
            raise ConfigError(f"engine {self.engine.name} keeps no sideband words")
        first, last = start // PAGE_SIZE, -(-end // PAGE_SIZE)
        if overwrite:
            self._booted[-(-start // PAGE_SIZE) : end // PAGE_SIZE] = True
        fresh = np.flatnonzero(~self._booted[first:last]) + first
        per_page = PAGE_SIZE // LINE_SIZE
        for lo in range(0, fresh.shape[0], _BOOT_BATCH):
            pfns = fresh[lo : lo + _BOOT_BATCH].astype(np.uint64)
            lines = (pfns[:, None] * np.uint64(per_page)
                     + np.arange(per_page, dtype=np.uint64)[None, :]).reshape(-1)
            zeros = np.zeros((lines.shape[0], LINE_SIZE), dtype=np.uint8)
            sideband[lines] = integrity.seal(HOST, lines * np.uint64(LINE_SIZE), zeros)
        self._booted[first:last] = True
        return sideband[start // LINE_SIZE : end // LINE_SIZE]

    def bus_sideband(self, pa: PhysAddr, length: int) -> NDArray[np.uint64]:
        """What the sideband (ECC) bits of the lines at ``pa`` hold: one word per line, zeros
        under an engine without memory integrity. An interposer that drives the ECC bits reads
        them with the lines."""
        self.memory.check(pa, length)
        if self._integrity is None:
            return np.zeros(length // LINE_SIZE, dtype=np.uint64)
        return self._words(pa, pa + length).copy()

    def bus_write_sideband(self, pa: PhysAddr, words: NDArray[np.uint64]) -> None:
        """An interposer drives the sideband bits of the lines at ``pa`` (nothing holds them
        under an engine without memory integrity)."""
        self.memory.check(pa, words.shape[0] * LINE_SIZE)
        if self._integrity is not None:
            self._words(pa, pa + words.shape[0] * LINE_SIZE, overwrite=True)[:] = words

    def _cpu_read(self, slot: KeySlot, pa: PhysAddr, length: int) -> bytes:
        start, end = self._span(pa, length)
        plain = self._read_lines(slot, start, end).reshape(-1)
        return plain[pa - start : pa - start + length].tobytes()

    def _cpu_write(self, slot: KeySlot, pa: PhysAddr, data: bytes) -> None:
        start, end = self._span(pa, len(data))
        if start == pa and end == pa + len(data):
            lines = np.frombuffer(data, dtype=np.uint8).reshape(-1, LINE_SIZE)
        else:
            lines = self._read_lines(slot, start, end)
            flat = lines.reshape(-1)
            flat[pa - start : pa - start + len(data)] = np.frombuffer(data, dtype=np.uint8)
        self._write_lines(slot, start, lines)

    def _check_owned(self, domain: Domain, pa: PhysAddr, length: int) -> None:
        if not domain.alive:
            raise ConfigError(f"{domain.name} has been destroyed")
        first, last = pa // PAGE_SIZE, (pa + max(length, 1) - 1) // PAGE_SIZE
        for pfn in range(first, last + 1):
            if self._owner.get(Pfn(pfn)) is not domain:
                raise PageFault(f"page fault: {domain.name} does not map frame {pfn}")

    def write(self, domain: Domain, pa: PhysAddr, data: bytes) -> None:
        """``domain`` stores ``data`` at ``pa`` in one of its own pages, with its own key."""
        self._check_owned(domain, pa, len(data))
        self._maybe_rotate(domain)
        self._cpu_write(domain.slot, pa, data)

    def read(self, domain: Domain, pa: PhysAddr, length: int) -> bytes:
        """``domain`` loads ``length`` bytes at ``pa`` from one of its own pages."""
        self._check_owned(domain, pa, length)
        return self._cpu_read(domain.slot, pa, length)

    def dram(self, pa: PhysAddr, length: int) -> bytes:
        """Raw DRAM bytes at any address: ground truth for evidence (attacks use :attr:`bus`)."""
        start, end = self._span(pa, length)
        raw = self.memory.load(start, end - start).reshape(-1)
        return raw[pa - start : pa - start + length].tobytes()

    def _start_line_writes(self, what: str, domain: Domain, pa: PhysAddr) -> None:
        """Checks before a batch of writes to the one line at ``pa``; rotates a worn key."""
        self._check_owned(domain, pa, LINE_SIZE)
        if pa % LINE_SIZE:
            raise ConfigError(f"{what}: {pa:#x} is not line-aligned")
        self._maybe_rotate(domain)

    def write_sequence(
        self, domain: Domain, pa: PhysAddr, lines: NDArray[np.uint8]
    ) -> NDArray[np.uint8]:
        """``domain`` writes each 64-byte line to the line at ``pa`` in turn.

        Returns what each write put on the memory bus (what an interposer captures), as
        ``(n, 64)`` lines; DRAM keeps the last one. One batched engine call does it all.
        """
        self._start_line_writes("write_sequence", domain, pa)
        addrs = np.full(lines.shape[0], pa, dtype=np.uint64)
        out = self.engine.encrypt(domain.slot, addrs, lines)
        if out.shape[0]:
            self.memory.store(pa, out[-1:])
            self._seal(domain.slot, pa, out[-1:])
        return out

    def write_varying(
        self, domain: Domain, pa: PhysAddr, template: bytes, offset: int, blocks: NDArray[np.uint8]
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """``domain`` writes ``n`` lines to the line at ``pa`` in turn, each ``template`` with its
        16-byte block at ``offset`` replaced by ``blocks[i]``.

        What the bus shows is returned compactly: the blocks that every write shares encrypt
        the same each time, so the template's ciphertext comes once (its ``offset`` block is the
        template's own), then the ciphertext of the varying block of each write, ``(n, 16)``.
        DRAM keeps the last write. Equal to :meth:`write_sequence` on the full lines, which the
        tests check; only the varying block costs engine work per line.
        """
        self._start_line_writes("write_varying", domain, pa)
        head, body = self.engine.encrypt_varying(domain.slot, pa, template, offset, blocks)
        if body.shape[0]:
            last = head.copy()
            last[offset : offset + body.shape[1]] = body[-1]
            self.memory.store(pa, last[None, :])
            self._seal(domain.slot, pa, last[None, :])
        return head, body

    def write_varying_search(
        self, domain: Domain, pa: PhysAddr, template: bytes, offset: int, grid: BlockGrid,
        target: bytes,
    ) -> int | None:
        """``domain`` writes the lines of :meth:`write_varying` with the blocks of ``grid`` to
        the line at ``pa`` in turn, and an observer of the bus compares each write with the
        64-byte ``target``: the writes stop at the first that shows it.

        Returns the index of that write (``None``: none showed it; all were written). DRAM
        keeps the last write and the key's wear counts every write made. Equal to
        :meth:`write_varying` on the grid's blocks up to the match followed by the comparison,
        which the tests check; no line is written out and no block is unmasked.
        """
        self._start_line_writes("write_varying_search", domain, pa)
        index, last = self.engine.search_varying(domain.slot, pa, template, offset, grid, target)
        if grid.count:
            self.memory.store(pa, last[None, :])
            self._seal(domain.slot, pa, last[None, :])
        return index

    # -- guest-physical access (through the nested page table) ----------------------------
    def _guest_frame(self, guest: Domain, gpa: int, length: int) -> PhysAddr:
        gpn = gpa // PAGE_SIZE
        if (gpa + max(length, 1) - 1) // PAGE_SIZE != gpn:
            raise ConfigError("guest accesses in this model stay within one guest page")
        if gpn not in guest.npt:
            raise PageFault(f"#NPF: guest page {gpn} of {guest.name} is not mapped")
        pfn = guest.npt[gpn]
        if isinstance(self.engine, EngineWithRmp):
            self.engine.check_guest_access(pfn, guest.slot, gpn)
        return PhysAddr(pfn * PAGE_SIZE + gpa % PAGE_SIZE)

    def guest_write(self, guest: Domain, gpa: int, data: bytes) -> None:
        """The guest stores at guest-physical address ``gpa`` (SNP checks the RMP)."""
        self._cpu_write(guest.slot, self._guest_frame(guest, gpa, len(data)), data)

    def guest_read(self, guest: Domain, gpa: int, length: int) -> bytes:
        """The guest loads from guest-physical address ``gpa`` (SNP checks the RMP)."""
        return self._cpu_read(guest.slot, self._guest_frame(guest, gpa, length), length)

    def hypervisor_remap(self, guest: Domain, gpn: int, pfn: Pfn) -> None:
        """The hypervisor points guest page ``gpn`` at frame ``pfn`` in the nested page table.

        Nothing checks this when it happens; under SEV-SNP the guest's next access raises a
        nested page fault (#NPF) because the RMP entry of ``pfn`` was validated for another
        guest page than ``gpn``.
        """
        if not 0 <= pfn < self.memory.pages:
            raise ConfigError(f"frame {pfn} outside memory of {self.memory.pages} frames")
        guest.npt[gpn] = pfn

    def move_guest_frame(self, guest: Domain, gpn: int, dst: Pfn) -> Pfn:
        """Move guest page ``gpn`` of ``guest`` to the free frame ``dst``, re-encrypted for its
        new address (the data path of SEV-SNP's ``SNP_PAGE_MOVE``,
        :mod:`.sev.page_move`); the source frame goes back to the free list. Returns it.

        Raises:
            ConfigError: ``gpn`` is not mapped, or ``dst`` is not a free frame.
        """
        src = guest.npt.get(gpn)
        if src is None or self._owner.get(src) is not guest:
            raise ConfigError(f"guest page {gpn} of {guest.name} is not mapped to its frame")
        self.allocator.take(dst)
        lines = self._read_lines(guest.slot, src * PAGE_SIZE, (src + 1) * PAGE_SIZE)
        self._write_lines(guest.slot, dst * PAGE_SIZE, lines)
        guest.pages[guest.pages.index(src)] = dst
        del self._owner[src]
        self._owner[dst] = guest
        guest.npt[gpn] = dst
        self.allocator.free(src)
        return src

    # -- the kernel ---------------------------------------------------------------------
    def kernel_read(self, va: int, length: int) -> bytes:
        """The host kernel loads through a direct map (a kernel read bug uses this).

        Raises:
            PageFault: part of the range is not mapped (for example, a secretmem page).
        """
        for dmap in self._all_direct_maps():
            if dmap.base <= va < dmap.base + dmap.pages * PAGE_SIZE:
                pa = dmap.translate(va)
                last = va + max(length, 1) - 1
                for page_va in range(va - va % PAGE_SIZE, last + 1, PAGE_SIZE):
                    dmap.translate(max(page_va, va))
                return self._cpu_read(dmap.key_slot, pa, length)
        raise PageFault(f"page fault: {va:#x} is not a kernel direct-map address")

    # -- the hypervisor -----------------------------------------------------------------
    def hypervisor_read(self, pa: PhysAddr, length: int) -> bytes:
        """The hypervisor reads guest memory through its own (host, no C-bit) mapping."""
        start, end = self._span(pa, length)
        raw = self._read_lines(HOST, start, end)
        if isinstance(self.engine, EngineWithRmp):
            for pfn in map(Pfn, range(start // PAGE_SIZE, (end - 1) // PAGE_SIZE + 1)):
                if self.engine.hides_ciphertext(pfn):
                    lo = max(pfn * PAGE_SIZE, start) - start
                    hi = min((pfn + 1) * PAGE_SIZE, end) - start
                    raw.reshape(-1)[lo:hi] = 0xFF
        return raw.reshape(-1)[pa - start : pa - start + length].tobytes()

    def hypervisor_write(self, pa: PhysAddr, data: bytes) -> None:
        """The hypervisor writes guest memory through its own mapping.

        Raises:
            RmpViolation: under SEV-SNP, the frame belongs to a guest.
        """
        start, end = self._span(pa, len(data))
        if isinstance(self.engine, EngineWithRmp):
            for pfn in map(Pfn, range(start // PAGE_SIZE, (end - 1) // PAGE_SIZE + 1)):
                self.engine.check_hypervisor_write(pfn)
        self._cpu_write(HOST, pa, data)

    # -- key rotation -------------------------------------------------------------------
    def _maybe_rotate(self, domain: Domain) -> None:
        limit = self.mitigations.key_rotation_blocks
        if not limit or domain.slot == HOST:
            return
        since = self.engine.wear(domain.slot) - self._wear_at_rotation.get(domain.slot, 0)
        if since >= limit:
            self.rotate_domain_key(domain)

    def rotate_domain_key(self, domain: Domain) -> None:
        """Replace ``domain``'s key at run time and re-encrypt its pages under the new one."""
        if not isinstance(self.engine, EngineWithRuntimeRotation):
            raise ConfigError(f"engine {self.engine.name} cannot rotate keys at run time")
        plain = {pfn: self._read_lines(domain.slot, pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE)
                 for pfn in domain.pages}
        self.engine.rotate(domain.slot)
        for pfn, lines in plain.items():
            self._write_lines(domain.slot, pfn * PAGE_SIZE, lines)
        # The wear counter keeps the re-encryption (it is real use of the new key); the policy
        # counts the domain's own writes from here on.
        self._wear_at_rotation[domain.slot] = self.engine.wear(domain.slot)
        self.rotations += 1
