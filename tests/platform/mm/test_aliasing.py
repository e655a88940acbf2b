"""Memory aliasing (BadRAM): the decoding of physical addresses to DRAM cells, the boot-time
alias probe, and what the alias lets a hypervisor do under SEV-SNP.

The decodings are checked against the rule re-derived here from the model's choice (the DIMM
ignores the highest address bit inside memory: ``cell = pa & ~2**bit``), and the ciphertext
against XEX written out with ``cryptography``'s AES (``T = AES_K(a)``, ``a`` the 16-byte
little-endian physical address of each block, ``C = AES_K(P ^ T) ^ T``).
"""

from __future__ import annotations

import numpy as np
import pytest
from _support.machines import LINE, PAGE, keys_drawn, machine
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from testbed.errors import ConfigError, FirmwareRefusal, RmpViolation
from testbed.platform import Mitigations
from testbed.platform.mm.aliasing import (
    alias_problem,
    boot_with_alias,
    find_aliases,
    ignored_bit,
)
from testbed.platform.mm.allocator import PageAllocator
from testbed.platform.mm.memory import PhysicalMemory
from testbed.types import PhysAddr


def aes(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def xex(key: bytes, address: int, plain: bytes) -> bytes:
    out = b""
    for i in range(0, len(plain), 16):
        tweak = aes(key, (address + i).to_bytes(16, "little"))
        masked = bytes(p ^ t for p, t in zip(plain[i : i + 16], tweak, strict=True))
        out += bytes(c ^ t for c, t in zip(aes(key, masked), tweak, strict=True))
    return out


@pytest.mark.parametrize(("pages", "bit"), [(16, 15), (64, 17), (256, 19), (300, 20),
                                            (65536, 27)])
def test_the_ignored_bit_is_the_highest_inside_memory(pages: int, bit: int) -> None:
    assert ignored_bit(pages) == bit
    assert 1 << bit < pages * PAGE <= 1 << (bit + 1)


def test_a_sound_dimm_decodes_every_address_to_its_own_cell() -> None:
    memory = PhysicalMemory(16)
    assert memory.ignored_bit is None
    assert [memory.cell(pa) for pa in (0, 4096, 65472)] == [0, 4096, 65472]
    assert memory.alias_of(4096) is None
    memory.store(8 * PAGE, np.full((1, LINE), 7, dtype=np.uint8))
    assert memory.load(0, LINE).tobytes() == bytes(LINE)
    assert find_aliases(memory) == ()


def test_aliased_addresses_reach_the_same_cells() -> None:
    memory = PhysicalMemory(300)
    memory.alias(ignored_bit(300))
    half = 1 << 20
    rng = np.random.default_rng(5)
    for pa in (0, 3 * PAGE + 2 * LINE, 40 * PAGE):
        assert memory.cell(pa + half) == pa and memory.alias_of(pa) == pa + half
        lines = rng.integers(0, 256, (2, LINE), dtype=np.uint8)
        memory.store(pa + half, lines)
        assert np.array_equal(memory.load(pa, 2 * LINE), lines)
    assert memory.alias_of(250 * PAGE) is None  # its alias would be past the end of memory
    # A range across the bit: its pieces land in the cells the rule gives, line by line.
    start = half - 2 * LINE
    data = rng.integers(0, 256, (4, LINE), dtype=np.uint8)
    memory.store(start, data)
    for i in range(4):
        cell = (start + i * LINE) & ~half
        assert np.array_equal(memory.load(cell, LINE)[0], data[i])


def test_scattered_line_writes_keep_the_last_line_of_each_cell() -> None:
    memory = PhysicalMemory(64)
    memory.alias(ignored_bit(64))
    rng = np.random.default_rng(9)
    addrs = rng.integers(0, 64 * PAGE // LINE, 200).astype(np.uint64) * np.uint64(LINE)
    lines = rng.integers(0, 256, (200, LINE), dtype=np.uint8)
    memory.store_lines(addrs, lines)
    expected = PhysicalMemory(64)
    expected.alias(ignored_bit(64))
    for pa, line in zip(addrs, lines, strict=True):  # one by one, in order
        expected.store(int(pa), line[None, :])
    for pa in addrs:
        assert np.array_equal(memory.load(int(pa), LINE), expected.load(int(pa), LINE))
    assert np.array_equal(memory.load_lines(addrs[:3]),
                          np.stack([expected.load(int(a), LINE)[0] for a in addrs[:3]]))
    with pytest.raises(ConfigError, match="aligned inside memory"):
        memory.load_lines(np.array([64 * PAGE], dtype=np.uint64))


def test_the_probe_finds_exactly_the_aliased_frames() -> None:
    memory = PhysicalMemory(300)
    memory.alias(ignored_bit(300))
    first = (1 << 20) // PAGE
    # each lower frame shows the marker its alias wrote over it
    assert find_aliases(memory) == tuple((f - first, f) for f in range(first, 300))
    assert memory.load(0, 300 * PAGE).tobytes() == bytes(300 * PAGE)  # probed lines cleared


def test_boot_with_an_alias_keeps_the_alias_frames_from_the_allocator() -> None:
    memory, allocator = PhysicalMemory(64), PageAllocator(64)
    alias = boot_with_alias(memory, allocator, check=False)
    assert (alias.bit, alias.first_frame, alias.frames) == (17, 32, 32)
    handed = {allocator.alloc() for _ in range(allocator.free_count)}
    assert max(handed) == 31 and len(handed) == 31  # frame 0 holds the kernel image


def test_alias_frames_held_at_boot_are_a_configuration_error() -> None:
    allocator = PageAllocator(64)
    allocator.reserve_contiguous(4, 4)  # frames 60..63, as a secretmem= reservation would
    assert alias_problem(allocator, 64) == (
        "the alias frames 32..63 must be free at boot for the hypervisor to keep, but a "
        "boot-time reservation (secretmem=) holds 4 of them")
    assert alias_problem(PageAllocator(64), 64) is None
    with pytest.raises(ConfigError, match="must be free at boot"):
        boot_with_alias(PhysicalMemory(64), allocator, check=False)


def test_the_alias_check_refuses_to_boot() -> None:
    refused = r"found 32 aliased frames \(frames 0 and 32 share"
    with pytest.raises(FirmwareRefusal, match=refused):
        boot_with_alias(PhysicalMemory(64), PageAllocator(64), check=True)


def test_an_alias_bit_outside_memory_is_refused() -> None:
    with pytest.raises(ConfigError, match="alias bit"):
        PhysicalMemory(16).alias(16)


def test_through_the_alias_the_rmp_lets_a_rollback_through() -> None:
    m = machine("sev-snp")
    boot_with_alias(m.memory, m.allocator, check=False)
    guest = m.create_domain("guest")
    (key,) = keys_drawn(16)
    pa = m.alloc_page(guest)
    old, new = b"balance=0000100".ljust(LINE, b"\0"), b"balance=0000000".ljust(LINE, b"\0")
    m.write(guest, pa, old)
    alias = PhysAddr(pa + (1 << 17))
    saved = m.hypervisor_read(alias, LINE)
    assert saved == xex(key, pa, old)  # the cell holds the ciphertext made for pa
    # Read with the guest's key through the alias: the tweak is the alias address, garbage.
    assert m.engine.decrypt(guest.slot, np.array([alias], dtype=np.uint64),
                            np.frombuffer(saved, np.uint8).reshape(1, LINE)).tobytes() != old
    m.write(guest, pa, new)
    with pytest.raises(RmpViolation):
        m.hypervisor_write(pa, saved)  # the page's own address is the guest's in the RMP
    m.hypervisor_write(alias, saved)  # the alias is the hypervisor's own frame
    assert m.guest_read(guest, 0, LINE) == old


def test_the_mitigation_is_declared_for_profiles() -> None:
    assert Mitigations(alias_check=True).names() == ("alias_check",)
    assert Mitigations(restrict_page_move=True).names() == ("restrict_page_move",)
