"""Input normalisation and batched steps shared by the line ciphers."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

from ..errors import ConfigError
from ..types import LINE_SIZE

__all__ = [
    "as_addresses",
    "as_blocks",
    "as_lines",
    "ecb_via_xts",
    "fork_safe_lock",
    "masked_ecb_column",
    "varying_by_lines",
]


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


_BLOCK = 16


_lock_owners: weakref.WeakSet[Any] = weakref.WeakSet()


def fork_safe_lock(owner: object) -> threading.Lock:
    """A lock for ``owner._lock``, which a forked child finds free.

    Ciphers lock their shared OpenSSL contexts. A child forked while another thread held the
    lock would wait for it forever (that thread is not in the child), so each owner's lock is
    replaced by a free one in the child."""
    _lock_owners.add(owner)
    return threading.Lock()


def _after_fork() -> None:
    for owner in list(_lock_owners):
        owner._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)

XTS_MAX_BYTES = 1 << 24
"""OpenSSL's limit on one XTS data unit (2**20 blocks): the most one call may take."""


def ecb_via_xts(key: bytes, *, encrypt: bool) -> Any:
    """An OpenSSL context that computes AES-128-ECB under ``key``, through OpenSSL's AES-XTS.

    XTS masks block ``j`` of a data unit with ``AES_K2(IV) * alpha**j``. With ``IV`` the AES
    decryption of zero under ``K2``, that mask is ``0 * alpha**j = 0`` for every block, and
    each block comes out as plain ``AES_key(block)`` (or its inverse). On CPUs with vector AES,
    OpenSSL's XTS code is several times faster than its ECB code; the bytes are the same.

    ``K2`` is derived from ``key`` only so that the two XTS halves differ (OpenSSL refuses
    equal halves); nothing of it reaches the output. Each ``update`` must take whole blocks,
    at least one, at most :data:`XTS_MAX_BYTES`.
    """
    other = bytes(b ^ 0x5C for b in key)
    iv = Cipher(algorithms.AES(other), modes.ECB()).decryptor().update(bytes(_BLOCK))
    cipher = Cipher(algorithms.AES(key + other), modes.XTS(iv))
    return cipher.encryptor() if encrypt else cipher.decryptor()


_COLUMN_CHUNK = 16384
"""Blocks per inner step of :func:`masked_ecb_column`: 256 KiB, to stay in the L2 cache."""


def as_blocks(
    template: object, offset: int, blocks: object
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Check the arguments of ``encrypt_varying``: a 64-byte line, a 16-byte-aligned offset in
    it, and ``(n, 16)`` replacement blocks. Returns the line as ``(1, 64)`` and the blocks as a
    contiguous ``(n, 16)`` uint8 array."""
    line = as_lines(template, 1)
    if not (0 <= offset < LINE_SIZE) or offset % _BLOCK:
        raise ConfigError(f"varying block: offset {offset} is not a 16-byte block of a line")
    arr = np.asarray(blocks, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != _BLOCK:
        raise ConfigError(f"varying block: expected (n, {_BLOCK}) blocks, got {arr.shape}")
    return line, np.ascontiguousarray(arr)


def masked_ecb_column(ctx: Any, lo: int, hi: int, blocks: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """``AES(block ^ mask) ^ mask`` for every 16-byte block, ``mask = hi * 2**64 + lo``.

    ``ctx`` is an OpenSSL context that computes AES-ECB (:func:`ecb_via_xts`, or ECB itself);
    one call per 256 KiB chunk. The mask is laid out as
    a full chunk so that both XORs run on contiguous arrays.
    """
    count = blocks.shape[0]
    out = np.empty_like(blocks)
    step = min(count, _COLUMN_CHUNK)
    if step == 0:
        return out
    mask = np.empty((step, 2), dtype="<u8")
    mask[:, 0], mask[:, 1] = lo, hi
    work = np.empty((step, 2), dtype="<u8")
    core = np.empty(step * _BLOCK + _BLOCK, dtype=np.uint8)
    src = blocks.view("<u8").reshape(count, 2)
    dst = out.view("<u8").reshape(count, 2)
    for start in range(0, count, step):
        m = min(step, count - start)
        np.bitwise_xor(src[start : start + m], mask[:m], out=work[:m])
        ctx.update_into(work[:m].data.cast("B"), core.data)
        done = core[: m * _BLOCK].view("<u8").reshape(m, 2)
        np.bitwise_xor(done, mask[:m], out=dst[start : start + m])
    return out


def varying_by_lines(
    encrypt: Callable[[object, object], NDArray[np.uint8]], addr: int, line: NDArray[np.uint8],
    offset: int, column: NDArray[np.uint8],
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """``encrypt_varying`` the plain way: build every line and encrypt it whole. For ciphers
    whose blocks are not 16 bytes wide, and the reference the fast paths are tested against."""
    head = encrypt(addr, line)[0]
    lines = np.repeat(line, column.shape[0], axis=0)
    lines[:, offset : offset + _BLOCK] = column
    addrs = np.full(column.shape[0], addr, dtype=np.uint64)
    body = encrypt(addrs, lines)[:, offset : offset + _BLOCK]
    return head, np.ascontiguousarray(body)
