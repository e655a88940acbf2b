"""Every attack whose metrics have figures draws them on its shipped scenarios.

A metric renamed or dropped in an attack fails the type check of its ``plots()``; this test
catches what types cannot: a figure that is no longer produced, or no longer drawn.
"""

from __future__ import annotations

import pytest
from _support.paths import SCENARIOS

from testbed.report.plots import plots_for
from testbed.results import (
    DictionaryPlot,
    DirtyBitmapPlot,
    FragmentationSeries,
    PlotData,
    WearoutPlot,
)
from testbed.scenarios import Job, load_scenario, run_job

FIGURES: list[tuple[str, str, type[PlotData], str]] = [
    ("08-key-wearout.yaml", "tme", WearoutPlot, "measured vs birthday bound"),
    ("07-capture-compare.yaml", "mktme", DictionaryPlot, "entropy"),
    ("12-secretmem-pool-exhaustion.yaml", "sev", FragmentationSeries, "splits"),
    ("14-dirty-page-leak.yaml", "sev-snp", DirtyBitmapPlot, "dirty bitmap"),
]


@pytest.mark.parametrize(("name", "engine", "kind", "words"), FIGURES)
def test_the_shipped_scenario_draws_its_figure(
    name: str, engine: str, kind: type[PlotData], words: str
) -> None:
    scenario, source = load_scenario(SCENARIOS / name)
    row = run_job(Job(scenario, source, engine, 1))
    assert row.metrics is not None, row.reason
    data = row.metrics.plots()
    assert [type(d) for d in data] == [kind]
    (figure,) = plots_for(data)
    assert figure.src.startswith("data:image/png;base64,") and len(figure.src) > 5_000
    assert words in figure.alt.lower() or words in figure.caption.lower()
