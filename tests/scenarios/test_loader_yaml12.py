"""Plain scalars are read by YAML 1.2's core schema, never YAML 1.1's surprises.

``yes`` is text, not true; ``1:30`` is text, not 90; ``2024-01-01`` is text, not a date; ``010``
(octal 8 in YAML 1.1, ten in YAML 1.2) is refused; merge keys are refused by name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from testbed.errors import ScenarioError
from testbed.scenarios import load_scenario
from testbed.scenarios.loader import _compose, _Converter

SKELETON = "id: x\ntitle: t\nattack: attestation\nteaching: {summary: s}\n"


def read(text: str) -> Any:
    """The value of ``v`` in a one-key document, as the loader reads it."""
    node = _compose(f"v: {text}\n")
    assert node is not None
    return _Converter("<test>").convert(node)["v"]


def refusal(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        read(text)
    return info.value.message


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    line = info.value.one_line()
    assert line.startswith(f"{path}:")
    return line.removeprefix(str(path))


@pytest.mark.parametrize(("text", "value"), [
    # YAML 1.1 booleans are text
    *[(word, word) for word in ("yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF")],
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("FALSE", False),
    # sexagesimal numbers, underscores, binary: text
    ("1:30", "1:30"), ("190:20:30.15", "190:20:30.15"), ("1_000", "1_000"), ("0b101", "0b101"),
    ("-0x1F", "-0x1F"), ("0X1F", "0X1F"),
    # timestamps and the value key: text
    ("2024-01-01", "2024-01-01"), ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
    ("=", "="),
    # integers: decimal, 0x hex, 0o octal
    ("0", 0), ("-0", 0), ("+7", 7), ("-12", -12), ("0x1F", 31), ("0xff", 255), ("0o17", 15),
    ("0o8", "0o8"), ("0x", "0x"),
    # floats, with or without a dot
    ("1.5", 1.5), ("1e3", 1000.0), ("-2.5E-3", -0.0025), (".5", 0.5), ("1.", 1.0),
    ("010.5", 10.5), (".inf", math.inf), ("-.Inf", -math.inf), ("+.INF", math.inf),
    ("1.0e+400", math.inf),
    # null
    ("", None), ("~", None), ("null", None), ("Null", None), ("NULL", None), ("nULL", "nULL"),
    # quoted and explicitly tagged scalars are what they say
    ("'010'", "010"), ('"yes"', "yes"), ("!!str 0x1F", "0x1F"), ("!!int 0x1F", 31),
    ("!!float 1", 1.0), ("!!bool true", True), ("!!null ''", None), ("<<", "<<"),
])
def test_plain_scalars_follow_yaml_1_2(text: str, value: Any) -> None:
    got = read(text)
    assert got == value and type(got) is type(value)


def test_nan() -> None:
    assert all(math.isnan(read(text)) for text in (".nan", ".NaN", ".NAN"))
    assert read(".Nan") == ".Nan"


@pytest.mark.parametrize(("text", "hint"), [
    ("010", "write 10 for decimal, 0o10 for octal, or quote it for text"),
    ("-010", "write -10 for decimal, or quote it for text"),
    ("+0017", "write 17 for decimal, or quote it for text"),
    ("08", "write 8 for decimal, or quote it for text"),
    ("00", "write 0 for decimal, 0o0 for octal, or quote it for text"),
    ("!!int 010", "write 10 for decimal, 0o10 for octal"),
])
def test_a_leading_zero_is_refused_as_ambiguous(text: str, hint: str) -> None:
    message = refusal(text)
    assert "is ambiguous (YAML 1.1 reads it as octal)" in message and hint in message, message


@pytest.mark.parametrize(("text", "kind"), [
    ("!!int 1:30", "integer"), ("!!int 1.5", "integer"), ("!!float yes", "number"),
    ("!!bool yes", "boolean (true or false)"), ("!!null x", "null"),
])
def test_an_explicit_tag_needs_a_value_of_its_kind(text: str, kind: str) -> None:
    value = text.split()[1]
    assert refusal(text) == f"bad value: '{value}' is not a YAML {kind}"


def test_a_decimal_integer_too_long_to_read_is_refused() -> None:
    assert refusal("1" * 5000) == "integer of 5000 digits is too long to read"


@pytest.mark.parametrize(("text", "expected"), [
    ("platform: {ciphertext_hiding: yes}\n", ":5: platform.ciphertext_hiding: expected true or "
     "false (got 'yes'); YAML 1.1 words like yes/no/on/off are not booleans here"),
    ("platform: {ciphertext_hiding: Off}\n", "expected true or false (got 'Off'); YAML 1.1"),
    ("platform: {ciphertext_hiding: maybe}\n", "ciphertext_hiding: expected true or false "
     "(got 'maybe')"),
    ("platform: {ciphertext_hiding: 1}\n", "ciphertext_hiding: expected true or false (got 1)"),
    ("platform: {memory_pages: 1:30}\n", ":5: platform.memory_pages: Input should be a valid "
     "integer (got '1:30'); YAML 1.1 forms such as 1:30, 1_000 or 0b101 are text here"),
    ("platform: {memory_pages: 1_024}\n", "(got '1_024'); YAML 1.1 forms"),
    ("platform: {memory_pages: 0b10000}\n", "(got '0b10000'); YAML 1.1 forms"),
    ("platform: {memory_pages: 010}\n", ":5: platform.memory_pages: leading zero in '010' is "
     "ambiguous"),
    ("platform: {memory_pages: '64'}\n", "Input should be a valid integer (got '64')"),
    ("platform: {memory_pages: 2024-01-01}\n", "valid integer (got '2024-01-01')"),
    ("platform: {memory_pages: 1e3}\n", "Input should be a valid integer (got 1000.0)"),
    ("platform: {memory_pages: .inf}\n", "Input should be a valid integer (got inf)"),
    ("<<: {platform: {memory_pages: 64}}\n", ":5: (file): merge keys (<<) are not supported; "
     "write the keys out"),
    ("platform:\n  <<: {memory_pages: 64}\n", ":6: platform: merge keys (<<) are not supported"),
    ("base: &b {memory_pages: 64}\nplatform:\n  <<: *b\n", ":7: platform: merge keys (<<)"),
])
def test_what_a_scenario_author_sees(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, SKELETON + text)
    assert expected in message, message


@pytest.mark.parametrize(("field", "text", "value"), [
    ("title", "yes", "yes"), ("title", "2024-01-01", "2024-01-01"), ("title", "1:30", "1:30"),
    ("title", "'010'", "010"), ("title", "!!str 010", "010"),
])
def test_text_fields_keep_what_yaml_1_1_would_have_changed(tmp_path: Path, field: str,
                                                           text: str, value: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SKELETON.replace("title: t", f"{field}: {text}"))
    scenario, _ = load_scenario(path)
    assert getattr(scenario, field) == value


def test_hex_and_octal_integers_load(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SKELETON + "platform: {memory_pages: 0x40, asids: 0o17}\n")
    scenario, _ = load_scenario(path)
    assert (scenario.platform.memory_pages, scenario.platform.asids) == (64, 15)


def test_a_quoted_merge_key_is_an_ordinary_key(tmp_path: Path) -> None:
    assert ":5: <<: unknown key; allowed: attack," in error_of(tmp_path, SKELETON + "'<<': 1\n")
