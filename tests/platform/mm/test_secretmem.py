"""secretmem: the reservation, the PMD pool and the memlock limit (the page removal from direct
maps: test_directmap.py; the exhaustion attack: tests/attacks/test_secretmem_exhaustion.py)."""

from __future__ import annotations

import numpy as np
import pytest
from _support.scenarios import scenario
from pydantic import ValidationError

from testbed.errors import ConfigError, OomKilled, OutOfMemory, PageFault, ResourceLimit
from testbed.platform import KeySource, Machine, Mitigations, make_engine
from testbed.platform.mm.secretmem import PMD_PAGES, SecretmemArea
from testbed.types import Pfn

PAGE = 4096


def machine(engine: str = "tme", pages: int = 4096, reserve: int = 0,
            memlock: int = 0, *, before_pool: bool = False) -> Machine:
    eng = make_engine(engine, KeySource(np.random.default_rng(3)))
    return Machine(eng, pages, Mitigations(memlock_limit_pages=memlock),
                   secretmem_reserve_pages=reserve, secretmem_before_pmd_pool=before_pool)


# -- the reservation --------------------------------------------------------------------------
def test_area_hands_out_whole_chunks_until_exhausted() -> None:
    area = SecretmemArea(Pfn(1024), 1024)
    chunks = [area.alloc_chunk(), area.alloc_chunk()]
    assert sorted(chunks) == [1024, 1536]
    with pytest.raises(OutOfMemory, match="exhausted"):
        area.alloc_chunk()
    area.release_chunk(chunks[0])
    assert area.free_chunks == 1
    with pytest.raises(ConfigError, match="not an allocated chunk"):
        area.release_chunk(chunks[0])


@pytest.mark.parametrize(("start", "pages"), [(1024, 100), (100, 512), (1024, 0)])
def test_area_must_be_whole_aligned_pmds(start: int, pages: int) -> None:
    with pytest.raises(ConfigError, match="whole PMDs"):
        SecretmemArea(Pfn(start), pages)


@pytest.mark.parametrize("reserve", [100, 4096])
def test_machine_refuses_a_bad_reservation(reserve: int) -> None:
    with pytest.raises(ConfigError, match="secretmem_reserve_pages"):
        machine(pages=4096, reserve=reserve)


# -- the PMD pool -----------------------------------------------------------------------------
def test_pool_grows_by_one_chunk_per_file_lazily() -> None:
    m = machine(reserve=2048)
    area = m.secretmem_area
    assert area is not None and area.free_chunks == 4
    task = m.create_domain("process")
    file = m.memfd_secret(task)
    file.mmap(600)
    assert area.free_chunks == 4  # mmap takes nothing yet
    pa = file.fault(0)
    assert area.free_chunks == 3
    assert area.start <= pa // PAGE < area.start + area.pages
    for index in range(1, PMD_PAGES):
        file.fault(index)
    assert area.free_chunks == 3  # 512 pages come from the same chunk
    file.fault(PMD_PAGES)
    assert area.free_chunks == 2  # the 513th needs a new chunk
    other = m.memfd_secret(m.create_domain("process"))
    other.mmap(1)
    other.fault(0)
    assert area.free_chunks == 1  # one page, one whole chunk


def test_pool_pages_leave_the_direct_map_without_splitting_it() -> None:
    m = machine(reserve=1024)
    task = m.create_domain("process")
    file = m.memfd_secret(task)
    file.mmap(1)
    pa = file.fault(0)
    m.write(task, pa, b"secret")
    assert m.read(task, pa, 6) == b"secret"
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(m.direct_map.virt(pa), 6)
    assert m.direct_map.pmd_split_count == 0  # the chunk left the map whole
    assert m.direct_map.pud_split_count == 1  # the 1 GiB mapping around it did split


def test_pool_teardown_maps_clears_and_returns_the_chunks() -> None:
    m = machine(reserve=1024)
    area = m.secretmem_area
    assert area is not None
    task = m.create_domain("process")
    file = m.memfd_secret(task)
    file.mmap(2)
    pa = file.fault(1)
    m.write(task, pa, b"top secret")
    file.close()
    assert area.free_chunks == 2
    assert task.locked_pages == 0 and task.pages == []
    assert m.kernel_read(m.direct_map.virt(pa), 10) == bytes(10)  # mapped again, and cleared
    with pytest.raises(ConfigError, match="closed"):
        file.fault(0)


def test_per_page_strategy_splits_and_restores() -> None:
    m = machine(before_pool=True)
    task = m.create_domain("process")
    file = m.memfd_secret(task)
    file.mmap(2)
    pa = file.fault(0)
    m.write(task, pa, b"k" * 16)
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(m.direct_map.virt(pa), 16)
    assert (m.direct_map.pud_split_count, m.direct_map.pmd_split_count) == (1, 1)
    free_before = m.allocator.free_count
    file.close()
    assert m.allocator.free_count == free_before + 1
    assert m.kernel_read(m.direct_map.virt(pa), 16) == bytes(16)


def test_later_keyid_direct_maps_also_lack_the_pool_chunk() -> None:
    m = machine("mktme", reserve=1024)
    task = m.create_domain("process")
    file = m.memfd_secret(task)
    file.mmap(1)
    pa = file.fault(0)
    dmap = m.keyid_direct_map(task.slot)
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(dmap.virt(pa), 8)
    assert dmap.pmd_split_count == 0


def test_fault_outside_the_mapping_is_sigbus() -> None:
    m = machine(reserve=1024)
    file = m.memfd_secret(m.create_domain("process"))
    file.mmap(1)
    with pytest.raises(PageFault, match="SIGBUS"):
        file.fault(1)


def test_only_processes_open_secret_memory() -> None:
    m = machine(reserve=1024)
    with pytest.raises(ConfigError, match="not a live process"):
        m.memfd_secret(m.create_domain("guest"))


def test_exhausted_reservation_kills_the_faulting_task() -> None:
    """Seed (review of the PMD-pool patch): "any task is able to deprive access to secret memory
    to other tasks and cause OOM killer which wouldn't really recover ever"; the patch's
    secretmem_fault answers a failed secretmem_alloc_page with "return VM_FAULT_OOM". The late
    task, heavier than the greedy one, is what the OOM killer picks: it dies in its fault."""
    m = machine(reserve=512)
    greedy_task = m.create_domain("process", "greedy")
    greedy = m.memfd_secret(greedy_task)
    greedy.mmap(1)
    greedy.fault(0)
    late_task = m.create_domain("process", "late")
    for _ in range(8):
        m.alloc_page(late_task)
    late = m.memfd_secret(late_task)
    late.mmap(1)  # mmap succeeds ...
    with pytest.raises(OomKilled, match="VM_FAULT_OOM.*killed late itself"):
        late.fault(0)  # ... and the fault kills the task
    assert m.oom_kills == ["late"]
    assert not late_task.alive and late_task.pages == [] and not late.open
    assert greedy_task.alive and m.secretmem_area is not None
    assert m.secretmem_area.free_chunks == 0  # killing the late task gave nothing back


def test_oom_killer_keeps_killing_until_the_fault_is_served() -> None:
    """The fault is retried after each kill: a bystander that holds no secret memory dies for
    nothing, then the greedy task (the heavier one left) dies and its chunk comes back, and the
    retried fault gets its page."""
    m = machine(reserve=512)
    greedy_task = m.create_domain("process", "greedy")
    greedy = m.memfd_secret(greedy_task)
    greedy.mmap(PMD_PAGES)
    for index in range(PMD_PAGES):
        greedy.fault(index)
    bystander = m.create_domain("process", "bystander")
    for _ in range(PMD_PAGES + 10):
        m.alloc_page(bystander)
    late_task = m.create_domain("process", "late")
    late = m.memfd_secret(late_task)
    late.mmap(1)
    pa = late.fault(0)
    assert m.oom_kills == ["bystander", "greedy"]
    assert late_task.alive and not greedy_task.alive and not greedy.open
    m.write(late_task, pa, b"key")
    assert m.read(late_task, pa, 3) == b"key"


def test_oom_killer_prefers_the_later_task_on_equal_badness() -> None:
    m = machine(reserve=512)
    greedy = m.memfd_secret(m.create_domain("process", "greedy"))
    greedy.mmap(1)
    greedy.fault(0)  # one page: as heavy as the late task will be
    late_task = m.create_domain("process", "late")
    m.alloc_page(late_task)
    late = m.memfd_secret(late_task)
    late.mmap(1)
    with pytest.raises(OomKilled, match="killed late itself"):
        late.fault(0)


def test_unmapped_secret_pages_stay_taken_but_leave_the_resident_set() -> None:
    """munmap of a secretmem mapping: the locked-memory charge goes back (the mapping was
    VM_LOCKED), the pages stay in the file's page cache (the chunk stays taken), and the task's
    resident set, which oom_badness weighs, no longer has them; mapping the file again and
    touching the page maps the cached page, with no new memory."""
    m = machine(reserve=512)
    area = m.secretmem_area
    assert area is not None
    task = m.create_domain("process", "holder")
    m.alloc_page(task)
    file = m.memfd_secret(task)
    file.mmap(8)
    first = [file.fault(i) for i in range(8)]
    assert task.rss == 9 and task.locked_pages == 8
    file.munmap()
    assert task.rss == 1 and task.locked_pages == 0 and file.mapped_pages == 0
    assert len(file.pages) == 8 and area.free_chunks == 0
    with pytest.raises(PageFault, match="SIGBUS"):
        file.fault(0)  # nothing is mapped any more
    file.mmap(2)
    assert file.fault(1) == first[1] and task.rss == 2 and len(file.pages) == 8
    file.close()
    assert task.rss == len(task.pages) == 1 and task.cached_pages == 0 and area.free_chunks == 1


def test_the_oom_killer_passes_over_a_task_whose_secret_pages_are_unmapped() -> None:
    """The greedy task holds the whole reservation in its file's page cache and maps none of
    it: the one-page late task is the heavier one and dies in its fault."""
    m = machine(reserve=512)
    greedy_task = m.create_domain("process", "greedy")
    greedy = m.memfd_secret(greedy_task)
    greedy.mmap(PMD_PAGES)
    for index in range(PMD_PAGES):
        greedy.fault(index)
    greedy.munmap()
    late_task = m.create_domain("process", "late")
    m.alloc_page(late_task)
    late = m.memfd_secret(late_task)
    late.mmap(1)
    with pytest.raises(OomKilled, match="killed late itself"):
        late.fault(0)
    assert greedy_task.alive and m.oom_kills == ["late"]


def test_no_reservation_memfd_secret_is_enomem() -> None:
    """Seed (PMD-pool patch, SYSCALL_DEFINE1(memfd_secret)): "if (!secretmem_cma) return
    -ENOMEM;": without secretmem= the system call itself fails, for every task."""
    m = machine()
    with pytest.raises(OutOfMemory, match="ENOMEM: memfd_secret needs the secretmem= boot "
                       "reservation"):
        m.memfd_secret(m.create_domain("process"))


def test_before_the_pool_option_excludes_a_reservation() -> None:
    with pytest.raises(ConfigError, match="secretmem_before_pmd_pool"):
        machine(reserve=512, before_pool=True)
    with pytest.raises(ValidationError, match="secretmem_before_pmd_pool"):
        scenario("secretmem-exhaustion", platform={
            "memory_pages": 4096, "secretmem_reserve_pages": 512,
            "secretmem_before_pmd_pool": True})


def test_destroying_a_task_closes_its_secret_files() -> None:
    m = machine(reserve=1024)
    area = m.secretmem_area
    assert area is not None
    task = m.create_domain("process")
    file = m.memfd_secret(task)
    file.mmap(1)
    file.fault(0)
    m.alloc_page(task)
    m.destroy_domain(task)
    assert not file.open and task.pages == [] and area.free_chunks == 2


# -- the locked-memory limit ------------------------------------------------------------------
def test_memlock_limit_refuses_mmap_beyond_it() -> None:
    m = machine(reserve=1024, memlock=8)
    task = m.create_domain("process")
    file = m.memfd_secret(task)
    file.mmap(8)
    with pytest.raises(ResourceLimit, match="EAGAIN.*RLIMIT_MEMLOCK of 8"):
        file.mmap(1)
    second = m.memfd_secret(task)  # the limit is per task, not per file
    with pytest.raises(ResourceLimit, match="EAGAIN.*RLIMIT_MEMLOCK of 8"):
        second.mmap(1)
    file.close()
    second.mmap(8)
    assert task.locked_pages == 8


def test_mitigation_names_and_bounds() -> None:
    assert Mitigations(memlock_limit_pages=4).names() == ("memlock_limit",)
    with pytest.raises(ConfigError, match="memlock_limit_pages"):
        Mitigations(memlock_limit_pages=-1)


@pytest.mark.parametrize(("platform", "message"), [
    ({"memory_pages": 4096, "secretmem_reserve_pages": 100}, "multiple of 512"),
    ({"memory_pages": 1024, "secretmem_reserve_pages": 1024}, "at least 1536"),
    # Frame 0 is the kernel's and the pool starts at a 2 MiB boundary: 1000 frames cannot
    # hold a 512-frame pool, although 512 < 1000 (a machine that would never boot).
    ({"memory_pages": 1000, "secretmem_reserve_pages": 512}, "at least 1024"),
])
def test_schema_checks_the_reservation(platform: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        scenario("secretmem-exhaustion", platform=platform)




