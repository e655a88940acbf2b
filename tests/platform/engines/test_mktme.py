"""MKTME: PCONFIG return codes, KeyIDs per guest, their exhaustion and release (CLEAR_KEY)."""

from __future__ import annotations

import numpy as np
import pytest
from _support.machines import (
    LINE,
    PAGE,
    SECRET,
    addrs_of,
    kernel_read_page,
    keys_drawn,
    machine,
    mktme_engine,
)

from testbed.crypto import XtsLineCipher
from testbed.errors import ConfigError, KeyNotProgrammed
from testbed.platform import KeySource, MktmeEngine, PconfigCommand, PconfigStatus, make_engine
from testbed.platform.engines.base import AES_XTS_128
from testbed.types import KeySlot


def test_pconfig_return_codes() -> None:
    engine = mktme_engine(machine("mktme"))
    assert engine.max_keyid == 63
    good_key = bytes(range(32))
    S = PconfigStatus
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 0) is S.INVALID_KEYID
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 64) is S.INVALID_KEYID
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, -1) is S.INVALID_KEYID
    assert engine.pconfig(7, 5) is S.INVALID_PROG_CMD
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 5, enc_alg=0) is S.INVALID_ENC_ALG
    assert engine.pconfig(PconfigCommand.SET_KEY_DIRECT, 5, good_key, enc_alg=0) is (
        S.INVALID_ENC_ALG
    )
    assert engine.pconfig(PconfigCommand.SET_KEY_DIRECT, 5, bytes(range(16))) is (
        S.INVALID_PROG_CMD
    )
    assert engine.pconfig(PconfigCommand.SET_KEY_DIRECT, 5, None) is S.INVALID_PROG_CMD
    assert engine.pconfig(PconfigCommand.SET_KEY_DIRECT, 5, bytes(range(16)) * 2) is (
        S.INVALID_PROG_CMD
    )
    engine.busy = True
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 5) is S.DEVICE_BUSY
    engine.busy = False
    assert engine.pconfig(PconfigCommand.SET_KEY_DIRECT, 5, good_key) is S.PROG_SUCCESS
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 6) is S.PROG_SUCCESS
    assert engine.pconfig(PconfigCommand.CLEAR_KEY, 6) is S.PROG_SUCCESS
    assert engine.pconfig(PconfigCommand.NO_ENCRYPT, 63) is S.PROG_SUCCESS
    assert engine.pconfig(int(PconfigCommand.SET_KEY_RANDOM), 1, enc_alg=AES_XTS_128) is (
        S.PROG_SUCCESS
    )


def test_pconfig_programs_the_data_path() -> None:
    m = machine("mktme")
    engine = mktme_engine(m)
    (tme_key,) = keys_drawn(32)
    key = bytes(range(32))
    addrs = addrs_of(0x3000, 2 * LINE)
    lines = np.frombuffer(SECRET[: 2 * LINE], dtype=np.uint8).reshape(2, LINE)
    assert engine.pconfig(PconfigCommand.SET_KEY_DIRECT, 9, key) is PconfigStatus.PROG_SUCCESS
    slot = KeySlot(9)
    expected = XtsLineCipher(key).encrypt(addrs, lines)
    assert np.array_equal(engine.encrypt(slot, addrs, lines), expected)
    assert engine.pconfig(PconfigCommand.NO_ENCRYPT, 9) is PconfigStatus.PROG_SUCCESS
    assert np.array_equal(engine.encrypt(slot, addrs, lines), lines)
    assert engine.pconfig(PconfigCommand.CLEAR_KEY, 9) is PconfigStatus.PROG_SUCCESS
    expected = XtsLineCipher(tme_key).encrypt(addrs, lines)
    assert np.array_equal(engine.encrypt(slot, addrs, lines), expected)
    with pytest.raises(KeyNotProgrammed):
        engine.encrypt(KeySlot(10), addrs, lines)  # never programmed


@pytest.mark.parametrize("bits", [0, 16, -1])
def test_mktme_keyid_bits_bounds(bits: int) -> None:
    with pytest.raises(ConfigError, match=f"keyid_bits: must be 1..15, got {bits}"):
        make_engine("mktme", KeySource(np.random.default_rng(0)), keyid_bits=bits)


def test_mktme_keyid_bits_one_and_fifteen() -> None:
    for bits, max_keyid in [(1, 1), (15, 32767)]:
        engine = make_engine("mktme", KeySource(np.random.default_rng(0)), keyid_bits=bits)
        assert isinstance(engine, MktmeEngine)
        assert engine.max_keyid == max_keyid


def test_mktme_guests_get_own_keyids() -> None:
    m = machine("mktme")
    g1, g2 = m.create_domain("guest"), m.create_domain("guest")
    proc = m.create_domain("process")
    assert (g1.slot, g2.slot, proc.slot) == (1, 2, 3)
    p1, p2 = m.alloc_page(g1), m.alloc_page(g2)
    m.write(g1, p1, SECRET)
    m.write(g2, p2, SECRET)
    assert m.read(g1, p1, PAGE) == SECRET and m.read(g2, p2, PAGE) == SECRET
    tme_key, g1_key, g2_key = keys_drawn(32, 32, 32)
    assert m.bus.read(p1, PAGE) == XtsLineCipher(g1_key).encrypt(addrs_of(p1), SECRET).tobytes()
    assert m.bus.read(p2, PAGE) == XtsLineCipher(g2_key).encrypt(addrs_of(p2), SECRET).tobytes()


def test_mktme_keyid_exhaustion() -> None:
    m = machine("mktme", keyid_bits=2)
    assert [m.create_domain("guest").slot for _ in range(3)] == [1, 2, 3]
    with pytest.raises(KeyNotProgrammed, match="no free KeyID"):
        m.create_domain("guest")


def test_kernel_read_of_guest_page_mktme_vs_tme() -> None:
    tme = machine("tme")
    g = tme.create_domain("guest")
    pa = tme.alloc_page(g)
    tme.write(g, pa, SECRET)
    assert kernel_read_page(tme, pa) == SECRET

    mk = machine("mktme")
    g = mk.create_domain("guest")
    pa = mk.alloc_page(g)
    mk.write(g, pa, SECRET)
    leaked = kernel_read_page(mk, pa)
    assert leaked != SECRET
    # KeyID 0 decrypts the guest's ciphertext with the TME key.
    tme_key, guest_key = keys_drawn(32, 32)
    dram = XtsLineCipher(guest_key).encrypt(addrs_of(pa), SECRET)
    assert leaked == XtsLineCipher(tme_key).decrypt(addrs_of(pa), dram).tobytes()
    # Through the guest's own KeyID direct map the kernel sees the plaintext.
    dmap = mk.keyid_direct_map(g.slot)
    assert mk.kernel_read(dmap.virt(pa), PAGE) == SECRET


def test_mktme_destroy_clears_keyid() -> None:
    m = machine("mktme")
    g = m.create_domain("guest")
    pa = m.alloc_page(g)
    m.write(g, pa, SECRET)
    addrs = addrs_of(pa, LINE)
    line = np.frombuffer(SECRET[:LINE], dtype=np.uint8).reshape(1, LINE)
    guest, host = KeySlot(1), KeySlot(0)  # the guest's KeyID, and the TME key's
    engine = m.engine
    assert not np.array_equal(engine.encrypt(guest, addrs, line), engine.encrypt(host, addrs, line))
    assert m.engine.wear(guest) > 0
    m.destroy_domain(g)
    assert g.alive is False and g.pages == []
    assert m.allocator.free_count == 63
    # CLEAR_KEY: KeyID 1 now encrypts with the TME key, and its wear counter restarts.
    assert m.engine.wear(guest) == 0
    assert np.array_equal(engine.encrypt(guest, addrs, line), engine.encrypt(host, addrs, line))
    # The KeyID is free again.
    assert m.create_domain("guest").slot == 1
    with pytest.raises(ConfigError, match="has been destroyed"):
        m.read(g, pa, LINE)


def test_clear_key_failure_keeps_the_keyid_reserved() -> None:
    m = machine("mktme")
    guest = m.create_domain("guest")
    engine = m.engine
    assert isinstance(engine, MktmeEngine)
    engine.busy = True
    with pytest.raises(KeyNotProgrammed, match="CLEAR_KEY failed .* DEVICE_BUSY"):
        engine.release_slot(guest.slot)
    engine.busy = False
    assert m.create_domain("guest").slot != guest.slot
