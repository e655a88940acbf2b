"""The XTS mask passes: llvmlite's compiled loops give the NumPy reference's bytes, call by call,
and the one dispatch point picks the accelerator only where it works."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from typing import Any

import numpy as np
import pytest
from _support.backends import passes_for
from _support.paths import ROOT, SCENARIOS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from testbed.crypto import XtsLineCipher, _kernels, _masks_numpy, mask_backend, xts
from testbed.crypto._masks_numpy import NumpyPasses

LINE_WORDS = 8
SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 4095, 4096, 4097, 16384, 16385]
"""Edge sizes: none, one, below, at and above a vector of four, and the engine's chunk and
tweak-group edges."""


def _both() -> tuple[Any, NumpyPasses]:
    return passes_for("llvmlite"), NumpyPasses()


def _u64(rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.uint64]:
    return rng.integers(0, 2**64, shape, dtype=np.uint64, endpoint=False)


def _at_offset(arr: NDArray[np.uint64], skew: int) -> NDArray[np.uint64]:
    """A copy of ``arr`` whose data starts ``skew`` bytes past an aligned address."""
    raw = np.zeros(arr.nbytes + skew, dtype=np.uint8)
    out = raw[skew:].view(np.uint64).reshape(arr.shape)
    out[...] = arr
    return out


def _mask_lines(passes: Any, src: NDArray[np.uint64], tweaks: NDArray[np.uint64],
                dst: NDArray[np.uint64], rows: tuple[int, int, int], n: int) -> None:
    s, t, d = rows
    passes.mask_lines(passes.handle(src), s, passes.handle(tweaks), t, passes.handle(dst), d, n)


# -- every pass, llvmlite against NumPy ------------------------------------------------------------
@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("skew", [0, 1, 3])
def test_mask_lines_equal(count: int, skew: int) -> None:
    llvm, ref = _both()
    rng = np.random.default_rng(count + 100 * skew)
    src = _at_offset(_u64(rng, (count, LINE_WORDS)), skew)
    tweaks = _at_offset(_u64(rng, (count, 2)), skew)
    got, want = (np.full((count, LINE_WORDS), 5, dtype=np.uint64) for _ in range(2))
    _mask_lines(llvm, src, tweaks, got, (0, 0, 0), count)
    _mask_lines(ref, src, tweaks, want, (0, 0, 0), count)
    assert np.array_equal(got, want)
    inplace = src.copy()
    _mask_lines(llvm, inplace, tweaks, inplace, (0, 0, 0), count)  # dst may be src
    assert np.array_equal(inplace, want)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), total=st.integers(0, 80), skew=st.integers(0, 7),
       seed=st.integers(0, 2**32 - 1))
def test_mask_lines_at_row_offsets_equal(data: st.DataObject, total: int, skew: int,
                                         seed: int) -> None:
    """Any rows of any arrays: each pass touches exactly the ``n`` rows it is given."""
    llvm, ref = _both()
    s, t, d = (data.draw(st.integers(0, total)) for _ in range(3))
    n = data.draw(st.integers(0, total - max(s, t, d)))
    rng = np.random.default_rng(seed)
    src = _at_offset(_u64(rng, (total, 8)), skew)
    tweaks = _at_offset(_u64(rng, (total, 2)), skew)
    tweaks[: total // 2, 1] |= np.uint64(1 << 63)  # half of them reduce
    fill = np.uint64(seed)
    got, want = (np.full((total, 8), fill, dtype=np.uint64) for _ in range(2))
    _mask_lines(llvm, src, tweaks, got, (s, t, d), n)
    _mask_lines(ref, src, tweaks, want, (s, t, d), n)
    assert np.array_equal(got, want)
    assert (want[:d] == fill).all() and (want[d + n :] == fill).all()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.integers(0, 2**128 - 1), min_size=0, max_size=40))
def test_masks_are_alpha_powers(backend: str, values: list[int]) -> None:
    """Each implementation on zero data gives the masks: ``t * alpha**j`` in IEEE 1619 bit
    order, from an integer model of GF(2^128) doubling."""
    def double(x: int) -> int:
        x <<= 1
        return (x ^ (1 << 128) ^ 0x87) if x >> 128 else x

    tweaks = np.array([[v & (2**64 - 1), v >> 64] for v in values], dtype=np.uint64)
    tweaks = tweaks.reshape(len(values), 2)
    expected = []
    for v in values:
        powers = [v]
        for _ in range(3):
            powers.append(double(powers[-1]))
        expected.append([w for p in powers for w in (p & (2**64 - 1), p >> 64)])
    want = np.array(expected, dtype=np.uint64).reshape(len(values), 8)
    assert np.array_equal(_masks_numpy.line_masks(tweaks), want)
    passes = _kernels.mask_passes()
    assert passes.name == backend
    out = np.zeros((len(values), 8), dtype=np.uint64)
    _mask_lines(passes, out.copy(), tweaks, out, (0, 0, 0), len(values))
    assert np.array_equal(out, want)


@pytest.mark.parametrize(("n1", "n2"), [(0, 0), (0, 5), (5, 0), (1, 1), (4, 9), (4096, 4097)])
def test_mask_pair_equal(n1: int, n2: int) -> None:
    llvm, ref = _both()
    rng = np.random.default_rng(n1 * 7 + n2)
    total = n1 + n2
    src = _at_offset(_u64(rng, (total, 8)), 5)
    tweaks = _u64(rng, (total, 2))
    outputs = []
    for passes in (llvm, ref):
        out = np.zeros((total, 8), dtype=np.uint64)
        work = np.zeros((n2, 8), dtype=np.uint64)
        h = [passes.handle(a) for a in (src, tweaks, out, work)]
        passes.mask_pair(h[0], 0, h[1], 0, h[2], 0, n1, h[0], n1, h[1], n1, h[3], 0, n2)
        outputs.append((out, work))
    (got, got_work), (want, want_work) = outputs
    assert np.array_equal(got, want) and np.array_equal(got_work, want_work)
    single = np.zeros((total, 8), dtype=np.uint64)
    _mask_lines(ref, src, tweaks, single, (0, 0, 0), total)
    assert np.array_equal(want[:n1], single[:n1]) and not want[n1:].any()
    assert np.array_equal(want_work, single[n1:])


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("first", [0, 1, 3])
def test_address_blocks_equal(count: int, first: int) -> None:
    llvm, ref = _both()
    rng = np.random.default_rng(count + first)
    addrs = _at_offset(_u64(rng, (count + first,)), 3)
    addrs[first : first + 4] = [0, 2**64 - 1, 2**63, 1][: max(0, min(4, count))]
    outputs = []
    for passes in (llvm, ref):
        out = np.full((count + 2, 2), 9, dtype=np.uint64)
        passes.address_blocks(passes.handle(addrs), first, passes.handle(out), count)
        outputs.append(out)
    assert np.array_equal(outputs[0], outputs[1])
    assert outputs[1][:count].tobytes() == b"".join(
        int(a).to_bytes(16, "little") for a in addrs[first : first + count])
    assert (outputs[1][count:] == 9).all()


# -- the dispatch point -------------------------------------------------------------------------
@pytest.fixture
def fresh_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """No passes chosen yet: the next use chooses again."""
    monkeypatch.setattr(_kernels, "_active", None)


def _fake_llvm(monkeypatch: pytest.MonkeyPatch, passes_cls: type) -> None:
    module = types.ModuleType("testbed.crypto._masks_llvm")
    module.__dict__["LlvmPasses"] = passes_cls  # a module built at run time
    monkeypatch.setitem(sys.modules, "testbed.crypto._masks_llvm", module)


def test_accel_env_chooses_numpy(fresh_choice: None, monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TESTBED_ACCEL", "0")
    with caplog.at_level(logging.INFO, logger="testbed"):
        assert mask_backend() == "numpy"
        assert mask_backend() == "numpy"
    assert [r.getMessage() for r in caplog.records] == [
        "XTS mask passes: NumPy, because TESTBED_ACCEL=0 is set"]


def test_jit_failure_falls_back_to_numpy(fresh_choice: None, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("no target for this CPU")

    monkeypatch.delenv("TESTBED_ACCEL", raising=False)
    _fake_llvm(monkeypatch, Broken)
    with caplog.at_level(logging.INFO, logger="testbed"):
        assert mask_backend() == "numpy"
    assert [r.getMessage() for r in caplog.records] == [
        "XTS mask passes: NumPy, because llvmlite's JIT failed "
        "(RuntimeError: no target for this CPU)"]


def test_wrong_bytes_fall_back_to_numpy(fresh_choice: None, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    class Wrong(NumpyPasses):
        def mask_lines(self, src: Any, s: int, tweaks: Any, t: int, dst: Any, d: int,
                       n: int) -> None:
            super().mask_lines(src, s, tweaks, t, dst, d, n)
            dst[d] ^= np.uint64(1 << 63)  # one bit off in the first line

    monkeypatch.delenv("TESTBED_ACCEL", raising=False)
    _fake_llvm(monkeypatch, Wrong)
    assert not _kernels._self_check(Wrong())
    assert _kernels._self_check(NumpyPasses())
    with caplog.at_level(logging.INFO, logger="testbed"):
        assert mask_backend() == "numpy"
    assert [r.getMessage() for r in caplog.records] == [
        "XTS mask passes: NumPy, because llvmlite's JIT gave wrong bytes in the self-check"]


def test_llvmlite_chosen_where_it_works(fresh_choice: None, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    passes_for("llvmlite")  # skips where llvmlite is not installed
    monkeypatch.delenv("TESTBED_ACCEL", raising=False)
    with caplog.at_level(logging.INFO, logger="testbed"):
        assert mask_backend() == "llvmlite"
    assert not caplog.records  # nothing to say when the accelerator is in charge
    assert _kernels._self_check(_kernels.mask_passes())


def test_engine_uses_the_passes_in_charge(backend: str) -> None:
    """The engine's batch loop goes through the chosen passes: a batch across chunk edges
    gives the same bytes with either."""
    rng = np.random.default_rng(44)
    count = 2 * xts._CHUNK_LINES + 3
    addrs = rng.integers(0, 2**40, count, dtype=np.uint64) << np.uint64(6)
    lines = rng.integers(0, 256, (count, 64), dtype=np.uint8)
    assert mask_backend() == backend
    got = XtsLineCipher(bytes(range(32))).encrypt(addrs, lines)
    _kernels._active = NumpyPasses()  # restored by the fixture
    assert np.array_equal(got, XtsLineCipher(bytes(range(32))).encrypt(addrs, lines))


_WITHOUT_LLVMLITE = """
import logging, sys
sys.modules["llvmlite"] = None  # any import of llvmlite fails
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
import testbed
from testbed.crypto import XtsLineCipher, mask_backend

key, page = bytes(range(1, 33)), 0x12345000
plain = np.random.default_rng(5).integers(0, 256, (64, 64), dtype=np.uint8)
addrs = page + 64 * np.arange(64, dtype=np.uint64)
got = XtsLineCipher(key).encrypt(addrs, plain)
want = b"".join(
    Cipher(algorithms.AES(key), modes.XTS(int(a).to_bytes(16, "little"))).encryptor()
    .update(line.tobytes()) for a, line in zip(addrs, plain))
assert got.tobytes() == want, "page differs from OpenSSL's XTS"
print(mask_backend(), "llvmlite" in sys.modules and sys.modules["llvmlite"] is not None)
"""


def test_without_llvmlite_numpy_encrypts_a_page_as_openssl() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TESTBED_ACCEL"}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_LLVMLITE], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", "False"]
    logged = [ln for ln in done.stderr.splitlines() if ln.startswith("testbed ")]
    assert len(logged) == 1, done.stderr
    assert logged[0].startswith(
        "testbed INFO XTS mask passes: NumPy, because llvmlite is not installed")


def test_validate_without_llvmlite() -> None:
    """The CLI loads and checks scenarios where llvmlite is missing."""
    script = ("import glob, sys; sys.modules['llvmlite'] = None; from testbed.cli import main; "
              "main(['validate', *sorted(glob.glob('scenarios/*.yaml'))])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(p.name for p in SCENARIOS.glob("*.yaml"))
    assert len(files) >= 20
    assert [ln.split(":")[1].strip() for ln in done.stdout.splitlines()] == \
        [f"scenarios/{name}" for name in files]
    assert all(ln.startswith("ok: ") for ln in done.stdout.splitlines())
