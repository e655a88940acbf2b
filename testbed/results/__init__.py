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
from .model import FORMAT_VERSION, Actor, Evidence, ResultRow, RunInfo, Step
from .output import atomic_write_text, results_document, write_results_json
from .store import Change, RunStore, StoredRun

__all__ = [
    "DEFENCE_BYTES",
    "FORMAT_VERSION",
    "Actor",
    "Change",
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
    "WearoutPlot",
    "atomic_write_text",
    "chance_text",
    "json_value",
    "junit_document",
    "log2_tail",
    "matched_bytes",
    "omitted_when_none",
    "results_document",
    "write_junit",
    "write_results_json",
]
