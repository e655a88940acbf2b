"""Input normalisation shared by the line ciphers."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..types import LINE_SIZE

__all__ = ["as_addresses", "as_lines"]


def as_addresses(addrs: object) -> NDArray[np.uint64]:
    """Return addresses as a 1-D ``uint64`` array (a single int becomes one element)."""
    arr = np.atleast_1d(np.asarray(addrs, dtype=np.uint64))
    if arr.ndim != 1:
        raise ConfigError(f"addresses: expected a 1-D array, got shape {arr.shape}")
    return arr


def as_lines(lines: object, count: int) -> NDArray[np.uint8]:
    """Return ``count`` lines as a contiguous ``(count, 64)`` uint8 array."""
    if isinstance(lines, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(bytes(lines), dtype=np.uint8)
    else:
        arr = np.asarray(lines, dtype=np.uint8)
    if arr.size != count * LINE_SIZE:
        raise ConfigError(
            f"lines: expected {count} x {LINE_SIZE} = {count * LINE_SIZE} bytes, got {arr.size}"
        )
    return np.ascontiguousarray(arr.reshape(count, LINE_SIZE))
