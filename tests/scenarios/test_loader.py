"""Scenario files: malformed input gets one ``file:line: field: message`` error, never a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support.paths import SCENARIOS
from _support.scenarios import scenario
from pydantic import ValidationError

from testbed.errors import ScenarioError
from testbed.scenarios import load_scenario, load_scenarios

GOOD = """\
id: demo
title: Demo
attack: attestation
params:
  tamper: image
teaching:
  summary: text
"""


def write(tmp_path: Path, text: str | bytes, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value.one_line()


def test_good_file_loads(tmp_path: Path) -> None:
    scenario, source = load_scenario(write(tmp_path, GOOD))
    assert scenario.id == "demo"
    assert scenario.engines == ["none", "tme", "mktme", "mktme-i", "sev", "sev-snp"]
    assert source.endswith("s.yaml")


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("  tamper: image", "  tamper: image\n  secrett: x"),
     ":6: params.secrett: unknown key; allowed: backdoor, backdoor_rip, cmdline, evidence, "
     "image_bytes, policy, require_platform_info, secret, secret_bytes, tamper"),
    (GOOD + "colour: red\n", ":8: colour: unknown key; allowed: attack, engines, expect,"),
    (GOOD.replace("title: Demo\n", ""), ": title: required key is missing"),
    (GOOD + "platform:\n  memory_pages: '64'\n", ":9: platform.memory_pages: Input should be a "
     "valid integer"),
    (GOOD + "platform:\n  memory_pages: 1099511627776\n", ":9: platform.memory_pages: Input "
     "should be less than or equal to 65536"),
    (GOOD + "platform:\n  keyid_bits: 16\n", ":9: platform.keyid_bits: Input should be less "
     "than or equal to 15"),
    (GOOD + "expect:\n  tme: won\n", ":9: expect.tme: Input should be 'succeeded'"),
    (GOOD + "engines: [tme, tme]\n", ":8: engines: engines must not repeat"),
    (GOOD + "engines: [tme]\nexpect: {mktme: mitigated}\n",
     ":9: expect.mktme: engine 'mktme' is not in this scenario's engines"),
    (GOOD.replace("attack: attestation", "attack: rowhammer"),
         ":3: attack: unknown attack 'rowhammer'; known: key-wearout"),
    (GOOD.replace("  tamper: image", "  tamper: 5"), ":5: params.tamper: Input should be"),
    (GOOD.replace("attack: attestation", "progam: []"),
     ": attack: required: name the attack (attack: KIND, with its params) or write it out "
     "(threat, program, goal)"),
    (GOOD + "progam: []\n",
     ":8: progam: unknown key; allowed: attack, engines, expect, goal, id, mitigations, params, "
     "platform, program, teaching, threat, title, trials"),
    (GOOD + "id: again\n", ":8: id: duplicate key"),
    (GOOD + "x: [1, 2\n", "flow sequence started on line 8"),
    ("- a\n- b\n", ":1: (file): a scenario file must be a YAML mapping"),
    (GOOD + "x: !!python/object/apply:os.system ['true']\n", ":8: x: YAML tag"),
    (GOOD.replace("id: demo", "id: 'Bad Id!'"), ":1: id: String should match pattern"),
])
def test_malformed_files_name_file_line_and_field(tmp_path: Path, text: str,
                                                  expected: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(str(path))
    assert expected in message, message
    assert "\n" not in message and "Traceback" not in message


def test_empty_binary_and_non_utf8_files(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "")).endswith("(file): empty file: a scenario is a YAML "
                                                  "mapping")
    assert "binary file" in error_of(write(tmp_path, b"\x7fELF\0\0\0", "b.yaml"))
    assert ":2: (file): not UTF-8 text" in error_of(write(tmp_path, b"id: x\n\xff\xfe", "c.yaml"))


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    message = error_of(write(tmp_path, "\n".join(lines) + "\n"))
    assert "document too large: more than 20000 values" in message


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, GOOD + "x: " + "[" * 40 + "]" * 40 + "\n"))
    assert "nesting deeper than 32 levels" in message


def test_oversize_file_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, GOOD + "# " + "x" * 300_000 + "\n"))
    assert "the limit is 262144" in message


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, "id: [\n", "b.yaml")
    write(tmp_path, GOOD.replace("id: demo", "id: other"), "c.yaml")
    write(tmp_path, GOOD, "d.yaml")  # same id as a.yaml
    loaded, errors = load_scenarios([tmp_path])
    assert [s.id for s, _ in loaded] == ["demo", "other"]
    assert len(errors) == 2
    assert "b.yaml:" in errors[0].one_line()
    assert "duplicate id 'demo'" in errors[1].one_line()


def test_shipped_scenarios_all_load() -> None:
    root = SCENARIOS
    loaded, errors = load_scenarios([root])
    assert errors == []
    assert len(loaded) == len(list(root.glob("*.yaml"))) >= 21


PROGRAM = """\
id: demo
title: Demo
threat: [kernel_read_bug]
program:
  - {op: create_domain, by: victim, args: {kind: guest}, as: victim}
  - {op: alloc_pages, by: victim, args: {domain: $victim}, as: page}
  - {op: store_secret, by: victim, args: {address: $page, text: "hunter2 and more"}, as: secret}
  - {op: read_direct_map, by: attacker, args: {address: $secret}, as: leaked}
goal: {recovered: leaked}
teaching:
  summary: text
"""
GUESS = """\
id: demo
title: Demo
threat: [bus_interposer, chosen_plaintext]
program:
  - {op: create_domain, by: attacker, args: {kind: guest}, as: me}
  - {op: alloc_pages, by: attacker, args: {domain: $me}, as: frame}
  - {op: constant, by: attacker, args: {hex: "%s"}, as: line}
  - {op: guess, by: attacker, args: {address: $frame, target: $line, digits: 8}, as: found}
  - {op: guess, by: attacker, args: {address: $frame, target: $line, digits: 1}, as: more}
goal: {page_holds: line, at: $frame}
teaching: {summary: text}
""" % ("00" * 64)


@pytest.mark.parametrize(("text", "expected"), [
    (PROGRAM.replace("hunter2 and more", "é" * 600),
     ":7: program[2].args: the secret is 1200 bytes in UTF-8; the limit is 1024"),
    (PROGRAM.replace('text: "hunter2 and more"', "offset: 4000, size: 200"),
     ":7: program[2].args.length: 200 bytes at offset 4000 of the page pass its end"),
    (PROGRAM.replace("{domain: $victim}", "{domain: $victim, count: 40}")
     .replace("teaching:", "platform: {memory_pages: 32}\nteaching:"),
     ":10: platform.memory_pages: the attack needs 40 free frames; 32 frames leave 31"),
    (GUESS, ":9: program[4].args.digits: 10 candidates bring the program's guesses to "
     "100000010; the limit is 100000000"),
    (GOOD.replace("attack: attestation", "attack: key-wearout")
     .replace("  tamper: image", "  max_pairs: 4194304\n  trials: 64"), "the limit is 4194304"),
])
def test_cross_field_limits_are_checked_at_load_time(tmp_path: Path, text: str,
                                                     expected: str) -> None:
    assert expected in error_of(write(tmp_path, text))


def test_deep_flow_nesting_is_a_clean_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert "nesting deeper than 32 levels" in message


def test_special_files_are_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert error_of(fifo).endswith("(file): not a regular file")
    with pytest.raises(ScenarioError, match="not a regular file"):
        load_scenario("/dev/zero")


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", ".hidden", "UPPER", "x" * 65, "a.b"])
def test_scenario_ids_cannot_name_paths(bad_id: str) -> None:
    with pytest.raises(ValidationError) as info:
        scenario("attestation", id=bad_id)
    assert [e["loc"] for e in info.value.errors()] == [("id",)]


def test_every_error_of_a_file_is_reported_in_the_files_order(tmp_path: Path) -> None:
    text = GOOD.replace("  tamper: image", "  tamper: nothing") + (
        "platform:\n  memory_pages: '64'\nexpect:\n  tme: won\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    found = [(e.line, e.field) for e in (info.value, *info.value.more)]
    assert found == [(5, "params.tamper"), (9, "platform.memory_pages"), (11, "expect.tme")]
    loaded, errors = load_scenarios([tmp_path])
    assert loaded == [] and [(e.line, e.field) for e in errors] == found


def test_an_unknown_attack_is_one_error_not_two(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, GOOD.replace("attack: attestation", "attack: rowhammer")))
    assert info.value.field == "attack" and info.value.more == ()
