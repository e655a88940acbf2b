"""Tests for the emulated platform: engines, PCONFIG, SEV/SNP, mitigations, allocator, bus tap."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.crypto import XexLineCipher, XtsLineCipher
from testbed.errors import (
    ConfigError,
    KeyNotProgrammed,
    OutOfMemory,
    PageFault,
    RmpViolation,
    UnsupportedMitigation,
)
from testbed.platform import (
    KeySource,
    Machine,
    Mitigations,
    MktmeEngine,
    PageAllocator,
    PconfigCommand,
    PconfigStatus,
    make_engine,
)
from testbed.platform.engines.base import AES_XTS_128
from testbed.types import PhysAddr

PAGE = 4096
LINE = 64
SEED = 1234
SECRET = bytes((i * 37 + 11) & 0xFF for i in range(PAGE))


def machine(
    name: str, mitigations: Mitigations | None = None, pages: int = 64, **engine_opts: object
) -> Machine:
    engine = make_engine(name, KeySource(np.random.default_rng(SEED)), **engine_opts)
    return Machine(engine, memory_pages=pages, mitigations=mitigations)


def keys_drawn(*sizes: int) -> list[bytes]:
    """The keys a machine built with SEED draws, in order (the KeySource is seeded)."""
    source = KeySource(np.random.default_rng(SEED))
    return [source.key(size) for size in sizes]


def addrs_of(pa: int, length: int = PAGE) -> np.ndarray:
    return np.arange(pa, pa + length, LINE, dtype=np.uint64)


def kernel_read_page(m: Machine, pa: int) -> bytes:
    return m.kernel_read(m.direct_map.virt(pa), PAGE)


# -- data path per engine -----------------------------------------------------------------
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
    m.write(proc, pa + LINE, line)
    first, second = m.bus.read(pa, LINE), m.bus.read(pa + LINE, LINE)
    assert first != line and second != line and first != second
    assert m.read(proc, pa, 2 * LINE) == line * 2


def test_unaligned_write_is_read_modify_write() -> None:
    m = machine("tme")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc)
    m.write(proc, pa, SECRET)
    m.write(proc, pa + 60, b"ABCDEFGH")  # straddles two lines
    expected = SECRET[:60] + b"ABCDEFGH" + SECRET[68:]
    assert m.read(proc, pa, PAGE) == expected
    assert m.read(proc, pa + 59, 10) == expected[59:69]


# -- MKTME: PCONFIG --------------------------------------------------------------------------
def test_pconfig_return_codes() -> None:
    engine = machine("mktme").engine
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
    engine = m.engine
    (tme_key,) = keys_drawn(32)
    key = bytes(range(32))
    addrs = addrs_of(0x3000, 2 * LINE)
    lines = np.frombuffer(SECRET[: 2 * LINE], dtype=np.uint8).reshape(2, LINE)
    assert engine.pconfig(PconfigCommand.SET_KEY_DIRECT, 9, key) is PconfigStatus.PROG_SUCCESS
    assert np.array_equal(engine.encrypt(9, addrs, lines), XtsLineCipher(key).encrypt(addrs, lines))
    assert engine.pconfig(PconfigCommand.NO_ENCRYPT, 9) is PconfigStatus.PROG_SUCCESS
    assert np.array_equal(engine.encrypt(9, addrs, lines), lines)
    assert engine.pconfig(PconfigCommand.CLEAR_KEY, 9) is PconfigStatus.PROG_SUCCESS
    expected = XtsLineCipher(tme_key).encrypt(addrs, lines)
    assert np.array_equal(engine.encrypt(9, addrs, lines), expected)
    with pytest.raises(KeyNotProgrammed):
        engine.encrypt(10, addrs, lines)  # never programmed


@pytest.mark.parametrize("bits", [0, 16, -1])
def test_mktme_keyid_bits_bounds(bits: int) -> None:
    with pytest.raises(ConfigError, match=f"keyid_bits: must be 1..15, got {bits}"):
        make_engine("mktme", KeySource(np.random.default_rng(0)), keyid_bits=bits)


def test_mktme_keyid_bits_one_and_fifteen() -> None:
    assert make_engine("mktme", KeySource(np.random.default_rng(0)), keyid_bits=1).max_keyid == 1
    engine = make_engine("mktme", KeySource(np.random.default_rng(0)), keyid_bits=15)
    assert engine.max_keyid == 32767


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
    assert not np.array_equal(m.engine.encrypt(1, addrs, line), m.engine.encrypt(0, addrs, line))
    assert m.engine.wear(1) > 0
    m.destroy_domain(g)
    assert g.alive is False and g.pages == []
    assert m.allocator.free_count == 63
    # CLEAR_KEY: KeyID 1 now encrypts with the TME key, and its wear counter restarts.
    assert m.engine.wear(1) == 0
    assert np.array_equal(m.engine.encrypt(1, addrs, line), m.engine.encrypt(0, addrs, line))
    # The KeyID is free again.
    assert m.create_domain("guest").slot == 1
    with pytest.raises(ConfigError, match="has been destroyed"):
        m.read(g, pa, LINE)


# -- SEV / SEV-SNP -------------------------------------------------------------------------
def test_sev_guests_distinct_asids_and_keys() -> None:
    m = machine("sev")
    g1, g2 = m.create_domain("guest"), m.create_domain("guest")
    assert (g1.slot, g2.slot) == (1, 2)
    p1, p2 = m.alloc_page(g1), m.alloc_page(g2)
    m.write(g1, p1, SECRET)
    m.write(g2, p2, SECRET)
    k1, k2 = keys_drawn(16, 16)
    assert m.bus.read(p1, PAGE) == XexLineCipher(k1).encrypt(addrs_of(p1), SECRET).tobytes()
    assert m.bus.read(p2, PAGE) == XexLineCipher(k2).encrypt(addrs_of(p2), SECRET).tobytes()
    assert m.read(g1, p1, PAGE) == SECRET


def test_sev_hypervisor_reads_ciphertext() -> None:
    m = machine("sev")
    g = m.create_domain("guest")
    pa = m.alloc_page(g)
    m.write(g, pa, SECRET)
    seen = m.hypervisor_read(pa, PAGE)
    assert seen == m.bus.read(pa, PAGE)
    assert seen != SECRET
    assert m.hypervisor_read(pa + 3, 5) == seen[3:8]


def test_sev_processes_run_unencrypted() -> None:
    m = machine("sev")
    proc = m.create_domain("process")
    assert proc.slot == 0
    pa = m.alloc_page(proc)
    m.write(proc, pa, SECRET)
    assert m.bus.read(pa, PAGE) == SECRET


def test_sev_asid_exhaustion_and_decommission() -> None:
    m = machine("sev", asids=2)
    g1, g2 = m.create_domain("guest"), m.create_domain("guest")
    assert (g1.slot, g2.slot) == (1, 2)
    with pytest.raises(KeyNotProgrammed, match="no free ASID"):
        m.create_domain("guest")
    m.destroy_domain(g1)
    with pytest.raises(KeyNotProgrammed):
        m.engine.encrypt(1, addrs_of(0, LINE), np.zeros((1, LINE), dtype=np.uint8))
    assert m.create_domain("guest").slot == 1


@pytest.mark.parametrize("asids", [0, 1007])
def test_sev_asid_bounds(asids: int) -> None:
    with pytest.raises(ConfigError, match=f"asids: must be 1..1006, got {asids}"):
        make_engine("sev", KeySource(np.random.default_rng(0)), asids=asids)


def test_snp_rmp_blocks_hypervisor_writes_to_guest_frames() -> None:
    m = machine("sev-snp")
    g = m.create_domain("guest")
    proc = m.create_domain("process")
    gpa, ppa = m.alloc_page(g), m.alloc_page(proc)
    m.write(g, gpa, SECRET)
    before = m.bus.read(gpa, PAGE)
    with pytest.raises(RmpViolation, match=f"frame {gpa // PAGE} owned by ASID 1"):
        m.hypervisor_write(gpa, b"\x00" * LINE)
    with pytest.raises(RmpViolation):
        m.hypervisor_write(gpa - 8, b"\x00" * 16)  # starts in the frame below, ends in it
    assert m.bus.read(gpa, PAGE) == before
    assert m.read(g, gpa, PAGE) == SECRET
    # A process page and a free frame are the hypervisor's to write.
    m.hypervisor_write(ppa, b"hv" * 32)
    assert m.read(proc, ppa, LINE) == b"hv" * 32
    free_pa = 40 * PAGE
    m.hypervisor_write(free_pa, b"\x5a" * LINE)
    assert m.bus.read(free_pa, LINE) == b"\x5a" * LINE


def test_snp_frame_returns_to_hypervisor_after_free() -> None:
    m = machine("sev-snp")
    g = m.create_domain("guest")
    pa = m.alloc_page(g)
    m.free_page(g, pa)
    m.hypervisor_write(pa, b"\x01" * LINE)
    assert m.bus.read(pa, LINE) == b"\x01" * LINE


def test_sev_without_rmp_allows_hypervisor_writes() -> None:
    m = machine("sev")
    g = m.create_domain("guest")
    pa = m.alloc_page(g)
    m.write(g, pa, SECRET)
    m.hypervisor_write(pa, b"\x00" * LINE)
    assert m.bus.read(pa, LINE) == b"\x00" * LINE
    assert m.read(g, pa, LINE) != SECRET[:LINE]


def test_snp_ciphertext_hiding() -> None:
    m = machine("sev-snp", ciphertext_hiding=True)
    g = m.create_domain("guest")
    proc = m.create_domain("process")
    gpa, ppa = m.alloc_page(g), m.alloc_page(proc)
    m.write(g, gpa, SECRET)
    m.write(proc, ppa, SECRET)
    assert m.hypervisor_read(gpa, PAGE) == b"\xff" * PAGE
    assert m.hypervisor_read(gpa + 100, 10) == b"\xff" * 10
    assert m.hypervisor_read(ppa, PAGE) == SECRET
    assert m.bus.read(gpa, PAGE) != b"\xff" * PAGE  # the DRAM itself still holds ciphertext
    # Without hiding the same read shows the ciphertext.
    plain = machine("sev-snp")
    g = plain.create_domain("guest")
    gpa = plain.alloc_page(g)
    plain.write(g, gpa, SECRET)
    assert plain.hypervisor_read(gpa, PAGE) == plain.bus.read(gpa, PAGE)


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


@pytest.mark.parametrize("engine", ["none", "tme"])
def test_secretmem_unmaps_from_direct_map(engine: str) -> None:
    m = machine(engine, Mitigations(secretmem=True))
    proc = m.create_domain("process")
    plain_pa = m.alloc_page(proc)
    pa = m.alloc_page(proc, secret=True)
    m.write(proc, pa, SECRET)
    assert m.direct_map_splits == 1
    with pytest.raises(PageFault, match="removed from the direct map"):
        kernel_read_page(m, pa)
    with pytest.raises(PageFault):
        m.kernel_read(m.direct_map.virt(pa - 8), 16)  # range ends inside the secret page
    m.write(proc, plain_pa, SECRET)
    assert kernel_read_page(m, plain_pa) == SECRET  # an ordinary page stays readable
    assert m.read(proc, pa, PAGE) == SECRET  # the owner still has it
    m.free_page(proc, pa)
    assert kernel_read_page(m, pa) == bytes(PAGE)
    assert m.direct_map_splits == 1  # the split mapping stays split


def test_secretmem_page_inside_a_long_kernel_read_faults() -> None:
    m = machine("none", Mitigations(secretmem=True))
    proc = m.create_domain("process")
    before = m.alloc_page(proc)
    secret_pa = m.alloc_page(proc, secret=True)
    m.alloc_page(proc)
    assert secret_pa == before + PAGE
    m.write(proc, secret_pa, SECRET)
    with pytest.raises(PageFault):
        m.kernel_read(m.direct_map.virt(before), 3 * PAGE)


def test_secretmem_off_keeps_secret_pages_mapped() -> None:
    m = machine("none")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc, secret=True)
    m.write(proc, pa, SECRET)
    assert kernel_read_page(m, pa) == SECRET
    assert m.direct_map_splits == 0


def test_secretmem_also_hides_page_from_keyid_direct_maps() -> None:
    m = machine("mktme", Mitigations(secretmem=True))
    g = m.create_domain("guest")
    pa = m.alloc_page(g, secret=True)
    dmap = m.keyid_direct_map(g.slot)  # created after the page went secret
    with pytest.raises(PageFault):
        m.kernel_read(dmap.virt(pa), LINE)
    assert m.direct_map_splits == 2


def test_kernel_read_outside_direct_maps_faults() -> None:
    m = machine("none")
    with pytest.raises(PageFault, match="not a kernel direct-map address"):
        m.kernel_read(0x1000, 8)
    with pytest.raises(PageFault, match="not in the direct map"):
        m.kernel_read(m.direct_map.virt(64 * PAGE - 4), 8)


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


def test_dram_is_ground_truth_without_bus_counters() -> None:
    m = machine("tme")
    proc = m.create_domain("process")
    pa = m.alloc_page(proc)
    m.write(proc, pa, SECRET)
    assert m.dram(pa, PAGE) == m.bus.read(pa, PAGE)
    assert m.dram(pa + 5, 7) == m.bus.read(pa, LINE)[5:12]
    assert m.bus.lines_read == 65


def test_write_sequence_returns_every_bus_write() -> None:
    m = machine("mktme")
    g = m.create_domain("guest")
    pa = m.alloc_page(g)
    lines = np.frombuffer(SECRET[: 5 * LINE], dtype=np.uint8).reshape(5, LINE)
    wear = m.engine.wear(g.slot)
    out = m.write_sequence(g, pa + LINE, lines)
    _, guest_key = keys_drawn(32, 32)
    expected = XtsLineCipher(guest_key).encrypt(np.full(5, pa + LINE, dtype=np.uint64), lines)
    assert np.array_equal(out, expected)
    assert m.dram(pa + LINE, LINE) == expected[-1].tobytes()
    assert m.read(g, pa + LINE, LINE) == lines[-1].tobytes()
    assert m.engine.wear(g.slot) == wear + 20
    with pytest.raises(ConfigError, match="not line-aligned"):
        m.write_sequence(g, pa + 8, lines)


# -- allocator ---------------------------------------------------------------------------------
def test_allocator_enomem() -> None:
    m = machine("none", pages=16)
    proc = m.create_domain("process")
    got = [m.alloc_page(proc) // PAGE for _ in range(15)]  # frame 0 is the kernel's
    assert got == list(range(1, 16))
    with pytest.raises(OutOfMemory, match="ENOMEM"):
        m.alloc_page(proc)


def test_allocator_lifo_and_double_free() -> None:
    alloc = PageAllocator(8)
    a, b = alloc.alloc(), alloc.alloc()
    assert (a, b) == (1, 2)
    alloc.free(a)
    alloc.free(b)
    assert alloc.alloc() == b
    with pytest.raises(ConfigError, match=f"free of frame {a} that is not allocated"):
        alloc.free(a)
        alloc.free(a)
    with pytest.raises(ConfigError):
        alloc.free(0)  # reserved kernel frame


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
    with pytest.raises(PageFault):
        m.read(p2, pa1, 1)
    with pytest.raises(PageFault):
        m.write(p1, pa1 + PAGE - 4, b"12345678")  # spills into p2's frame
    assert m.owner(pa1) is p1 and m.owner(pa2) is p2 and m.owner(50 * PAGE) is None


def test_kernel_domain_cannot_be_created() -> None:
    with pytest.raises(ConfigError):
        machine("none").create_domain("kernel")


def test_unknown_engine() -> None:
    with pytest.raises(ConfigError, match="engine: unknown 'sme'"):
        make_engine("sme", KeySource(np.random.default_rng(0)))


# -- bus tap -------------------------------------------------------------------------------
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


def test_negative_rotation_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match="key_rotation_blocks"):
        Mitigations(key_rotation_blocks=-1)


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


@pytest.mark.parametrize("engine", ["sev", "sev-snp"])
def test_hypervisor_remap_of_guest_pages(engine: str) -> None:
    m = machine(engine)
    guest = m.create_domain("guest")
    m.alloc_page(guest)
    m.alloc_page(guest)
    m.guest_write(guest, 0x0000, b"page zero")
    m.guest_write(guest, 0x1000, b"page one!")
    frame_one = guest.npt[1]
    m.hypervisor_remap(guest, 0, frame_one)  # guest page 0 now shows guest page 1's frame
    if engine == "sev":
        # Undetected: the guest reads the wrong page, decrypted correctly (same key, same frame).
        assert m.guest_read(guest, 0x0000, 9) == b"page one!"
    else:
        with pytest.raises(RmpViolation, match="validated for guest page 1, not 0"):
            m.guest_read(guest, 0x0000, 9)


def test_snp_guest_access_to_a_frame_of_another_guest_faults() -> None:
    m = machine("sev-snp")
    a, b = m.create_domain("guest"), m.create_domain("guest")
    m.alloc_page(a)
    m.alloc_page(b)
    m.hypervisor_remap(a, 0, b.npt[0])
    with pytest.raises(RmpViolation, match="not assigned to ASID"):
        m.guest_write(a, 0, b"x")


def test_guest_page_not_in_the_nested_page_table_faults() -> None:
    m = machine("sev")
    guest = m.create_domain("guest")
    with pytest.raises(PageFault, match="guest page 0"):
        m.guest_read(guest, 0, 1)


def test_guest_page_numbers_are_not_reused_while_mapped() -> None:
    m = machine("sev-snp")
    guest = m.create_domain("guest")
    pages = [m.alloc_page(guest) for _ in range(3)]
    m.free_page(guest, pages[0])
    m.alloc_page(guest)
    assert sorted(guest.npt) == [0, 1, 2]
    assert len(set(guest.npt.values())) == 3
    m.guest_write(guest, 2 * PAGE, b"still page two")
    assert m.guest_read(guest, 2 * PAGE, 14) == b"still page two"


def test_rotation_policy_ignores_its_own_reencryption() -> None:
    m = machine("mktme", Mitigations(key_rotation_blocks=64), pages=64)
    guest = m.create_domain("guest")
    pa = m.alloc_page(guest)
    for _ in range(8):  # 8 writes of 64 lines x 4 blocks = 256 blocks each
        m.write(guest, pa, bytes(PAGE))
    assert m.rotations == 7  # before every write but the first; not cascading on re-encryption
