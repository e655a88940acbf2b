"""Known-answer and property tests for ``XtsLineCipher`` (AES-XTS-128, tweak = address).

Three sources of truth:

* the NIST CAVS XTSGenAES128 files shipped by ``cryptography_vectors`` (tweak given as a raw
  128-bit value, and tweak given as a data-unit sequence number);
* IEEE Std 1619-2007 Annex B, vectors 1-9 (``tests/vectors/ieee1619_xts_aes128.txt``);
* OpenSSL's own XTS (``modes.XTS``) on random keys, addresses and lines.

A small per-block XTS built here from AES-ECB and GF(2^128) doubling checks every vector whose
data unit is a whole number of blocks, including tweaks wider than 64 bits, which
``XtsLineCipher`` cannot take.

``XtsLineCipher`` encrypts 64-byte (four-block) data units. XTS without ciphertext stealing is
computed block by block: block ``j`` of a data unit depends only on the keys, the tweak, ``j``
and that block. A data unit of one or two blocks is therefore exactly the first one or two
blocks of a four-block unit with the same tweak, and the first four blocks of a 32-block unit
are exactly a four-block unit. That is how vectors with 16-, 32- and 512-byte data units are
put through ``XtsLineCipher``: only the blocks with index < 4 are compared.
"""

from __future__ import annotations

import numpy as np
import pytest
from _support.paths import VECTORS
from _support.vectors import (
    NIST_XTS_FILES,
    Ieee1619Vector,
    NistSource,
    NistXtsVector,
    load_ieee1619,
    load_nist_xts,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.crypto import XtsLineCipher
from testbed.errors import ConfigError

LINE = 64
BLOCK = 16
MASK128 = (1 << 128) - 1


# -- an independent per-block XTS -------------------------------------------------------------
def _gf_double(t: int) -> int:
    """Multiply by alpha in GF(2^128), IEEE 1619 bit order (little-endian integer, 0x87)."""
    t <<= 1
    if t >> 128:
        t = (t & MASK128) ^ 0x87
    return t


def _ecb(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def reference_xts(key: bytes, tweak: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    """XTS-AES over one data unit of whole blocks; works for equal key halves too."""
    assert len(key) == 32 and len(tweak) == BLOCK and len(data) % BLOCK == 0
    data_key, tweak_key = key[:16], key[16:]
    t = int.from_bytes(_ecb(tweak_key, tweak), "little")
    out = bytearray()
    for j in range(0, len(data), BLOCK):
        mask = t.to_bytes(BLOCK, "little")
        core = _ecb(data_key, _xor(data[j : j + BLOCK], mask), decrypt=decrypt)
        out += _xor(core, mask)
        t = _gf_double(t)
    return bytes(out)


def _first_line(cipher: XtsLineCipher, addr: int, data: bytes, *, decrypt: bool) -> bytes:
    """Run the first (up to) 64 bytes of a data unit through the line cipher, zero-padded."""
    n = min(len(data), LINE)
    line = data[:n] + bytes(LINE - n)
    op = cipher.decrypt if decrypt else cipher.encrypt
    return op(addr, line).tobytes()[:n]


# -- NIST CAVS vectors --------------------------------------------------------------------------
NIST: dict[NistSource, list[NistXtsVector]] = {
    source: load_nist_xts(source) for source in NIST_XTS_FILES
}
NIST_WHOLE_BLOCKS = [v for vs in NIST.values() for v in vs if v.bits % 128 == 0]
NIST_LINE_CIPHER = [v for v in NIST_WHOLE_BLOCKS if v.tweak_int < 2**64 and v.bits <= LINE * 8]


def test_nist_vector_counts() -> None:
    # Each file: 500 ENCRYPT + 500 DECRYPT; DataUnitLen 128 (200), 256 (400), 130 and 200 (400).
    for source, vectors in NIST.items():
        assert len(vectors) == 1000, source
        assert sum(v.section == "ENCRYPT" for v in vectors) == 500, source
        assert sum(v.bits % 128 == 0 for v in vectors) == 600, source
        assert all(len(v.key) == 32 and len(v.tweak) == BLOCK for v in vectors), source
    assert len(NIST_WHOLE_BLOCKS) == 1200
    # No raw 128-bit tweak fits in 64 bits and no NIST data unit is 512 bits, so only the
    # sequence-number file reaches XtsLineCipher (through the first-blocks argument above).
    assert not [v for v in NIST["hexstr"] if v.tweak_int < 2**64]
    assert not [v for v in NIST_WHOLE_BLOCKS if v.bits == LINE * 8]
    assert len(NIST_LINE_CIPHER) == 600
    assert {v.source for v in NIST_LINE_CIPHER} == {"dusn"}


@pytest.mark.parametrize("vec", NIST_WHOLE_BLOCKS, ids=lambda v: v.id)
def test_nist_reference_xts(vec: NistXtsVector) -> None:
    assert len(vec.pt) == len(vec.ct) == vec.bits // 8
    if vec.section == "ENCRYPT":
        assert reference_xts(vec.key, vec.tweak, vec.pt) == vec.ct
    assert reference_xts(vec.key, vec.tweak, vec.ct, decrypt=True) == vec.pt


@pytest.mark.parametrize("vec", NIST_LINE_CIPHER, ids=lambda v: v.id)
def test_nist_line_cipher(vec: NistXtsVector, backend: str) -> None:
    cipher = XtsLineCipher(vec.key)
    if vec.section == "ENCRYPT":
        assert _first_line(cipher, vec.tweak_int, vec.pt, decrypt=False) == vec.ct
    assert _first_line(cipher, vec.tweak_int, vec.ct, decrypt=True) == vec.pt


# -- IEEE 1619-2007 Annex B ---------------------------------------------------------------------
IEEE = load_ieee1619(VECTORS / "ieee1619_xts_aes128.txt")
IEEE_DISTINCT_HALVES = [v for v in IEEE if v.key[:16] != v.key[16:]]


def test_ieee_vector_file() -> None:
    assert [v.number for v in IEEE] == list(range(1, 10))
    assert [len(v.pt) for v in IEEE] == [32] * 3 + [512] * 6
    assert all(len(v.key) == 32 and len(v.ct) == len(v.pt) for v in IEEE)
    assert [v.dusn for v in IEEE] == [0, 0x3333333333, 0x3333333333, 0, 1, 2, 0xFD, 0xFE, 0xFF]
    by_number = {v.number: v for v in IEEE}
    # Vectors 5, 6 and 8, 9 encrypt the previous vector's ciphertext (Annex B chains them).
    for n in (5, 6, 8, 9):
        assert by_number[n].pt == by_number[n - 1].ct
    assert by_number[4].pt == bytes(range(256)) * 2
    assert [v.number for v in IEEE_DISTINCT_HALVES] == list(range(2, 10))


@pytest.mark.parametrize("vec", IEEE, ids=lambda v: v.id)
def test_ieee_reference_xts(vec: Ieee1619Vector) -> None:
    assert reference_xts(vec.key, vec.tweak, vec.pt) == vec.ct
    assert reference_xts(vec.key, vec.tweak, vec.ct, decrypt=True) == vec.pt


def test_ieee_vector1_equal_halves_refused() -> None:
    vec1 = IEEE[0]
    assert vec1.key == bytes(32)
    with pytest.raises(ConfigError, match="halves must differ"):
        XtsLineCipher(vec1.key)


@pytest.mark.parametrize("vec", IEEE_DISTINCT_HALVES, ids=lambda v: v.id)
def test_ieee_line_cipher_first_blocks(vec: Ieee1619Vector, backend: str) -> None:
    # None of these data units is exactly 64 bytes: compare blocks 0..3 (see module docstring).
    cipher = XtsLineCipher(vec.key)
    n = min(len(vec.pt), LINE)
    assert _first_line(cipher, vec.dusn, vec.pt, decrypt=False) == vec.ct[:n]
    assert _first_line(cipher, vec.dusn, vec.ct, decrypt=True) == vec.pt[:n]


def test_ieee_512_byte_unit_is_not_eight_lines(backend: str) -> None:
    # Eight independent 64-byte units at consecutive "addresses" are a different thing from one
    # 512-byte unit: the alpha powers continue across the whole data unit.
    vec4 = IEEE[3]
    cipher = XtsLineCipher(vec4.key)
    lines = np.frombuffer(vec4.pt, dtype=np.uint8).reshape(8, LINE)
    as_lines = cipher.encrypt(np.zeros(8, dtype=np.uint64), lines).tobytes()
    assert as_lines[:LINE] == vec4.ct[:LINE]
    assert as_lines[LINE : 2 * LINE] != vec4.ct[LINE : 2 * LINE]


# -- XtsLineCipher against OpenSSL's XTS --------------------------------------------------------
def _openssl_xts(key: bytes, addr: int, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.XTS(addr.to_bytes(BLOCK, "little"))).encryptor()
    return enc.update(data) + enc.finalize()


@st.composite
def _line_batches(draw: st.DrawFn) -> tuple[bytes, list[int], bytes]:
    key = draw(st.binary(min_size=32, max_size=32).filter(lambda k: k[:16] != k[16:]))
    n = draw(st.integers(min_value=1, max_value=16))
    line_numbers = st.integers(min_value=0, max_value=2**48 // LINE - 1)
    addrs = [a * LINE for a in draw(st.lists(line_numbers, min_size=n, max_size=n))]
    data = draw(st.binary(min_size=n * LINE, max_size=n * LINE))
    return key, addrs, data


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_line_batches())
def test_line_cipher_matches_openssl_xts(backend: str,
                                         batch: tuple[bytes, list[int], bytes]) -> None:
    key, addrs, data = batch
    cipher = XtsLineCipher(key)
    addr_arr = np.array(addrs, dtype=np.uint64)
    ct = cipher.encrypt(addr_arr, data)
    assert ct.shape == (len(addrs), LINE) and ct.dtype == np.uint8
    for i, addr in enumerate(addrs):
        assert ct[i].tobytes() == _openssl_xts(key, addr, data[i * LINE : (i + 1) * LINE])
    assert cipher.decrypt(addr_arr, ct).tobytes() == data


# -- argument handling -----------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_wrong_key_size_refused(size: int) -> None:
    with pytest.raises(ConfigError, match=f"expected 32 bytes, got {size}"):
        XtsLineCipher(bytes(range(size)))


def test_equal_halves_refused() -> None:
    with pytest.raises(ConfigError, match="halves must differ"):
        XtsLineCipher(bytes(range(16)) * 2)


def test_batch_equals_single_lines_and_inputs_forms(backend: str) -> None:
    key = bytes(range(32))
    cipher = XtsLineCipher(key)
    data = bytes(range(256)) * 3  # 12 lines
    addrs = np.arange(0x1000, 0x1000 + 12 * LINE, LINE, dtype=np.uint64)
    batch = cipher.encrypt(addrs, data)
    as_array = cipher.encrypt(addrs, np.frombuffer(data, dtype=np.uint8).reshape(12, LINE))
    assert np.array_equal(batch, as_array)
    for i in range(12):
        single = cipher.encrypt(int(addrs[i]), data[i * LINE : (i + 1) * LINE])
        assert single.tobytes() == batch[i].tobytes()


def test_empty_batch_and_wrong_length(backend: str) -> None:
    cipher = XtsLineCipher(bytes(range(32)))
    out = cipher.encrypt(np.zeros(0, dtype=np.uint64), b"")
    assert out.shape == (0, LINE)
    with pytest.raises(ConfigError, match="expected 2 x 64 = 128 bytes, got 64"):
        cipher.encrypt([0, 64], bytes(LINE))
