"""The TME data path (and none's): DRAM holds the AES-XTS of the plaintext, tweaked by address."""

from __future__ import annotations

from _support.machines import LINE, PAGE, SECRET, addrs_of, kernel_read_page, keys_drawn, machine

from testbed.crypto import XtsLineCipher
from testbed.types import PhysAddr


def test_none_engine_dram_holds_plaintext() -> None:
    m = machine("none")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc)
    m.write(proc, pa, SECRET)
    assert m.bus.read(pa, PAGE) == SECRET
    assert m.read(proc, pa, PAGE) == SECRET
    assert kernel_read_page(m, pa) == SECRET


def test_tme_dram_is_xts_of_plaintext() -> None:
    m = machine("tme")
    proc = m.create_domain("process")
    assert proc.slot == 0
    pa = m.alloc_page(proc)
    m.write(proc, pa, SECRET)
    dram = m.bus.read(pa, PAGE)
    assert dram != SECRET
    (tme_key,) = keys_drawn(32)
    assert dram == XtsLineCipher(tme_key).encrypt(addrs_of(pa), SECRET).tobytes()
    assert m.read(proc, pa, PAGE) == SECRET


def test_tme_same_plaintext_at_two_addresses_differs() -> None:
    m = machine("tme")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc)
    line = bytes(range(LINE))
    m.write(proc, pa, line)
    m.write(proc, PhysAddr(pa + LINE), line)
    first, second = m.bus.read(pa, LINE), m.bus.read(pa + LINE, LINE)
    assert first != line and second != line and first != second
    assert m.read(proc, pa, 2 * LINE) == line * 2
