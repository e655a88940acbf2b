"""Result model shared by the runner, the report and the JSON output."""

from .junit import junit_document, write_junit
from .model import FORMAT_VERSION, Evidence, ResultRow, RunInfo, Step, metric_value
from .output import atomic_write_text, results_document, write_results_json
from .store import Change, RunStore, StoredRun

__all__ = [
    "Change",
    "FORMAT_VERSION",
    "Evidence",
    "ResultRow",
    "RunInfo",
    "RunStore",
    "Step",
    "StoredRun",
    "atomic_write_text",
    "junit_document",
    "metric_value",
    "results_document",
    "write_junit",
    "write_results_json",
]
