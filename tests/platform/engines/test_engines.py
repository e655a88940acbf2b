"""Engines: the registry, building from options, and capabilities as interfaces."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.errors import ConfigError
from testbed.platform import (
    ENGINES,
    CipherFamily,
    Engine,
    EngineOptions,
    EngineWithAttestation,
    EngineWithGuestIsolation,
    EngineWithIntegrity,
    EngineWithKeyIds,
    EngineWithRmp,
    EngineWithRuntimeRotation,
    EngineWithSnpAttestation,
    KeySource,
    Machine,
    MktmeEngine,
    MktmeIntegrityEngine,
    NoEngine,
    SevEngine,
    SevSnpEngine,
    TmeEngine,
    engine_class,
    make_engine,
)

INTERFACES = (EngineWithKeyIds, EngineWithRuntimeRotation, EngineWithGuestIsolation,
              EngineWithRmp, EngineWithAttestation, EngineWithIntegrity,
              EngineWithSnpAttestation)


def keys(seed: int = 0) -> KeySource:
    return KeySource(np.random.default_rng(seed))


def test_registry_maps_each_name_to_its_class() -> None:
    assert ENGINES == {"none": NoEngine, "tme": TmeEngine, "mktme": MktmeEngine,
                       "mktme-i": MktmeIntegrityEngine, "sev": SevEngine,
                       "sev-snp": SevSnpEngine}
    assert list(ENGINES) == ["none", "tme", "mktme", "mktme-i", "sev", "sev-snp"]
    assert all(cls.name == name for name, cls in ENGINES.items())
    assert engine_class("sev") is SevEngine
    with pytest.raises(ConfigError, match="engine: unknown 'sme'; built-in: none, tme"):
        engine_class("sme")


@pytest.mark.parametrize(
    ("name", "interfaces"),
    [
        ("none", set()),
        ("tme", set()),
        ("mktme", {EngineWithKeyIds, EngineWithRuntimeRotation}),
        ("mktme-i", {EngineWithKeyIds, EngineWithRuntimeRotation, EngineWithIntegrity}),
        ("sev", {EngineWithGuestIsolation, EngineWithAttestation}),
        ("sev-snp", {EngineWithGuestIsolation, EngineWithAttestation, EngineWithRmp,
                     EngineWithSnpAttestation}),
    ],
)
def test_engines_declare_their_capabilities(name: str, interfaces: set[type]) -> None:
    engine = make_engine(name, keys())
    assert {i for i in INTERFACES if isinstance(engine, i)} == interfaces


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("none", (False, False, False, False, False, False)),
        ("tme", (True, False, False, False, False, False)),
        ("mktme", (True, True, True, False, False, False)),
        ("mktme-i", (True, True, True, False, False, True)),
        ("sev", (True, True, False, True, True, False)),
        ("sev-snp", (True, True, False, True, True, False)),
    ],
)
def test_boolean_capabilities(name: str, flags: tuple[bool, ...]) -> None:
    cls = ENGINES[name]
    got = (cls.encrypts, cls.per_domain_keys, cls.runtime_rotation, cls.isolates_guests,
           cls.attests, cls.integrity)
    assert got == flags


def test_a_subclass_may_switch_a_derived_capability_off() -> None:
    class SevWithoutPsp(SevEngine):
        attests = False

    class SevWithoutPspChild(SevWithoutPsp):
        pass

    assert SevEngine.attests and not SevWithoutPsp.attests
    assert not SevWithoutPspChild.attests  # inherited, not derived again
    assert SevWithoutPsp.isolates_guests


def test_the_base_engine_has_no_rmp_or_rotation() -> None:
    for attr in ("check_hypervisor_write", "hides_ciphertext", "rmp_assign", "rotate",
                 "pconfig"):
        assert not hasattr(Engine, attr), attr


def test_build_takes_the_options_that_apply() -> None:
    options = EngineOptions(keyid_bits=3, asids=4, ciphertext_hiding=True)
    mktme = MktmeEngine.build(keys(), options)
    assert (type(mktme), mktme.keyid_bits, mktme.max_keyid) == (MktmeEngine, 3, 7)
    snp = SevSnpEngine.build(keys(), options)
    assert (type(snp), snp.asids, snp.ciphertext_hiding) == (SevSnpEngine, 4, True)
    sev = SevEngine.build(keys(), options)
    assert (type(sev), sev.asids) == (SevEngine, 4)
    tme = TmeEngine.build(keys(), EngineOptions(reduced_width_bits=16))
    assert tme.cipher_kind.reduced_width_bits == 16


@pytest.mark.parametrize("name", list(ENGINES))
def test_make_engine_builds_the_builtin_engine_by_name(name: str) -> None:
    a = make_engine(name, keys(4), asids=3, keyid_bits=2)
    b = ENGINES[name].build(keys(4), EngineOptions(asids=3, keyid_bits=2))
    addrs = np.arange(0, 4 * 64, 64, dtype=np.uint64)
    lines = np.arange(4 * 64, dtype=np.uint8).reshape(4, 64)
    slot_a, slot_b = a.domain_slot("guest"), b.domain_slot("guest")
    assert slot_a == slot_b
    assert np.array_equal(a.encrypt(slot_a, addrs, lines), b.encrypt(slot_b, addrs, lines))


def test_cipher_family_is_an_enum() -> None:
    assert TmeEngine.family is CipherFamily.XTS
    assert SevEngine.family is CipherFamily.XEX
    assert make_engine("sev", keys()).cipher_kind.family is CipherFamily.XEX


def test_scratch_machine_is_plaintext_and_draws_no_keys() -> None:
    a = Machine(make_engine("mktme", keys(9)), 64)
    b = Machine(make_engine("mktme", keys(9)), 64)
    scratch = a.scratch(1024, secretmem_reserve_pages=512)
    assert isinstance(scratch.engine, NoEngine) and scratch.engine.keys is a.engine.keys
    assert scratch.memory.pages == 1024 and scratch.secretmem_area is not None
    proc = scratch.create_domain("process")
    page = scratch.alloc_page(proc)
    scratch.write(proc, page, b"plain")
    assert scratch.dram(page, 5) == b"plain"
    # The machine it came from still draws the same keys as a twin that made no scratch.
    pa, pb = a.create_domain("process"), b.create_domain("process")
    xa, xb = a.alloc_page(pa), b.alloc_page(pb)
    a.write(pa, xa, b"x" * 64)
    b.write(pb, xb, b"x" * 64)
    assert a.dram(xa, 64) == b.dram(xb, 64)


def test_unknown_engine() -> None:
    with pytest.raises(ConfigError, match="engine: unknown 'sme'"):
        make_engine("sme", KeySource(np.random.default_rng(0)))
