"""The engines' fast paths give exactly the bytes of the plain way: OpenSSL's XTS line by line,
or every line built and encrypted whole. Tests that run the XTS engine run once with each
implementation of its mask passes (the ``backend`` fixture: llvmlite and NumPy)."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable

import numpy as np
import pytest
from _support.ciphers import CIPHERS, KEY, LINE, AnyCipher
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from testbed.crypto import NarrowLineCipher, XexLineCipher, XtsLineCipher, xts
from testbed.crypto._lines import XTS_MAX_BYTES, ecb_via_xts, varying_by_lines
from testbed.errors import ConfigError
from testbed.platform import KeySource, Machine, make_engine
from testbed.types import PhysAddr


def per_line(key: bytes, addrs: NDArray[np.uint64], lines: NDArray[np.uint8],
             encrypt: bool = True) -> NDArray[np.uint8]:
    out = []
    for addr, line in zip(addrs, lines, strict=True):
        cipher = Cipher(algorithms.AES(key), modes.XTS(int(addr).to_bytes(16, "little")))
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        out.append(np.frombuffer(ctx.update(line.tobytes()) + ctx.finalize(), dtype=np.uint8))
    return np.stack(out)


# -- one address, many lines (write_sequence) --------------------------------------------------
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    addr=st.integers(0, 2**40).map(lambda a: a * 64),
    count=st.integers(2, 40),
    varying=st.sets(st.integers(0, 3)),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_address_batch_equals_openssl(addr: int, count: int, varying: set[int],
                                          seed: int, backend: str) -> None:
    rng = np.random.default_rng(seed)
    lines = np.repeat(rng.integers(0, 256, (1, 64), dtype=np.uint8), count, axis=0)
    for j in varying:  # some 16-byte blocks differ between lines, the others are constant
        lines[:, 16 * j : 16 * j + 16] = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    cipher = XtsLineCipher(KEY)
    addrs = np.full(count, addr, dtype=np.uint64)
    ct = cipher.encrypt(addrs, lines)
    assert (ct == per_line(KEY, addrs, lines)).all()
    assert (cipher.decrypt(addrs, ct) == lines).all()


# -- large batches: chunk and tweak-group edges, and the split across threads ------------------
@functools.cache
def _large_batch(count: int) -> tuple[NDArray[np.uint64], NDArray[np.uint8], NDArray[np.uint8]]:
    rng = np.random.default_rng(count)
    addrs = rng.integers(0, 2**42, count, dtype=np.uint64) * np.uint64(LINE)
    lines = rng.integers(0, 256, (count, LINE), dtype=np.uint8)
    return addrs, lines, per_line(KEY, addrs, lines)


@pytest.fixture(params=["real", "low"])
def split_from(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The batch size from which the engine uses threads: the real one, and a low one so
    that small batches reach the split too."""
    if request.param == "low":
        monkeypatch.setattr(xts, "_PARALLEL_MIN_LINES", 2 * xts._CHUNK_LINES)
    return int(xts._PARALLEL_MIN_LINES)


@pytest.mark.parametrize("count", [4095, 4096, 4097, 8193, 16383, 16384, 16385, 20481, 53249])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_large_batches_equal_openssl_line_by_line(count: int, threads: int,
                                                  split_from: int, backend: str) -> None:
    addrs, lines, expected = _large_batch(count)
    cipher = XtsLineCipher(KEY, threads=threads)
    ct = cipher.encrypt(addrs, lines)
    assert np.array_equal(ct, expected)
    assert np.array_equal(cipher.decrypt(addrs, ct), lines)
    lanes = len(cipher._lanes)  # one per thread that took a part
    if threads == 1 or count < split_from:
        assert lanes == 1
    else:
        assert 2 <= lanes <= threads


def test_big_batches_use_every_thread(backend: str) -> None:
    """From the split size on, every thread asked for gets a part, each with its own lane."""
    count = xts._PARALLEL_MIN_LINES * 2
    addrs, lines, expected = _large_batch(count)
    cipher = XtsLineCipher(KEY, threads=2)
    assert np.array_equal(cipher.encrypt(addrs, lines), expected)
    assert len(cipher._lanes) == 2
    single = XtsLineCipher(KEY)  # one thread unless asked
    assert np.array_equal(single.encrypt(addrs, lines), expected)
    assert len(single._lanes) == 1


def test_threads_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        XtsLineCipher(KEY, threads=0)


def test_cipher_is_safe_to_share_between_threads(monkeypatch: pytest.MonkeyPatch,
                                                  backend: str) -> None:
    """Two threads on one cipher object, each call split again: each call still gets its
    own, correct result."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(xts, "_PARALLEL_MIN_LINES", 2 * xts._CHUNK_LINES)
    rng = np.random.default_rng(3)
    batches = [(rng.integers(0, 2**30, 9000, dtype=np.uint64) * np.uint64(LINE),
                rng.integers(0, 256, (9000, LINE), dtype=np.uint8)) for _ in range(4)]
    cipher = XtsLineCipher(KEY, threads=2)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda b: cipher.encrypt(*b), batches))
    for (addrs, lines), ct in zip(batches, got, strict=True):
        assert np.array_equal(ct, XtsLineCipher(KEY, threads=1).encrypt(addrs, lines))


# -- lines that differ in one block (write_varying) ---------------------------------------------


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(CIPHERS)),
    line_no=st.integers(0, 2**30),
    offset=st.sampled_from([0, 16, 32, 48]),
    count=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_varying_block_equals_whole_lines(kind: str, line_no: int, offset: int, count: int,
                                          seed: int, backend: str) -> None:
    rng = np.random.default_rng(seed)
    cipher = CIPHERS[kind]()
    # The narrow cipher stores 20-bit values in 32-bit words: keep every word below 2**20.
    high = 2**20 if kind == "narrow" else 2**32
    template = rng.integers(0, high, LINE // 4, dtype="<u4").view(np.uint8)
    blocks = rng.integers(0, high, (count, 4), dtype="<u4").view(np.uint8).reshape(count, 16)
    addr = line_no * LINE
    head, body = cipher.encrypt_varying(addr, template.tobytes(), offset, blocks)
    lines = np.repeat(template[None, :], count, axis=0)
    lines[:, offset : offset + 16] = blocks
    whole = cipher.encrypt(np.full(count, addr, dtype=np.uint64), lines)
    assert np.array_equal(body, whole[:, offset : offset + 16])
    assert np.array_equal(head, cipher.encrypt(addr, template)[0])
    keep = [i for i in range(LINE) if not offset <= i < offset + 16]
    assert (whole[:, keep] == head[keep]).all()  # the other blocks never change
    ref_head, ref_body = varying_by_lines(cipher.encrypt, addr, template[None, :], offset, blocks)
    assert np.array_equal(head, ref_head) and np.array_equal(body, ref_body)


@pytest.mark.parametrize("offset", [-16, 8, 64])
def test_varying_block_offset_must_be_a_block(offset: int) -> None:
    with pytest.raises(ConfigError, match="not a 16-byte block"):
        XtsLineCipher(KEY).encrypt_varying(0, bytes(LINE), offset, np.zeros((1, 16), np.uint8))


def test_varying_block_shapes_checked() -> None:
    cipher = XtsLineCipher(KEY)
    with pytest.raises(ConfigError, match=r"expected \(n, 16\) blocks"):
        cipher.encrypt_varying(0, bytes(LINE), 0, np.zeros((3, 8), np.uint8))
    with pytest.raises(ConfigError, match="expected 1 x 64"):
        cipher.encrypt_varying(0, bytes(32), 0, np.zeros((3, 16), np.uint8))


@pytest.mark.parametrize("engine", ["none", "tme", "mktme", "sev", "sev-snp"])
def test_write_varying_equals_write_sequence(engine: str, backend: str) -> None:
    rng = np.random.default_rng(11)
    template = rng.integers(0, 256, LINE, dtype=np.uint8)
    blocks = rng.integers(0, 256, (50, 16), dtype=np.uint8)
    lines = np.repeat(template[None, :], 50, axis=0)
    lines[:, 32:48] = blocks
    got = []
    for varying in (True, False):
        m = Machine(make_engine(engine, KeySource(np.random.default_rng(5))), memory_pages=64)
        g = m.create_domain("guest")
        pa = PhysAddr(m.alloc_page(g) + 2 * LINE)
        wear = m.engine.wear(g.slot)
        if varying:
            head, body = m.write_varying(g, pa, template.tobytes(), 32, blocks)
            full = np.repeat(head[None, :], 50, axis=0)
            full[:, 32:48] = body
        else:
            full = m.write_sequence(g, pa, lines)
        got.append((full, m.dram(pa, LINE), m.read(g, pa, LINE), m.engine.wear(g.slot) - wear))
    (a, dram_a, read_a, wear_a), (b, dram_b, read_b, wear_b) = got
    assert np.array_equal(a, b)
    assert dram_a == dram_b == a[-1].tobytes()
    assert read_a == read_b == lines[-1].tobytes()
    assert wear_a == wear_b


def test_write_varying_refuses_unaligned_address() -> None:
    m = Machine(make_engine("mktme", KeySource(np.random.default_rng(5))), memory_pages=64)
    g = m.create_domain("guest")
    pa = m.alloc_page(g)
    with pytest.raises(ConfigError, match="not line-aligned"):
        m.write_varying(g, PhysAddr(pa + 8), bytes(LINE), 0, np.zeros((1, 16), np.uint8))


@settings(max_examples=40, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), blocks=st.lists(st.integers(1, 300), min_size=1,
                                                                 max_size=4),
       seed=st.integers(0, 2**32 - 1))
def test_ecb_via_xts_is_openssl_ecb(key: bytes, blocks: list[int], seed: int) -> None:
    """XTS with an IV whose encryption is zero masks nothing: each block is AES-ECB, in both
    directions, and every update of one context stands alone."""
    rng = np.random.default_rng(seed)
    enc, dec = ecb_via_xts(key, encrypt=True), ecb_via_xts(key, encrypt=False)
    for count in blocks:
        data = rng.bytes(16 * count)
        ecb = Cipher(algorithms.AES(key), modes.ECB())
        expected = ecb.encryptor().update(data)
        assert enc.update(data) == expected
        assert dec.update(expected) == data


def test_ecb_via_xts_takes_one_xts_data_unit_per_call() -> None:
    """OpenSSL bounds one XTS data unit at 2**20 blocks; the engine's calls stay below it."""
    ctx = ecb_via_xts(bytes(16), encrypt=True)
    assert len(ctx.update(bytes(XTS_MAX_BYTES))) == XTS_MAX_BYTES
    with pytest.raises(ValueError):
        ctx.update(bytes(XTS_MAX_BYTES + 16))
    assert xts._TWEAK_LINES * 16 <= XTS_MAX_BYTES and xts._CHUNK_LINES * 64 <= XTS_MAX_BYTES


def test_openssl_writes_no_more_than_its_input() -> None:
    """Each chunk's output goes straight into the result, and OpenSSL is handed one block of
    room after it that belongs to the next chunk (or to another thread's part): OpenSSL must
    write exactly as many bytes as it reads."""
    size = xts._CHUNK_LINES * LINE  # one chunk, as the engine hands it over
    for encrypt in (True, False):
        ctx = ecb_via_xts(KEY[:16], encrypt=encrypt)
        buf = bytearray(b"\xa5" * (size + 16))
        assert ctx.update_into(bytes(range(256)) * (size // 256), buf) == size
        assert buf[size:] == b"\xa5" * 16


def test_input_at_any_byte_alignment(backend: str) -> None:
    """Lines and addresses may sit anywhere in memory (a slice at an odd offset): the mask
    passes load them without assuming alignment."""
    rng = np.random.default_rng(8)
    count = 5000
    raw = rng.integers(0, 256, count * LINE + 1, dtype=np.uint8)
    lines = raw[1:].reshape(count, LINE)
    addr_raw = np.zeros(count * 8 + 3, dtype=np.uint8)
    addrs = addr_raw[3:].view("<u8")
    addrs[:] = rng.integers(0, 2**30, count, dtype=np.uint64) * np.uint64(LINE)
    assert lines.ctypes.data % 8 and addrs.ctypes.data % 8
    cipher = XtsLineCipher(KEY)
    expected = cipher.encrypt(addrs.copy(), lines.copy())
    assert np.array_equal(cipher.encrypt(addrs, lines), expected)
    assert np.array_equal(expected[:50], per_line(KEY, addrs[:50], lines[:50]))


def test_addresses_across_the_whole_64_bit_range(backend: str) -> None:
    """Tweaks are 128-bit little-endian encodings of 64-bit addresses: the top of the range
    too, in a batch that spans two chunks."""
    rng = np.random.default_rng(12)
    extremes = np.array([0, 64, 2**63, 2**63 - 64, 2**64 - 64, 2**64 - 128], dtype=np.uint64)
    addrs = np.concatenate([extremes, rng.integers(0, 2**58, 4200, dtype=np.uint64) << 6])
    lines = rng.integers(0, 256, (addrs.size, LINE), dtype=np.uint8)
    cipher = XtsLineCipher(KEY)
    ct = cipher.encrypt(addrs, lines)
    assert np.array_equal(ct, per_line(KEY, addrs, lines))
    assert np.array_equal(cipher.decrypt(addrs, ct), lines)


# -- sharing: threads and fork ------------------------------------------------------------------
SHARED: dict[str, Callable[[], AnyCipher]] = {
    "xts": lambda: XtsLineCipher(KEY),
    "xex": lambda: XexLineCipher(KEY[:16]),
    "narrow": lambda: NarrowLineCipher(KEY, 24),
}


@pytest.mark.parametrize("kind", sorted(SHARED))
def test_every_cipher_is_safe_to_share_between_threads(kind: str, backend: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(21)
    high = 2**24 if kind == "narrow" else 2**32
    batches = [(rng.integers(0, 2**30, 3000, dtype=np.uint64) * np.uint64(LINE),
                rng.integers(0, high, (3000, 16), dtype="<u4").view(np.uint8))
               for _ in range(8)]
    expected = [SHARED[kind]().encrypt(*batch) for batch in batches]
    cipher = SHARED[kind]()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda b: cipher.encrypt(*b), batches * 3))
    for i, ct in enumerate(got):
        assert np.array_equal(ct, expected[i % len(batches)])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available on this platform")
@pytest.mark.parametrize("kind", sorted(SHARED))
def test_forked_child_can_use_a_cipher_locked_at_the_fork(kind: str, backend: str) -> None:
    """A worker forked while another thread was inside a cipher (its lock held) finds every
    lock free: it encrypts instead of waiting forever."""
    from testbed.crypto import _kernels

    addrs = np.arange(64, dtype=np.uint64) * np.uint64(LINE)
    lines = np.zeros((64, LINE), dtype=np.uint8)
    cipher = SHARED[kind]()
    expected = cipher.encrypt(addrs, lines)
    held = [cipher._lock, xts._pool_lock, _kernels._backend_lock]
    for lock in held:
        lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the child: a deadlock here ends by the alarm, not by hanging the tests
            signal.alarm(20)
            code = 0 if np.array_equal(cipher.encrypt(addrs, lines), expected) else 1
            os._exit(code)
    finally:
        for lock in held:
            lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
