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
from typing import TYPE_CHECKING, Any, TypeGuard

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

__all__ = ["Plot", "comparison_plots", "plots_for"]

MEASURED = "#D55E00"
BOUND = "#0072B2"
OTHER = "#009E73"
"""Okabe–Ito colours, as in the matrix."""


_STYLES: tuple[dict[str, Any], ...] = tuple(
    {"color": colour, "marker": marker, "linestyle": line, "markersize": 4}
    for colour, marker, line in (
        (MEASURED, "o", "-"), (OTHER, "s", "-."), ("#CC79A7", "^", ":"),
        ("#000000", "D", (0, (5, 1))), ("#E69F00", "v", (0, (3, 1, 1, 1))),
        ("#56B4E9", "P", "-"), ("#F0E442", "X", "-."), ("#999999", "*", ":"))
)
"""One style per compared line (engines): colour, marker and dash pattern all differ, so that
lines stay apart in grey print and for colour-blind readers. The bound keeps its blue dashes."""


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


_LEGEND_ROW_CHARS = 90
"""About how many characters of legend fit on one row below a figure."""
_MARKED_POINTS = 40
"""Lines of more points than this are drawn without a marker on each point."""


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
        matplotlib.rc_context({"figure.dpi": 100, "savefig.dpi": 120, "font.size": 9,
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
    labels = ax.get_legend_handles_labels()[1]
    # Three short labels share a row; longer ones take a row each, so none is cut off.
    widest = max((len(label) for label in labels), default=0)
    columns = next((n for n in (3, 2) if widest <= _LEGEND_ROW_CHARS // n), 1)
    fig.legend(loc="outside lower center", ncols=columns, frameon=False)


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


def _wearout_points(data: WearoutPlot) -> list[tuple[float, float, float]] | None:
    if not data.points:
        return None
    points: list[tuple[float, float, float]] = []
    for item in data.points:
        q, measured, bound = item.pairs, item.measured, item.bound
        if not (_is_number(q) and _is_number(measured) and _is_number(bound)):
            return None
        points.append((float(q), float(measured), float(bound)))
    return sorted(points, key=lambda p: p[0])


def _wearout(groups: Sequence[tuple[str, WearoutPlot]]) -> Plot | None:
    """One figure: a measured line per group (engines with the same points), one bound."""
    drawn: list[tuple[str, list[tuple[float, float, float]]]] = []
    for label, data in groups:
        points = _wearout_points(data)
        if points is None:
            return None
        drawn.append((label, points))
    if not drawn:
        return None
    first = groups[0][1]
    title = _wearout_title(first.reduced_width, first.block_bits)
    all_q = sorted({p[0] for _, points in drawn for p in points})
    bound_of = {p[0]: p[2] for _, points in drawn for p in points}
    with _figure() as (fig, buf):
        ax = fig.add_subplot()
        for (label, points), style in zip(drawn, _STYLES, strict=False):
            xs, ys, _ = zip(*points, strict=True)
            ax.plot(xs, ys, label=label, **style)
        ax.plot(all_q, [bound_of[q] for q in all_q], linestyle="--", color=BOUND,
                label="birthday bound q\u00b2/2^(n+1)")
        if all_q[0] > 0 and all_q[-1] / all_q[0] >= 100:
            ax.set_xscale("log")
        top = max(p[1] for _, points in drawn for p in points)
        ax.set_ylim(-0.03, max(1.05, top * 1.05))  # a line at 0 stays visible
        _finish(ax, fig, title, "pairs q", "probability")
    flat = title.replace("\n", " ")
    ends = "; ".join(f"{label}: {points[-1][1]:.3g} at q = {points[-1][0]:g}"
                     for label, points in drawn)
    alt = (f"{flat}. Line plot of success probability against the number of pairs q, "
           f"{len(drawn)} measured line(s) and the birthday bound. Last measured points: {ends}. "
           f"At q = {all_q[-1]:g} the bound is {bound_of[all_q[-1]]:.3g}.")
    return Plot(_src(buf), alt, "Key wear-out: measured success probability against the "
                "birthday bound" + _for(groups) + ".")


# --------------------------------------------------------------------------- secretmem


def _fragmentation_series(data: FragmentationSeries
                          ) -> tuple[list[float], list[float], list[float]] | None:
    xs = _numbers(data.secret_pages)
    per_page, pool = _numbers(data.per_page), _numbers(data.pmd_pool)
    if xs is None or per_page is None or pool is None or not len(xs) == len(per_page) == len(
            pool):
        return None
    return xs, per_page, pool


def _fragmentation(groups: Sequence[tuple[str, FragmentationSeries]]) -> Plot | None:
    """One figure: the one-page-at-a-time line of each group of engines, and the pool's."""
    drawn = []
    for label, data in groups:
        series = _fragmentation_series(data)
        if series is None:
            return None
        drawn.append((label, *series))
    if not drawn:
        return None
    single = len(drawn) == 1
    pools = {tuple(pool) for _, _, _, pool in drawn}
    with _figure() as (fig, buf):
        ax = fig.add_subplot()
        for (label, xs, per_page, _), style in zip(drawn, _STYLES, strict=False):
            name = "one page at a time" if single else label
            ax.step(xs, per_page, where="post", label=name,
                    **({"color": MEASURED} if single else
                       {"color": style["color"], "linestyle": style["linestyle"]}))
        if len(pools) == 1:
            label, xs, _, pool = drawn[0]
            ax.step(xs, pool, where="post", color=BOUND, linestyle="--", label="PMD-size pool")
        else:
            for label, xs, _, pool in drawn:
                ax.step(xs, pool, where="post", color=BOUND, linestyle="--",
                        label=f"pool: {label}")
        ax.set_ylim(bottom=-0.5)
        title = "secretmem: direct-map fragmentation" + (
            "" if single else "\n(removing pages one at a time, per engine; and the pool)")
        _finish(ax, fig, title, "secret pages allocated", "1 GiB and 2 MiB mappings split")
    ends = "; ".join(f"{'' if single else label + ': '}removing pages one at a time ends with "
                     f"{per_page[-1]:g} splits, the PMD-size pool with {pool[-1]:g}"
                     for label, _, per_page, pool in drawn)
    alt = (f"Step plot of large (1 GiB and 2 MiB) direct-map mappings split against secret "
           f"pages allocated, for the same workload of {len(drawn[0][1])} pages"
           f"{'' if single else ', one line per engine'}: {ends}.")
    return Plot(_src(buf), alt, "secretmem: direct-map splits per allocation strategy over the "
                "same workload" + _for(groups) + ".")


# --------------------------------------------------------------------------- dictionary


def _dictionary(groups: Sequence[tuple[str, DictionaryPlot]]) -> Plot | None:
    """One figure: the expected curves once, a point per group (engines with the same run)."""
    points: list[tuple[str, float, float, float]] = []
    for label, data in groups:
        size, bits, guesses = data.dictionary_size, data.entropy_bits, data.guesses
        if not (_is_number(size) and _is_number(bits) and _is_number(guesses)) or size < 1:
            return None
        points.append((label, float(size), float(bits), float(guesses)))
    if not points:
        return None
    top = max(27.0, *(point[2] for point in points))
    grid = [top * i / 100 for i in range(101)]
    with _figure() as (fig, buf):
        ax = fig.add_subplot()
        ax.plot(grid, [2**b for b in grid], color=BOUND, label="whole dictionary (2^H)")
        ax.plot(grid, [max(1.0, 2**b / 2) for b in grid], color=OTHER, linestyle="--",
                label="expected guesses (2^H / 2)")
        for i, ((label, _size, entropy, writes), style) in enumerate(
                zip(points, _STYLES, strict=False)):
            # Hollow and each smaller than the one before: points at the same place stay seen.
            ax.plot([entropy], [max(writes, 1.0)], linestyle="none", label=label,
                    marker=style["marker"], color=style["color"],
                    markersize=max(4.0, 12.0 - 3.0 * i), markerfacecolor="none",
                    markeredgewidth=1.8)
        ax.set_yscale("log")
        _finish(ax, fig, "Dictionary attack: guesses against secret entropy",
                "secret entropy H (bits)", "candidate writes")
    runs = "; ".join(f"{label}: {entropy:.1f} bits, {writes:g} candidate writes of {total:g}"
                     for label, total, entropy, writes in points)
    alt = (f"Guesses against secret entropy, logarithmic. {runs}. Each further bit doubles the "
           "expected number of guesses.")
    return Plot(_src(buf), alt, "Dictionary attack: candidate writes needed against the "
                "entropy of the secret" + _for(groups) + ".")


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


def _dirty_compare(groups: Sequence[tuple[str, DirtyBitmapPlot]]) -> Plot | None:
    """The bitmaps of the first group, then a strip per group: each interval's bit read
    right, wrong or guessed (the engines' bitmaps differ in their background pages)."""
    traces: list[tuple[str, list[tuple[list[int], int | None, int]]]] = []
    for label, data in groups:
        trace = _trace(data.trace)
        if trace is None:
            return None
        traces.append((label, trace))
    if len(traces) == 1:
        return _dirty_trace(groups[0][1])
    first_label, first = traces[0]
    with _figure((5.6, 3.0 + 0.35 * len(traces))) as (fig, buf):
        top, bottom = fig.subplots(2, 1, sharex=True,
                                   height_ratios=(3, max(1.2, 0.45 * len(traces))))
        xs = [i for i, (pages, _, _) in enumerate(first) for _ in pages]
        ys = [p for pages, _, _ in first for p in pages]
        top.scatter(xs, ys, marker="s", s=6, color=BOUND, label=f"page read dirty ({first_label})")
        top.set_ylabel("guest page")
        top.set_title("Dirty bitmaps read by the hypervisor, and the bits read")
        top.yaxis.get_major_locator().set_params(integer=True)
        top.grid(True, linewidth=0.5, alpha=0.5)
        ticks = []
        for row, (label, trace) in enumerate(traces):
            right = [i for i, (_, g, t) in enumerate(trace) if g == t]
            wrong = [i for i, (_, g, t) in enumerate(trace) if g is not None and g != t]
            guessed = [i for i, (_, g, _) in enumerate(trace) if g is None]
            y = len(traces) - 1 - row
            bottom.plot(right, [y] * len(right), linestyle="none", marker="|", color=OTHER,
                        label="bit read right" if row == 0 else None)
            bottom.plot(wrong, [y] * len(wrong), linestyle="none", marker="x", color=MEASURED,
                        label="bit read wrong" if row == 0 else None)
            bottom.plot(guessed, [y] * len(guessed), linestyle="none", marker=".",
                        color="#000000", label="ambiguous (guessed)" if row == 0 else None)
            ticks.append((y, f"{label}: {len(right)}/{len(trace)}"))
        bottom.set_yticks([y for y, _ in ticks], [_literal(t) for _, t in ticks])
        bottom.set_ylim(-0.7, len(traces) - 0.3)
        bottom.set_xlabel("interval (one secret bit each)")
        fig.legend(loc="outside lower center", ncols=3, frameon=False)
    counts = "; ".join(f"{label}: {sum(g == t for _, g, t in trace)} of {len(trace)} bits right"
                       for label, trace in traces)
    alt = (f"Top: the guest pages each dirty bitmap showed under {first_label}, for "
           f"{len(first)} intervals. Bottom: per engine, whether the bit read from each "
           f"interval's bitmap was the secret's bit: {counts}.")
    return Plot(_src(buf), alt, "Dirty-page access-pattern leak: the dirty bitmaps the "
                f"hypervisor read (under {first_label}), and, per engine, the secret bits it "
                "read right from its own bitmaps.")


# --------------------------------------------------------------------------- any attack's own

MAX_LINES = 8
MAX_POINTS = 10_000
_COLOURS = (MEASURED, BOUND, OTHER, "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
"""The Okabe–Ito palette, one colour per line."""


def _literal(text: object) -> str:
    """Text matplotlib shows as written: ``$`` would start its math notation."""
    return " ".join(str(text).split())[:200].replace("$", r"\$")


def _line_series(data: LinePlot) -> list[tuple[str, list[float], list[float]]] | None:
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
    return series


def _line_plot(groups: Sequence[tuple[str, LinePlot]]) -> Plot | None:
    """The lines of every group in one figure (labelled with the group when there are
    several), with the first group's text; ``None`` past :data:`MAX_LINES` lines."""
    series: list[tuple[str, list[float], list[float]]] = []
    for label, data in groups:
        lines = _line_series(data)
        if lines is None:
            return None
        prefix = "" if len(groups) == 1 else f"{label}: "
        series.extend((prefix + name, xs, ys) for name, xs, ys in lines)
    if not series or len(series) > MAX_LINES:
        return None
    data = groups[0][1]
    with _figure() as (fig, buf):
        ax = fig.add_subplot()
        dense = max(len(xs) for _, xs, _ in series) > _MARKED_POINTS
        for (label, xs, ys), colour in zip(series, _COLOURS, strict=False):
            ax.plot(xs, ys, marker=None if dense else "o", markersize=3, color=colour,
                    label=_literal(label))
        if data.log_x:
            ax.set_xscale("log")
        if data.log_y:
            ax.set_yscale("log")
        _finish(ax, fig, _literal(data.title), _literal(data.x_label), _literal(data.y_label))
    ends = "; ".join(f"{label} ends at ({xs[-1]:g}, {ys[-1]:g})" for label, xs, ys in series)
    alt = (f"{data.title}. Line plot of {data.y_label} against {data.x_label}, {len(series)} "
           f"line(s): {ends}.")
    return Plot(_src(buf), alt, str(data.caption))


def _for(groups: Sequence[tuple[str, object]]) -> str:
    """`` under tme, mktme`` for a caption; ``""`` for one unnamed figure."""
    names = [label for label, _ in groups if label not in ("", MEASURED_LABEL)]
    glue = "; " if any("," in n for n in names) else ", "
    return f" under {glue.join(names)}" if names else ""


MEASURED_LABEL = "measured"
"""The label of a figure's one measured line when it is not a comparison."""


def _captioned(plot: Plot | None, engines: Sequence[str]) -> Plot | None:
    if plot is None or not engines:
        return plot
    note = (f" Equal under {', '.join(engines)}." if len(engines) > 1
            else f" Under {engines[0]}.")
    return Plot(plot.src, plot.alt + note, plot.caption + note)


def _draw_one(data: PlotData) -> Plot | None:
    if isinstance(data, WearoutPlot):
        return _wearout([(MEASURED_LABEL, data)])
    if isinstance(data, FragmentationSeries):
        return _fragmentation([(MEASURED_LABEL, data)])
    if isinstance(data, DictionaryPlot):
        return _dictionary([("this run", data)])
    if isinstance(data, DirtyBitmapPlot):
        return _dirty_trace(data)
    if isinstance(data, LinePlot):
        return _line_plot([(MEASURED_LABEL, data)])
    return None  # a kind of plot data this report does not draw


def plots_for(data: Iterable[PlotData]) -> tuple[Plot, ...]:
    """The figures for ``data`` (what a row's metrics build), in order; data that cannot be
    drawn gives no figure."""
    out: list[Plot] = []
    for item in data:
        plot = _draw_one(item)
        if plot is not None:
            out.append(plot)
    return tuple(out)


def _groups(items: Sequence[tuple[str, PlotData]]) -> list[tuple[str, list[str], PlotData]]:
    """Engines with equal data together: ``(label, engines, data)`` in first-seen order."""
    found: list[tuple[list[str], PlotData]] = []
    for engine, data in items:
        for engines, seen in found:
            if seen == data:
                engines.append(engine)
                break
        else:
            found.append(([engine], data))
    return [(", ".join(engines), engines, data) for engines, data in found]


def comparison_plots(rows: Sequence[tuple[str, Sequence[PlotData]]]) -> tuple[Plot, ...]:
    """The figures of one scenario across its engines: one figure per kind of data.

    The data of every engine share one figure: a line or a point per group of engines whose
    data is equal (key wear-out, dictionary, fragmentation, an attack's own lines while they
    fit in :data:`MAX_LINES`), or for dirty bitmaps the first engine's bitmaps and a strip per
    engine of the bits read right or wrong. Data equal under every engine is drawn once,
    captioned with the engines it is the same for.

    Args:
        rows: ``(engine, plot data of that engine's metrics)`` in display order.
    """
    kinds: dict[type[PlotData], list[tuple[str, PlotData]]] = {}
    for engine, data in rows:
        for item in data:
            kinds.setdefault(type(item), []).append((engine, item))
    out: list[Plot | None] = []
    for kind, items in kinds.items():
        groups = _groups(items)
        if kind is WearoutPlot:
            out.append(_wearout([(label, data) for label, _, data in groups
                                 if isinstance(data, WearoutPlot)]))
        elif kind is DictionaryPlot:
            out.append(_dictionary([(label, data) for label, _, data in groups
                                    if isinstance(data, DictionaryPlot)]))
        elif kind is DirtyBitmapPlot and len(groups) > 1:
            out.append(_dirty_compare([(label, data) for label, _, data in groups
                                       if isinstance(data, DirtyBitmapPlot)]))
        elif kind is FragmentationSeries and len(groups) > 1:
            out.append(_fragmentation([(label, data) for label, _, data in groups
                                       if isinstance(data, FragmentationSeries)]))
        elif kind is LinePlot and len(groups) > 1:
            merged = _line_plot([(label, data) for label, _, data in groups
                                 if isinstance(data, LinePlot)])
            out.extend([merged] if merged is not None else
                       [_captioned(_draw_one(data), engines) for _, engines, data in groups])
        else:
            out.extend(_captioned(_draw_one(data), engines) for _, engines, data in groups)
    return tuple(p for p in out if p is not None)
