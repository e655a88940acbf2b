"""The line ciphers the fast-path tests run, under one fixed key."""

from __future__ import annotations

from collections.abc import Callable

from testbed.crypto import NarrowLineCipher, XexLineCipher, XtsLineCipher

KEY = bytes(range(32))
LINE = 64
AnyCipher = XtsLineCipher | XexLineCipher | NarrowLineCipher
CIPHERS: dict[str, Callable[[], AnyCipher]] = {
    "xts": lambda: XtsLineCipher(KEY),
    "xex": lambda: XexLineCipher(KEY[:16]),
    "narrow": lambda: NarrowLineCipher(KEY, 20),
}
"""A fresh cipher of each kind (the narrow one 20 bits wide: its words stay below 2**20)."""
