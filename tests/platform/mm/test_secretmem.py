"""secretmem: the reservation, the PMD pool and the memlock limit (the page removal from direct
maps: test_directmap.py; the exhaustion attack: tests/attacks/test_secretmem_exhaustion.py)."""

from __future__ import annotations

import numpy as np
import pytest
from _support.scenarios import scenario
from pydantic import ValidationError

from testbed.errors import ConfigError, OutOfMemory, PageFault, ResourceLimit
from testbed.platform import KeySource, Machine, Mitigations, make_engine
from testbed.platform.mm.secretmem import PMD_PAGES, SecretmemArea
from testbed.types import Pfn

PAGE = 4096


def machine(engine: str = "tme", pages: int = 4096, reserve: int = 0,
            memlock: int = 0) -> Machine:
    eng = make_engine(engine, KeySource(np.random.default_rng(3)))
    return Machine(eng, pages, Mitigations(memlock_limit_pages=memlock),
                   secretmem_reserve_pages=reserve)


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
    assert m.direct_map_splits == 0


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
    m = machine()
    task = m.create_domain("process")
    file = m.memfd_secret(task)
    file.mmap(2)
    pa = file.fault(0)
    m.write(task, pa, b"k" * 16)
    with pytest.raises(PageFault, match="removed from the direct map"):
        m.kernel_read(m.direct_map.virt(pa), 16)
    assert m.direct_map_splits == 1
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
    assert dmap.split_count == 0


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


def test_exhausted_reservation_is_enomem_at_fault_time() -> None:
    m = machine(reserve=512)
    greedy = m.memfd_secret(m.create_domain("process"))
    greedy.mmap(1)
    greedy.fault(0)
    late = m.memfd_secret(m.create_domain("process"))
    late.mmap(1)  # mmap succeeds ...
    with pytest.raises(OutOfMemory, match="ENOMEM"):
        late.fault(0)  # ... and the fault fails


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
    ({"memory_pages": 1024, "secretmem_reserve_pages": 1024}, "below memory_pages"),
])
def test_schema_checks_the_reservation(platform: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        scenario("secretmem-exhaustion", platform=platform)




