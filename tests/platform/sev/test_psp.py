"""The SEV PSP model: report layout, ECDSA encoding, certificate chain, the owner's verifier, and
the mnonce rules of the query interface (the attack itself: tests/attacks/test_attestation.py)."""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import replace

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from testbed.crypto.signing import (
    COMPONENT_SIZE,
    DETERMINISTIC_SIGNING,
    KEY_SEED_SIZE,
    SigningKey,
    VerifyingKey,
)
from testbed.errors import ConfigError, FirmwareRefusal, InvalidArgument, VerificationFailed
from testbed.platform import Domain, KeySource, Machine, make_engine
from testbed.platform.sev.certs import (
    CERT_SIZE,
    Certificate,
    Vendor,
    issue_certificate,
    verify_chain,
)
from testbed.platform.sev.psp import (
    AttestationReport,
    Psp,
    SevAttestationReport,
    decode_mnonce,
    encode_mnonce,
    query_attestation_report,
)
from testbed.platform.sev.report import (
    LAUNCH_DIGEST_OFFSET,
    MNONCE_OFFSET,
    POLICY_NODBG,
    POLICY_OFFSET,
    REPORT_SIZE,
    RESERVED_OFFSET,
    SIG_ALGO_OFFSET,
    SIG_USAGE_OFFSET,
    SIGNATURE_OFFSET,
    SIGNED_END,
    KeyUsage,
    SevReport,
    SigAlgo,
    sign_report,
)
from testbed.platform.sev.snp_report import SNP_POLICY_DEFAULT
from testbed.platform.sev.verifier import Check, Verifier
from testbed.types import PhysAddr

IMAGE = b"console=ttyS0 ro".ljust(256, b"\0") + bytes(range(256)) * 15  # 4096 bytes


def rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


def machine(engine: str = "sev", seed: int = 1) -> Machine:
    return Machine(make_engine(engine, KeySource(rng(seed))), 64)


class Platform:
    """A SEV machine with a PSP, one launched guest and its owner's verifier."""

    def __init__(self, seed: int = 1, engine: str = "sev", image: bytes = IMAGE) -> None:
        self.rng = rng(seed)
        self.machine = machine(engine, seed)
        self.vendor = Vendor(self.rng)
        self.psp = Psp(self.machine, self.vendor)
        self.guest = self.machine.create_domain("guest", "g")
        self.pa = self.machine.alloc_page(self.guest)
        policy = POLICY_NODBG if engine == "sev" else SNP_POLICY_DEFAULT
        self.handle = self.psp.launch_start(self.guest, policy)
        self.psp.launch_update_data(self.handle, self.pa, image)
        self.blob = self.psp.launch_measure(self.handle)
        self.digest = self.psp.launch_digest(self.handle)
        self.psp.launch_finish(self.handle)
        self.owner = Verifier(self.vendor.root, hashlib.sha256(IMAGE).digest(), POLICY_NODBG,
                              self.rng)

    def report(self, nonce: str) -> bytes:
        reply = query_attestation_report(self.machine, self.psp, self.handle, nonce)
        assert reply.sev is not None
        return reply.sev.raw()


def failed_check(owner: Verifier, data: bytes, chain: tuple[Certificate, ...]) -> str:
    with pytest.raises(VerificationFailed) as info:
        owner.verify_report(data, chain)
    assert owner.results[-1].passed is False
    assert str(info.value).startswith(f"{owner.results[-1].check}: ")
    return owner.results[-1].check.value


# -- the report layout ------------------------------------------------------------------------
def test_layout_constants_match_the_legacy_sev_report() -> None:
    assert (MNONCE_OFFSET, LAUNCH_DIGEST_OFFSET, POLICY_OFFSET) == (0x00, 0x10, 0x30)
    assert (SIG_USAGE_OFFSET, SIG_ALGO_OFFSET, RESERVED_OFFSET) == (0x34, 0x38, 0x3C)
    assert (SIGNATURE_OFFSET, REPORT_SIZE, SIGNED_END) == (0x40, 0xD0, 0x34)
    assert (KeyUsage.PEK, SigAlgo.ECDSA_SHA256) == (0x1002, 0x0002)


def test_pack_puts_each_field_at_its_offset() -> None:
    report = SevReport(bytes(range(16)), bytes(range(100, 132)), 0x11223344, reserved=0x55667788,
                       signature=bytes(range(144)))
    data = report.pack()
    assert len(data) == 208
    assert data[0x00:0x10] == bytes(range(16))
    assert data[0x10:0x30] == bytes(range(100, 132))
    assert data[0x30:0x34] == bytes.fromhex("44332211")  # little-endian
    assert struct.unpack_from("<III", data, 0x34) == (0x1002, 0x0002, 0x55667788)
    assert data[0x40:0xD0] == bytes(range(144))
    assert report.signed_bytes() == data[:0x34]
    assert SevReport.unpack(data) == report


@pytest.mark.parametrize("size", [0, 207, 209, 416])
def test_unpack_wants_exactly_208_bytes(size: int) -> None:
    with pytest.raises(ConfigError, match=f"expected 208 bytes, got {size}"):
        SevReport.unpack(bytes(size))


def test_report_fields_are_checked_when_built() -> None:
    with pytest.raises(ConfigError, match="report mnonce: expected 16 bytes, got 15"):
        SevReport(bytes(15), bytes(32), 0)
    with pytest.raises(ConfigError, match="report policy: must fit in a u32"):
        SevReport(bytes(16), bytes(32), 1 << 32)


# -- ECDSA and its SEV encoding ---------------------------------------------------------------
def test_sign_verify_round_trip_and_rejections() -> None:
    key = SigningKey(rng().bytes(KEY_SEED_SIZE))
    sig = key.sign(b"message")
    assert len(sig) == 144
    assert key.public_key.verify(b"message", sig)
    assert not key.public_key.verify(b"messagE", sig)
    assert not key.public_key.verify(b"message", sig[:-1])
    flipped = bytearray(sig)
    flipped[0] ^= 1
    assert not key.public_key.verify(b"message", bytes(flipped))
    assert not key.public_key.verify(b"message", bytes(144))  # r = s = 0
    other = SigningKey(rng(2).bytes(KEY_SEED_SIZE))
    assert not other.public_key.verify(b"message", sig)


def test_signature_is_r_then_s_little_endian_72_bytes_each() -> None:
    key = SigningKey(rng().bytes(KEY_SEED_SIZE))
    sig = key.sign(b"layout")
    r = int.from_bytes(sig[:COMPONENT_SIZE], "little")
    s = int.from_bytes(sig[COMPONENT_SIZE:], "little")
    assert sig[48:72] == bytes(24) and sig[120:144] == bytes(24)  # P-384 values are 48 bytes
    enc = key.public_key.encoded
    x, y = int.from_bytes(enc[:72], "little"), int.from_bytes(enc[72:], "little")
    plain = ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
    plain.verify(encode_dss_signature(r, s), b"layout", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):  # big-endian reading is not the layout
        plain.verify(encode_dss_signature(int.from_bytes(sig[:72], "big") or 1,
                                          int.from_bytes(sig[72:], "big") or 1),
                     b"layout", ec.ECDSA(hashes.SHA256()))


def test_keys_are_validated() -> None:
    with pytest.raises(ConfigError, match="key seed: expected at least 64 bytes, got 63"):
        SigningKey(bytes(63))
    with pytest.raises(ConfigError, match="public key: expected 144 bytes"):
        VerifyingKey(bytes(143))
    with pytest.raises(ConfigError, match="not a point on P-384"):
        VerifyingKey((1).to_bytes(72, "little") * 2)


def test_keys_come_from_the_seed() -> None:
    a, b = SigningKey(rng(5).bytes(64)), SigningKey(rng(5).bytes(64))
    assert a.public_key == b.public_key
    assert a.public_key != SigningKey(rng(6).bytes(64)).public_key


@pytest.mark.skipif(not DETERMINISTIC_SIGNING,
                    reason="this OpenSSL build has no RFC 6979 deterministic ECDSA, so signatures "
                    "differ between runs (the attack then keeps them out of its evidence)")
def test_same_seed_same_report_bytes() -> None:
    nonce = encode_mnonce(bytes(range(16)))
    first, again, other = Platform(3), Platform(3), Platform(4)
    assert first.report(nonce) == again.report(nonce)
    assert first.report(nonce) != other.report(nonce)


# -- certificates -----------------------------------------------------------------------------
def test_genuine_chain_verifies_to_the_pek() -> None:
    p = Platform()
    chain = p.psp.cert_chain
    assert [c.usage for c in chain] == [KeyUsage.ARK, KeyUsage.ASK, KeyUsage.CEK, KeyUsage.PEK]
    assert all(len(c.pack()) == CERT_SIZE == 312 for c in chain)
    assert verify_chain(chain, p.vendor.root) == chain[-1].key()


def chain_error(chain: tuple[Certificate, ...], root: VerifyingKey) -> str:
    with pytest.raises(VerificationFailed) as info:
        verify_chain(chain, root)
    message = str(info.value)
    assert message.startswith("certificate chain: ")
    return message


def test_chain_to_a_root_the_owner_does_not_trust() -> None:
    p = Platform()
    assert "not the root the owner trusts" in chain_error(p.psp.cert_chain, Vendor(rng(9)).root)
    # A complete chain of the attacker's own making, also under a root nobody trusts.
    own = Platform(seed=9)
    assert "not the root" in chain_error(own.psp.cert_chain, p.vendor.root)


def test_chain_with_a_broken_link() -> None:
    p = Platform()
    ark, ask, cek, pek = p.psp.cert_chain
    # A genuine CEK certificate of another chip from the same vendor: the ASK link holds.
    other_cek = Psp(machine("sev", 2), p.vendor).cert_chain[2]
    verify_chain(Psp(machine("sev", 2), p.vendor).cert_chain, p.vendor.root)
    assert "PEK certificate: signature does not verify with the CEK key" in chain_error(
        (ark, ask, other_cek, pek), p.vendor.root)
    stranger = SigningKey(rng(8).bytes(64)).public_key
    assert "CEK certificate: signature does not verify" in chain_error(
        (ark, ask, replace(cek, public_key=stranger.encoded), pek), p.vendor.root)
    assert "claims signer usage" in chain_error(
        (ark, ask, cek, replace(pek, signer_usage=KeyUsage.ASK)), p.vendor.root)
    assert "expected certificates ARK -> ASK -> CEK -> PEK" in chain_error(
        (ark, ask, pek), p.vendor.root)
    assert "expected certificates" in chain_error((ark, cek, ask, pek), p.vendor.root)


# -- the verifier -----------------------------------------------------------------------------
def test_genuine_report_passes_every_check_in_order() -> None:
    p = Platform()
    data = p.report(p.owner.new_nonce())
    report = p.owner.verify_report(data, p.psp.cert_chain)
    assert report.launch_digest == p.digest == hashlib.sha256(IMAGE).digest()
    assert [r.check for r in p.owner.results] == [Check.FORMAT, Check.CHAIN, Check.SIGNATURE,
                                                   Check.NONCE, Check.DIGEST, Check.POLICY]
    assert p.owner.checks_passed == 6


@pytest.mark.parametrize("offset", [0x00, 0x0F, 0x10, 0x2F, 0x30, 0x33])
def test_flip_inside_the_signed_bytes_breaks_the_signature(offset: int) -> None:
    p = Platform()
    data = bytearray(p.report(p.owner.new_nonce()))
    data[offset] ^= 0x01
    assert failed_check(p.owner, bytes(data), p.psp.cert_chain) == "signature"
    assert p.owner.checks_passed == 2


@pytest.mark.parametrize("offset", [0x3C, 0x3F])
def test_flip_in_reserved_is_outside_the_signature_and_ignored(offset: int) -> None:
    p = Platform()
    data = bytearray(p.report(p.owner.new_nonce()))
    data[offset] ^= 0xFF
    assert p.owner.verify_report(bytes(data), p.psp.cert_chain).reserved != 0
    assert p.owner.checks_passed == 6


@pytest.mark.parametrize("offset", [0x34, 0x38])
def test_unsigned_usage_and_algo_fields_are_checked_by_value(offset: int) -> None:
    p = Platform()
    data = bytearray(p.report(p.owner.new_nonce()))
    data[offset] ^= 0x01
    pek = p.psp.cert_chain[-1].key()
    assert pek.verify(bytes(data[:SIGNED_END]), bytes(data[SIGNATURE_OFFSET:]))  # still signed
    assert failed_check(p.owner, bytes(data), p.psp.cert_chain) == "signature"


@pytest.mark.parametrize("offset", [0x40, 0x88, 0xCF])
def test_flip_in_the_signature_fails(offset: int) -> None:
    p = Platform()
    data = bytearray(p.report(p.owner.new_nonce()))
    data[offset] ^= 0x80
    assert failed_check(p.owner, bytes(data), p.psp.cert_chain) == "signature"


def test_each_check_fails_on_its_own_bad_input() -> None:
    p = Platform()
    chain = p.psp.cert_chain
    good = p.report(p.owner.new_nonce())
    p.owner.new_nonce()
    assert failed_check(p.owner, good[:-1], chain) == "report format"
    p.owner.new_nonce()
    assert failed_check(p.owner, good + b"\0", chain) == "report format"
    p.owner.new_nonce()
    assert failed_check(p.owner, good, (*chain[:3], Platform(9).psp.cert_chain[3])) == \
        "certificate chain"
    impostor = SigningKey(rng(7).bytes(64))
    nonce = p.owner.new_nonce()
    forged = sign_report(SevReport(decode_mnonce(nonce), p.digest, POLICY_NODBG), impostor)
    assert failed_check(p.owner, forged.pack(), chain) == "signature"
    p.owner.new_nonce()
    assert failed_check(p.owner, good, chain) == "nonce freshness"  # an older nonce
    assert failed_check(p.owner, good, chain) == "nonce freshness"  # none outstanding
    wrong_digest = Verifier(p.vendor.root, bytes(32), POLICY_NODBG, rng())
    assert failed_check(wrong_digest, p.report(wrong_digest.new_nonce()), chain) == \
        "launch digest"
    wrong_policy = Verifier(p.vendor.root, p.digest, 0x5, rng())
    assert failed_check(wrong_policy, p.report(wrong_policy.new_nonce()), chain) == "policy"
    assert wrong_policy.checks_passed == 5


def test_a_nonce_is_good_for_one_verification() -> None:
    p = Platform()
    data = p.report(p.owner.new_nonce())
    p.owner.verify_report(data, p.psp.cert_chain)
    assert failed_check(p.owner, data, p.psp.cert_chain) == "nonce freshness"


def test_verify_takes_the_vendor_neutral_reply() -> None:
    p = Platform()
    reply = query_attestation_report(p.machine, p.psp, p.handle, p.owner.new_nonce())
    assert p.owner.verify(reply, p.psp.cert_chain).policy == POLICY_NODBG
    for bad in (AttestationReport(), AttestationReport(SevAttestationReport("not base64!"))):
        p.owner.new_nonce()
        with pytest.raises(VerificationFailed, match="^report format: "):
            p.owner.verify(bad, p.psp.cert_chain)


def test_verifier_arguments_are_checked() -> None:
    root = Vendor(rng()).root
    with pytest.raises(ConfigError, match="expected_digest: expected 32 bytes, got 31"):
        Verifier(root, bytes(31), 1, rng())
    with pytest.raises(ConfigError, match="expected_policy"):
        Verifier(root, bytes(32), -1, rng())


# -- the query interface and the PSP's commands ------------------------------------------------
@pytest.mark.parametrize(("size", "got"), [(15, "got 15"), (17, "got 17"), (0, "got 0")])
def test_mnonce_must_decode_to_16_bytes(size: int, got: str) -> None:
    text = base64.b64encode(bytes(size)).decode()
    with pytest.raises(InvalidArgument, match=f"mnonce: expected 16 bytes after base64 "
                                               f"decoding, {got}"):
        decode_mnonce(text)
    p = Platform()
    with pytest.raises(InvalidArgument, match="mnonce: expected 16 bytes"):
        query_attestation_report(p.machine, p.psp, p.handle, text)


@pytest.mark.parametrize("text", ["aaaaaaa", "AAAA AAAA AAAA AAAA AAAAAA==", "not*base64",
                                  "AAAAAAAAAAAAAAAAAAAAAA=", "é" * 24])
def test_mnonce_must_be_base64(text: str) -> None:
    with pytest.raises(InvalidArgument, match="mnonce: not valid base64"):
        decode_mnonce(text)


def test_mnonce_round_trip() -> None:
    assert decode_mnonce(encode_mnonce(bytes(range(16)))) == bytes(range(16))
    assert decode_mnonce("AAAAAAAAAAAAAAAAAAAAAA==") == bytes(16)


@pytest.mark.parametrize("engine", ["none", "tme", "mktme"])
def test_no_psp_means_attestation_is_not_enabled(engine: str) -> None:
    m = machine(engine)
    assert m.engine.attests is False
    with pytest.raises(ConfigError, match=f"attestation is not enabled: engine {engine} has no "
                                          "platform security processor"):
        query_attestation_report(m, None, 1, "AAAAAAAAAAAAAAAAAAAAAA==")
    with pytest.raises(ConfigError, match="not enabled"):  # checked before the mnonce
        query_attestation_report(m, None, 1, "bad")
    with pytest.raises(ConfigError, match=f"engine {engine} has no platform security processor"):
        Psp(m, Vendor(rng()))


def test_sev_machine_without_its_psp_is_not_enabled_either() -> None:
    p = Platform()
    with pytest.raises(ConfigError, match="not enabled"):
        query_attestation_report(p.machine, None, p.handle, "AAAAAAAAAAAAAAAAAAAAAA==")
    with pytest.raises(ConfigError, match="not enabled"):
        query_attestation_report(machine("sev", 2), p.psp, p.handle, "AAAAAAAAAAAAAAAAAAAAAA==")


@pytest.mark.parametrize("engine", ["sev", "sev-snp"])
def test_launch_encrypts_into_guest_memory_and_measures_it(engine: str) -> None:
    p = Platform(engine=engine)
    assert p.machine.engine.attests
    assert p.machine.read(p.guest, p.pa, len(IMAGE)) == IMAGE
    assert p.machine.hypervisor_read(p.pa, len(IMAGE)) != IMAGE  # the host sees ciphertext
    if engine == "sev":
        assert p.digest == hashlib.sha256(IMAGE).digest()
    else:  # one PAGE_INFO record (0x70 bytes) for the one page, from a zero digest
        info = (bytes(48) + hashlib.sha384(IMAGE).digest() + struct.pack("<HBBBBBx", 0x70, 1,
                0, 0, 0, 0) + struct.pack("<Q", 0))
        assert len(info) == 0x70
        assert p.digest == hashlib.sha384(info).digest()


def launch_states() -> tuple[Psp, Domain, PhysAddr, int]:
    m = machine("sev")
    psp = Psp(m, Vendor(rng()))
    guest = m.create_domain("guest")
    pa = m.alloc_page(guest)
    return psp, guest, pa, psp.launch_start(guest)


def test_psp_commands_follow_the_launch_states() -> None:
    psp, guest, pa, handle = launch_states()
    nonce = bytes(16)
    with pytest.raises(InvalidArgument, match="'launch update', the command needs 'measured"):
        psp.attestation_report(handle, nonce)
    with pytest.raises(InvalidArgument, match="needs 'measured'"):
        psp.launch_finish(handle)
    psp.launch_update_data(handle, pa, b"kernel")
    assert psp.launch_measure(handle) is not None
    assert psp.launch_digest(handle) == hashlib.sha256(b"kernel").digest()
    with pytest.raises(InvalidArgument, match="needs 'launch update'"):
        psp.launch_update_data(handle, pa, b"more")
    assert len(psp.attestation_report(handle, nonce)) == REPORT_SIZE  # measured: allowed
    psp.launch_finish(handle)
    assert len(psp.attestation_report(handle, nonce)) == REPORT_SIZE  # running: allowed too
    with pytest.raises(InvalidArgument, match="ATTESTATION: mnonce must be 16 bytes, got 15"):
        psp.attestation_report(handle, bytes(15))
    psp.decommission(handle)
    with pytest.raises(InvalidArgument, match=f"no guest with handle {handle}"):
        psp.attestation_report(handle, nonce)


def test_launch_start_wants_a_guest_and_a_u32_policy() -> None:
    psp, _, _, _ = launch_states()
    process = psp.machine.create_domain("process")
    with pytest.raises(InvalidArgument, match="is a process, not a guest"):
        psp.launch_start(process)
    with pytest.raises(FirmwareRefusal, match=r"POLICY_FAILURE: .*32-bit legacy policy field"):
        psp.launch_start(psp.machine.create_domain("guest"), 1 << 32)


def test_certificate_issue_signs_its_first_bytes() -> None:
    signer = SigningKey(rng().bytes(64))
    cert = issue_certificate(KeyUsage.PEK, signer.public_key, KeyUsage.CEK, signer)
    assert signer.public_key.verify(cert.pack()[:CERT_SIZE - 144], cert.signature)
    assert cert.pack()[CERT_SIZE - 144:] == cert.signature


def test_the_chip_keys_come_from_the_platform_key_source() -> None:
    vendor = Vendor(rng(3))
    first = Psp(machine("sev", 4), vendor).cert_chain
    again = Psp(machine("sev", 4), vendor).cert_chain
    other = Psp(machine("sev", 5), vendor).cert_chain
    assert first == again  # the same platform seed: the same chip
    assert first[2].public_key != other[2].public_key and first[3] != other[3]
