"""``results.csv``: one row per (scenario, profile), for spreadsheets and pandas users."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..results import ResultRow, atomic_write_text

__all__ = ["results_frame", "write_results_csv"]

COLUMNS = ("scenario", "title", "attack", "profile", "engine", "mitigations", "outcome",
           "expected", "as_expected", "reason", "chance_log2", "trials", "successes",
           "success_low", "success_high", "control_profile", "control_outcome", "metrics")


def results_frame(rows: Sequence[ResultRow]) -> pd.DataFrame:
    """The results as a DataFrame; metrics stay one JSON column (they differ per attack)."""
    records = [
        {
            "scenario": r.scenario,
            "title": r.title,
            "attack": r.attack,
            "profile": r.profile,
            "engine": r.engine,
            "mitigations": "+".join(r.mitigations),
            "outcome": r.outcome.value,
            "expected": r.expected.value if r.expected else "",
            "as_expected": "" if r.as_expected is None else str(r.as_expected).lower(),
            "reason": r.reason,
            "chance_log2": "" if r.chance_log2 is None else r.to_json()["chance_log2"],
            "trials": 1 if r.trials is None else r.trials.trials,
            "successes": "" if r.trials is None else r.trials.successes,
            "success_low": "" if r.trials is None else round(r.trials.low, 4),
            "success_high": "" if r.trials is None else round(r.trials.high, 4),
            "control_profile": "" if r.control is None else r.control.profile,
            "control_outcome": "" if r.control is None else r.control.outcome.value,
            "metrics": json.dumps(r.to_json()["metrics"], sort_keys=True),
        }
        for r in rows
    ]
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def write_results_csv(path: Path, rows: Sequence[ResultRow]) -> None:
    """Write ``results.csv`` atomically (UTF-8, Unix newlines)."""
    atomic_write_text(path, results_frame(rows).to_csv(index=False, lineterminator="\n"))
