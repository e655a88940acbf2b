"""Dirty-page access-pattern leak.

Threat: during live migration the hypervisor asks VFIO which guest pages a device dirtied
(``VFIO_IOMMU_DIRTY_PAGES``). An encrypted guest whose device requests depend on a secret (a
table lookup per key bit: bit 0 makes the device work on buffer page A, bit 1 on buffer page B)
shows that secret in the dirty bitmaps, one bit per interval. Memory encryption hides what a
page holds, not which page was touched: the leak works under every engine.
Source: K. Wankhede, "[PATCH v16 Kernel 4/7] vfio iommu: Implementation of ioctl for dirty pages
tracking" (qemu-devel and kvm, March 2020), and its review thread: pinned pages and
``dma_rw`` writes are reported dirty, reading the bitmap re-arms it, and a container without a
pinned-page scope reports every mapped page dirty.
Preconditions: capability ``malicious_hypervisor`` (start tracking, read the bitmaps); the guest
uses a mediated device whose vendor driver pins the pages the guest's requests name; the
hypervisor knows where the two buffers are (it loaded the guest image). Mitigations: a container
without pinned-page scope (``dirty_all_pages``: every mapped page reads dirty every time), or
constant-access code in the guest (``constant_access``: both buffers every interval).

The outcome compares the recovered bits with the secret's bits only: all right is
``succeeded``; clearly better than coin flips is ``partial``; otherwise ``mitigated``.

The run is :func:`track_dirty_pages` and its outcome :func:`judge_leak`, which the attack
programs' ``track_dirty_pages`` step and ``recovered_bits`` goal share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from ..platform import dirty_bitmap_bytes, dirty_page_indexes, open_guest_container
from ..results import DirtyBitmapPlot, PlotData, TraceInterval, chance_text, log2_tail
from ..results.chance import byte_chance
from ..types import PAGE_SIZE, Outcome
from ._base import Actor, Attack, AttackContext, BaseMetrics, SecretParams, Verdict, plant_secret
from .cost import MachineShape, Work, run_part

__all__ = [
    "DirtyPageLeak",
    "DirtyPageLeakMetrics",
    "DirtyPageLeakParams",
    "DirtyPageRun",
    "judge_bits",
    "judge_leak",
    "track_dirty_pages",
]

MAX_LEAK_BYTES = 128
"""Longest secret: one interval per bit, 1024 intervals."""
TRACE_LIMIT = 256
"""Intervals kept in the ``bitmap_trace`` metric and the captured bitmaps."""
CHANCE_LIMIT = 1e-6
"""Below this probability of doing as well by coin flips, a run counts as a partial leak."""
BUFFERS = (1, 2)
"""Guest pages of the two buffers the secret bit chooses between (page 0 holds the key)."""
MDEV = "mdev"
INTERVAL_UNITS = 80
"""Work units per interval: the guest's requests, one bitmap read and its decoding
(:mod:`testbed.attacks.cost`)..."""
PIN_UNITS = 8
"""...per page the device works on (pinned and unpinned)..."""
BITMAP_PAGE_UNITS = 1.0
"""...and per guest page the bitmap covers."""
GUEST_PAGE_UNITS = 100
"""Work units per guest page set up and mapped for the device."""


class DirtyPageLeakParams(SecretParams):
    """The secret leaks one bit per interval: at most 128 bytes; background_pages at most
    guest_pages - 3."""

    guest_pages: int = Field(16, ge=4, le=64,
                             description="pages of guest RAM, all mapped for the device")
    background_pages: int = Field(
        0, ge=0, le=16,
        description="other guest pages the device also works on each interval, chosen at random",
    )
    constant_access: bool = Field(
        False, description="the guest makes the device touch both buffers every interval")

    @model_validator(mode="after")
    def _bounded(self) -> DirtyPageLeakParams:
        if self.secret_size > MAX_LEAK_BYTES:
            raise ValueError(f"the secret is leaked one bit per interval: at most "
                             f"{MAX_LEAK_BYTES} bytes, got {self.secret_size}")
        others = self.guest_pages - 1 - len(BUFFERS)
        if self.background_pages > others:
            raise ValueError(f"background_pages: at most guest_pages - 3 = {others}, got "
                             f"{self.background_pages}")
        return self

    def pages_needed(self) -> int:
        return self.guest_pages

    def work(self, machine: MachineShape) -> Work:
        """One interval per secret bit, each pinning its pages and reading the bitmap."""
        intervals = 8 * self.secret_size
        pages = len(BUFFERS) + self.background_pages
        per_interval = (INTERVAL_UNITS + PIN_UNITS * pages
                        + BITMAP_PAGE_UNITS * self.guest_pages)
        return Work((run_part(machine),
                     (f"{self.guest_pages} guest pages", GUEST_PAGE_UNITS * self.guest_pages),
                     (f"{intervals:,} intervals of {pages} pages", per_interval * intervals)),
                    hint="use a shorter secret or fewer params.background_pages")



def chance_probability(correct: int, total: int) -> float:
    """Probability that coin flips get at least ``correct`` of ``total`` bits right."""
    return sum(math.comb(total, k) for k in range(correct, total + 1)) / (1 << total)


def judge_bits(
    truth: NDArray[np.uint8], recovered: NDArray[np.uint8], *, secret: bytes | None = None,
    channel: str = "the dirty bitmaps",
) -> Verdict:
    """Compare recovered bits with the secret's bits.

    ``succeeded`` when all match; ``partial`` when coin flips would do as well with probability
    below :data:`CHANCE_LIMIT`; otherwise ``mitigated`` (about half right is what guessing gets).
    The chance is that of coin flips, or, for a printable-text ``secret`` (whose bits are not
    coin flips to a guesser who knows it is text), that of guessing as many whole bytes from
    its alphabet, whichever is likelier. ``channel`` names what the bits were read from.
    """
    total = int(truth.size)
    correct = int(np.count_nonzero(truth == recovered))
    odds = log2_tail(total, correct, 0.5)
    if secret is not None and total == 8 * len(secret) and byte_chance(secret) > 1 / 256:
        whole = int(np.count_nonzero((truth == recovered).reshape(-1, 8).all(axis=1)))
        odds = max(odds, log2_tail(len(secret), whole, byte_chance(secret)))
    if correct == total:
        return Verdict(Outcome.SUCCEEDED,
                       f"the attacker recovered all {total} secret bits from {channel} "
                       f"(by chance {chance_text(odds)})", odds)
    chance = chance_probability(correct, total)
    accuracy = correct / total
    if chance < CHANCE_LIMIT:
        return Verdict(Outcome.PARTIAL,
                       f"the attacker got {correct} of {total} bits right ({accuracy:.0%}); coin "
                       f"flips do that well with probability {chance:.1e}", odds)
    return Verdict(Outcome.MITIGATED,
                   f"the attacker got {correct} of {total} bits right (accuracy {accuracy:.2f}): "
                   f"no better than coin flips (0.5), so {channel} told it nothing", odds)


@dataclass(frozen=True)
class DirtyPageLeakMetrics(BaseMetrics):
    intervals: int
    bits_total: int
    bits_recovered: int
    """Secret bits the hypervisor read right."""
    bit_accuracy: float
    chance_probability: float
    """Probability that coin flips get at least as many bits right."""
    ambiguous_intervals: int
    """Intervals whose bitmap showed both buffers or neither (the bit was guessed)."""
    pinned_page_dirty_scope: bool
    guest_pages_mapped: int
    bitmap_trace: tuple[TraceInterval, ...]
    """The first intervals, as the hypervisor saw them."""

    def plots(self) -> tuple[PlotData, ...]:
        return (DirtyBitmapPlot(self.bitmap_trace),) if self.bitmap_trace else ()


class DirtyPageLeak(Attack[DirtyPageLeakParams]):
    kind = "dirty-page-leak"
    title = "Dirty-page access-pattern leak"
    capabilities = ("malicious_hypervisor",)
    Params = DirtyPageLeakParams
    Metrics = DirtyPageLeakMetrics
    platform_settings = frozenset()

    def run(self, ctx: AttackContext, params: DirtyPageLeakParams) -> Verdict:
        return judge_leak(track_dirty_pages(ctx, params))


@dataclass(frozen=True)
class DirtyPageRun:
    """What one leak achieved: the bits the guest's key has, and the bits the hypervisor
    decoded from the dirty bitmaps, one per interval.

    Attributes:
        truth: the key's bits, as the guest holds them.
        recovered: the hypervisor's bit for each interval.
        secret: the key the victim planted.
    """

    truth: NDArray[np.uint8]
    recovered: NDArray[np.uint8]
    secret: bytes

    @property
    def recovered_bytes(self) -> bytes:
        """The recovered bits as bytes (the first bit is the high bit of the first byte)."""
        return np.packbits(self.recovered).tobytes()


def judge_leak(run: DirtyPageRun) -> Verdict:
    """The recovered bits against the key's, by :func:`judge_bits`."""
    return judge_bits(run.truth, run.recovered, secret=run.secret)


def track_dirty_pages(ctx: AttackContext, params: DirtyPageLeakParams) -> DirtyPageRun:
    """A guest plants its key and maps its RAM for a mediated device on ``ctx.machine``; the
    hypervisor tracks dirty pages while the guest uses the key, one bit per interval, and
    decodes each interval's bitmap. The metrics go to ``ctx.log``.
    """
    m, log = ctx.machine, ctx.log
    guest, pa, secret = plant_secret(ctx, params, "guest")
    for _ in range(params.guest_pages - 1):
        m.alloc_page(guest)
    size = params.guest_pages * PAGE_SIZE
    container = open_guest_container(m, guest, MDEV)
    container.map_dma(0, size)
    scope = container.pinned_page_dirty_scope
    log.step(Actor.HOST, "maps the guest's RAM into a VFIO container for its devices",
             detail=f"{params.guest_pages} pages at IOVA 0; pinned-page scope: "
             f"{'yes (mediated device only)' if scope else 'no (a passthrough device too)'}")

    log.begin_attack()
    log.step(Actor.ATTACKER, "starts dirty-page tracking, as for live migration",
             "malicious_hypervisor", detail="VFIO_IOMMU_DIRTY_PAGES, flag START")
    container.start_dirty_tracking()
    # The guest's own reads of its key (guest page 0) decrypt correctly under every engine.
    with log.victim_acts():
        held = m.guest_read(guest, 0, len(secret))
    truth = np.unpackbits(np.frombuffer(held, dtype=np.uint8))
    log.step(Actor.VICTIM, "uses its key one bit per interval: the bit picks the buffer the "
             "device works on", address=pa,
             detail=("constant access: both buffers every interval" if params.constant_access
                     else f"bit 0: guest page {BUFFERS[0]}, bit 1: guest page {BUFFERS[1]}"))

    others = [g for g in range(1, params.guest_pages) if g not in BUFFERS]
    recovered = np.zeros_like(truth)
    trace: list[TraceInterval] = []
    captured = bytearray()
    ambiguous = 0
    for i, bit in enumerate(truth.tolist()):
        wanted = list(BUFFERS) if params.constant_access else [BUFFERS[bit]]
        noise = ctx.rng.choice(others, params.background_pages, replace=False).tolist()
        with log.victim_acts():  # the guest's requests: the vendor driver pins their pages
            for gpn in wanted + noise:
                container.pin_pages(MDEV, [gpn * PAGE_SIZE])
                container.unpin_pages(MDEV, [gpn * PAGE_SIZE])
        bitmap = container.get_dirty_bitmap(0, size)
        dirty = dirty_page_indexes(bitmap)
        guess = _decode(set(dirty))
        if guess is None:
            ambiguous += 1
            recovered[i] = int(ctx.rng.integers(2))
        else:
            recovered[i] = guess
        if i < TRACE_LIMIT:
            captured += bitmap
            trace.append(TraceInterval(interval=i, dirty_pages=tuple(dirty), guess=guess,
                                       truth=bit))
    log.step(Actor.ATTACKER, "reads the dirty bitmap after every interval (reading re-arms it)",
             "malicious_hypervisor", detail=f"{truth.size} reads of "
             f"{dirty_bitmap_bytes(params.guest_pages)} bytes (GET_BITMAP)")
    log.step(Actor.ATTACKER, "decodes each interval: buffer A alone dirty is 0, buffer B alone "
             "is 1, anything else is a guess", "malicious_hypervisor",
             detail=f"{ambiguous} of {truth.size} intervals needed a guess")
    container.stop_dirty_tracking()

    log.address = pa
    log.captured = bytes(captured)
    log.recovered = np.packbits(recovered).tobytes()
    correct = int(np.count_nonzero(truth == recovered))
    log.metrics = DirtyPageLeakMetrics(
        intervals=int(truth.size),
        bits_total=int(truth.size),
        bits_recovered=correct,
        bit_accuracy=correct / truth.size,
        chance_probability=chance_probability(correct, int(truth.size)),
        ambiguous_intervals=ambiguous,
        pinned_page_dirty_scope=scope,
        guest_pages_mapped=params.guest_pages,
        bitmap_trace=tuple(trace),
    )
    return DirtyPageRun(truth, recovered, secret)


def _decode(dirty: set[int]) -> int | None:
    """The bit an interval's dirty pages show, or ``None`` when both buffers (or neither) are."""
    a, b = (page in dirty for page in BUFFERS)
    if a != b:
        return 0 if a else 1
    return None
