"""Result model shared by the runner, the report and the JSON output."""

from .chance import DEFENCE_BYTES, chance_text, log2_tail, matched_bytes
from .junit import junit_document, write_junit
from .metrics import (
    CurvePoint,
    DictionaryPlot,
    DirtyBitmapPlot,
    FragmentationSeries,
    JsonValue,
    Line,
    LinePlot,
    Metrics,
    PlotData,
    TraceInterval,
    WearoutPlot,
    json_value,
    omitted_when_none,
)
from .model import FORMAT_VERSION, Actor, Control, Evidence, ResultRow, RunInfo, Step
from .output import atomic_write_text, results_document, write_results_json
from .store import Change, RunStore, StoredRun
from .verdicts import MARGIN_LOG2, MAX_TRIALS, TrialStats, Verdict, wilson_interval

__all__ = [
    "DEFENCE_BYTES",
    "FORMAT_VERSION",
    "MARGIN_LOG2",
    "MAX_TRIALS",
    "Actor",
    "Change",
    "Control",
    "CurvePoint",
    "DictionaryPlot",
    "DirtyBitmapPlot",
    "Evidence",
    "FragmentationSeries",
    "JsonValue",
    "Line",
    "LinePlot",
    "Metrics",
    "PlotData",
    "ResultRow",
    "RunInfo",
    "RunStore",
    "Step",
    "StoredRun",
    "TraceInterval",
    "TrialStats",
    "Verdict",
    "WearoutPlot",
    "atomic_write_text",
    "chance_text",
    "json_value",
    "junit_document",
    "log2_tail",
    "matched_bytes",
    "omitted_when_none",
    "results_document",
    "wilson_interval",
    "write_junit",
    "write_results_json",
]
