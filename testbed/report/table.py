"""``results.csv``: one row per (scenario, profile), for spreadsheets and pandas users.

Titles and reasons come from scenario files, which anyone may write. A spreadsheet reads a cell
that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula, so the
file gets OWASP's CSV-injection rule: such a text cell is written with a leading ``'``. Every
text cell is quoted (a carriage return inside one would otherwise end the row for most
readers); numbers are not, and stay numbers, unprefixed: ``chance_log2`` is ``-192.156`` or
``-inf`` in the file, which a spreadsheet or pandas reads as a number (OWASP's rule is about
text). :func:`results_frame` keeps the text as it is, for pandas users; only the file is
neutralised.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..results import ResultRow, atomic_write_text
from ..results.output import FORMULA_START, formula_like

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
            "chance_log2": "" if r.chance_log2 is None else round(r.chance_log2, 3),
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


_FORMULA_START = FORMULA_START


def _neutralise(cell: object) -> object:
    """``cell`` as ``results.csv`` holds it: text starting with :data:`_FORMULA_START` (after
    any spaces) gets a leading ``'``; numbers and other text are unchanged."""
    if isinstance(cell, str) and formula_like(cell):
        return "'" + cell
    return cell


def write_results_csv(path: Path, rows: Sequence[ResultRow]) -> None:
    """Write ``results.csv`` atomically (UTF-8, Unix newlines); text cells are neutralised and
    quoted, numbers are not."""
    frame = results_frame(rows).map(_neutralise)
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n",
                                         quoting=csv.QUOTE_NONNUMERIC))
