"""TME-MK with integrity (mktme-i): DRAM and the sideband words against XTS and CMAC computed
independently from the keys the machine draws, the TD-owner bit, poisoning, and what the bus
can and cannot do."""

from __future__ import annotations

import numpy as np
import pytest
from _support.machines import LINE, PAGE, SECRET, SEED, addrs_of, kernel_read_page, keys_drawn
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from pydantic import ValidationError

from testbed.crypto import XtsLineCipher
from testbed.errors import ConfigError, IntegrityViolation
from testbed.platform import (
    Domain,
    EngineWithIntegrity,
    KeySource,
    Machine,
    MktmeIntegrityEngine,
    make_engine,
)
from testbed.platform.engines import OWNER_BIT, POISON_BIT
from testbed.results.verdicts import wilson_interval
from testbed.scenarios.model import PlatformSpec
from testbed.types import PhysAddr


def _machine(mac_bits: int = 28, pages: int = 64) -> Machine:
    engine = make_engine("mktme-i", KeySource(np.random.default_rng(SEED)), mac_bits=mac_bits)
    return Machine(engine, memory_pages=pages)


def _word(mac_key: bytes, xts_key: bytes, addr: int, owner: bool, line: bytes,
          bits: int) -> int:
    """A line's sideband word from its published layout: MAC in the low bits, the TD-owner
    bit at bit 63; the MAC by ``cryptography``'s CMAC under the platform's MAC key over
    tweak || owner || 0^15 || line, the tweak AES-ECB of LE128(addr) under the tweak half of the
    KeyID's XTS key (computed here with ``cryptography``)."""
    enc = Cipher(algorithms.AES(xts_key[16:]), modes.ECB()).encryptor()
    tweak = enc.update(addr.to_bytes(16, "little")) + enc.finalize()
    c = CMAC(algorithms.AES(mac_key))
    c.update(tweak + bytes([owner]) + bytes(15) + line)
    tag = int.from_bytes(c.finalize(), "big") >> (128 - bits)
    return tag | (1 << 63 if owner else 0)


@pytest.mark.parametrize("bits", [8, 28])
def test_dram_and_sideband_equal_xts_and_cmac_recomputed(bits: int) -> None:
    m = _machine(bits)
    guest = m.create_domain("guest")
    assert guest.slot == 1
    pa = m.alloc_page(guest)
    m.write(guest, pa, SECRET)
    # KeyID 0's XTS key, then the platform's one MAC key; KeyID 1 (SET_KEY_RANDOM): its XTS key.
    _, mac, xts1 = keys_drawn(32, 16, 32)
    dram = m.bus.read(pa, PAGE)
    assert dram == XtsLineCipher(xts1).encrypt(addrs_of(pa), SECRET).tobytes()
    words = m.bus_sideband(pa, PAGE)
    for i in range(PAGE // LINE):
        line = dram[i * LINE : (i + 1) * LINE]
        assert int(words[i]) == _word(mac, xts1, pa + i * LINE, True, line, bits)
    assert m.read(guest, pa, PAGE) == SECRET


def test_boot_words_are_the_host_macs_of_zeroed_dram() -> None:
    m = _machine(pages=1024)
    (xts0, mac) = keys_drawn(32, 16)
    pa = PhysAddr(777 * PAGE)
    words = m.bus_sideband(pa, 2 * LINE)  # never written: made from the boot contents
    assert [int(w) for w in words] == [_word(mac, xts0, pa + i * LINE, False, bytes(LINE),
                                             28)
                                       for i in range(2)]
    m.kernel_read(m.direct_map.virt(pa), PAGE)  # KeyID 0 reads boot memory without a fault
    m.bus.write(pa, bytes([1]) + bytes(LINE - 1))  # a forged never-written line is refused
    with pytest.raises(IntegrityViolation):
        m.kernel_read(m.direct_map.virt(pa), 1)


def test_engine_declares_integrity_by_interface() -> None:
    assert issubclass(MktmeIntegrityEngine, EngineWithIntegrity)
    assert MktmeIntegrityEngine.integrity and not make_engine(
        "mktme", KeySource(np.random.default_rng(1))).integrity


def _victim(m: Machine) -> tuple[Domain, PhysAddr]:
    guest = m.create_domain("guest")
    pa = m.alloc_page(guest)
    m.write(guest, pa, SECRET)
    return guest, pa


@pytest.mark.parametrize("bit", [0, 77, 511])
def test_a_flipped_ciphertext_bit_is_refused_and_poisons_the_line(bit: int) -> None:
    m = _machine()
    guest, pa = _victim(m)
    line = bytearray(m.bus.read(pa, LINE))
    old = bytes(line)
    line[bit // 8] ^= 1 << (bit % 8)
    m.bus.write(pa, bytes(line))
    with pytest.raises(IntegrityViolation, match="MAC does not match"):
        m.read(guest, pa, 16)
    assert int(m.bus_sideband(pa, LINE)[0]) & int(POISON_BIT)
    m.bus.write(pa, old)  # the right bytes back: still poisoned
    with pytest.raises(IntegrityViolation, match="poisoned"):
        m.read(guest, pa, 16)
    m.write(guest, pa, SECRET[:LINE])  # a whole-line CPU write makes it good again
    assert m.read(guest, pa, LINE) == SECRET[:LINE]


@pytest.mark.parametrize("bit", [0, 27, 63])
def test_a_flipped_sideband_bit_is_refused(bit: int) -> None:
    m = _machine()
    guest, pa = _victim(m)
    word = m.bus_sideband(pa, LINE)
    word ^= np.uint64(1 << bit)
    m.bus_write_sideband(pa, word)
    with pytest.raises(IntegrityViolation):
        m.read(guest, pa, 16)


def test_line_and_mac_moved_to_another_address_are_refused() -> None:
    m = _machine()
    guest, pa = _victim(m)
    other = PhysAddr(pa + LINE)
    m.bus.write(other, m.bus.read(pa, LINE))
    m.bus_write_sideband(other, m.bus_sideband(pa, LINE))
    with pytest.raises(IntegrityViolation, match="MAC does not match"):
        m.read(guest, other, 16)


def test_same_address_rollback_with_its_mac_passes() -> None:
    m = _machine()
    guest, pa = _victim(m)
    old_line, old_word = m.bus.read(pa, LINE), m.bus_sideband(pa, LINE)
    m.write(guest, pa, b"new value")
    m.bus.write(pa, old_line)
    m.bus_write_sideband(pa, old_word)
    assert m.read(guest, pa, LINE) == SECRET[:LINE]


def test_host_reads_of_private_lines_are_zeros_and_host_writes_clear_the_owner_bit() -> None:
    m = _machine()
    guest, pa = _victim(m)
    assert kernel_read_page(m, pa) == bytes(PAGE)
    m.hypervisor_write(pa, bytes(LINE))  # through KeyID 0
    assert not int(m.bus_sideband(pa, LINE)[0]) & int(OWNER_BIT)
    with pytest.raises(IntegrityViolation, match="TD-owner bit is clear"):
        m.read(guest, pa, 16)
    assert m.read(guest, PhysAddr(pa + LINE), LINE) == SECRET[LINE : 2 * LINE]


def test_another_keyid_reading_a_private_line_is_refused() -> None:
    m = _machine()
    guest, pa = _victim(m)
    other = m.create_domain("guest")
    va = m.keyid_direct_map(other.slot).virt(pa)
    with pytest.raises(IntegrityViolation, match=f"KeyID {other.slot}"):
        m.kernel_read(va, 16)


def test_rotation_reseals_under_the_new_mac_key() -> None:
    m = _machine()
    guest, pa = _victim(m)
    before = m.bus_sideband(pa, PAGE)
    m.rotate_domain_key(guest)
    assert (m.bus_sideband(pa, PAGE) != before).any()
    assert m.read(guest, pa, PAGE) == SECRET


def test_mac_width_is_bounded_in_the_engine_and_the_scenario_schema() -> None:
    with pytest.raises(ConfigError, match="mac_bits: must be 4..56, got 3"):
        _machine(3)
    with pytest.raises(ValidationError, match="mac_bits"):
        PlatformSpec(mac_bits=57)
    assert PlatformSpec().mac_bits == 28


def test_with_a_4_bit_mac_random_forged_lines_pass_one_time_in_16() -> None:
    """End to end through the machine: the owner writes a line, the bus replaces it with random
    bytes, the owner reads; the read passes exactly when the truncated MACs collide."""
    m = _machine(4)
    guest, pa = _victim(m)
    rng = np.random.default_rng(5)
    passed, n = 0, 3000
    for _ in range(n):
        m.write(guest, pa, SECRET[:LINE])  # a whole-line write: fresh MAC, poison cleared
        m.bus.write(pa, rng.bytes(LINE))
        try:
            m.read(guest, pa, LINE)
        except IntegrityViolation:
            continue
        passed += 1
    low, high = wilson_interval(passed, n)
    assert low <= 1 / 16 <= high, (passed, low, high)
