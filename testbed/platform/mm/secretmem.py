"""Secret memory (``memfd_secret``): pages that leave the kernel direct map while a task uses them.

Source: M. Rapoport, "[PATCH v16 07/11] secretmem: use PMD-size pages to amortize direct map
fragmentation", and M. Hocko's review of it (linux-api, 26 January 2021; the secretmem seed).

* **PMD pool** (the patch): a contiguous area is reserved at boot with ``secretmem=SIZE``
  (CMA). Each secretmem file keeps a pool that grows lazily by one PMD-size (2 MiB) chunk at a
  time: the chunk is cleared, removed from the direct map as a whole (no 2 MiB split) and small
  pages are carved from it. When the file goes away its pool is torn down: the chunks are mapped
  again, cleared and returned to the reservation. Without the reservation the syscall fails:
  ``if (!secretmem_cma) return -ENOMEM;`` (:meth:`Machine.memfd_secret`).
* **per page, before the patch** (a comparison only, the platform option
  ``secretmem_before_pmd_pool``): each page faulted into a secret mapping comes from the page
  allocator, zeroed, and is removed from the direct map on its own, as the code the patch
  replaces did (``alloc_page(gfp | __GFP_ZERO)``, then ``set_direct_map_invalid_noflush(page,
  1)``). Every such page splits the 2 MiB direct-map mapping around it.

The pool has the weakness raised in review: the reservation is shared and a fault takes a whole
chunk for the file, so one task can exhaust it. The next task whose fault needs a new chunk does
not get a clean error from a system call: ``secretmem_alloc_page`` returns NULL and
``secretmem_fault`` returns ``VM_FAULT_OOM``, so the fault ends in the OOM killer
(:mod:`.oom`), which kills the heaviest task and lets the faulting one retry; it "wouldn't really
recover ever and potentially panic the system" (the review). :meth:`SecretmemFile.fault` does
that: it retries after each kill until it gets its page, is killed itself, or nothing is left to
kill (:class:`~testbed.errors.OomKilled`).

The kernel accounts secret mappings against the locked-memory limit (``RLIMIT_MEMLOCK``):
``secretmem_mmap`` checks ``mlock_future_check`` and marks the mapping ``VM_LOCKED``;
:meth:`SecretmemFile.mmap` checks it. Unmapping (:meth:`SecretmemFile.munmap`) gives the charge
back, as ``munmap`` of a locked mapping does, but the file's pages stay in its page cache until
the file is closed: they no longer count in the task's resident set (:mod:`.oom`), yet the
reservation's chunks stay taken.

The ``secretmem`` mitigation follows the same rule: a page a domain allocates as secret is a
page of that domain's own secretmem file (for a guest, the file its VMM backs guest memory
with), from the same reservation; a machine with the mitigation and no ``secretmem=`` of its
own boots with ``secretmem=2M`` (one chunk), the testbed's documented default, since Linux has
no default reservation at all.

A file knows the machine only through :class:`SecretPagePool`, which the machine hands it, so
this module depends on nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ...errors import ConfigError, OomKilled, OutOfMemory, PageFault, ResourceLimit
from ...types import PAGE_SIZE, PMD_SIZE, Pfn, PhysAddr

__all__ = [
    "PMD_PAGES",
    "SecretPagePool",
    "SecretmemArea",
    "SecretmemFile",
    "SecretmemTask",
]

PMD_PAGES = PMD_SIZE // PAGE_SIZE
"""4 KiB pages in one PMD-size chunk (512)."""


class SecretmemArea:
    """The boot-time reservation (``secretmem=``): PMD-aligned chunks handed out whole.

    Args:
        start: first frame of the reservation (PMD-aligned).
        pages: frames reserved (a multiple of :data:`PMD_PAGES`).
    """

    def __init__(self, start: Pfn, pages: int) -> None:
        if pages <= 0 or pages % PMD_PAGES or start % PMD_PAGES:
            raise ConfigError(f"secretmem reservation: must be whole PMDs of {PMD_PAGES} pages, "
                              f"got {pages} pages at frame {start}")
        self.start = start
        self.pages = pages
        self._free = [Pfn(f) for f in range(start + pages - PMD_PAGES, start - 1, -PMD_PAGES)]

    @property
    def free_chunks(self) -> int:
        """PMD chunks still available."""
        return len(self._free)

    @property
    def chunks(self) -> int:
        """PMD chunks in the reservation."""
        return self.pages // PMD_PAGES

    def alloc_chunk(self) -> Pfn:
        """First frame of a free chunk (``cma_alloc`` of one PMD).

        Raises:
            OutOfMemory: the reservation is exhausted (ENOMEM).
        """
        if not self._free:
            raise OutOfMemory(f"ENOMEM: the secretmem reservation ({self.chunks} chunks of 2 MiB) "
                              f"is exhausted")
        return self._free.pop()

    def release_chunk(self, pfn: Pfn) -> None:
        """Give a chunk back (``cma_release``)."""
        inside = self.start <= pfn < self.start + self.pages
        if not inside or pfn % PMD_PAGES or pfn in self._free:
            raise ConfigError(f"secretmem: frame {pfn} is not an allocated chunk")
        self._free.append(pfn)


class SecretmemTask(Protocol):
    """The task a secretmem file belongs to, as far as the file is concerned."""

    name: str
    locked_pages: int
    """Pages charged to the task's locked-memory limit."""
    cached_pages: int
    """Secret pages of its files in their page cache that the task has unmapped (not in its
    resident set)."""


class SecretPagePool(Protocol):
    """Where a secretmem file's pages come from and go back to (the kernel side, which the
    machine provides): frames cleared and out of every direct map while the file holds them."""

    def take_page(self, file: SecretmemFile) -> Pfn:
        """A zeroed frame, out of every direct map, for ``file`` (its fault handler).

        Raises:
            OutOfMemory: no memory for the page.
        """
        ...

    def release(self, file: SecretmemFile) -> None:
        """Tear ``file`` down: its pages mapped again and cleared, memory given back."""
        ...

    def out_of_memory(self, file: SecretmemFile) -> SecretmemTask | None:
        """``pagefault_out_of_memory()`` for a fault of ``file``: the OOM killer kills one task
        (perhaps the file's own) and returns it (``None``: nothing was left to kill)."""
        ...


@dataclass
class SecretmemFile:
    """One ``memfd_secret`` file of a task: its mapping, its pages and (with a reservation) its
    PMD pool. Made by :meth:`Machine.memfd_secret`.

    Attributes:
        pool: the kernel side that gives and takes back the file's frames.
        owner: the task.
        memlock_pages: the task's locked-memory limit in pages (0 = unlimited).
    """

    pool: SecretPagePool
    owner: SecretmemTask
    memlock_pages: int = 0
    mapped_pages: int = 0
    pages: dict[int, Pfn] = field(default_factory=dict)
    """File page index -> frame."""
    pool_free: list[Pfn] = field(default_factory=list)
    """Frames of this file's pool chunks not in use (gen_pool)."""
    chunks: list[Pfn] = field(default_factory=list)
    resident: set[int] = field(default_factory=set)
    """File page indices mapped into the task (its page tables hold them); the other pages of
    :attr:`pages` are in the page cache only."""
    open: bool = True

    def mmap(self, pages: int) -> None:
        """Map ``pages`` more pages of the file into the task (no memory is taken yet).

        Raises:
            ResourceLimit: the task's locked-memory limit would be exceeded (EAGAIN).
        """
        self._check_open()
        if pages < 1:
            raise ConfigError(f"mmap: length must be at least one page, got {pages}")
        limit = self.memlock_pages
        if limit and self.owner.locked_pages + pages > limit:
            raise ResourceLimit(
                f"EAGAIN: mmap of {pages} secret pages would lock "
                f"{self.owner.locked_pages + pages} pages, over {self.owner.name}'s "
                f"RLIMIT_MEMLOCK of {limit} pages"
            )
        self.owner.locked_pages += pages
        self.mapped_pages += pages

    def fault(self, index: int) -> PhysAddr:
        """The task touches page ``index`` of its mapping; returns the page's physical address.

        A page the pool cannot give makes the fault return ``VM_FAULT_OOM``: the OOM killer
        kills a task, and the faulting task touches the page again, until it gets it.

        Raises:
            PageFault: ``index`` is outside the mapping (SIGBUS).
            OomKilled: the OOM killer killed the faulting task, or found nothing to kill.
        """
        self._check_open()
        if not 0 <= index < self.mapped_pages:
            raise PageFault(f"SIGBUS: page {index} is outside the {self.mapped_pages}-page "
                            f"secret mapping")
        if index in self.pages and index not in self.resident:
            self.owner.cached_pages -= 1  # a minor fault maps the cached page again
        while index not in self.pages:
            try:
                self.pages[index] = self.pool.take_page(self)
            except OutOfMemory as exc:
                killed = self.pool.out_of_memory(self)
                if killed is None:
                    raise OomKilled(f"VM_FAULT_OOM ({exc}); the OOM killer found no task to "
                                    f"kill: kernel panic, system is deadlocked on "
                                    f"memory") from exc
                if killed is self.owner:
                    raise OomKilled(f"VM_FAULT_OOM ({exc}): the OOM killer killed "
                                    f"{killed.name} itself") from exc
        self.resident.add(index)
        return PhysAddr(self.pages[index] * PAGE_SIZE)

    def munmap(self) -> None:
        """Unmap the whole mapping: its locked-memory charge goes back, its touched pages stay
        in the file's page cache (out of the task's resident set); a later :meth:`mmap` maps
        the file from its start again, and a fault of a cached page takes no new memory."""
        self._check_open()
        self.owner.cached_pages += len(self.resident)
        self.resident.clear()
        self.owner.locked_pages -= self.mapped_pages
        self.mapped_pages = 0

    def close(self) -> None:
        """The last reference goes: pages back to the pool, then the pool torn down."""
        if self.open:
            self.owner.cached_pages -= len(self.pages) - len(self.resident)
            self.pool.release(self)
            self.resident.clear()
            self.owner.locked_pages -= self.mapped_pages
            self.mapped_pages = 0
            self.open = False

    def _check_open(self) -> None:
        if not self.open:
            raise ConfigError(f"secretmem file of {self.owner.name} is closed")
