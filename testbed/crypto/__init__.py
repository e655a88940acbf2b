"""Memory-encryption ciphers. The only package that imports ``cryptography``.

Every line cipher encrypts batches of 64-byte lines at physical addresses in a few OpenSSL calls.
The XTS mask passes between those calls run in NumPy, or compiled by llvmlite where it is
installed and works (:func:`mask_backend` says which; ``TESTBED_ACCEL=0`` chooses NumPy).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ._kernels import mask_backend
from ._lines import as_blocks
from .grid import BlockGrid
from .narrow import NARROW_KEY_SIZE, NarrowLineCipher
from .xex import XEX_KEY_SIZE, XexLineCipher
from .xts import XTS_KEY_SIZE, XtsLineCipher

__all__ = [
    "NARROW_KEY_SIZE",
    "XEX_KEY_SIZE",
    "XTS_KEY_SIZE",
    "BlockGrid",
    "LineCipher",
    "NarrowLineCipher",
    "XexLineCipher",
    "XtsLineCipher",
    "as_blocks",
    "mask_backend",
]


class LineCipher(Protocol):
    """What an engine needs from a cipher: batched line encryption keyed by address."""

    label: str
    reduced_width: bool
    blocks_per_line: int

    def encrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]: ...

    def decrypt(self, addrs: object, lines: object) -> NDArray[np.uint8]: ...

    def encrypt_varying(
        self, addr: int, template: object, offset: int, blocks: object
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """Lines at one address that differ only in one 16-byte block: the template line's
        ciphertext, and that block's ciphertext in each line."""
        ...

    def search_varying(
        self, addr: int, template: object, offset: int, grid: BlockGrid, target: bytes
    ) -> tuple[int | None, NDArray[np.uint8]]:
        """The lines of :meth:`encrypt_varying` with the blocks of ``grid``, written in order up
        to the first whose ciphertext is the 64-byte ``target``: its index (``None``: none
        matched) and the ciphertext of the last line written."""
        ...
