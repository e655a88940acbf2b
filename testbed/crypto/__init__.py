"""Memory-encryption ciphers. The only package that imports ``cryptography``.

Every line cipher encrypts batches of 64-byte lines at physical addresses in a few OpenSSL calls.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .narrow import NARROW_KEY_SIZE, NarrowLineCipher
from .xex import XEX_KEY_SIZE, XexLineCipher
from .xts import XTS_KEY_SIZE, XtsLineCipher

__all__ = [
    "NARROW_KEY_SIZE",
    "XEX_KEY_SIZE",
    "XTS_KEY_SIZE",
    "LineCipher",
    "NarrowLineCipher",
    "XexLineCipher",
    "XtsLineCipher",
]


class LineCipher(Protocol):
    """What an engine needs from a cipher: batched line encryption keyed by address."""

    label: str
    reduced_width: bool
    blocks_per_line: int

    def encrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]: ...

    def decrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]: ...
