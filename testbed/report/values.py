"""Metric values as a reader sees them: rounded numbers with units, series as small tables.

The report shows a row's metrics from their JSON form (:meth:`~testbed.results.Metrics.to_json`),
so a plugin's metrics show the same way as the built-in ones. A number keeps three significant
digits (``13.3``, ``4,823``, ``2.17 × 10¹⁹``); a whole number gets thousands separators. A
metric whose name contains a unit word (``bytes``, ``pages``, ``bits``, ``blocks``, ``years``,
``gb_s``, ...) is shown with that unit. A series (a list of objects, or an object of equally
long lists) becomes a table behind a closed ``<details>``, at most :data:`TABLE_ROWS` rows of it;
a long list or text shows its start and opens to the rest. Every value is complete in the
scenario's JSON file, which each page links to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MetricView", "SeriesTable", "metric_views", "number_text"]

TABLE_ROWS = 64
"""Rows of a series shown on the page; the rest are in the scenario's JSON file."""
INLINE_ITEMS = 12
"""Items of a list shown inline; a longer list shows its first :data:`LIST_HEAD` and opens."""
LIST_HEAD = 8
LIST_LIMIT = 512
"""Items of a list shown when it is opened; the rest are in the JSON file."""
TEXT_INLINE = 80
"""Characters of a text shown inline; a longer one shows its start and opens to the rest."""
TEXT_LIMIT = 4000

_UNITS: tuple[tuple[str, str], ...] = (
    ("gb_s", "GB/s"),
    ("mb_s", "MB/s"),
    ("years", "years"),
    ("bytes", "bytes"),
    ("pages", "pages"),
    ("frames", "frames"),
    ("chunks", "chunks"),
    ("bits", "bits"),
    ("blocks", "blocks"),
    ("pairs", "pairs"),
    ("seconds", "s"),
)
"""Unit words looked for in a metric's name, in this order (the first found wins)."""

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


@dataclass(frozen=True)
class SeriesTable:
    """A series as a table: column heads and rows of shown text."""

    heads: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    total: int
    """Rows in the data; more than ``len(rows)`` when the page shows only the first ones."""


@dataclass(frozen=True)
class MetricView:
    """One metric as shown.

    Attributes:
        key: the metric's name, as in ``results.json``.
        text: the value in one short line (rounded, with its unit), or a summary of a series.
        more: the rest of a long list or text, shown when opened (``""``: nothing more).
        table: the values of a series, shown when opened.
    """

    key: str
    text: str
    more: str = ""
    table: SeriesTable | None = None

    @property
    def is_series(self) -> bool:
        return self.table is not None


def unit_of(key: str) -> str:
    """The unit a metric's name gives (``blocks_captured`` -> ``blocks``), or ``""``."""
    words = key.lower().split("_")
    joined = "_".join(words)
    for word, unit in _UNITS:
        if "_" in word:
            if joined.endswith(word) or f"{word}_" in joined:
                return unit
        elif word in words and joined != word:
            return unit
    return ""


def number_text(value: float) -> str:
    """A number as a reader wants it: whole numbers with separators, others to 3 digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return "∞" if value > 0 else ("-∞" if value < 0 else "not a number")
    if value == 0:
        return "0"
    magnitude = abs(value)
    if value.is_integer() and magnitude < 1e6:
        return f"{int(value):,}"
    if magnitude >= 1e6 or magnitude < 1e-3:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return number_text(value)
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _cell(value: Any) -> str:
    """A value inside a table cell: scalars as above, a short list joined."""
    if _is_scalar(value):
        return _scalar(value)
    if isinstance(value, list) and all(_is_scalar(v) for v in value):
        return ", ".join(_scalar(v) for v in value) if value else "(none)"
    if isinstance(value, Mapping) and all(_is_scalar(v) for v in value.values()):
        return ", ".join(f"{k} {_scalar(v)}" for k, v in value.items())
    return _clip(repr(value), TEXT_INLINE)


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_unit(text: str, unit: str) -> str:
    return f"{text} {unit}" if unit and text not in ("—", "yes", "no") else text


def _records_table(records: Sequence[Mapping[str, Any]]) -> SeriesTable:
    heads: list[str] = []
    for record in records:
        heads.extend(k for k in record if k not in heads)
    rows = tuple(tuple(_cell(r.get(h)) for h in heads) for r in records[:TABLE_ROWS])
    return SeriesTable(tuple(heads), rows, len(records))


def _columns_table(columns: Mapping[str, Sequence[Any]]) -> SeriesTable:
    heads = tuple(columns)
    length = len(next(iter(columns.values())))
    rows = tuple(tuple(_cell(columns[h][i]) for h in heads) for i in range(min(length,
                                                                                TABLE_ROWS)))
    return SeriesTable(heads, rows, length)


def _series_text(table: SeriesTable) -> str:
    noun = "row" if table.total == 1 else "rows"
    return f"a series of {table.total:,} {noun} ({', '.join(table.heads)})"


def metric_view(key: str, value: Any) -> MetricView:
    """One metric's JSON value as shown (see the module)."""
    unit = unit_of(key)
    if _is_scalar(value):
        text = _with_unit(_scalar(value), unit)
        if len(text) > TEXT_INLINE:
            return MetricView(key, _clip(text, TEXT_INLINE), _clip(text, TEXT_LIMIT))
        return MetricView(key, text)
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            table = _records_table(value)
            return MetricView(key, _series_text(table), table=table)
        items = [_cell(v) for v in value[:LIST_LIMIT]]
        if len(value) <= INLINE_ITEMS:
            return MetricView(key, _with_unit(", ".join(items) if items else "(none)", unit))
        head = ", ".join(items[:LIST_HEAD])
        return MetricView(key, f"{head}, … ({len(value):,} values{', ' + unit if unit else ''})",
                          ", ".join(items) + (" …" if len(value) > LIST_LIMIT else ""))
    if isinstance(value, Mapping):
        lists = [v for v in value.values() if isinstance(v, list)]
        if value and len(lists) == len(value) and len({len(v) for v in lists}) == 1 and lists[0]:
            table = _columns_table(value)
            return MetricView(key, _series_text(table), table=table)
        parts = [f"{k}: {_with_unit(_cell(v), unit)}" for k, v in value.items()]
        text = " · ".join(parts) if parts else "(none)"
        if len(text) > TEXT_INLINE * 2:
            lines = [f"{k}:\n  " + "\n  ".join(v) if _is_text_list(v) else part
                     for (k, v), part in zip(value.items(), parts, strict=True)]
            return MetricView(key, _clip(text, TEXT_INLINE), _clip("\n".join(lines), TEXT_LIMIT))
        return MetricView(key, text)
    return MetricView(key, _clip(str(value), TEXT_INLINE))


def metric_views(metrics: Mapping[str, Any]) -> tuple[tuple[MetricView, ...],
                                                      tuple[MetricView, ...]]:
    """``(plain values, series)`` of a row's metrics, each in the metrics' own order."""
    views = [metric_view(k, v) for k, v in metrics.items()]
    return (tuple(v for v in views if not v.is_series), tuple(v for v in views if v.is_series))
