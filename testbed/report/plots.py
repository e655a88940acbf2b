"""Figures for the report, drawn with matplotlib and embedded as ``data:`` PNGs.

Each figure is drawn from a typed :class:`~testbed.results.PlotData` that an attack's metrics
build (:meth:`~testbed.results.Metrics.plots`). Values are still checked before drawing (a
plugin's data may hold NaN or nothing at all): data that cannot be drawn means no figure, never
a failed report. Output is deterministic: a fixed style, no timestamps in the PNG metadata.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

from ..results import (
    DictionaryPlot,
    DirtyBitmapPlot,
    FragmentationSeries,
    LinePlot,
    PlotData,
    TraceInterval,
    WearoutPlot,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Plot", "plots_for"]

MEASURED = "#D55E00"
BOUND = "#0072B2"
OTHER = "#009E73"
"""Okabe–Ito colours, as in the matrix."""


@dataclass(frozen=True)
class Plot:
    """One embedded figure: the image, a text alternative and a caption."""

    src: str
    alt: str
    caption: str


def _is_number(value: object) -> TypeGuard[int | float]:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def _numbers(value: object) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or not value or not all(_is_number(v) for v in value):
        return None
    return [float(v) for v in value]


@contextmanager
def _figure(size: tuple[float, float] = (5.6, 3.6)) -> Iterator[tuple[Figure, io.BytesIO]]:
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    buf = io.BytesIO()
    # A bare Figure on the Agg canvas never touches pyplot's global registry; the style context
    # ignores any user matplotlibrc.
    with (
        matplotlib.style.context("default"),
        matplotlib.rc_context({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9,
                               "axes.titlesize": 10}),
    ):
        fig = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig, buf
        fig.savefig(buf, format="png", metadata={"Software": None})
        fig.clear()


def _src(buf: io.BytesIO) -> str:
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finish(ax: Axes, fig: Figure, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, linewidth=0.5, alpha=0.5)
    fig.legend(loc="outside lower center", ncols=3, frameon=False)


# --------------------------------------------------------------------------- key wear-out


def _wearout_title(reduced_width: bool, bits: int) -> str:
    """Plot title; names the reduced-width cipher (and its width n when known, above 0)."""
    title = "Key wear-out: measured vs birthday bound"
    width = ""
    if _is_number(bits) and float(bits).is_integer() and bits > 0:
        width = f"n = {int(bits)} bits"
    if reduced_width:
        return f"{title}\n(reduced-width cipher{', ' + width if width else ''})"
    return f"{title} ({width})" if width else title


def _wearout(data: WearoutPlot) -> Plot | None:
    if not data.points:
        return None
    points: list[tuple[float, float, float]] = []
    for item in data.points:
        q, measured, bound = item.pairs, item.measured, item.bound
        if not (_is_number(q) and _is_number(measured) and _is_number(bound)):
            return None
        points.append((float(q), float(measured), float(bound)))
    points.sort(key=lambda p: p[0])
    xs, ys, bs = zip(*points, strict=True)
    title = _wearout_title(data.reduced_width, data.block_bits)
    with _figure() as (fig, buf):
        ax = fig.add_subplot()
        ax.plot(xs, ys, marker="o", markersize=3, color=MEASURED, label="measured")
        ax.plot(xs, bs, linestyle="--", color=BOUND, label="birthday bound q\u00b2/2^(n+1)")
        if xs[0] > 0 and xs[-1] / xs[0] >= 100:
            ax.set_xscale("log")
        ax.set_ylim(-0.03, max(1.05, max(ys) * 1.05))  # a line at 0 stays visible
        _finish(ax, fig, title, "pairs q", "probability")
    flat = title.replace("\n", " ")
    alt = (f"{flat}. Line plot of success probability against the number of pairs q "
           f"({len(points)} points, q from {xs[0]:g} to {xs[-1]:g}). At q = {xs[-1]:g} the "
           f"measured probability is {ys[-1]:.3g} and the birthday bound is {bs[-1]:.3g}.")
    return Plot(_src(buf), alt, "Key wear-out: measured success probability against the "
                "birthday bound.")


# --------------------------------------------------------------------------- secretmem


def _fragmentation(data: FragmentationSeries) -> Plot | None:
    xs = _numbers(data.secret_pages)
    per_page, pool = _numbers(data.per_page), _numbers(data.pmd_pool)
    if xs is None or per_page is None or pool is None or not len(xs) == len(per_page) == len(
            pool):
        return None
    with _figure() as (fig, buf):
        ax = fig.add_subplot()
        ax.step(xs, per_page, where="post", color=MEASURED, label="one page at a time")
        ax.step(xs, pool, where="post", color=BOUND, linestyle="--", label="PMD-size pool")
        ax.set_ylim(bottom=-0.5)
        _finish(ax, fig, "secretmem: direct-map fragmentation", "secret pages allocated",
                "2 MiB mappings split")
    alt = (f"Step plot of 2 MiB direct-map mappings split against secret pages allocated, for "
           f"the same workload of {len(xs)} pages: removing pages one at a time ends with "
           f"{per_page[-1]:g} splits, the PMD-size pool with {pool[-1]:g}.")
    return Plot(_src(buf), alt, "secretmem: direct-map splits per allocation strategy over the "
                "same workload.")


# --------------------------------------------------------------------------- dictionary


def _dictionary(data: DictionaryPlot) -> Plot | None:
    size, bits, guesses = data.dictionary_size, data.entropy_bits, data.guesses
    if not (_is_number(size) and _is_number(bits) and _is_number(guesses)) or size < 1:
        return None
    top = max(float(bits), 27.0)
    grid = [top * i / 100 for i in range(101)]
    with _figure() as (fig, buf):
        ax = fig.add_subplot()
        ax.plot(grid, [2**b for b in grid], color=BOUND, label="whole dictionary (2^H)")
        ax.plot(grid, [max(1.0, 2**b / 2) for b in grid], color=OTHER, linestyle="--",
                label="expected guesses (2^H / 2)")
        ax.plot([float(bits)], [max(float(guesses), 1.0)], marker="o", color=MEASURED,
                linestyle="none", label="this run")
        ax.set_yscale("log")
        _finish(ax, fig, "Dictionary attack: guesses against secret entropy",
                "secret entropy H (bits)", "candidate writes")
    alt = (f"Guesses against secret entropy, logarithmic. This run: {float(bits):.1f} bits of "
           f"entropy, a dictionary of {size:g} candidates, {guesses:g} candidate writes. Each "
           f"further bit doubles the expected number of guesses.")
    return Plot(_src(buf), alt, "Dictionary attack: candidate writes needed against the "
                "entropy of the secret.")


# --------------------------------------------------------------------------- dirty pages


def _trace(value: Sequence[TraceInterval]) -> list[tuple[list[int], int | None, int]] | None:
    """``(dirty pages, guess, truth)`` per interval, or ``None`` if ``value`` cannot be drawn."""
    if not value or len(value) > 4096:
        return None
    out: list[tuple[list[int], int | None, int]] = []
    for item in value:
        pages, guess, truth = list(item.dirty_pages), item.guess, item.truth
        if not all(
                isinstance(p, int) and not isinstance(p, bool) and 0 <= p < 1 << 20
                for p in pages):
            return None
        if truth not in (0, 1) or guess not in (0, 1, None):
            return None
        if any(isinstance(v, (bool, float)) for v in (guess, truth)):
            return None
        out.append((pages, guess, int(truth)))
    return out


def _dirty_trace(data: DirtyBitmapPlot) -> Plot | None:
    trace = _trace(data.trace)
    if trace is None:
        return None
    n = len(trace)
    right = sum(guess == truth for _, guess, truth in trace)
    with _figure((5.6, 4.2)) as (fig, buf):
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        xs = [i for i, (pages, _, _) in enumerate(trace) for _ in pages]
        ys = [p for pages, _, _ in trace for p in pages]
        top.scatter(xs, ys, marker="s", s=6, color=BOUND, label="page read dirty")
        top.set_ylabel("guest page")
        top.set_title(f"Dirty bitmaps read by the hypervisor: {right} of {n} bits recovered")
        top.grid(True, linewidth=0.5, alpha=0.5)
        idx = list(range(n))
        bottom.step(idx, [t for _, _, t in trace], where="mid", color=OTHER, label="secret bit")
        guessed = [(i, g) for i, (_, g, _) in enumerate(trace) if g is not None]
        bottom.plot([i for i, _ in guessed], [g for _, g in guessed], marker=".",
                    linestyle="none", color=MEASURED, label="bit read from the bitmap")
        bottom.set_yticks([0, 1])
        bottom.set_ylim(-0.3, 1.3)
        bottom.set_xlabel("interval (one secret bit each)")
        fig.legend(loc="outside lower center", ncols=3, frameon=False)
    ambiguous = sum(g is None for _, g, _ in trace)
    alt = (f"Top: the guest pages each dirty bitmap showed, for {n} intervals. Bottom: the "
           f"guest's secret bit in each interval and the bit the hypervisor read from the "
           f"bitmap; {right} of {n} agree" + (f", {ambiguous} intervals were ambiguous."
                                               if ambiguous else "."))
    return Plot(_src(buf), alt, "Dirty-page access-pattern leak: the dirty bitmaps the "
                "hypervisor read, and the secret bits it reconstructed from them.")


# --------------------------------------------------------------------------- any attack's own

MAX_LINES = 8
MAX_POINTS = 10_000
_COLOURS = (MEASURED, BOUND, OTHER, "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
"""The Okabe–Ito palette, one colour per line."""


def _literal(text: object) -> str:
    """Text matplotlib shows as written: ``$`` would start its math notation."""
    return " ".join(str(text).split())[:200].replace("$", r"\$")


def _line_plot(data: LinePlot) -> Plot | None:
    lines = list(data.lines)
    if not lines or len(lines) > MAX_LINES:
        return None
    series: list[tuple[str, list[float], list[float]]] = []
    for line in lines:
        xs, ys = _numbers(line.xs), _numbers(line.ys)
        if xs is None or ys is None or len(xs) != len(ys) or len(xs) > MAX_POINTS:
            return None
        if (data.log_x and min(xs) <= 0) or (data.log_y and min(ys) <= 0):
            return None
        series.append((str(line.label), xs, ys))
    with _figure() as (fig, buf):
        ax = fig.add_subplot()
        for (label, xs, ys), colour in zip(series, _COLOURS, strict=False):
            ax.plot(xs, ys, marker="o", markersize=3, color=colour, label=_literal(label))
        if data.log_x:
            ax.set_xscale("log")
        if data.log_y:
            ax.set_yscale("log")
        _finish(ax, fig, _literal(data.title), _literal(data.x_label), _literal(data.y_label))
    ends = "; ".join(f"{label} ends at ({xs[-1]:g}, {ys[-1]:g})" for label, xs, ys in series)
    alt = (f"{data.title}. Line plot of {data.y_label} against {data.x_label}, {len(series)} "
           f"line(s): {ends}.")
    return Plot(_src(buf), alt, str(data.caption))


def _draw(data: PlotData) -> Plot | None:
    if isinstance(data, WearoutPlot):
        return _wearout(data)
    if isinstance(data, FragmentationSeries):
        return _fragmentation(data)
    if isinstance(data, DictionaryPlot):
        return _dictionary(data)
    if isinstance(data, DirtyBitmapPlot):
        return _dirty_trace(data)
    if isinstance(data, LinePlot):
        return _line_plot(data)
    return None  # a kind of plot data this report does not draw


def plots_for(data: Iterable[PlotData]) -> tuple[Plot, ...]:
    """The figures for ``data`` (what a row's metrics build), in order; data that cannot be
    drawn gives no figure."""
    out: list[Plot] = []
    for item in data:
        plot = _draw(item)
        if plot is not None:
            out.append(plot)
    return tuple(out)
