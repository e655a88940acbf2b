"""The figure any attack can draw: lines of points with their own text (LinePlot)."""

from __future__ import annotations

import pytest

from testbed.report.plots import plots_for
from testbed.results import Line, LinePlot

NAN = float("nan")


def _plot(*lines: Line, log_y: bool = False) -> LinePlot:
    return LinePlot("Faults against $x$ rounds", "rounds", "faults", lines,
                    "Faults per round.", log_y=log_y)


def test_a_line_plot_is_drawn_with_its_own_text() -> None:
    (plot,) = plots_for([_plot(Line("measured", (1, 2, 4), (0.5, 1.0, 2.0)),
                               Line("bound", (1, 2, 4), (1.0, 2.0, 4.0)))])
    assert plot.src.startswith("data:image/png;base64,")
    assert plot.caption == "Faults per round."
    assert plot.alt.startswith("Faults against $x$ rounds. Line plot of faults against rounds")
    assert "measured ends at (4, 2); bound ends at (4, 4)" in plot.alt


@pytest.mark.parametrize("data", [
    _plot(),
    _plot(Line("a", (1, 2), (1,))),
    _plot(Line("a", (1, NAN), (1, 2))),
    _plot(Line("a", (1, 2), (0, 1)), log_y=True),
    _plot(*[Line(str(i), (1,), (1,)) for i in range(9)]),
])
def test_line_data_that_cannot_be_drawn_gives_no_figure(data: LinePlot) -> None:
    assert plots_for([data]) == ()
