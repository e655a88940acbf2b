"""The machine: domains and their pages, reads and writes through the engine, the mitigations
it applies (init_on_free, key rotation), and the bounds it is built with."""

from __future__ import annotations

import numpy as np
import pytest
from _support.machines import LINE, PAGE, SECRET, addrs_of, kernel_read_page, keys_drawn, machine

from testbed.crypto import XtsLineCipher
from testbed.errors import ConfigError, PageFault, UnsupportedMitigation
from testbed.platform import Mitigations
from testbed.types import PhysAddr


# -- reads and writes ----------------------------------------------------------------------
def test_unaligned_write_is_read_modify_write() -> None:
    m = machine("tme")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc)
    m.write(proc, pa, SECRET)
    m.write(proc, PhysAddr(pa + 60), b"ABCDEFGH")  # straddles two lines
    expected = SECRET[:60] + b"ABCDEFGH" + SECRET[68:]
    assert m.read(proc, pa, PAGE) == expected
    assert m.read(proc, PhysAddr(pa + 59), 10) == expected[59:69]


# -- mitigations ---------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["none", "tme"])
def test_init_on_free_zeroes_reused_frame(engine: str) -> None:
    m = machine(engine, Mitigations(init_on_free=True))
    victim, attacker = m.create_domain("process"), m.create_domain("process")
    pa = m.alloc_page(victim)
    m.write(victim, pa, SECRET)
    m.free_page(victim, pa)
    assert m.alloc_page(attacker) == pa  # LIFO: the frame just freed comes back first
    assert kernel_read_page(m, pa) == bytes(PAGE)
    assert m.read(attacker, pa, PAGE) == bytes(PAGE)


@pytest.mark.parametrize("engine", ["none", "tme"])
def test_without_init_on_free_data_survives(engine: str) -> None:
    m = machine(engine)
    victim, attacker = m.create_domain("process"), m.create_domain("process")
    pa = m.alloc_page(victim)
    m.write(victim, pa, SECRET)
    m.free_page(victim, pa)
    assert m.alloc_page(attacker) == pa
    assert m.read(attacker, pa, PAGE) == SECRET


@pytest.mark.parametrize("engine", ["none", "tme", "sev", "sev-snp"])
def test_rotation_needs_runtime_rotation(engine: str) -> None:
    with pytest.raises(UnsupportedMitigation, match=f"engine {engine} cannot rotate keys") as err:
        machine(engine, Mitigations(key_rotation_blocks=1000))
    assert isinstance(err.value, ConfigError)


def test_tme_rotate_domain_key_refused() -> None:
    m = machine("tme")
    proc = m.create_domain("process")
    with pytest.raises(ConfigError, match="cannot rotate keys at run time"):
        m.rotate_domain_key(proc)


def test_mktme_key_rotation() -> None:
    m = machine("mktme", Mitigations(key_rotation_blocks=1000))
    g = m.create_domain("guest")
    still, busy = m.alloc_page(g), m.alloc_page(g)
    m.write(g, still, SECRET)  # 64 lines x 4 blocks = 256 blocks of wear
    assert m.engine.wear(g.slot) == 256
    before = m.bus.read(still, PAGE)
    line = bytes(range(LINE))
    # Each 64-byte write adds 4 blocks; the check runs before each write, so the write that
    # finds wear >= 1000 (after 186 writes: 256 + 744) rotates first.
    for _ in range(186):
        m.write(g, busy, line)
    assert m.rotations == 0
    assert m.engine.wear(g.slot) == 1000
    m.write(g, busy, line)
    assert m.rotations == 1
    # Re-encrypting both pages (2 x 256 blocks) plus that write, under the new key.
    assert m.engine.wear(g.slot) == 516
    after = m.bus.read(still, PAGE)
    assert after != before
    assert m.read(g, still, PAGE) == SECRET
    assert m.read(g, busy, LINE) == line
    tme_key, old_key, new_key = keys_drawn(32, 32, 32)
    assert before == XtsLineCipher(old_key).encrypt(addrs_of(still), SECRET).tobytes()
    assert after == XtsLineCipher(new_key).encrypt(addrs_of(still), SECRET).tobytes()


def test_write_sequence_returns_every_bus_write() -> None:
    m = machine("mktme")
    g = m.create_domain("guest")
    pa = m.alloc_page(g)
    lines = np.frombuffer(SECRET[: 5 * LINE], dtype=np.uint8).reshape(5, LINE)
    wear = m.engine.wear(g.slot)
    out = m.write_sequence(g, PhysAddr(pa + LINE), lines)
    _, guest_key = keys_drawn(32, 32)
    expected = XtsLineCipher(guest_key).encrypt(np.full(5, pa + LINE, dtype=np.uint64), lines)
    assert np.array_equal(out, expected)
    assert m.dram(PhysAddr(pa + LINE), LINE) == expected[-1].tobytes()
    assert m.read(g, PhysAddr(pa + LINE), LINE) == lines[-1].tobytes()
    assert m.engine.wear(g.slot) == wear + 20
    with pytest.raises(ConfigError, match="not line-aligned"):
        m.write_sequence(g, PhysAddr(pa + 8), lines)


# -- ownership, frees and bounds ----------------------------------------------------------


def test_machine_double_free_and_foreign_free() -> None:
    m = machine("none")
    p1, p2 = m.create_domain("process"), m.create_domain("process")
    pa = m.alloc_page(p1)
    with pytest.raises(ConfigError, match="does not own"):
        m.free_page(p2, pa)
    m.free_page(p1, pa)
    with pytest.raises(ConfigError, match="does not own"):
        m.free_page(p1, pa)


def test_free_page_takes_what_alloc_page_returned() -> None:
    m = machine("none")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc)
    assert pa % PAGE == 0
    with pytest.raises(ConfigError, match="not page-aligned"):
        m.free_page(proc, PhysAddr(pa + 8))
    m.free_page(proc, pa)
    assert m.owner(pa) is None


@pytest.mark.parametrize("pages", [0, 15, 65537])
def test_memory_size_bounds(pages: int) -> None:
    with pytest.raises(ConfigError, match="memory_pages: must be 16..65536"):
        machine("none", pages=pages)


def test_write_to_foreign_frame_faults() -> None:
    m = machine("tme")
    p1, p2 = m.create_domain("process"), m.create_domain("process")
    pa1, pa2 = m.alloc_page(p1), m.alloc_page(p2)
    with pytest.raises(PageFault, match=f"does not map frame {pa1 // PAGE}"):
        m.write(p2, pa1, b"x")
    with pytest.raises(PageFault, match=f"does not map frame {pa1 // PAGE}"):
        m.read(p2, pa1, 1)
    with pytest.raises(PageFault, match=f"does not map frame {pa2 // PAGE}"):
        m.write(p1, PhysAddr(pa1 + PAGE - 4), b"12345678")  # spills into p2's frame
    assert m.owner(pa1) is p1 and m.owner(pa2) is p2 and m.owner(PhysAddr(50 * PAGE)) is None


def test_kernel_domain_cannot_be_created() -> None:
    with pytest.raises(ConfigError, match="one host kernel"):
        machine("none").create_domain("kernel")


def test_negative_rotation_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match="key_rotation_blocks"):
        Mitigations(key_rotation_blocks=-1)


def test_rotation_policy_ignores_its_own_reencryption() -> None:
    m = machine("mktme", Mitigations(key_rotation_blocks=64), pages=64)
    guest = m.create_domain("guest")
    pa = m.alloc_page(guest)
    for _ in range(8):  # 8 writes of 64 lines x 4 blocks = 256 blocks each
        m.write(guest, pa, bytes(PAGE))
    assert m.rotations == 7  # before every write but the first; not cascading on re-encryption
