"""SEV and SEV-SNP: ASIDs and their keys, what the hypervisor reads and writes, the RMP, the
nested page table and ciphertext hiding."""

from __future__ import annotations

import numpy as np
import pytest
from _support.machines import LINE, PAGE, SECRET, addrs_of, keys_drawn, machine

from testbed.crypto import XexLineCipher
from testbed.errors import ConfigError, KeyNotProgrammed, PageFault, PlatformFailure, RmpViolation
from testbed.platform import KeySource, make_engine
from testbed.platform.engines.sev import SevSnpEngine
from testbed.types import KeySlot, Pfn, PhysAddr


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
    assert m.hypervisor_read(PhysAddr(pa + 3), 5) == seen[3:8]


def test_sev_processes_run_unencrypted() -> None:
    m = machine("sev")
    proc = m.create_domain("process")
    assert proc.slot == 0
    pa = m.alloc_page(proc)
    m.write(proc, pa, SECRET)
    assert m.bus.read(pa, PAGE) == SECRET


def test_sev_asid_exhaustion_and_decommission() -> None:
    """Running out of ASIDs is a resource failure, never a defence: a PlatformFailure (an
    ``error`` run, whoever meets it), not a PlatformRefusal (``blocked``)."""
    m = machine("sev", asids=2)
    g1, g2 = m.create_domain("guest"), m.create_domain("guest")
    assert (g1.slot, g2.slot) == (1, 2)
    with pytest.raises(PlatformFailure, match="no free ASID"):
        m.create_domain("guest")
    m.destroy_domain(g1)
    with pytest.raises(KeyNotProgrammed):
        m.engine.encrypt(KeySlot(1), addrs_of(0, LINE), np.zeros((1, LINE), dtype=np.uint8))
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
    with pytest.raises(RmpViolation, match=f"frame {gpa // PAGE} owned by ASID 1"):
        m.hypervisor_write(PhysAddr(gpa - 8), b"\x00" * 16)  # starts in the frame below, ends in it
    assert m.bus.read(gpa, PAGE) == before
    assert m.read(g, gpa, PAGE) == SECRET
    # A process page and a free frame are the hypervisor's to write.
    m.hypervisor_write(ppa, b"hv" * 32)
    assert m.read(proc, ppa, LINE) == b"hv" * 32
    free_pa = 40 * PAGE
    m.hypervisor_write(PhysAddr(free_pa), b"\x5a" * LINE)
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
    assert m.hypervisor_read(PhysAddr(gpa + 100), 10) == b"\xff" * 10
    assert m.hypervisor_read(ppa, PAGE) == SECRET
    assert m.bus.read(gpa, PAGE) != b"\xff" * PAGE  # the DRAM itself still holds ciphertext
    # Without hiding the same read shows the ciphertext.
    plain = machine("sev-snp")
    g = plain.create_domain("guest")
    gpa = plain.alloc_page(g)
    plain.write(g, gpa, SECRET)
    assert plain.hypervisor_read(gpa, PAGE) == plain.bus.read(gpa, PAGE)


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
        with pytest.raises(RmpViolation, match=r"^#NPF \(RMP\): .* validated for guest page "
                           "1, not 0"):
            m.guest_read(guest, 0x0000, 9)


def test_snp_guest_access_to_a_frame_of_another_guest_faults() -> None:
    m = machine("sev-snp")
    a, b = m.create_domain("guest"), m.create_domain("guest")
    m.alloc_page(a)
    m.alloc_page(b)
    m.hypervisor_remap(a, 0, b.npt[0])
    with pytest.raises(RmpViolation, match="not assigned to ASID"):
        m.guest_write(a, 0, b"x")


def test_snp_rmp_check_faults_to_the_hypervisor_on_a_remap_to_the_guest_when_unvalidated(
) -> None:
    """APM vol. 2, RMP access checks: an entry whose guest-physical page does not match the
    access is a nested page fault (#NPF, to the hypervisor), checked before the Validated bit,
    whose 0 raises #VC (PAGE_NOT_VALIDATED) in the guest."""
    m = machine("sev-snp")
    guest = m.create_domain("guest")
    m.alloc_page(guest)
    m.alloc_page(guest)
    engine = m.engine
    assert isinstance(engine, SevSnpEngine)
    f0, f1 = Pfn(guest.npt[0]), Pfn(guest.npt[1])
    engine.check_guest_access(f0, guest.slot, 0)  # matches, validated: allowed
    engine.rmp[f0].validated = False
    with pytest.raises(RmpViolation, match=r"^#VC \(PAGE_NOT_VALIDATED\): frame .* page 0"):
        m.guest_read(guest, 0, 1)
    # Remapped and unvalidated: the guest-physical mismatch is found first, a #NPF.
    m.hypervisor_remap(guest, 1, f0)
    with pytest.raises(RmpViolation, match=r"^#NPF \(RMP\): frame .* page 0, not 1"):
        m.guest_read(guest, PAGE, 1)
    engine.rmp[f0].validated = True
    m.hypervisor_remap(guest, 1, f1)
    m.guest_write(guest, PAGE, b"back")
    assert m.guest_read(guest, PAGE, 4) == b"back"


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
