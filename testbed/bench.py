"""``testbed bench``: how fast the engines and attacks run, next to raw OpenSSL on this machine.

Every figure is measured in the same process, one after the other, as the best of a few
repetitions. Ratios compare the testbed's batched paths with OpenSSL doing the bare cipher work
on one large buffer: AES-XTS for the engine, AES-ECB blocks for the dictionary attack. The XTS
engine's figures depend on which mask passes run (:func:`testbed.crypto.mask_backend`: the
llvmlite accelerator or the NumPy reference); :data:`BACKEND_KEY` names that in the output.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .attacks.key_wearout import KeyWearoutMetrics
from .attacks.torn_live_patch import TornLivePatchMetrics
from .crypto import XexLineCipher, XtsLineCipher, mask_backend
from .crypto.xts import engine_threads
from .programs import ProgramMetrics
from .scenarios import Job, Scenario, load_scenario, load_scenarios, plan, run_jobs, run_trials
from .shipped import scenarios_dir
from .types import LINE_SIZE, PAGE_SIZE

__all__ = ["BACKEND_KEY", "BENCH_KEYS", "DETAIL_KEYS", "QUICK_KEY", "TARGETS", "meets",
           "run_bench"]

BENCH_KEYS = (
    "engine_mb_s",
    "openssl_xts_mb_s",
    "engine_ratio",
    "dictionary_per_s",
    "openssl_ecb_blocks_per_s",
    "dictionary_ratio",
    "wearout_pairs_per_s",
    "matrix_s_1_job",
    "matrix_s_all_jobs",
    "sweep_runs_per_s_1_worker",
    "sweep_runs_per_s_2_workers",
    "sweep_ratio_2_workers",
    "sweep_runs_per_s_dask_2_workers",
    "sweep_ratio_dask_2_workers",
)
DETAIL_KEYS = (
    "engine_threads",
    "engine_mb_s_threads",
    "engine_ratio_threads",
    "sev_xex_mb_s",
    "livepatch_por_reduction",
    "livepatch_int3_por_reduction",
)
"""Printed and written after :data:`BENCH_KEYS`: the engine runs on one thread by default
(``engine_mb_s``) and can split large batches across threads; these give that figure with one
thread per CPU; the SEV engine's model cipher (AES-128 XEX) in the same test; and how many
times fewer schedules partial-order reduction runs on the shipped torn-live-patch scenarios
(:data:`LIVE_PATCH_SCENARIOS`)."""
LIVE_PATCH_SCENARIOS = {
    "livepatch_por_reduction": "16-torn-live-patch.yaml",
    "livepatch_int3_por_reduction": "17-torn-live-patch-int3.yaml",
}
"""The shipped scenario of each POR reduction figure (text_poke, then text_poke_bp)."""
BACKEND_KEY = "mask_backend"
"""Written and printed after the figures: ``"llvmlite"`` or ``"numpy"``, the XTS mask passes
the figures were measured with (:func:`testbed.crypto.mask_backend`; ``TESTBED_ACCEL=0`` chooses
NumPy, and the matrix's worker processes inherit it)."""
QUICK_KEY = "quick"
"""Written last: ``true`` when the figures come from ``--quick`` (tiny sizes, one repetition),
which checks that the command works and measures nothing."""
TARGETS: dict[str, tuple[str, float]] = {
    "engine_ratio": (">=", 0.30),
    "dictionary_ratio": (">=", 0.25),
    "matrix_s_1_job": ("<=", 30.0),
    "sweep_ratio_2_workers": (">=", 1.7),
    "sweep_ratio_dask_2_workers": (">=", 1.5),
}
"""The figures the project sets a target for: ``key -> (">=" or "<=", bound)``."""
_KEY = bytes(range(1, 33))


def meets(key: str, value: float) -> bool:
    """Whether ``value`` meets the target of figure ``key`` (which must have one)."""
    op, bound = TARGETS[key]
    return value >= bound if op == ">=" else value <= bound


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def engine_mb_s(pages: int, repeat: int, threads: int = 1, sev: bool = False) -> float:
    """Encrypt then decrypt ``pages`` whole 4 KiB pages at random physical addresses: the XTS
    engine with ``threads`` threads (its default is one), or the SEV model's XEX cipher."""
    rng = np.random.default_rng(0)
    frames = rng.choice(1 << 20, size=pages, replace=False).astype(np.uint64)
    per_page = np.arange(PAGE_SIZE // LINE_SIZE, dtype=np.uint64) * np.uint64(LINE_SIZE)
    addrs = (frames[:, None] * np.uint64(PAGE_SIZE) + per_page[None, :]).reshape(-1)
    data = rng.integers(0, 256, (addrs.shape[0], LINE_SIZE), dtype=np.uint8)
    cipher: XtsLineCipher | XexLineCipher = (
        XexLineCipher(_KEY[:16]) if sev else XtsLineCipher(_KEY, threads=threads))
    ct = cipher.encrypt(addrs, data)
    seconds = _best(lambda: cipher.encrypt(addrs, data), repeat)
    seconds += _best(lambda: cipher.decrypt(addrs, ct), repeat)
    return 2 * data.size / seconds / 1e6


def openssl_xts_mb_s(size: int, repeat: int) -> float:
    """Raw OpenSSL AES-XTS-128 on one buffer of ``size`` bytes, encrypt then decrypt."""
    data = np.random.default_rng(1).bytes(size)
    out = bytearray(size + 16)
    tweak = bytes(16)
    seconds = _best(lambda: Cipher(algorithms.AES(_KEY), modes.XTS(tweak)).encryptor()
                    .update_into(data, out), repeat)
    seconds += _best(lambda: Cipher(algorithms.AES(_KEY), modes.XTS(tweak)).decryptor()
                     .update_into(data, out), repeat)
    return 2 * size / seconds / 1e6


def openssl_ecb_blocks_per_s(size: int, repeat: int) -> float:
    """Raw OpenSSL AES-128-ECB blocks per second on one buffer of ``size`` bytes."""
    data = np.random.default_rng(2).bytes(size)
    out = bytearray(size + 16)
    encryptor = Cipher(algorithms.AES(_KEY[:16]), modes.ECB()).encryptor()
    return size / 16 / _best(lambda: encryptor.update_into(data, out), repeat)


def _pin_program(digits: int) -> dict[str, object]:
    """The threat, steps and goal of capture and delayed compare on a PIN of ``digits``."""
    def step(op: str, by: str, args: dict[str, object], bind: str | None = None
             ) -> dict[str, object]:
        return {"op": op, "by": by, "args": args, **({"as": bind} if bind else {})}

    return {"threat": ["bus_interposer", "chosen_plaintext"], "goal": {"recovered": "found"},
            "program": [
        step("create_domain", "victim", {"kind": "guest"}, "victim"),
        step("alloc_pages", "victim", {"domain": "$victim"}, "page"),
        step("store_secret", "victim",
             {"address": "$page", "digits": digits, "prefix": "PIN:", "pad_to": 64}, "pin"),
        step("capture", "attacker", {"address": "$pin", "length": 64}, "line"),
        step("destroy_domain", "victim", {"domain": "$victim"}),
        step("create_domain", "attacker", {"kind": "guest"}, "me"),
        step("alloc_pages", "attacker", {"domain": "$me", "until": "$pin"}, "frame"),
        step("guess", "attacker",
             {"address": "$frame", "target": "$line", "prefix": "PIN:", "digits": digits},
             "found"),
    ]}


def _scenario(doc: dict[str, object]) -> Scenario:
    return Scenario.model_validate({"title": "bench", "teaching": {"summary": "bench"}, **doc})


def dictionary_per_s(digits: int) -> float:
    """Candidates per second of the real capture-and-compare program (the steps of
    ``scenarios/07-capture-compare.yaml`` with a PIN of ``digits`` digits; MKTME: no match, a
    full run)."""
    scenario = _scenario({"id": "bench-dictionary", **_pin_program(digits)})
    start = time.perf_counter()
    row = run_trials(Job(scenario, "<bench>", "mktme", 1))
    if not isinstance(row.metrics, ProgramMetrics) or row.metrics.guesses is None:
        raise RuntimeError(f"the dictionary run failed: {row.reason}")
    guesses = row.metrics.guesses
    return guesses / (time.perf_counter() - start)


def wearout_pairs_per_s(max_pairs: int) -> float:
    """Captured (P, C, address) blocks per second of the real wear-out attack (32-bit width)."""
    scenario = _scenario({"id": "bench-wearout", "attack": "key-wearout",
                          "platform": {"reduced_width_bits": 32},
                          "params": {"max_pairs": max_pairs, "trials": 1, "packet_lines": 64}})
    start = time.perf_counter()
    row = run_trials(Job(scenario, "<bench>", "tme", 1))
    if not isinstance(row.metrics, KeyWearoutMetrics):
        raise RuntimeError(f"the wear-out run failed: {row.reason}")
    blocks = row.metrics.blocks_captured
    return blocks / (time.perf_counter() - start)


def por_reduction(name: str) -> float:
    """Interleavings over classes of interleavings of the shipped scenario file ``name``: how
    many times fewer schedules its exhaustive exploration runs with partial-order reduction
    (the ``por_reduction`` metric of one run)."""
    scenario, source = load_scenario(scenarios_dir() / name)
    row = run_trials(Job(scenario, source, "none", 1))
    reduction = row.metrics_as(TornLivePatchMetrics).por_reduction
    if reduction is None:
        raise RuntimeError(f"{name}: no reduction factor: {row.reason}")
    return reduction


def matrix_seconds(paths: Sequence[str | Path], workers: int) -> float:
    """Wall time of every scenario in ``paths`` under every engine."""
    scenarios, _ = load_scenarios(paths)
    jobs = plan(scenarios, 1)
    start = time.perf_counter()
    run_jobs(jobs, workers)
    return time.perf_counter() - start


def _warm(n: int) -> int:
    """A task that needs the package imported where it runs (a Dask worker imports it)."""
    from .sweeps import run as _run

    return n + _run.MAX_CHUNK * 0


def sweep_runs_per_s(path: Path, seeds: int, workers: int, dask: bool = False) -> float:
    """Runs per second (controls included) of the sweep ``path`` with ``seeds`` seeds per point,
    on ``workers`` local processes or Dask workers; the executor is up before the clock starts
    (a Dask cluster's start-up is not timed), and no run is kept from before."""
    import tempfile

    from .sweeps import executor, load_sweep, run_sweep

    plan = load_sweep(path)
    plan = dataclasses.replace(plan, sweep=plan.sweep.model_copy(update={"seeds": seeds}))
    made = 0

    def count(n: int, _failed: bool) -> None:
        nonlocal made
        made += n

    with tempfile.TemporaryDirectory(prefix="testbed-bench-") as scratch, \
            executor(workers, dask=dask) as (pool, _described):
        list(pool.map(_warm, range(workers * 4)))  # every worker up, the package imported
        start = time.perf_counter()
        run_sweep(plan, Path(scratch), pool, count, workers=workers)
        return made / (time.perf_counter() - start)


def run_bench(
    scenario_paths: Sequence[str | Path], workers: int, quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Measure every figure of :data:`BENCH_KEYS` and :data:`DETAIL_KEYS` in this process.

    Args:
        scenario_paths: the scenario matrix to time.
        workers: processes for the "all jobs" matrix time.
        quick: tiny sizes (a smoke test, not a measurement).
    """
    say = progress or (lambda _: None)
    pages, repeat = (16, 1) if quick else (1024, 10)
    out: dict[str, float] = {}
    say(f"engine throughput ({mask_backend()} mask passes)")
    out["engine_mb_s"] = engine_mb_s(pages, repeat)
    out["openssl_xts_mb_s"] = openssl_xts_mb_s(pages * PAGE_SIZE, repeat)
    out["engine_ratio"] = out["engine_mb_s"] / out["openssl_xts_mb_s"]
    out["engine_threads"] = float(engine_threads())
    out["engine_mb_s_threads"] = engine_mb_s(pages, repeat, threads=engine_threads())
    out["engine_ratio_threads"] = out["engine_mb_s_threads"] / out["openssl_xts_mb_s"]
    out["sev_xex_mb_s"] = engine_mb_s(pages, repeat, sev=True)
    say("dictionary attack")
    out["dictionary_per_s"] = dictionary_per_s(3 if quick else 8)
    out["openssl_ecb_blocks_per_s"] = openssl_ecb_blocks_per_s(1 << 20, repeat)
    out["dictionary_ratio"] = out["dictionary_per_s"] / out["openssl_ecb_blocks_per_s"]
    say("key wear-out")
    out["wearout_pairs_per_s"] = wearout_pairs_per_s(1024 if quick else 1 << 17)
    say("scenario matrix, 1 job")
    out["matrix_s_1_job"] = matrix_seconds(scenario_paths, 1)
    say(f"scenario matrix, {workers} jobs")
    out["matrix_s_all_jobs"] = matrix_seconds(scenario_paths, workers)
    sweep_spec = scenarios_dir() / "sweeps" / "torn-patch.yaml"
    seeds = 1 if quick else 8
    say("sweep, 1 worker")
    out["sweep_runs_per_s_1_worker"] = sweep_runs_per_s(sweep_spec, seeds, 1)
    say("sweep, 2 workers")
    out["sweep_runs_per_s_2_workers"] = sweep_runs_per_s(sweep_spec, seeds, 2)
    out["sweep_ratio_2_workers"] = (out["sweep_runs_per_s_2_workers"]
                                    / out["sweep_runs_per_s_1_worker"])
    if importlib.util.find_spec("distributed") is not None:
        say("sweep, Dask LocalCluster of 2 workers")
        out["sweep_runs_per_s_dask_2_workers"] = sweep_runs_per_s(sweep_spec, seeds, 2,
                                                                  dask=True)
        out["sweep_ratio_dask_2_workers"] = (out["sweep_runs_per_s_dask_2_workers"]
                                             / out["sweep_runs_per_s_1_worker"])
    say("live-patch partial-order reduction")
    for key, name in LIVE_PATCH_SCENARIOS.items():
        out[key] = por_reduction(name)
    return out
