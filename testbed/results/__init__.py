"""Result model shared by the runner, the report and the JSON output."""

from .model import FORMAT_VERSION, Evidence, ResultRow, RunInfo, Step, metric_value
from .output import atomic_write_text, results_document, write_results_json

__all__ = [
    "FORMAT_VERSION",
    "Evidence",
    "ResultRow",
    "RunInfo",
    "Step",
    "atomic_write_text",
    "metric_value",
    "results_document",
    "write_results_json",
]
