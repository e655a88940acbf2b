"""One figure per kind of data across a scenario's engines, never the same figure repeated."""

from __future__ import annotations

from testbed.report.plots import comparison_plots
from testbed.results import (
    CurvePoint,
    DictionaryPlot,
    DirtyBitmapPlot,
    FragmentationSeries,
    Line,
    LinePlot,
    TraceInterval,
    WearoutPlot,
)


def _wearout(scale: float) -> WearoutPlot:
    return WearoutPlot(tuple(CurvePoint(q, min(1.0, scale * q / 4096), q * q / 2**25)
                             for q in (256, 1024, 4096)), 24, True)


def _dirty(flip: int) -> DirtyBitmapPlot:
    return DirtyBitmapPlot(tuple(TraceInterval(i, (1 + i % 2, 7 + flip), i % 2, i % 2)
                                 for i in range(8)))


def test_equal_data_is_drawn_once_and_says_for_which_engines() -> None:
    frag = FragmentationSeries((1, 2, 3), (1, 2, 2), (0, 0, 0))
    (plot,) = comparison_plots([(e, (frag,)) for e in ("none", "tme", "mktme")])
    assert plot.caption.endswith("Equal under none, tme, mktme.")


def test_wearout_of_every_engine_shares_one_figure() -> None:
    rows = [("tme", (_wearout(1.0),)), ("mktme", (_wearout(1.0),)), ("sev", (_wearout(0.5),))]
    (plot,) = comparison_plots(rows)
    assert plot.caption == ("Key wear-out: measured success probability against the birthday "
                            "bound under tme, mktme; sev.")
    assert "2 measured line(s)" in plot.alt
    assert "tme, mktme: 1 at q = 4096; sev: 0.5 at q = 4096" in plot.alt


def test_dictionary_points_dirty_strips_and_fragmentation_lines_compare() -> None:
    rows = [("none", (DictionaryPlot(10000, 13.29, 4711), _dirty(0),
                      FragmentationSeries((1, 2), (1, 2), (0, 0)))),
            ("mktme", (DictionaryPlot(10000, 13.29, 10000), _dirty(1),
                       FragmentationSeries((1, 2), (1, 1), (0, 0))))]
    dictionary, dirty, frag = comparison_plots(rows)
    assert "none: 13.3 bits, 4711 candidate writes of 10000; mktme: 13.3 bits, 10000" \
        in dictionary.alt
    assert "none: 8 of 8 bits right; mktme: 8 of 8 bits right" in dirty.alt
    assert "one line per engine" in frag.alt and frag.caption.endswith("under none, mktme.")


def test_an_attacks_own_lines_merge_while_they_fit() -> None:
    def plot(y: float) -> LinePlot:
        return LinePlot("T", "x", "y", (Line("a", (1, 2), (1, y)),), "C.")

    (merged,) = comparison_plots([("none", (plot(2),)), ("tme", (plot(3),))])
    assert "none: a ends at (2, 2); tme: a ends at (2, 3)" in merged.alt
    many = [(f"e{i}", (plot(float(i)),)) for i in range(9)]  # 9 lines: one figure each
    assert len(comparison_plots(many)) == 9


def test_nothing_to_draw_draws_nothing() -> None:
    assert comparison_plots([]) == ()
    assert comparison_plots([("none", ()), ("tme", (WearoutPlot((), 24, True),))]) == ()
