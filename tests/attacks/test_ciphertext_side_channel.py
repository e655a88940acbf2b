"""The ciphertext side channel (CipherLeaks): the hypervisor reads a guest's swap flag off its
deterministic ciphertext under SEV and SEV-SNP, ciphertext hiding stops it, a bus interposer
is not stopped; the ciphertexts are recomputed with ``cryptography`` and the ladder's flags
re-derived from a real Montgomery ladder."""

from __future__ import annotations

import inspect
import pickle
from dataclasses import fields

import numpy as np
import pytest
from _support.machines import keys_drawn, machine
from _support.paths import SCENARIOS
from _support.scenarios import run
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from testbed.attacks import AttackContext, CiphertextSideChannel
from testbed.attacks.ciphertext_side_channel import (
    BLOCK,
    NEIGHBOUR,
    TRACE_LIMIT,
    CiphertextRun,
    CiphertextSideChannelMetrics,
    CiphertextSideChannelParams,
    _Observer,
    ladder_flags,
    observe_ladder,
)
from testbed.errors import ScenarioError
from testbed.platform import ENGINES as BUILTIN_ENGINES
from testbed.results import LinePlot, ResultRow
from testbed.scenarios import Job, load_scenario, run_job
from testbed.types import LINE_SIZE, Outcome

ENGINES = list(BUILTIN_ENGINES)
ENCRYPTING = ["tme", "mktme", "mktme-i", "sev", "sev-snp"]
HV = {"observer": "hypervisor", "secret_bytes": 16}
BUS = {"observer": "bus", "secret_bytes": 16}


def metrics(row: ResultRow) -> CiphertextSideChannelMetrics:
    return row.metrics_as(CiphertextSideChannelMetrics)


@pytest.mark.parametrize("engine", ["sev", "sev-snp"])
def test_the_hypervisor_recovers_every_bit_without_ciphertext_hiding(engine: str) -> None:
    row = run("ciphertext-side-channel", engine, params=HV)
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    assert row.evidence.secret is not None and len(row.evidence.secret) == 16
    assert row.evidence.recovered == row.evidence.secret
    m = metrics(row)
    assert (m.bits_total, m.bits_recovered, m.ambiguous_steps) == (128, 128, 0)
    assert m.distinct_ciphertexts == 2 == m.dictionary_entries
    assert m.reads == 16 + 128
    # What it read was ciphertext: two 16-byte values, neither the flag's plaintext block.
    captured = row.evidence.captured or b""
    blocks = {captured[i : i + BLOCK] for i in range(0, len(captured), BLOCK)}
    assert len(blocks) == 2
    assert not blocks & {f.to_bytes(8, "little") + NEIGHBOUR for f in (0, 1)}
    assert row.control is not None and row.control.profile == "sev"


def test_ciphertext_hiding_leaves_the_hypervisor_coin_flips() -> None:
    row = run("ciphertext-side-channel", "sev-snp", params=HV,
              platform={"ciphertext_hiding": True})
    assert row.outcome is Outcome.MITIGATED, row.reason
    assert set(row.evidence.captured or b"x") == {0xFF}
    m = metrics(row)
    assert m.distinct_ciphertexts == 1 and m.dictionary_entries == 0
    assert m.ambiguous_steps == m.bits_total == 128
    assert m.chance_probability > 1e-6  # no better than guessing
    assert row.evidence.recovered != row.evidence.secret
    assert row.control is not None and row.control.outcome is Outcome.SUCCEEDED


def test_ciphertext_hiding_is_an_snp_feature_plain_sev_does_not_have() -> None:
    row = run("ciphertext-side-channel", "sev", params=HV, platform={"ciphertext_hiding": True})
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    assert metrics(row).distinct_ciphertexts == 2


@pytest.mark.parametrize("engine", ENCRYPTING)
def test_a_bus_interposer_is_not_stopped_by_ciphertext_hiding(engine: str) -> None:
    row = run("ciphertext-side-channel", engine, params=BUS,
              platform={"ciphertext_hiding": True})
    assert row.outcome is Outcome.SUCCEEDED, row.reason
    assert row.evidence.recovered == row.evidence.secret
    m = metrics(row)
    assert (m.observer, m.distinct_ciphertexts, m.ambiguous_steps) == ("bus", 2, 0)
    assert set(row.evidence.captured or b"\xff") != {0xFF}  # the ciphertext, not hidden
    assert row.control is not None and row.control.profile == "tme"


@pytest.mark.parametrize(("params", "engines"), [
    (HV, ["none", "tme", "mktme"]),
    (BUS, ["none"]),
])
def test_where_the_threat_does_not_exist_it_is_not_applicable(
        params: dict[str, object], engines: list[str]) -> None:
    for engine in engines:
        row = run("ciphertext-side-channel", engine, params=params)
        assert row.outcome is Outcome.NOT_APPLICABLE, (engine, row.reason)
        assert row.metrics is None


def test_the_scenario_declares_its_observers_capability() -> None:
    from _support.scenarios import scenario

    for params, capability, control in ((HV, "malicious_hypervisor", "sev"),
                                         (BUS, "bus_interposer", "tme")):
        attack = scenario("ciphertext-side-channel", params=params).attack_object()
        assert isinstance(attack, CiphertextSideChannel)
        assert attack.capabilities == (capability,)
        assert attack.control_engine == control
        # The class keeps both capabilities: binding sets the observer's on the object alone,
        # which pickles with them (the runner sends jobs to worker processes).
        assert CiphertextSideChannel.capabilities == ("malicious_hypervisor", "bus_interposer")
        assert CiphertextSideChannel.control_engine == "sev"
        copy = pickle.loads(pickle.dumps(attack))
        assert (copy.capabilities, copy.control_engine) == ((capability,), control)


def test_the_observer_needs_no_context_per_run_and_the_run_no_unused_bytes() -> None:
    """The observer keeps the machine and the log it was made with; the run carries the bits
    the judge compares, nothing the code never reads."""
    assert list(inspect.signature(_Observer.run).parameters) == ["self", "flags"]
    assert [f.name for f in fields(CiphertextRun)] == ["truth", "recovered", "secret"]
    assert not hasattr(CiphertextRun, "recovered_bytes")


# -- fidelity: the ciphertexts and the ladder, computed independently --------------------------
def _aes_ecb(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _xex_block(key: bytes, pa: int, plain: bytes) -> bytes:
    """SEV's model (testbed.crypto.xex): T = AES_K(pa), C = AES_K(P ^ T) ^ T."""
    t = _aes_ecb(key, pa.to_bytes(16, "little"))
    mixed = bytes(a ^ b for a, b in zip(plain, t, strict=True))
    return bytes(a ^ b for a, b in zip(_aes_ecb(key, mixed), t, strict=True))


def _xts_line(key: bytes, pa: int, line: bytes) -> bytes:
    """IEEE 1619 XTS over one 64-byte data unit, tweak the line's address (TME's model)."""
    enc = Cipher(algorithms.AES(key), modes.XTS(pa.to_bytes(16, "little"))).encryptor()
    return enc.update(line) + enc.finalize()


def _state_plain(flag: int) -> bytes:
    return flag.to_bytes(8, "little") + NEIGHBOUR + bytes(range(LINE_SIZE - BLOCK))


def _observe(engine: str, params: dict[str, object]) -> tuple[AttackContext, int]:
    m = machine(engine)
    ctx = AttackContext(m, np.random.default_rng(5), reboot=lambda: machine(engine))
    observe_ladder(ctx, CiphertextSideChannelParams.model_validate(params))
    state = ctx.log.steps[1].address
    assert state is not None
    return ctx, state


@pytest.mark.parametrize("observer", ["hypervisor", "bus"])
def test_sev_ciphertexts_are_xex_of_the_flag_block_under_the_guest_key(observer: str) -> None:
    ctx, state = _observe("sev", {"observer": observer, "secret_bytes": 8})
    (key,) = keys_drawn(16)  # the first guest's ASID key
    m = ctx.log.metrics
    assert isinstance(m, CiphertextSideChannelMetrics)
    captured = ctx.log.captured or b""
    assert len(captured) == BLOCK * len(m.flag_trace) == BLOCK * TRACE_LIMIT
    expected = b"".join(_xex_block(key, state, _state_plain(f)[:BLOCK]) for f in m.flag_trace)
    assert captured == expected


def test_tme_ciphertexts_on_the_bus_are_xts_of_the_state_line() -> None:
    ctx, state = _observe("tme", {"observer": "bus", "secret_bytes": 8})
    (key,) = keys_drawn(32)  # the TME key, made at boot
    m = ctx.log.metrics
    assert isinstance(m, CiphertextSideChannelMetrics)
    expected = b"".join(_xts_line(key, state, _state_plain(f))[:BLOCK] for f in m.flag_trace)
    assert ctx.log.captured == expected
    # The rest of the line is the same for both flags: XTS encrypts each block on its own.
    lines = {_xts_line(key, state, _state_plain(f))[BLOCK:] for f in (0, 1)}
    assert len(lines) == 1


def _montgomery_ladder(g: int, bits: list[int], p: int) -> tuple[int, list[int]]:
    """g^k mod p by the cswap Montgomery ladder, and the swap flag of each iteration."""
    r0, r1, previous, flags = 1, g, 0, []
    for bit in bits:
        swap = bit ^ previous
        flags.append(swap)
        if swap:
            r0, r1 = r1, r0
        r0, r1 = r0 * r0 % p, r0 * r1 % p
        previous = bit
    if previous:
        r0, r1 = r1, r0
    return r0, flags


@pytest.mark.parametrize("seed", range(5))
def test_the_flags_are_those_of_a_real_montgomery_ladder(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, 64).astype(np.uint8)
    p = (1 << 127) - 1
    result, flags = _montgomery_ladder(3, bits.tolist(), p)
    k = int("".join(map(str, bits.tolist())), 2)
    assert result == pow(3, k, p)
    assert ladder_flags(bits).tolist() == flags
    # And undoing the xor chain, as the observer does, gives the bits back.
    assert (np.bitwise_xor.accumulate(ladder_flags(bits)) & 1).tolist() == bits.tolist()


# -- parameters, plots, shipped scenarios -------------------------------------------------------
@pytest.mark.parametrize(("params", "word"), [
    ({"secret_bytes": 129}, "at most 128 bytes"),
    ({"calibration_bits": 1}, "greater than or equal to 2"),
    ({"calibration_bits": 257}, "less than or equal to 256"),
    ({"observer": "dram"}, "'hypervisor' or 'bus'"),
    ({"observer": "bus", "extra": 1}, "Extra inputs"),
])
def test_params_are_bounded(params: dict[str, object], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        CiphertextSideChannelParams.model_validate(params)


def test_a_scenario_with_a_bad_observer_is_one_line(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.yaml"
    path.write_text("id: bad\ntitle: Bad\nattack: ciphertext-side-channel\n"
                    "params: {observer: dram}\nteaching: {summary: x}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    line = info.value.one_line()
    assert "\n" not in line and "params.observer" in line and ":4:" in line


def test_the_work_estimate_counts_every_observed_iteration() -> None:
    from testbed.attacks.cost import MachineShape

    small = CiphertextSideChannelParams.model_validate({"secret_bytes": 1})
    large = CiphertextSideChannelParams.model_validate({"secret_bytes": 128,
                                                        "calibration_bits": 256})
    shape = MachineShape()
    assert large.work(shape).units > small.work(shape).units
    assert "1,280 ladder iterations" in large.work(shape).largest()


def test_the_trace_plot_follows_the_flags() -> None:
    row = run("ciphertext-side-channel", "sev", params=HV)
    m = metrics(row)
    (plot,) = m.plots()
    assert isinstance(plot, LinePlot)
    flags, seen = plot.lines
    assert list(flags.ys) == [float(f) for f in m.flag_trace]
    # Two ciphertexts numbered by first appearance: the numbering is the flag, or its negation.
    first = m.flag_trace[0]
    assert list(seen.ys) == [float(f ^ first) for f in m.flag_trace]


@pytest.mark.parametrize("name", ["31-ciphertext-side-channel.yaml",
                                  "32-ciphertext-side-channel-hiding.yaml",
                                  "33-ciphertext-side-channel-bus.yaml"])
def test_shipped_scenarios_match_their_expectations(name: str) -> None:
    scenario, source = load_scenario(SCENARIOS / name)
    assert scenario.attack == "ciphertext-side-channel"
    assert sorted(scenario.expect) == sorted(ENGINES)
    for engine in scenario.engines:
        row = run_job(Job(scenario, source, engine, seed=3))
        assert row.outcome is scenario.expect[engine], (engine, row.reason)


def test_a_counter_beside_the_flag_leaves_nothing_to_repeat_so_the_attack_does_not_work() -> None:
    row = run("ciphertext-side-channel", "sev", params={**HV, "beside_flag": "counter"})
    assert row.outcome is Outcome.INEFFECTIVE, row.reason
    m = metrics(row)
    assert m.distinct_ciphertexts == m.bits_total == m.ambiguous_steps == 128
    assert m.chance_probability > 1e-6


def test_the_dictionary_decodes_only_what_it_can_tell() -> None:
    from testbed.attacks.ciphertext_side_channel import _decode

    a, b, c, hidden = b"A" * 16, b"B" * 16, b"C" * 16, b"\xff" * 16
    both = {a: {0}, b: {1}}
    assert (_decode(a, both), _decode(b, both), _decode(c, both)) == (0, 1, None)
    # One value seen in the known phase: a new ciphertext can only be the other one.
    assert (_decode(a, {a: {0}}), _decode(c, {a: {0}}), _decode(c, {b: {1}})) == (0, 1, 0)
    # What ciphertext hiding gives: one value for both flags tells nothing, new or not.
    assert _decode(hidden, {hidden: {0, 1}}) is None
    assert _decode(c, {hidden: {0, 1}}) is None


def test_the_bus_scenario_says_why_plaintext_dram_is_not_applicable() -> None:
    scenario, _ = load_scenario(SCENARIOS / "33-ciphertext-side-channel-bus.yaml")
    assert scenario.expect["none"] is Outcome.NOT_APPLICABLE
    assert scenario.teaching is not None
    text = " ".join(scenario.teaching.look_for.split())
    assert "Under none the outcome is not_applicable because DRAM holds plaintext" in text
