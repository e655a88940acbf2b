"""Settings of ``platform:`` made for one experiment are refused, at load time, on the
attacks that make no use of them, instead of failing, or doing nothing, when they run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _support.programs import rollback
from _support.scenarios import scenario
from pydantic import ValidationError

from testbed import registry
from testbed.errors import ScenarioError
from testbed.scenarios import load_scenario
from testbed.scenarios.model import EXPERIMENT_SETTINGS

ATTACKS = [kind for kind in registry.attacks.builtin_names() if kind != "program"]
"""The built-in attacks with parameters of their own (a program's settings are its steps')."""


def error_of(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


@pytest.mark.parametrize(("attack", "setting", "value"), [
    (attack, setting, value)
    for setting, value in [("reduced_width_bits", 24), ("ciphertext_hiding", True),
                           ("secretmem_reserve_pages", 512)]
    for attack in ATTACKS
    if setting not in (registry.attacks.get(attack).platform_settings or ())
])
def test_a_setting_another_attack_uses_is_refused(tmp_path: Path, attack: str, setting: str,
                                                  value: object) -> None:
    shown = str(value).lower()
    path = tmp_path / "s.yaml"
    path.write_text(f"id: x\ntitle: x\nattack: {attack}\nplatform:\n  memory_pages: 1024\n"
                    f"  {setting}: {shown}\nteaching: {{summary: x}}\n")
    exc = error_of(path)
    assert (exc.line, exc.field) == (6, f"platform.{setting}")
    assert f"attack {attack!r} makes no use of this setting" in exc.message


@pytest.mark.parametrize(("attack", "params", "setting", "value", "users"), [
    ("key-wearout", {}, "reduced_width_bits", 24, "key-wearout, programs with a step wear_out"),
    ("program", rollback(), "ciphertext_hiding", True,
     "attestation, ciphertext-side-channel, programs with a step hv_read or attest"),
    ("ciphertext-side-channel", {}, "ciphertext_hiding", True,
     "attestation, ciphertext-side-channel, programs with a step hv_read or attest"),
    ("secretmem-exhaustion", {}, "secretmem_reserve_pages", 512,
     "secretmem-exhaustion, programs with a step exhaust_secretmem"),
])
def test_each_setting_is_accepted_where_it_is_used(attack: str, params: dict[str, Any],
                                                   setting: str, value: object,
                                                   users: str) -> None:
    s = scenario(attack, params=params, platform={"memory_pages": 1024, setting: value})
    assert getattr(s.platform, setting) == value
    with pytest.raises(ValidationError, match=f"it is for {users}\\)"):
        scenario("torn-live-patch", platform={"memory_pages": 1024, setting: value})


def test_every_builtin_attack_says_which_settings_it_uses() -> None:
    for kind in ATTACKS:
        used = registry.attacks.get(kind).platform_settings
        assert used is not None and set(used) <= set(EXPERIMENT_SETTINGS), kind


def test_defaults_of_the_settings_are_accepted_everywhere() -> None:
    for kind in ATTACKS:
        scenario(kind, platform={"reduced_width_bits": None, "ciphertext_hiding": False,
                                 "secretmem_reserve_pages": 0},
                 params={"trials": 1} if kind == "key-wearout" else {})


def test_a_program_takes_the_settings_its_steps_use() -> None:
    from _support import programs

    replay = programs.load("hypervisor-replay")  # hv_read: what ciphertext hiding changes
    s = scenario("program", params=replay, platform={"ciphertext_hiding": True})
    assert s.platform.ciphertext_hiding
    with pytest.raises(ValidationError, match="no step of this program makes use of this "
                       "setting .it is for attestation, ciphertext-side-channel, programs "
                       "with a step hv_read"):
        scenario("program", params=programs.load("kernel-map-leak"),
                 platform={"ciphertext_hiding": True})
