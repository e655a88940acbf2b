"""Text read from untrusted files, made safe for one line of a terminal.

A scenario file chooses its own key names and values, and a folder of them chooses its file
names. Printed raw, such text could start a second ``error:`` line, move the cursor, recolour
the terminal (ESC sequences) or reorder what is shown (bidirectional overrides). :func:`escape`
writes every such character as a Python-style escape (``\\n``, ``\\x1b``, ``\\u202e``);
:func:`excerpt` also shortens a value to a few dozen characters. Backslashes are left as they
are: the result is for reading, not for parsing back.
"""

from __future__ import annotations

import unicodedata

__all__ = ["ELLIPSIS", "EXCERPT_CHARS", "escape", "excerpt", "plural"]

ELLIPSIS = "…"
"""Marks text that was cut short."""

EXCERPT_CHARS = 60
"""How much of a value an error message shows."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = {
    "Cc",  # C0 and C1 controls, DEL
    "Cf",  # format characters: bidirectional controls, zero-width characters, the BOM
    "Cs",  # lone surrogates (file names that are not UTF-8)
    "Zl",  # U+2028 LINE SEPARATOR
    "Zp",  # U+2029 PARAGRAPH SEPARATOR
}
_INT_BITS = 200
"""Integers longer than this are described, not written out (about 60 digits)."""


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if unicodedata.category(char) not in _UNSAFE:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, limit: int | None = None) -> str:
    """``text`` with control, format and line-separator characters written as escapes.

    Args:
        text: any text, such as a file name or a key read from a file.
        limit: at most this many characters out (an escape is never cut in two); text that
            does not fit ends in :data:`ELLIPSIS`. ``None``: no limit.

    Returns:
        One line of printable text: no character of Unicode category Cc, Cf, Cs, Zl or Zp.
    """
    pieces = [_escaped(c) for c in text]
    if limit is None or sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    out: list[str] = []
    size = 0
    for piece in pieces:
        if size + len(piece) > limit - len(ELLIPSIS):
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + ELLIPSIS


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped rendering of a value read from a file, for an error message.

    Text is quoted (``'yes'``); other values are shown as Python writes them (``1.5``,
    ``None``), an integer too long to read as "an integer of N bits".

    Args:
        value: a value as the loader read it.
        limit: at most this many characters of the value itself.
    """
    if isinstance(value, str):
        return f"'{escape(value, limit)}'"
    if isinstance(value, int) and value.bit_length() > _INT_BITS:
        return f"{'a negative' if value < 0 else 'an'} integer of {value.bit_length()} bits"
    return escape(repr(value), limit)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 page``, ``3 pages``: ``count`` and ``word``, made plural (``many``, or ``word`` + s)
    unless the count is one."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"
