"""SEV-SNP attestation and SEV launch measurement, checked against independent computations:
the report's fields read back with struct.unpack at the offsets of the SEV-SNP Firmware ABI
specification's ATTESTATION_REPORT table, the VCEK signature and the X.509 chain verified with
`cryptography` directly, the SNP launch digest and the LAUNCH_MEASURE HMAC recomputed with
hashlib / hmac from the specifications' byte layouts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import replace

import numpy as np
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from testbed.errors import ConfigError, FirmwareRefusal, InvalidArgument, VerificationFailed
from testbed.platform import KeySource, Machine, Mitigations, make_engine
from testbed.platform.sev import (
    PLATFORM_INFO_ALIAS_CHECK,
    PLATFORM_INFO_CIPHERTEXT_HIDING,
    POLICY_DEFAULT,
    SNP_POLICY_DEBUG,
    SNP_POLICY_DEFAULT,
    SNP_POLICY_PAGE_SWAP_DISABLE,
    Check,
    Psp,
    ReportFormat,
    SnpReport,
    Vendor,
    Verifier,
    Vmsa,
    encode_mnonce,
    query_attestation_report,
)
from testbed.platform.sev.measure import MeasureBlob
from testbed.types import PAGE_SIZE, PhysAddr

IMAGE = b"console=ttyS0 ro".ljust(256, b"\0") + bytes(range(256)) * 23  # 6144 bytes: 2 pages
POLICY = 0x3_0000


def rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


def pages(image: bytes) -> list[bytes]:
    return [image[i : i + PAGE_SIZE] for i in range(0, len(image), PAGE_SIZE)]


def snp_digest_by_hand(image: bytes, vmsa: bytes) -> bytes:
    """The SNP launch digest from the PAGE_INFO layout, written out field by field."""
    digest = bytes(48)
    records = [(page.ljust(PAGE_SIZE, b"\0"), 1, n * PAGE_SIZE)
               for n, page in enumerate(pages(image))]
    records.append((vmsa, 2, 0xFFFF_FFFF_F000))
    for page, page_type, gpa in records:
        info = bytearray(0x70)
        info[0x00:0x30] = digest                           # DIGEST_CUR
        info[0x30:0x60] = hashlib.sha384(page).digest()    # CONTENTS
        info[0x60:0x62] = (0x70).to_bytes(2, "little")     # LENGTH
        info[0x62] = page_type                             # PAGE_TYPE
        info[0x63] = 0                                     # IMI_PAGE
        info[0x64:0x67] = bytes(3)                         # VMPL3/2/1 permissions
        info[0x68:0x70] = gpa.to_bytes(8, "little")        # GPA
        digest = hashlib.sha384(bytes(info)).digest()
    return digest


class SnpPlatform:
    """An SEV-SNP machine, a launched guest (image + VMSA) and its owner."""

    def __init__(self, seed: int = 1, engine: str = "sev-snp", policy: int = POLICY) -> None:
        self.rng = rng(seed)
        self.engine = engine
        self.machine = self.make_machine(seed)
        self.vendor = Vendor(self.rng)
        self.psp = Psp(self.machine, self.vendor)
        self.guest = self.machine.create_domain("guest", "g")
        frames = [self.machine.alloc_page(self.guest) for _ in pages(IMAGE)]
        self.vmsa_pa = self.machine.alloc_page(self.guest)
        self.tik = bytes(range(16))
        self.handle = self.psp.launch_start(self.guest, policy, self.tik)
        for pa, chunk in zip(frames, pages(IMAGE), strict=True):
            self.psp.launch_update_data(self.handle, pa, chunk)
        self.vmsa = Vmsa().pack()
        self.psp.launch_update_vmsa(self.handle, self.vmsa_pa, self.vmsa)
        self.blob = self.psp.launch_measure(self.handle)
        self.digest = self.psp.launch_digest(self.handle)
        self.psp.launch_finish(self.handle)
        fmt = self.psp.report_format
        ark = self.vendor.snp.ark_cert if fmt is ReportFormat.SNP else None
        expected = (snp_digest_by_hand(IMAGE, self.vmsa) if fmt is ReportFormat.SNP
                    else hashlib.sha256(IMAGE + self.vmsa).digest())
        self.owner = Verifier(self.vendor.root, expected, policy, self.rng, report_format=fmt,
                              trusted_ark=ark, tik=self.tik)

    def make_machine(self, seed: int) -> Machine:
        return Machine(make_engine(self.engine, KeySource(rng(seed))), 64)

    def report(self, nonce: str) -> bytes:
        reply = query_attestation_report(self.machine, self.psp, self.handle, nonce)
        assert reply.snp is not None and reply.sev is None
        return reply.snp.raw()


# -- the report, field by field at the published offsets ------------------------------------
def test_snp_report_fields_sit_at_the_published_offsets() -> None:
    p = SnpPlatform()
    nonce = p.owner.new_nonce()
    data = p.report(nonce)
    assert len(data) == 0x4A0

    def u32(off: int) -> int:
        return int(struct.unpack_from("<I", data, off)[0])

    def u64(off: int) -> int:
        return int(struct.unpack_from("<Q", data, off)[0])

    assert u32(0x000) == 2                                   # VERSION
    assert u32(0x004) == 0                                   # GUEST_SVN
    assert u64(0x008) == POLICY                              # POLICY
    assert data[0x010:0x030] == bytes(32)                    # FAMILY_ID, IMAGE_ID
    assert u32(0x030) == 0                                   # VMPL
    assert u32(0x034) == 1                                   # SIGNATURE_ALGO: P-384/SHA-384
    assert data[0x050:0x090] == base64.b64decode(nonce)      # REPORT_DATA
    assert data[0x090:0x0C0] == p.digest == snp_digest_by_hand(IMAGE, p.vmsa)  # MEASUREMENT
    assert data[0x1A0:0x1E0] == p.psp.chip_id and len(p.psp.chip_id) == 64      # CHIP_ID
    # CURRENT_TCB, REPORTED_TCB, COMMITTED_TCB, LAUNCH_TCB
    assert u64(0x038) == u64(0x180) == u64(0x1E0) == u64(0x1F0)
    assert data[0x188:0x1A0] == bytes(24) and data[0x1F8:0x2A0] == bytes(168)  # reserved
    assert data[0x2A0 + 144:] == bytes(512 - 144)            # signature padding
    parsed = SnpReport.unpack(data)
    assert parsed.pack() == data and parsed.report_data == base64.b64decode(nonce)


def test_vcek_signature_verifies_with_cryptography_over_bytes_0_to_0x29f() -> None:
    p = SnpPlatform()
    data = p.report(p.owner.new_nonce())
    r = int.from_bytes(data[0x2A0:0x2A0 + 72], "little")
    s = int.from_bytes(data[0x2A0 + 72:0x2A0 + 144], "little")
    vcek = x509.load_der_x509_certificate(p.psp.vcek_chain[2]).public_key()
    assert isinstance(vcek, ec.EllipticCurvePublicKey) and vcek.curve.name == "secp384r1"
    vcek.verify(encode_dss_signature(r, s), data[:0x2A0], ec.ECDSA(hashes.SHA384()))
    with pytest.raises(InvalidSignature):
        vcek.verify(encode_dss_signature(r, s), data[:0x29F] + bytes([data[0x29F] ^ 1]),
                    ec.ECDSA(hashes.SHA384()))


def test_chain_ark_ask_vcek_verifies_with_cryptography() -> None:
    p = SnpPlatform()
    ark, ask, vcek = (x509.load_der_x509_certificate(c) for c in p.psp.vcek_chain)
    ark.verify_directly_issued_by(ark)
    ask.verify_directly_issued_by(ark)
    vcek.verify_directly_issued_by(ask)
    for cert in (ark, ask, vcek):
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
    assert ask.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not vcek.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert p.psp.vcek_chain[0] == p.vendor.snp.ark_cert


def test_genuine_snp_report_passes_every_check_in_order() -> None:
    p = SnpPlatform()
    report = p.owner.verify_snp_report(p.report(p.owner.new_nonce()), p.psp.vcek_chain)
    assert report.measurement == p.digest
    assert [r.check for r in p.owner.results] == [
        Check.FORMAT, Check.CHAIN, Check.SIGNATURE, Check.NONCE, Check.DIGEST, Check.POLICY,
        Check.VMPL]


@pytest.mark.parametrize("offset", [0x000, 0x008, 0x030, 0x034, 0x04C, 0x050, 0x08F, 0x090,
                                    0x0C0, 0x140, 0x188, 0x1A0, 0x1F0, 0x1F8, 0x29F, 0x2A0,
                                    0x2E8])
def test_tampering_any_signed_byte_or_the_signature_fails(offset: int) -> None:
    p = SnpPlatform()
    data = bytearray(p.report(p.owner.new_nonce()))
    data[offset] ^= 0x01
    with pytest.raises(VerificationFailed) as info:
        p.owner.verify_snp_report(bytes(data), p.psp.vcek_chain)
    # version and signature_algo are refused as format errors, all else by the signature
    want = "report format" if offset in (0x000, 0x034) else "signature"
    assert str(info.value).startswith(f"{want}: ")


def test_every_signed_byte_is_covered() -> None:
    p = SnpPlatform()
    data = p.report(p.owner.new_nonce())
    vcek = x509.load_der_x509_certificate(p.psp.vcek_chain[2]).public_key()
    assert isinstance(vcek, ec.EllipticCurvePublicKey)
    sig = encode_dss_signature(int.from_bytes(data[0x2A0:0x2E8], "little"),
                               int.from_bytes(data[0x2E8:0x330], "little"))
    for offset in range(0, 0x2A0, 7):
        body = bytearray(data[:0x2A0])
        body[offset] ^= 0x80
        with pytest.raises(InvalidSignature):
            vcek.verify(sig, bytes(body), ec.ECDSA(hashes.SHA384()))


def test_report_data_policy_and_vmpl_are_checked() -> None:
    p = SnpPlatform()
    stale = p.owner.new_nonce()
    p.owner.new_nonce()
    with pytest.raises(VerificationFailed, match="^nonce freshness: "):
        p.owner.verify_snp_report(p.report(stale), p.psp.vcek_chain)
    raw = p.psp.snp_report(p.handle, bytes(64), vmpl=2)
    owner = Verifier(p.vendor.root, p.owner.expected_digest, POLICY, rng(3),
                     report_format=ReportFormat.SNP, trusted_ark=p.vendor.snp.ark_cert)
    owner._nonce = bytes(64)
    with pytest.raises(VerificationFailed, match="^vmpl: the report was requested at VMPL 2"):
        owner.verify_snp_report(raw, p.psp.vcek_chain)
    debug = SnpPlatform(policy=SNP_POLICY_DEFAULT | SNP_POLICY_DEBUG)
    with pytest.raises(VerificationFailed, match="^policy: .*DEBUG"):
        debug.owner.verify_snp_report(debug.report(debug.owner.new_nonce()),
                                      debug.psp.vcek_chain)


def test_chain_problems_name_the_link() -> None:
    p, other = SnpPlatform(), SnpPlatform(seed=9)
    data = p.report(p.owner.new_nonce())
    ark, ask, vcek = p.psp.vcek_chain
    cases = [((other.psp.vcek_chain[0], ask, vcek), "the ARK is not the root"),
             ((ark, other.psp.vcek_chain[1], vcek), "ASK certificate"),
             ((ark, ask, other.psp.vcek_chain[2]), "VCEK certificate"),
             ((ark, ask), "expected certificates ARK -> ASK -> VCEK"),
             ((ark, ask, b"junk"), "not a DER X.509 certificate")]
    for chain, message in cases:
        p.owner._nonce = SnpReport.unpack(data).report_data
        with pytest.raises(VerificationFailed, match=f"^certificate chain: .*{message}"):
            p.owner.verify_snp_report(data, chain)


def test_snp_nonce_is_64_bytes_and_the_legacy_report_is_refused() -> None:
    p = SnpPlatform()
    with pytest.raises(InvalidArgument, match="report_data: expected 64 bytes"):
        query_attestation_report(p.machine, p.psp, p.handle, encode_mnonce(bytes(16)))
    with pytest.raises(InvalidArgument, match="SEV-SNP guests ask for SNP reports"):
        p.psp.attestation_report(p.handle, bytes(16))
    assert p.blob is None  # SNP firmware has no LAUNCH_MEASURE
    with pytest.raises(ConfigError, match="SNP report measurement: expected 48 bytes"):
        SnpReport(bytes(64), bytes(32))
    with pytest.raises(ConfigError, match="expected 1184 bytes"):
        SnpReport.unpack(bytes(208))


# -- SEV (legacy) launch: VMSA in the digest, LAUNCH_MEASURE blob ----------------------------
def test_sev_digest_covers_memory_then_vmsa() -> None:
    p = SnpPlatform(engine="sev", policy=POLICY_DEFAULT)
    assert p.digest == hashlib.sha256(IMAGE + p.vmsa).digest()
    moved = Vmsa().with_rip(0x10_0000).pack()
    assert struct.unpack_from("<Q", moved, 0x178)[0] == 0x10_0000
    assert hashlib.sha256(IMAGE + moved).digest() != p.digest


def test_launch_measure_hmac_recomputed_from_the_spec_layout() -> None:
    p = SnpPlatform(engine="sev", policy=POLICY_DEFAULT)
    assert p.blob is not None and len(p.blob) == 48
    measure, mnonce = p.blob[:32], p.blob[32:]
    message = (b"\x04" + bytes([0, 24, 15]) + struct.pack("<I", 0x5) + p.digest + mnonce)
    assert len(message) == 1 + 3 + 4 + 32 + 16
    assert measure == hmac.new(p.tik, message, hashlib.sha256).digest()
    assert p.owner.verify_measure(p.blob).mnonce == mnonce
    assert [r.check for r in p.owner.results] == [Check.FORMAT, Check.MEASURE]


@pytest.mark.parametrize("offset", [0, 17, 31, 32, 47])
def test_a_changed_blob_byte_fails_the_measure_check(offset: int) -> None:
    p = SnpPlatform(engine="sev", policy=POLICY_DEFAULT)
    assert p.blob is not None
    blob = bytearray(p.blob)
    blob[offset] ^= 0x01
    with pytest.raises(VerificationFailed, match="^launch measure: "):
        p.owner.verify_measure(bytes(blob))


def test_measure_check_fails_for_another_tik_or_policy() -> None:
    p = SnpPlatform(engine="sev", policy=POLICY_DEFAULT)
    assert p.blob is not None
    for owner in (replace_tik(p, bytes(16)),
                  Verifier(p.vendor.root, p.owner.expected_digest, 0x1, rng(), tik=p.tik)):
        with pytest.raises(VerificationFailed, match="^launch measure: "):
            owner.verify_measure(p.blob)
    with pytest.raises(VerificationFailed, match="^report format: "):
        p.owner.verify_measure(p.blob[:40])
    assert MeasureBlob.unpack(p.blob).pack() == p.blob


def replace_tik(p: SnpPlatform, tik: bytes) -> Verifier:
    return Verifier(p.vendor.root, p.owner.expected_digest, 0x5, rng(), tik=tik)


@pytest.mark.parametrize(("engine", "nodebug", "debug"), [("sev", 0x5, 0x4),
                                                          ("sev-snp", POLICY, 0xB_0000)])
def test_dbg_decrypt_follows_the_policy(engine: str, nodebug: int, debug: int) -> None:
    for policy, allowed in ((nodebug, False), (debug, True)):
        p = SnpPlatform(engine=engine, policy=policy)
        pa = p.machine.alloc_page(p.guest)
        p.machine.write(p.guest, pa, b"disk key")
        assert p.psp.report_format.debug_allowed(policy) is allowed
        if allowed:
            assert p.psp.debug_decrypt(p.handle, pa, 8) == b"disk key"
        else:
            with pytest.raises(InvalidArgument, match="forbids debugging"):
                p.psp.debug_decrypt(p.handle, pa, 8)
        assert p.psp.report_format.allow_debug(nodebug) == debug


def test_vmsa_registers_sit_at_the_save_area_offsets() -> None:
    page = Vmsa(rip=0x1234, rsp=0x5678).pack()
    assert len(page) == 4096
    assert struct.unpack_from("<Q", page, 0x178)[0] == 0x1234      # RIP
    assert struct.unpack_from("<Q", page, 0x1D8)[0] == 0x5678      # RSP
    assert struct.unpack_from("<Q", page, 0x170)[0] == 0x2         # RFLAGS
    assert struct.unpack_from("<Q", page, 0x018)[0] == 0xFFFF_0000  # CS base
    assert Vmsa.unpack(page) == Vmsa(rip=0x1234, rsp=0x5678)
    with pytest.raises(ConfigError, match="must fit in a u64"):
        Vmsa(rip=1 << 64)


def test_snp_report_is_reproducible_and_launch_state_is_enforced() -> None:
    a, b = SnpPlatform(seed=4), SnpPlatform(seed=4)
    assert a.psp.vcek_chain == b.psp.vcek_chain and a.digest == b.digest
    with pytest.raises(InvalidArgument, match="needs 'launch update'"):
        a.psp.launch_update_vmsa(a.handle, PhysAddr(a.vmsa_pa), a.vmsa)
    handle = a.psp.launch_start(a.machine.create_domain("guest", "h"))
    with pytest.raises(InvalidArgument, match="VMSA is 4096 bytes"):
        a.psp.launch_update_vmsa(handle, PhysAddr(a.vmsa_pa), bytes(10))
    assert replace(SnpReport.unpack(a.report(a.owner.new_nonce())), vmpl=1).vmpl == 1


# -- the guest policy LAUNCH_START accepts, and the VMSA of plain SEV ------------------------
def test_the_legacy_default_policy_is_nodbg_and_es() -> None:
    p = SnpPlatform(engine="sev", policy=POLICY_DEFAULT)
    assert p.psp.default_policy == 0x5 == (1 << 0) | (1 << 2)  # NODBG (bit 0) | ES (bit 2)
    assert ReportFormat.SNP.default_policy() == (1 << 16) | (1 << 17)


def test_launch_update_vmsa_needs_the_es_bit_on_legacy_firmware() -> None:
    m = Machine(make_engine("sev", KeySource(rng())), 64)
    psp = Psp(m, Vendor(rng()))
    guest = m.create_domain("guest", "plain")
    pa = m.alloc_page(guest)
    handle = psp.launch_start(guest, 0x1)  # NODBG only: a plain SEV guest
    with pytest.raises(InvalidArgument, match=r"policy 0x1 has no ES bit \(bit 2\)"):
        psp.launch_update_vmsa(handle, pa, Vmsa().pack())
    psp.launch_update_data(handle, pa, IMAGE[:PAGE_SIZE])
    psp.launch_measure(handle)
    # The digest is of the memory alone: nothing of the register state went in.
    assert psp.launch_digest(handle) == hashlib.sha256(IMAGE[:PAGE_SIZE]).digest()


@pytest.mark.parametrize(("engine", "policy", "problem"), [
    ("sev", 1 << 32, "32-bit legacy policy field"),
    ("sev", 0x5 | 0x40, "reserved bits 15:6"),
    ("sev", 0x5 | (1 << 16), "API 1.0 or later; the firmware is 0.24"),
    ("sev", 0x5 | (25 << 24), "API 0.25 or later"),
    ("sev-snp", 0x1, "bit 17 clear"),
    ("sev-snp", 0x1_0000, "bit 17 clear"),
    ("sev-snp", 0x3_0000 | (1 << 26), "reserved bits 63:26"),
    ("sev-snp", 0x3_0000 | (2 << 8), "ABI 2.0 or later; the firmware is 1.58"),
    ("sev-snp", 0x3_0000 | (1 << 8) | 59, "ABI 1.59 or later"),
])
def test_launch_start_answers_policy_failure(engine: str, policy: int, problem: str) -> None:
    m = Machine(make_engine(engine, KeySource(rng())), 64)
    psp = Psp(m, Vendor(rng()))
    with pytest.raises(FirmwareRefusal, match=f"LAUNCH_START: POLICY_FAILURE: .*{problem}"):
        psp.launch_start(m.create_domain("guest", "g"), policy)


@pytest.mark.parametrize(("engine", "policy"), [
    ("sev", 0x5), ("sev", 0x1), ("sev", 0x0), ("sev", 0x5 | (24 << 24)),
    ("sev-snp", 0x3_0000), ("sev-snp", 0x2_0000), ("sev-snp", 0x3_0000 | (1 << 8) | 58),
    ("sev-snp", 0x3_0000 | SNP_POLICY_PAGE_SWAP_DISABLE),
])
def test_launch_start_accepts_what_the_firmware_can_honour(engine: str, policy: int) -> None:
    m = Machine(make_engine(engine, KeySource(rng())), 64)
    psp = Psp(m, Vendor(rng()))
    handle = psp.launch_start(m.create_domain("guest", "g"), policy)
    assert psp.policy_of(handle) == policy


# -- PLATFORM_INFO: ciphertext hiding (bit 4), ALIAS_CHECK_COMPLETE (bit 5) ------------------
class PlatformInfoPlatform(SnpPlatform):
    """:class:`SnpPlatform` on a machine with ciphertext hiding and the alias check chosen."""

    def __init__(self, *, hiding: bool, alias_check: bool, required: int = 0) -> None:
        self.hiding, self.alias_check, self.required = hiding, alias_check, required
        super().__init__()

    def make_machine(self, seed: int) -> Machine:
        engine = make_engine("sev-snp", KeySource(rng(seed)), ciphertext_hiding=self.hiding)
        return Machine(engine, 64, Mitigations(alias_check=self.alias_check))


@pytest.mark.parametrize(("hiding", "alias_check", "info"), [
    (False, False, 0x00), (True, False, 0x10), (False, True, 0x20), (True, True, 0x30)])
def test_platform_info_reports_ciphertext_hiding_and_the_alias_check(
    hiding: bool, alias_check: bool, info: int
) -> None:
    p = PlatformInfoPlatform(hiding=hiding, alias_check=alias_check)
    data = p.report(p.owner.new_nonce())
    assert struct.unpack_from("<Q", data, 0x040)[0] == info  # PLATFORM_INFO, read by offset
    assert (PLATFORM_INFO_CIPHERTEXT_HIDING, PLATFORM_INFO_ALIAS_CHECK) == (1 << 4, 1 << 5)
    # The field is inside the signed bytes: the VCEK's signature covers it.
    vcek = x509.load_der_x509_certificate(p.psp.vcek_chain[-1]).public_key()
    assert isinstance(vcek, ec.EllipticCurvePublicKey)
    rs = data[0x2A0:0x2A0 + 144]
    r, s = (int.from_bytes(rs[i:i + 72], "little") for i in (0, 72))
    vcek.verify(encode_dss_signature(r, s), data[:0x2A0], ec.ECDSA(hashes.SHA384()))


@pytest.mark.parametrize(("hiding", "alias_check", "required", "missing"), [
    (False, False, 0x10, "0x10"), (True, False, 0x30, "0x20"), (False, True, 0x10, "0x10")])
def test_an_owner_that_requires_platform_info_refuses_a_report_without_it(
    hiding: bool, alias_check: bool, required: int, missing: str
) -> None:
    p = PlatformInfoPlatform(hiding=hiding, alias_check=alias_check)
    owner = Verifier(p.vendor.root, p.owner.expected_digest, POLICY, rng(), tik=p.tik,
                     report_format=ReportFormat.SNP, trusted_ark=p.vendor.snp.ark_cert,
                     required_platform_info=required)
    reply = query_attestation_report(p.machine, p.psp, p.handle, owner.new_nonce())
    with pytest.raises(VerificationFailed, match=f"^platform info: .*required bits {missing} "):
        owner.verify(reply, p.psp.vcek_chain)
    assert [r.check for r in owner.results][-2:] == [Check.VMPL, Check.PLATFORM]


def test_an_owner_that_requires_platform_info_accepts_a_report_with_it() -> None:
    p = PlatformInfoPlatform(hiding=True, alias_check=True)
    owner = Verifier(p.vendor.root, p.owner.expected_digest, POLICY, rng(), tik=p.tik,
                     report_format=ReportFormat.SNP, trusted_ark=p.vendor.snp.ark_cert,
                     required_platform_info=0x30)
    reply = query_attestation_report(p.machine, p.psp, p.handle, owner.new_nonce())
    accepted = owner.verify(reply, p.psp.vcek_chain)
    assert isinstance(accepted, SnpReport) and accepted.platform_info == 0x30
    assert owner.results[-1].check is Check.PLATFORM and owner.results[-1].passed


def test_a_legacy_report_has_no_platform_info_to_require() -> None:
    p = SnpPlatform(engine="sev", policy=POLICY_DEFAULT)
    owner = Verifier(p.vendor.root, p.owner.expected_digest, POLICY_DEFAULT, rng(),
                     required_platform_info=PLATFORM_INFO_ALIAS_CHECK)
    reply = query_attestation_report(p.machine, p.psp, p.handle, owner.new_nonce())
    with pytest.raises(VerificationFailed, match="^platform info: a legacy SEV report carries"):
        owner.verify(reply, p.psp.cert_chain)
    with pytest.raises(ConfigError, match="required_platform_info: must fit in a u64"):
        Verifier(p.vendor.root, p.owner.expected_digest, 0x5, rng(),
                 required_platform_info=1 << 64)
