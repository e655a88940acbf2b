"""Machine-readable output: ``results.json``, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .model import FORMAT_VERSION, ResultRow, RunInfo

__all__ = ["FORMULA_START", "atomic_write_text", "csv_cell", "formula_like", "results_document",
           "write_results_json"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""How a cell a spreadsheet would run as a formula starts (OWASP's CSV-injection list)."""


def formula_like(text: str) -> bool:
    """``text`` starts like a formula, after any spaces (some spreadsheets trim them on
    import)."""
    return text.lstrip(" ").startswith(FORMULA_START)


def csv_cell(cell: object, limit: int = 2000) -> object:
    """``cell`` as a CSV file of ours holds it: text escaped (:func:`testbed.text.escape`)
    and, when it starts like a formula (after spaces, which some spreadsheets trim on
    import), after a ``'``; numbers unchanged."""
    from ..text import escape

    if isinstance(cell, str):
        cell = escape(cell, limit)
        if formula_like(cell):
            return "'" + cell
    return cell


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def results_document(run: RunInfo, rows: Sequence[ResultRow]) -> dict[str, Any]:
    """The ``results.json`` document (format version :data:`~testbed.results.FORMAT_VERSION`)."""
    return {
        "format_version": FORMAT_VERSION,
        "run": run.to_json(),
        "results": [row.to_json() for row in rows],
    }


def write_results_json(path: Path, run: RunInfo, rows: Sequence[ResultRow]) -> None:
    """Write ``results.json``; the ``results`` list is byte-identical for the same seed."""
    text = json.dumps(results_document(run, rows), indent=2, sort_keys=False, ensure_ascii=False)
    atomic_write_text(path, text + "\n")
