"""Result model shared by the runner, the report and the JSON output."""

from .model import FORMAT_VERSION, Evidence, ResultRow, RunInfo, Step, metric_value

__all__ = ["FORMAT_VERSION", "Evidence", "ResultRow", "RunInfo", "Step", "metric_value"]
