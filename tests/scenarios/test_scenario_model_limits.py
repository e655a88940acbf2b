"""Accepted means it finishes: the loader refuses a job whose estimated work is over the limit,
naming the estimate, the limit and what to lower, and a platform setting made for another
attack's experiment."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _support.paths import SCENARIOS
from _support.scenarios import scenario
from pydantic import Field, ValidationError

from testbed import registry
from testbed.attacks import Attack, AttackContext, AttackParams, BaseMetrics, Verdict
from testbed.attacks.cost import JOB_LIMIT_UNITS, MachineShape, Work
from testbed.errors import ScenarioError
from testbed.scenarios import Job, load_scenario, run_job
from testbed.scenarios.model import WORK_LIMIT_CONTEXT, Scenario
from testbed.types import Outcome

WEAR_OUT_27_MINUTES = """\
id: wearout-every-block
title: Key wear-out with the key rotated after every block
attack: key-wearout
engines: [mktme]
platform:
  reduced_width_bits: 16
mitigations:
  key_rotation_blocks: 1
params:
  max_pairs: 4194304
  trials: 1
  packet_lines: 1
teaching:
  summary: A run the issue measured at about 27 minutes.
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


def test_the_27_minute_wear_out_is_refused_naming_the_limit(tmp_path: Path) -> None:
    exc = error_of(write(tmp_path, WEAR_OUT_27_MINUTES))
    assert (exc.line, exc.field) == (9, "params")
    assert "over the limit of 120,000,000 (2 minutes per scenario and engine" in exc.message
    assert "key rotations of 1 page(s)" in exc.message
    assert "raise mitigations.key_rotation_blocks" in exc.message
    assert "minutes on the reference machine" in exc.message


def test_the_same_wear_out_fits_with_fewer_pairs(tmp_path: Path) -> None:
    text = WEAR_OUT_27_MINUTES.replace("max_pairs: 4194304", "max_pairs: 16384")
    s, _ = load_scenario(write(tmp_path, text))
    units = s.job_units()
    assert units is not None and units <= JOB_LIMIT_UNITS


def test_trials_multiply_the_work_and_are_named_when_fewer_would_fit(tmp_path: Path) -> None:
    text = WEAR_OUT_27_MINUTES.replace("max_pairs: 4194304", "max_pairs: 65536")
    one, _ = load_scenario(write(tmp_path, text))
    units = one.job_units()
    assert units is not None
    trials = int(JOB_LIMIT_UNITS // units) + 1
    assert trials <= 32
    exc = error_of(write(tmp_path, text + f"trials: {trials}\n"))
    assert (exc.line, exc.field) == (15, "trials")
    assert f"{trials} trials of" in exc.message and "fewer trials" in exc.message
    ok, _ = load_scenario(write(tmp_path, text + f"trials: {trials - 1}\n"))
    assert ok.job_units() == pytest.approx(units * (trials - 1))


def test_the_control_counts_when_it_costs_more() -> None:
    # With a locked-memory limit the attacker takes one page; its control, without the limit,
    # takes the whole memory.
    fields: dict[str, Any] = {"platform": {"memory_pages": 65536},
                              "params": {"attacker_files": 64, "pages_per_file": 65536,
                                         "workload_pages": 0},
                              "mitigations": {"memlock_limit_pages": 1}}
    s = scenario("secretmem-exhaustion", **fields)
    own = s.params.work(s.machine_shape())
    bare = s.params.work(s.machine_shape(control=True))
    assert own is not None and bare is not None
    assert s.job_units() == pytest.approx(bare.units) and bare.units > 10 * own.units
    with pytest.raises(ValidationError, match=r"the control of a job \(no mitigations\)"):
        Scenario.model_validate(
            {"id": "x", "title": "x", "attack": "secretmem-exhaustion", "trials": 32,
             "teaching": {"summary": "x"}, **fields})


def test_a_smaller_limit_can_be_set_for_a_validation() -> None:
    doc = {"id": "x", "title": "x", "attack": "key-wearout", "params": {"max_pairs": 1 << 19},
           "teaching": {"summary": "x"}}
    assert Scenario.model_validate(doc).job_units() is not None
    with pytest.raises(ValidationError, match="over the limit of 1,000,000 .the limit set"):
        Scenario.model_validate(doc, context={WORK_LIMIT_CONTEXT: 1_000_000})


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_fit_well_within_the_limit(path: Path) -> None:
    s, _ = load_scenario(path)
    units = s.job_units()
    assert units is not None and units < JOB_LIMIT_UNITS / 20, units


# -- an attack that does not estimate its work ------------------------------------------------
class _SilentParams(AttackParams):
    """As a plugin's parameters: no estimate of the work."""

    rounds: int = Field(1, ge=1, le=1 << 40, description="how long it would take")


@dataclass(frozen=True)
class _SilentMetrics(BaseMetrics):
    rounds: int


class _Silent(Attack[_SilentParams]):
    kind = "silent-estimate"
    title = "An attack that does not say what it costs"
    capabilities = ("bus_interposer",)
    Params = _SilentParams
    Metrics = _SilentMetrics

    def run(self, ctx: AttackContext, params: _SilentParams) -> Verdict:
        ctx.log.metrics = _SilentMetrics(rounds=params.rounds)
        return Verdict(Outcome.MITIGATED, "did nothing")


@pytest.fixture
def silent() -> Iterator[None]:
    registry.attacks.add(_Silent)
    try:
        yield
    finally:
        registry.attacks.remove(_Silent.kind)


@pytest.mark.usefixtures("silent")
def test_an_attack_without_an_estimate_is_accepted_without_a_bound() -> None:
    assert _SilentParams().work(MachineShape()) is None
    s = scenario("silent-estimate", params={"rounds": 1 << 40}, trials=32,
                 platform={"reduced_width_bits": 16, "ciphertext_hiding": True,
                           "secretmem_reserve_pages": 512, "memory_pages": 1024})
    assert s.job_units() is None
    row = run_job(Job(s, "<test>", "tme", 1))
    assert row.outcome is Outcome.INEFFECTIVE and "did nothing" in row.reason, row.reason
    assert row.trials is not None and row.trials.trials == 32


def test_an_estimate_names_its_largest_part() -> None:
    work = Work((("a", 1.0), ("b", 3.0)), hint="lower b")
    assert (work.units, work.largest()) == (4.0, "b")
    assert Work(()).largest() == "nothing" and Work(()).units == 0
