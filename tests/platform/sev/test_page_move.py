"""SNP_PAGE_MOVE: the firmware re-encrypts a guest page for its new frame and moves its RMP
entry; restricted, it refuses.

The ciphertext is checked against XEX written out with ``cryptography``'s AES, block by block
(``T = AES_K(a)`` with ``a`` the 16-byte little-endian physical address), with the key the
machine's seeded key source draws first (the guest's ASID key).
"""

from __future__ import annotations

import numpy as np
import pytest
from _support.machines import LINE, PAGE, SECRET, keys_drawn, machine
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from testbed.errors import ConfigError, FirmwareRefusal, RmpViolation
from testbed.platform import Mitigations, SevSnpEngine
from testbed.platform.sev.page_move import SNP_PAGE_MOVE, snp_page_move
from testbed.types import Pfn, PhysAddr


def xex(key: bytes, address: int, plain: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out = b""
    for i in range(0, len(plain), 16):
        tweak = encryptor.update((address + i).to_bytes(16, "little"))
        masked = bytes(p ^ t for p, t in zip(plain[i : i + 16], tweak, strict=True))
        out += bytes(c ^ t for c, t in zip(encryptor.update(masked), tweak, strict=True))
    return out


def test_the_command_number_is_the_kernels() -> None:
    assert SNP_PAGE_MOVE == 0xC2  # SEV_CMD_SNP_PAGE_MOVE, include/linux/psp-sev.h


def test_a_moved_page_is_encrypted_for_its_new_address() -> None:
    m = machine("sev-snp")
    engine = m.engine
    assert isinstance(engine, SevSnpEngine)
    guest = m.create_domain("guest")
    (key,) = keys_drawn(16)
    src = m.alloc_page(guest)
    m.write(guest, src, SECRET)
    assert m.dram(src, PAGE) == xex(key, src, SECRET)
    dst = Pfn(40)
    moved = snp_page_move(m, guest, 0, dst)
    assert moved == PhysAddr(40 * PAGE)
    assert m.dram(moved, PAGE) == xex(key, moved, SECRET)  # every line under its new tweak
    assert m.guest_read(guest, 0, LINE) == SECRET[:LINE]  # the guest page follows
    assert guest.npt[0] == dst and m.owner(moved) is guest and m.owner(src) is None
    entry = engine.rmp[dst]
    assert (entry.owner, entry.assigned, entry.validated, entry.gpn) == (guest.slot, True,
                                                                         True, 0)
    assert Pfn(src // PAGE) not in engine.rmp  # the source is the hypervisor's again
    m.hypervisor_write(src, bytes(LINE))  # no RMP violation there any more
    with pytest.raises(RmpViolation):
        m.hypervisor_write(moved, bytes(LINE))
    assert m.allocator.is_free(Pfn(src // PAGE))


def test_the_same_plaintext_moved_onto_a_frame_gives_that_frames_ciphertext() -> None:
    """The oracle: a buffer page moved onto the frame a secret had encrypts like the secret."""
    m = machine("sev-snp")
    guest = m.create_domain("guest")
    secret_pa = m.alloc_page(guest)
    m.alloc_page(guest)  # guest page 1: the buffer
    line = b"PIN:4711".ljust(LINE, b"\0")
    m.write(guest, secret_pa, line)
    old = m.hypervisor_read(secret_pa, LINE)
    snp_page_move(m, guest, 0, m.allocator.peek())
    target = Pfn(secret_pa // PAGE)
    assert m.allocator.is_free(target)
    at = snp_page_move(m, guest, 1, target)
    m.write(guest, at, b"PIN:4710".ljust(LINE, b"\0"))
    assert m.hypervisor_read(at, LINE) != old
    m.write(guest, at, line)
    assert m.hypervisor_read(at, LINE) == old


def test_restricted_page_moves_are_refused() -> None:
    m = machine("sev-snp", Mitigations(restrict_page_move=True))
    guest = m.create_domain("guest")
    pa = m.alloc_page(guest)
    m.write(guest, pa, SECRET)
    with pytest.raises(FirmwareRefusal, match="restricted"):
        snp_page_move(m, guest, 0, Pfn(40))
    assert m.dram(pa, PAGE) != bytes(PAGE) and guest.npt[0] == pa // PAGE  # nothing moved


def test_the_destination_must_be_a_free_frame() -> None:
    m = machine("sev-snp")
    guest = m.create_domain("guest")
    m.alloc_page(guest)
    other = m.alloc_page(m.create_domain("guest"))
    for frame in (Pfn(0), Pfn(other // PAGE)):  # the kernel image; another guest's page
        with pytest.raises(FirmwareRefusal, match="not a free frame"):
            snp_page_move(m, guest, 0, frame)


def test_a_remapped_source_is_not_moved() -> None:
    m = machine("sev-snp")
    guest, victim = m.create_domain("guest"), m.create_domain("guest")
    m.alloc_page(guest)
    foreign = m.alloc_page(victim)
    m.hypervisor_remap(guest, 0, Pfn(foreign // PAGE))
    with pytest.raises(RmpViolation):
        snp_page_move(m, guest, 0, Pfn(40))


@pytest.mark.parametrize("engine", ["none", "tme", "mktme", "sev"])
def test_only_snp_firmware_moves_pages(engine: str) -> None:
    m = machine(engine)
    guest = m.create_domain("guest")
    m.alloc_page(guest)
    with pytest.raises(ConfigError, match="no SNP firmware"):
        snp_page_move(m, guest, 0, Pfn(40))


def test_moving_keeps_the_other_pages_of_the_guest() -> None:
    m = machine("sev-snp")
    guest = m.create_domain("guest")
    pages = [m.alloc_page(guest) for _ in range(3)]
    for i, pa in enumerate(pages):
        m.write(guest, pa, bytes([i + 1]) * LINE)
    snp_page_move(m, guest, 1, Pfn(50))
    assert [m.guest_read(guest, g * PAGE, LINE) for g in range(3)] == [
        bytes([i + 1]) * LINE for i in range(3)]
    assert sorted(guest.pages) == sorted([Pfn(pages[0] // PAGE), Pfn(50),
                                          Pfn(pages[2] // PAGE)])
    assert np.all(np.frombuffer(m.dram(PhysAddr(50 * PAGE), LINE), np.uint8) ==
                  np.frombuffer(xex(keys_drawn(16)[0], 50 * PAGE, bytes([2]) * LINE), np.uint8))


def test_an_unmapped_guest_page_is_a_configuration_error() -> None:
    m = machine("sev-snp")
    guest = m.create_domain("guest")
    m.alloc_page(guest)
    with pytest.raises(ConfigError, match="guest page 3 of .* is not mapped"):
        snp_page_move(m, guest, 3, Pfn(40))
    with pytest.raises(ConfigError, match="guest page 3 of .* is not mapped to its frame"):
        m.move_guest_frame(guest, 3, Pfn(40))
