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
from _support.programs import leak
from _support.scenarios import run, scenario
from pydantic import ValidationError

from testbed.attacks import Attack, AttackContext, AttackParams, BaseMetrics, Verdict
from testbed.crypto import XtsLineCipher
from testbed.errors import ConfigError, KeyNotProgrammed, PlatformFailure
from testbed.platform import (
    EngineOptions,
    KeySource,
    Machine,
    MktmeEngine,
    PconfigCommand,
    PconfigStatus,
    make_engine,
)
from testbed.platform.engines.base import AES_XTS_128, EngineWithKeyIds
from testbed.platform.engines.tme import PCONFIG_ATTEMPTS, TmeEngine
from testbed.programs._args import CreateDomain
from testbed.programs._ops import create_domain
from testbed.programs._runtime import Runtime
from testbed.scenarios import Job, run_trials
from testbed.scenarios.model import PlatformSpec
from testbed.types import KeySlot, Outcome


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


def test_mktme_keyid_exhaustion_is_a_platform_failure_not_a_refusal() -> None:
    """Running out of KeyIDs is a resource running out, not a check refusing anyone: it must
    never make an outcome ``blocked`` (a PlatformFailure, not a PlatformRefusal)."""
    m = machine("mktme", keyid_bits=2)
    assert [m.create_domain("guest").slot for _ in range(3)] == [1, 2, 3]
    with pytest.raises(PlatformFailure, match="no free KeyID"):
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


# -- PCONFIG's entropy source and the kernel's retries ----------------------------------------
def _entropy_machine(failures: int) -> Machine:
    engine = MktmeEngine.build(KeySource(np.random.default_rng(5)),
                               EngineOptions(pconfig_entropy_failures=failures))
    return Machine(engine, 64)


def test_set_key_random_answers_entropy_error_until_the_source_recovers() -> None:
    """intel_pconfig.h of the MKTME series: "#define MKTME_ENTROPY_ERROR 2" is a return code of
    MKTME_KEY_PROGRAM; only the command that needs the CPU's entropy (SET_KEY_RANDOM) meets
    it."""
    engine = mktme_engine(_entropy_machine(2))
    S = PconfigStatus
    assert int(S.ENTROPY_ERROR) == 2
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 5) is S.ENTROPY_ERROR
    assert not engine.holds_key(KeySlot(5))
    assert engine.pconfig(PconfigCommand.SET_KEY_DIRECT, 6, bytes(range(32))) is S.PROG_SUCCESS
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 5) is S.ENTROPY_ERROR
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 5) is S.PROG_SUCCESS
    assert engine.holds_key(KeySlot(5))
    assert engine.pconfig(PconfigCommand.SET_KEY_RANDOM, 7) is S.ENTROPY_ERROR  # each key again


@pytest.mark.parametrize("failures", [1, 9])
def test_the_kernel_retries_entropy_errors(failures: int) -> None:
    """Source ("[PATCH, RFC 29/62] keys/mktme: Program MKTME keys into the platform hardware",
    the MKTME series of the seed): "Here a retry scheme is included for two errors that may
    succeed on retry: MKTME_DEVICE_BUSY and MKTME_ENTROPY_ERROR", with ``retries = 10``.
    Up to nine failures in a row, the tenth attempt programs the key."""
    m = _entropy_machine(failures)
    engine = mktme_engine(m)
    guest = m.create_domain("guest")
    assert engine.pconfig_retries == failures
    pa = m.alloc_page(guest)
    m.write(guest, pa, SECRET)
    assert m.read(guest, pa, len(SECRET)) == SECRET
    assert m.bus.read(pa, len(SECRET)) != SECRET  # the retried key encrypts


def test_entropy_failing_every_attempt_fails_domain_creation() -> None:
    """Source ("[PATCH, RFC 29/62] keys/mktme: Program MKTME keys into the platform hardware",
    the MKTME series of the seed): "Here a retry scheme is included for two errors that may
    succeed on retry: MKTME_DEVICE_BUSY and MKTME_ENTROPY_ERROR", with ``retries = 10``.
    After ten failures the patch gives up ("Ran out of retries"): the domain is not created."""
    m = _entropy_machine(PCONFIG_ATTEMPTS)
    engine = mktme_engine(m)
    with pytest.raises(PlatformFailure, match=r"PCONFIG failed for KeyID 1: ENTROPY_ERROR "
                       r"\(insufficient entropy\) on all 10 attempts"):
        m.create_domain("guest")
    assert engine.pconfig_retries == PCONFIG_ATTEMPTS - 1
    assert not engine.holds_key(KeySlot(1))
    # The KeyID was not taken: the next request (the source recovers after 10) gets it.
    assert m.create_domain("guest").slot == 1


def test_other_codes_are_not_retried_and_busy_is() -> None:
    """The series' error table: INVALID_KEYID and the other parameter errors are "no retry";
    DEVICE_BUSY is retried and, when it lasts, fails the request."""
    engine = mktme_engine(machine("mktme"))
    with pytest.raises(KeyNotProgrammed, match="KeyID 99: INVALID_KEYID"):
        engine.program(PconfigCommand.SET_KEY_RANDOM, KeySlot(99))
    assert engine.pconfig_retries == 0
    engine.busy = True
    with pytest.raises(KeyNotProgrammed, match="KeyID 3: DEVICE_BUSY"):
        engine.program(PconfigCommand.SET_KEY_RANDOM, KeySlot(3))
    assert engine.pconfig_retries == PCONFIG_ATTEMPTS - 1


def test_entropy_failures_are_bounded_by_the_kernels_attempts() -> None:
    """Values above the kernel's 10 attempts would fail exactly as 10 does: refused."""
    assert MktmeEngine.MAX_ENTROPY_FAILURES == PCONFIG_ATTEMPTS == 10
    with pytest.raises(ConfigError, match="pconfig_entropy_failures: must be 0..10, got 11"):
        MktmeEngine(KeySource(np.random.default_rng(1)), entropy_failures=11)
    with pytest.raises(ValidationError, match="pconfig_entropy_failures"):
        PlatformSpec.model_validate({"pconfig_entropy_failures": 11})
    PlatformSpec.model_validate({"pconfig_entropy_failures": 10})


@pytest.mark.parametrize("engines", [["tme"], ["mktme", "sev"], None])
def test_entropy_failures_are_refused_for_engines_without_pconfig(
        engines: list[str] | None) -> None:
    fields = {} if engines is None else {"engines": engines}
    with pytest.raises(ValidationError, match=r"platform.pconfig_entropy_failures: .*make no "
                       r"keys with PCONFIG; list only engines that do in engines: "
                       r"\(mktme, mktme-i\)"):
        scenario("program", params=leak(), platform={"pconfig_entropy_failures": 3}, **fields)
    scenario("program", params=leak(), platform={"pconfig_entropy_failures": 3},
             engines=["mktme", "mktme-i"])


class _KeyIdPlugin(TmeEngine, EngineWithKeyIds):
    """A plugin engine with KeyIDs that never retries PCONFIG and so never sets the count."""

    name = "keyid-plugin"
    keyid_bits = 1
    max_keyid = 1

    def pconfig(self, command: int, keyid: int, key: bytes | None = None,
                enc_alg: int = AES_XTS_128) -> PconfigStatus:
        return PconfigStatus.PROG_SUCCESS


def test_a_plugin_engine_with_keyids_need_not_count_retries() -> None:
    """``pconfig_retries`` has a default on the interface: the ``create_domain`` step, which
    reads it, works on an engine that never sets it."""
    engine = _KeyIdPlugin(KeySource(np.random.default_rng(3)))
    assert "pconfig_retries" not in vars(engine) and engine.pconfig_retries == 0
    m = Machine(engine, 64)
    rt = Runtime(AttackContext(m, np.random.default_rng(4), lambda: m))
    domain = create_domain(rt, CreateDomain(kind="guest"))
    assert domain.alive and domain in m._tasks


class _AttackerNeedsAKey(Attack[AttackParams]):
    """The victim's VM is made before the entropy source fails, the attacker's after."""

    kind = "attacker-needs-a-key"
    title = "attacker needs a key"
    capabilities = ()
    Params = AttackParams
    Metrics = BaseMetrics

    def run(self, ctx: AttackContext, params: AttackParams) -> Verdict:
        ctx.machine.create_domain("guest", "victim")
        ctx.log.begin_attack()
        engine = ctx.machine.engine
        assert isinstance(engine, MktmeEngine)
        engine.entropy_failures = PCONFIG_ATTEMPTS
        ctx.machine.create_domain("guest", "attacker")
        return Verdict(Outcome.SUCCEEDED, "unreachable")


def test_an_entropy_failure_is_an_error_run_never_blocked() -> None:
    """README Outcomes: blocked is "a platform check refused a step of the attacker"; a key the
    hardware could not generate is no check, so even the attacker's run is an error."""
    row = run_trials(Job(scenario("program", params=leak()), "<test>", "mktme", 1,
                         attack=_AttackerNeedsAKey()))
    assert row.outcome is Outcome.ERROR, row.reason
    assert row.reason.startswith("the platform failed: PCONFIG failed for KeyID 2: "
                                 "ENTROPY_ERROR")


def test_a_victim_without_a_key_is_an_error_run() -> None:
    row = run("program", "mktme", params=leak(), platform={"pconfig_entropy_failures": 10},
              engines=["mktme"])
    assert row.outcome is Outcome.ERROR, row.reason
    assert "ENTROPY_ERROR (insufficient entropy) on all 10 attempts" in row.reason
    spared = run("program", "mktme", params=leak(), platform={"pconfig_entropy_failures": 9},
                 engines=["mktme"])
    plain = run("program", "mktme", params=leak())
    assert spared.outcome is plain.outcome is Outcome.MITIGATED


def test_make_engine_leaves_the_entropy_source_alone() -> None:
    """make_engine's options go by name: its mac_bits once landed in pconfig_entropy_failures."""
    engine = make_engine("mktme", KeySource(np.random.default_rng(2)), mac_bits=20)
    assert isinstance(engine, MktmeEngine) and engine.entropy_failures == 0
    integrity = make_engine("mktme-i", KeySource(np.random.default_rng(2)), mac_bits=20)
    assert isinstance(integrity, MktmeEngine) and integrity.entropy_failures == 0
