"""Physical memory and the bus tap: DRAM as ground truth, captured and replayed lines, counters."""

from __future__ import annotations

import pytest
from _support.machines import LINE, PAGE, SECRET, machine

from testbed.errors import ConfigError
from testbed.types import PhysAddr


def test_dram_is_ground_truth_without_bus_counters() -> None:
    m = machine("tme")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc)
    m.write(proc, pa, SECRET)
    assert m.dram(pa, PAGE) == m.bus.read(pa, PAGE)
    assert m.dram(PhysAddr(pa + 5), 7) == m.bus.read(pa, LINE)[5:12]
    assert m.bus.lines_read == 65


def test_bus_tap_replay_and_counters() -> None:
    m = machine("tme")
    g = m.create_domain("guest")
    pa = m.alloc_page(g)
    m.write(g, pa, SECRET)
    assert (m.bus.lines_read, m.bus.lines_written) == (0, 0)
    captured = m.bus.read(pa, 2 * LINE)
    assert m.bus.lines_read == 2
    m.write(g, pa, b"\x00" * 2 * LINE)
    assert m.bus.read(pa, 2 * LINE) != captured
    m.bus.write(pa, captured)  # replay the old ciphertext
    assert m.bus.lines_written == 2
    assert m.bus.read(pa, 2 * LINE) == captured
    assert m.read(g, pa, 2 * LINE) == SECRET[: 2 * LINE]  # no integrity: the replay decrypts
    lines = m.bus.read_lines(pa, PAGE)
    assert lines.shape == (64, LINE)
    assert m.bus.lines_read == 2 + 2 + 2 + 64
    assert [c.op for c in m.bus.log] == ["read", "read", "write", "read", "read"]
    assert m.bus.log[0].address == pa and m.bus.log[0].data == captured


def test_bus_tap_log_limit_and_alignment() -> None:
    m = machine("none")
    m.bus.log_limit = 3
    for i in range(5):
        m.bus.read(i * LINE, LINE)
    assert len(m.bus.log) == 3 and m.bus.lines_read == 5
    with pytest.raises(ConfigError, match="not 64-byte aligned"):
        m.bus.read(8, LINE)
    with pytest.raises(ConfigError, match="outside memory"):
        m.bus.write(64 * PAGE, bytes(LINE))
