"""Errors about scenario files are safe to print: one line, escaped, short excerpts of values.

A file chooses its key names and values and a folder its file names; none of them can forge a
second ``error:`` line, send escape sequences to the terminal or reorder it with bidirectional
overrides.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from testbed.errors import ScenarioError
from testbed.scenarios import load_scenario, load_scenarios
from testbed.text import ELLIPSIS

SKELETON = "id: x\ntitle: t\nattack: attestation\nteaching: {summary: s}\n"
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def safe_line(error: ScenarioError) -> str:
    """``error``'s line, checked to be one line of printable text (and the same as str())."""
    line = error.one_line()
    assert line == str(error)
    assert len(line.splitlines()) == 1
    assert not [c for c in line if unicodedata.category(c) in UNSAFE], line
    return line


def error_of(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return safe_line(info.value)


def test_a_key_cannot_forge_a_second_error_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SKELETON + '"a\\n error: forged": 1\n')
    line = error_of(path)
    assert line.startswith(f"{path}:5: a\\n error: forged: unknown key; allowed: attack,")


@pytest.mark.parametrize("name", ["evil\x1b[2J\x1b[31m.yaml", "abc\u202egnp.yaml",
                                  "new\nline.yaml", "bad\udcff.yaml"])
def test_a_file_name_is_escaped(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("id: [\n")
    line = error_of(path)
    shown = str(tmp_path) + "/" + name.encode("unicode_escape", "backslashreplace").decode()
    assert line.startswith(f"{shown}:"), line
    assert "invalid YAML" in line


def test_file_names_from_a_folder_are_escaped(tmp_path: Path) -> None:
    (tmp_path / "x\n error: forged.yaml").write_text("id: [\n")
    (tmp_path / "\u202eevil.yaml").write_text("- a\n")
    _, errors = load_scenarios([tmp_path])
    lines = sorted(safe_line(e) for e in errors)
    assert lines[0].startswith(f"{tmp_path}/\\u202eevil.yaml:1: (file): a scenario file must be")
    assert lines[1].startswith(f"{tmp_path}/x\\n error: forged.yaml:")


@pytest.mark.parametrize(("value", "shown"), [
    ('"tme\\e[31m"', "unknown engine 'tme\\x1b[31m'"),
    ('"tme\\u202e"', "unknown engine 'tme\\u202e'"),
    ('"\\u2028error: x"', "unknown engine '\\u2028error: x'"),
])
def test_a_value_is_escaped(tmp_path: Path, value: str, shown: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SKELETON + f"engines: [{value}]\n")
    assert shown in error_of(path)


def test_a_long_value_is_shown_as_a_short_excerpt(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SKELETON + "engines: [" + "y" * 10_000 + "]\n")
    line = error_of(path)
    assert f"unknown engine '{'y' * 59}{ELLIPSIS}'; known: none, tme" in line
    assert "(got" not in line  # the message shows the value once
    assert "y" * 61 not in line


def test_a_long_key_is_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SKELETON + "platform:\n  " + "k\u202e" * 400 + ": 1\n")
    line = error_of(path)
    field = line.split(": ")[1]
    assert field == "platform." + "k\\u202e" * 8 + "k" + ELLIPSIS


def test_a_parser_message_quoting_the_file_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SKELETON + "x: *" + "a" * 50_000 + "\n")
    line = error_of(path)
    assert "found undefined alias 'aaaa" in line
    assert len(line) <= len(str(path)) + 20 + ScenarioError.MESSAGE_CHARS


def test_errors_built_by_hand_are_escaped() -> None:
    error = ScenarioError("a\x1b.yaml", 3, "b\nc", "bad\x07\u202e value\nerror: forged")
    assert safe_line(error) == "a\\x1b.yaml:3: b\\nc: bad\\x07\\u202e value error: forged"
    assert error.path == "a\x1b.yaml" and error.field == "b\nc"  # kept as given for programs


def test_pydantic_input_is_never_echoed_raw(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SKELETON.replace("title: t", 'title: ["\\e]0;pwned\\a", 2]'))
    line = error_of(path)
    assert "input_value" not in line and "pwned" not in line
    assert line.endswith("title: Input should be a valid string")
