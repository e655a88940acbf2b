"""The search over a grid of candidate blocks finds what writing out every block and
comparing every ciphertext finds: the same first match, the same last line, the same wear."""

from __future__ import annotations

import numpy as np
import pytest
from _support.ciphers import CIPHERS, KEY, LINE, AnyCipher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from testbed.crypto import BlockGrid
from testbed.crypto._lines import ecb_via_xts, masked_ecb_column
from testbed.crypto.grid import MAX_PERIOD, masked_ecb_search, search_by_blocks
from testbed.errors import ConfigError
from testbed.platform import Domain, KeySource, Machine, make_engine
from testbed.types import PhysAddr


def words(rng: np.random.Generator, rows: int, high: int = 2**32) -> NDArray[np.uint64]:
    """``rows`` random 16-byte rows as two words each, every 32-bit part below ``high``."""
    parts = rng.integers(0, high, (rows, 4), dtype="<u4")
    return np.ascontiguousarray(parts.view("<u8"))


def first_match(cipher: AnyCipher, addr: int, template: NDArray[np.uint8], offset: int,
                blocks: NDArray[np.uint8], target: bytes) -> int | None:
    """Every line written out, encrypted whole, compared whole."""
    lines = np.repeat(template[None, :], blocks.shape[0], axis=0)
    lines[:, offset : offset + 16] = blocks
    out = cipher.encrypt(np.full(blocks.shape[0], addr, dtype=np.uint64), lines)
    hits = np.flatnonzero((out == np.frombuffer(target, dtype=np.uint8)).all(axis=1))
    return int(hits[0]) if hits.size else None


# -- the grid --------------------------------------------------------------------------------
def test_grid_blocks_follow_the_definition() -> None:
    rng = np.random.default_rng(1)
    outer, inner = words(rng, 5), words(rng, 7)
    grid = BlockGrid(outer, inner, 3, 29)
    want = [(outer[j // 7] ^ inner[j % 7]).view(np.uint8) for j in range(3, 32)]
    assert np.array_equal(grid.blocks(), np.stack(want))
    assert np.array_equal(grid.blocks(4, 9), np.stack(want[4:9]))
    assert grid.period == 7 and grid.blocks(5, 5).shape == (0, 16)


@pytest.mark.parametrize(("outer", "inner", "first", "count", "message"), [
    (np.zeros((2, 2), "<u8"), np.zeros((3, 2), "<u8"), 0, 7, "outside the grid's 6"),
    (np.zeros((2, 2), "<u8"), np.zeros((3, 2), "<u8"), -1, 2, "outside"),
    (np.zeros((2, 3), "<u8"), np.zeros((3, 2), "<u8"), 0, 1, "outer must be"),
    (np.zeros((2, 2), "<u4"), np.zeros((3, 2), "<u8"), 0, 1, "outer must be"),
    (np.zeros((2, 2), "<u8"), np.zeros((0, 2), "<u8"), 0, 0, "inner must be a non-empty"),
    (np.zeros((1, 2), "<u8"), np.zeros((MAX_PERIOD + 1, 2), "<u8"), 0, 1, "period 65537"),
])
def test_grid_refuses_what_it_cannot_hold(outer: NDArray[np.uint64], inner: NDArray[np.uint64],
                                          first: int, count: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BlockGrid(outer, inner, first, count)


def test_grid_blocks_outside_refused() -> None:
    grid = BlockGrid(np.zeros((2, 2), "<u8"), np.zeros((3, 2), "<u8"), 0, 4)
    with pytest.raises(ConfigError, match="outside 0..3"):
        grid.blocks(2, 5)


# -- the masked search ------------------------------------------------------------------------
def test_search_finds_every_position_and_returns_its_ciphertext() -> None:
    """A match in the first, a middle and the last block, on both sides of a period's end."""
    rng = np.random.default_rng(2)
    grid = BlockGrid(words(rng, 9), words(rng, 10), 4, 80)
    ctx = ecb_via_xts(KEY[:16], encrypt=True)
    lo, hi = 0x0123456789ABCDEF, 0x0FEDCBA987654321
    cipher = masked_ecb_column(ctx, lo, hi, grid.blocks())
    for k in (0, 5, 6, 7, 40, 79):
        index, block = masked_ecb_search(ctx, lo, hi, grid, cipher[k].tobytes())
        assert index == k and block.tobytes() == cipher[k].tobytes()
    index, block = masked_ecb_search(ctx, lo, hi, grid, bytes(16))
    assert index is None and block.tobytes() == cipher[-1].tobytes()
    index, block = masked_ecb_search(ctx, lo, hi, grid, None)
    assert index is None and block.tobytes() == cipher[-1].tobytes()


def test_search_screen_never_reports_a_part_match() -> None:
    """The first scan looks for the wanted first word anywhere in the output: a second word
    equal to it, or a block whose second word differs, is not a match."""
    rng = np.random.default_rng(3)
    grid = BlockGrid(words(rng, 3), words(rng, 10), 0, 30)
    ctx = ecb_via_xts(KEY[:16], encrypt=True)
    lo = hi = 0x5555AAAA5555AAAA  # equal halves: a block's second word can meet the first
    cipher = masked_ecb_column(ctx, lo, hi, grid.blocks()).view("<u8")
    second = np.array([cipher[12, 1], cipher[12, 1] ^ 1], dtype="<u8").tobytes()
    assert masked_ecb_search(ctx, lo, hi, grid, second)[0] is None
    half = np.array([cipher[20, 0], cipher[20, 1] ^ 1], dtype="<u8").tobytes()
    assert masked_ecb_search(ctx, lo, hi, grid, half)[0] is None
    whole = np.array([cipher[20, 0], cipher[20, 1]], dtype="<u8").tobytes()
    assert masked_ecb_search(ctx, lo, hi, grid, whole)[0] == 20


def test_search_empty_grid() -> None:
    grid = BlockGrid(np.zeros((1, 2), "<u8"), np.zeros((4, 2), "<u8"), 2, 0)
    index, block = masked_ecb_search(ecb_via_xts(KEY[:16], encrypt=True), 1, 2, grid, None)
    assert index is None and block.shape == (16,)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(CIPHERS)),
    line_no=st.integers(0, 2**30),
    offset=st.sampled_from([0, 16, 32, 48]),
    shape=st.sampled_from([(1, 1), (3, 1), (1, 40), (4, 25), (30, 7)]),
    disjoint=st.booleans(),
    pick=st.sampled_from(["first", "middle", "last", "none", "shared-part-differs"]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_cipher_search_equals_every_line_written(
    kind: str, line_no: int, offset: int, shape: tuple[int, int], disjoint: bool, pick: str,
    seed: int, data: st.DataObject, backend: str,
) -> None:
    rng = np.random.default_rng(seed)
    cipher = CIPHERS[kind]()
    high = 2**20 if kind == "narrow" else 2**32  # the narrow cipher holds 20-bit words
    outer, inner = words(rng, shape[0], high), words(rng, shape[1], high)
    if disjoint:  # as a PIN's grid: each word from one of the two tables
        outer[:, 1], inner[:, 0] = 0, 0
    size = shape[0] * shape[1]
    first = data.draw(st.integers(0, size - 1))
    count = data.draw(st.integers(0, size - first))
    grid = BlockGrid(outer, inner, first, count)
    template = words(rng, 4, high).view(np.uint8).reshape(LINE)
    addr = line_no * LINE
    blocks = grid.blocks()
    lines = np.repeat(template[None, :], max(count, 1), axis=0)
    if count:
        lines[:, offset : offset + 16] = blocks
    whole = cipher.encrypt(np.full(lines.shape[0], addr, dtype=np.uint64), lines)
    k = {"first": 0, "middle": count // 2, "last": count - 1}.get(pick, 0)
    target = whole[min(k, len(whole) - 1)].copy()
    if pick == "none":
        target[offset] ^= 0x80  # (the narrow cipher's words stay words: any byte will do)
    elif pick == "shared-part-differs":
        target[(offset + 16) % LINE] ^= 1
    want = first_match(cipher, addr, template, offset, blocks, target.tobytes())
    index, last = cipher.search_varying(addr, template.tobytes(), offset, grid, target.tobytes())
    assert index == want
    written = count if index is None else index + 1
    if count:
        assert np.array_equal(last, whole[written - 1])
    ref = search_by_blocks(cipher.encrypt_varying, addr, template, offset, grid,
                           target.tobytes())
    assert ref[0] == index and (not count or np.array_equal(ref[1], last))


# -- on the machine ---------------------------------------------------------------------------
def fresh(engine: str) -> tuple[Machine, Domain, PhysAddr]:
    """The same machine each time (seeded keys): a guest and a line of its first page."""
    name, narrow = engine.removesuffix("-narrow"), engine.endswith("-narrow")
    keys = KeySource(np.random.default_rng(5))
    m = Machine(make_engine(name, keys, reduced_width_bits=20 if narrow else None),
                memory_pages=64)
    g = m.create_domain("guest")
    return m, g, PhysAddr(m.alloc_page(g) + 2 * LINE)


def after_writes(engine: str, template: NDArray[np.uint8],
                 blocks: NDArray[np.uint8]) -> tuple[bytes, bytes, int]:
    """DRAM, the guest's read and the wear after ``write_varying`` of ``blocks``."""
    m, g, pa = fresh(engine)
    wear = m.engine.wear(g.slot)
    m.write_varying(g, pa, template.tobytes(), 16, blocks)
    return m.dram(pa, LINE), m.read(g, pa, LINE), m.engine.wear(g.slot) - wear


@pytest.mark.parametrize("engine", ["none", "tme", "tme-narrow", "mktme", "mktme-i", "sev",
                                    "sev-snp"])
@pytest.mark.parametrize("pick", [0, 7, 33, None])
def test_write_varying_search_equals_write_varying(engine: str, pick: int | None,
                                                   backend: str) -> None:
    rng = np.random.default_rng(11)
    high = 2**20 if engine.endswith("-narrow") else 2**32
    outer, inner = words(rng, 5, high), words(rng, 10, high)
    outer[:, 1], inner[:, 0] = 0, 0
    grid = BlockGrid(outer, inner, 3, 40)
    blocks = grid.blocks()
    template = words(rng, 4, high).view(np.uint8).reshape(LINE)
    # Every line written out, as the bus shows it; the target is one of them, or none.
    m, g, pa = fresh(engine)
    head, body = m.write_varying(g, pa, template.tobytes(), 16, blocks)
    shown = np.repeat(head[None, :], body.shape[0], axis=0)
    shown[:, 16:32] = body
    target = bytes(LINE) if pick is None else shown[pick].tobytes()
    hits = np.flatnonzero((shown == np.frombuffer(target, np.uint8)).all(axis=1))
    want = int(hits[0]) if hits.size else None
    assert want == pick

    m, g, pa = fresh(engine)
    wear = m.engine.wear(g.slot)
    index = m.write_varying_search(g, pa, template.tobytes(), 16, grid, target)
    got = (m.dram(pa, LINE), m.read(g, pa, LINE), m.engine.wear(g.slot) - wear)
    assert index == want
    assert got == after_writes(engine, template, blocks[: grid.count if want is None else want + 1])


def test_write_varying_search_refuses_unaligned_address() -> None:
    m, g, pa = fresh("mktme")
    grid = BlockGrid(np.zeros((1, 2), "<u8"), np.zeros((4, 2), "<u8"), 0, 4)
    with pytest.raises(ConfigError, match="not line-aligned"):
        m.write_varying_search(g, PhysAddr(pa + 8), bytes(LINE), 0, grid, bytes(LINE))


def test_grid_keeps_its_own_tables() -> None:
    """A table changed after the grid was made changes neither the grid nor a search over it
    (the search keeps what it prepared from the tables for the next batch)."""
    rng = np.random.default_rng(4)
    outer, inner = words(rng, 2), words(rng, 8)
    grid = BlockGrid(outer, inner, 0, 16)
    before = grid.blocks()
    ctx = ecb_via_xts(KEY[:16], encrypt=True)
    cipher = masked_ecb_column(ctx, 1, 2, before)
    assert masked_ecb_search(ctx, 1, 2, grid, cipher[9].tobytes())[0] == 9
    outer ^= np.uint64(1)
    inner ^= np.uint64(1)
    assert np.array_equal(grid.blocks(), before) and not grid.inner.flags.writeable
    assert masked_ecb_search(ctx, 1, 2, grid, cipher[9].tobytes())[0] == 9
    again = BlockGrid(grid.outer, grid.inner, 0, 16)
    assert again.outer is grid.outer and again.inner is grid.inner
