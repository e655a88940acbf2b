"""Escaping text from files for a terminal: every control, format and separator character."""

from __future__ import annotations

import unicodedata

import pytest

from testbed.text import ELLIPSIS, escape, excerpt

UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text, é and 漢字", "plain text, é and 漢字"),
    ("a\nerror: forged", "a\\nerror: forged"),
    ("\r\t", "\\r\\t"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),  # NUL, DEL, NEL, CSI (C1)
    ("abc\u202edef", "abc\\u202edef"),  # RIGHT-TO-LEFT OVERRIDE
    ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # isolates
    ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),  # LRM, RLM, ARABIC LETTER MARK
    ("\u200b\ufeff\u00ad", "\\u200b\\ufeff\\xad"),  # zero width space, BOM, soft hyphen
    ("\u2028\u2029", "\\u2028\\u2029"),  # line and paragraph separators
    ("\U000e0001", "\\U000e0001"),  # LANGUAGE TAG (Cf, outside the BMP)
    ("bad\udcffname", "bad\\udcffname"),  # a file name that is not UTF-8 (surrogateescape)
    ("back\\slash", "back\\slash"),  # backslashes are left as they are
])
def test_escape(raw: str, shown: str) -> None:
    assert escape(raw) == shown


def test_no_unsafe_character_survives() -> None:
    every = "".join(chr(c) for c in range(0x110000))
    out = escape(every)
    assert {unicodedata.category(c) for c in out} & UNSAFE == set()
    assert escape(out) == out  # escaping twice changes nothing


@pytest.mark.parametrize("limit", [1, 5, 10, 60])
def test_limit_never_cuts_an_escape(limit: int) -> None:
    raw = "ab\x1bcd\u202e" * 50
    out = escape(raw, limit)
    assert len(out) <= limit and out.endswith(ELLIPSIS)
    body = out.removesuffix(ELLIPSIS)
    assert escape(raw).startswith(body)
    assert not body.endswith(("\\", "\\x", "\\x1", "\\u", "\\u2", "\\u20", "\\u202"))


def test_short_text_is_not_cut() -> None:
    assert escape("x" * 60, 60) == "x" * 60
    assert escape("x" * 61, 60) == "x" * 59 + ELLIPSIS


@pytest.mark.parametrize(("value", "shown"), [
    ("yes", "'yes'"),
    ("a\nb", "'a\\nb'"),
    ("y" * 100, "'" + "y" * 59 + ELLIPSIS + "'"),
    (1.5, "1.5"),
    (float("-inf"), "-inf"),
    (None, "None"),
    (True, "True"),
    (2**64, "18446744073709551616"),
])
def test_excerpt(value: object, shown: str) -> None:
    assert excerpt(value) == shown


def test_excerpt_of_an_integer_too_long_to_write() -> None:
    # Python refuses to write an integer of more than 4300 digits in decimal
    assert excerpt(16**5000) == "an integer of 20001 bits"
    assert excerpt(-(16**5000)) == "a negative integer of 20001 bits"
