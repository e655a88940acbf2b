"""The XTS kernels: GF(2^128) doubling, the mask passes (through the one in charge, once per
backend), and the arrays they refuse."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.crypto import _kernels
from testbed.crypto._kernels import KernelError, address_blocks, xts_mask_lines


def _double_int(x: int) -> int:
    x <<= 1
    if x >> 128:
        x = (x ^ (1 << 128)) ^ 0x87
    return x


def _to_pairs(values: list[int]) -> np.ndarray:
    raw = b"".join(v.to_bytes(16, "little") for v in values)
    return np.frombuffer(raw, dtype="<u8").reshape(-1, 2).copy()


def _from_pairs(arr: np.ndarray) -> list[int]:
    raw = np.ascontiguousarray(arr, dtype="<u8").tobytes()
    return [int.from_bytes(raw[i : i + 16], "little") for i in range(0, len(raw), 16)]


def _alpha_powers(values: list[int], count: int) -> np.ndarray:
    """``values[n] * alpha**j`` for ``j < count`` through the mask pass in charge: zero data,
    zero chain, so what comes out is the masks themselves."""
    tweaks = _to_pairs(values)
    rows = -(-count // 4)
    out = np.empty((len(values), rows * 4, 2), dtype="<u8")
    for r in range(rows):  # each call gives four powers; the next call starts from alpha**4
        src = np.zeros((len(values), 8), dtype="<u8")
        dst = np.empty_like(src)
        xts_mask_lines(src, tweaks, dst)
        out[:, 4 * r : 4 * r + 4] = dst.reshape(-1, 4, 2)
        tweaks = _to_pairs([_double_int(v) for v in _from_pairs(dst.reshape(-1, 4, 2)[:, 3])])
    return out[:, :count]


def test_gf128_double_matches_integer_model(backend: str) -> None:
    rng = np.random.default_rng(128)
    values = [int.from_bytes(rng.bytes(16), "little") for _ in range(500)]
    values += [v | (1 << 127) for v in values[:100]]  # top bit set: reduction
    values += [0, 1, 1 << 63, 1 << 64, 1 << 127, (1 << 128) - 1, (1 << 127) | (1 << 63)]
    masks = _alpha_powers(values, 4)  # one vector computes all four: check each power
    expected = values
    for j in range(4):
        assert _from_pairs(masks[:, j, :]) == expected, f"alpha**{j}"
        expected = [_double_int(v) for v in expected]
    assert _double_int(1 << 127) == 0x87


def test_gf128_alpha_powers(backend: str) -> None:
    values = [0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210, (1 << 128) - 1]
    out = _alpha_powers(values, 6)
    assert out.shape == (2, 6, 2)
    for n, v in enumerate(values):
        expected = [v]
        for _ in range(5):
            expected.append(_double_int(expected[-1]))
        assert _from_pairs(out[n]) == expected


def test_mask_loop_xors_masks_into_data_in_place(backend: str) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 2**63, (33, 8), dtype="<u8")
    tweaks = rng.integers(0, 2**63, (33, 2), dtype="<u8")
    masks = _alpha_powers(_from_pairs(tweaks), 4).reshape(33, 8)
    work = data.copy()
    xts_mask_lines(work, tweaks, work)  # dst may be src
    assert np.array_equal(work, data ^ masks)


def test_kernels_refuse_arrays_they_cannot_use(backend: str) -> None:
    lines = np.zeros((4, 8), dtype="<u8")
    pairs = np.zeros((4, 2), dtype="<u8")
    with pytest.raises(KernelError, match="uint64"):
        xts_mask_lines(lines.astype(np.int64), pairs, lines)
    with pytest.raises(KernelError, match=r"at least \(4, 8\)"):
        xts_mask_lines(lines[:3], pairs, lines)
    with pytest.raises(KernelError, match="C-contiguous"):
        xts_mask_lines(lines, np.zeros((4, 4), dtype="<u8")[:, ::2], lines)
    frozen = lines.copy()
    frozen.flags.writeable = False
    with pytest.raises(KernelError, match="read-only"):
        xts_mask_lines(lines, pairs, frozen)
    with pytest.raises(KernelError, match="1-D"):
        address_blocks(pairs, pairs)
    with pytest.raises(KernelError, match=r"at least \(5, 2\)"):
        address_blocks(np.zeros(5, dtype="<u8"), pairs)
    assert not lines.any()  # nothing was written on the way


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 8, 4099])
def test_address_blocks_are_little_endian_128_bit(count: int, backend: str) -> None:
    rng = np.random.default_rng(count)
    addrs = rng.integers(0, 2**64 - 1, count, dtype="<u8", endpoint=True)
    out = np.full((count, 2), 7, dtype="<u8")
    address_blocks(addrs, out)
    assert out.tobytes() == b"".join(int(a).to_bytes(16, "little") for a in addrs)


def test_mask_pair_is_two_mask_calls(backend: str) -> None:
    rng = np.random.default_rng(11)
    src = rng.integers(0, 2**63, (9, 8), dtype="<u8")
    tweaks = rng.integers(0, 2**63, (9, 2), dtype="<u8")
    expected = np.empty_like(src)
    xts_mask_lines(src, tweaks, expected)
    got = np.zeros_like(src)
    passes = _kernels.mask_passes()
    assert passes.name == backend
    at = [passes.handle(a) for a in (src, tweaks, got)]
    passes.mask_pair(at[0], 0, at[1], 0, at[2], 0, 4, at[0], 4, at[1], 4, at[2], 4, 5)
    assert np.array_equal(got, expected)
