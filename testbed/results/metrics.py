"""Typed metrics: each attack declares a frozen :class:`Metrics` dataclass, and plot data is typed.

Metrics travel as these objects from the attack to the report; JSON appears only at the output
edge (:meth:`Metrics.to_json`). A figure is drawn from a typed :class:`PlotData` that the metrics
object builds in :meth:`Metrics.plots`, so renaming a field breaks the type check of the code
that builds the figure rather than silently dropping it.

A field declared with :func:`omitted_when_none` is left out of the JSON while it is ``None``
(a measurement that did not happen); any other ``None`` is written as ``null``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CurvePoint",
    "DictionaryPlot",
    "DirtyBitmapPlot",
    "FragmentationSeries",
    "JsonValue",
    "Line",
    "LinePlot",
    "Metrics",
    "PlotData",
    "TraceInterval",
    "WearoutPlot",
    "json_value",
    "omitted_when_none",
]

JsonValue = int | float | str | bool | list[Any] | dict[str, Any] | None

_OMIT = "omit_when_none"


def omitted_when_none() -> Any:
    """A field that defaults to ``None`` and is left out of the JSON while it is ``None``."""
    return dataclasses.field(default=None, metadata={_OMIT: True})


def json_value(value: Any) -> JsonValue:
    """A metric as plain JSON types: NumPy scalars become numbers, floats keep 9 decimals,
    nested dataclasses become objects (through their own ``to_json`` where they have one)."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json) and dataclasses.is_dataclass(value):
        return json_value(to_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "item") and not isinstance(value, (list, dict, tuple)):
        return json_value(value.item())
    if isinstance(value, float):
        # JSON has no NaN or infinity: a value that is not a number is written as null.
        return round(value, 9) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (set, frozenset)):  # in a stable order, whatever the hash seed
        return sorted((json_value(v) for v in value), key=lambda v: (str(type(v)), str(v)))
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return str(value)


class PlotData:
    """Base of the typed inputs of the report's figures."""


@dataclass(frozen=True)
class Metrics:
    """Base of every attack's metrics: a frozen dataclass of measured values."""

    def to_json(self) -> dict[str, JsonValue]:
        """The metrics as a JSON object, keys sorted."""
        out: dict[str, JsonValue] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get(_OMIT):
                continue
            out[f.name] = json_value(value)
        return dict(sorted(out.items()))

    def plots(self) -> tuple[PlotData, ...]:
        """The figures these metrics have the data for (none by default)."""
        return ()


# --------------------------------------------------------------------------- plot data


@dataclass(frozen=True)
class CurvePoint:
    """One point of the wear-out curve: success rate and birthday bound after ``pairs``."""

    pairs: int
    measured: float
    bound: float


@dataclass(frozen=True)
class WearoutPlot(PlotData):
    """Measured collision success against the birthday bound, for a cipher of ``block_bits``."""

    points: Sequence[CurvePoint]
    block_bits: int
    reduced_width: bool


@dataclass(frozen=True)
class FragmentationSeries(PlotData):
    """Direct-map splits after each secret page of one workload, per allocation strategy."""

    secret_pages: Sequence[int]
    per_page: Sequence[int]
    pmd_pool: Sequence[int]

    def to_json(self) -> dict[str, JsonValue]:
        return {"secret_pages": list(self.secret_pages), "per-page": list(self.per_page),
                "pmd-pool": list(self.pmd_pool)}


@dataclass(frozen=True)
class DictionaryPlot(PlotData):
    """Guesses one dictionary attack needed, against the entropy of its secret."""

    dictionary_size: int
    entropy_bits: float
    guesses: int


@dataclass(frozen=True)
class TraceInterval:
    """One interval of the dirty-page leak: the pages read dirty, the bit guessed, the truth."""

    interval: int
    dirty_pages: Sequence[int]
    guess: int | None
    truth: int


@dataclass(frozen=True)
class DirtyBitmapPlot(PlotData):
    """The dirty bitmaps the hypervisor read, interval by interval."""

    trace: Sequence[TraceInterval]


@dataclass(frozen=True)
class Line:
    """One line of a :class:`LinePlot`: a label and its points."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]


@dataclass(frozen=True)
class LinePlot(PlotData):
    """A figure of any attack's own: lines of (x, y) points, with the text that explains them.

    For attacks whose data fits none of the figures above (a plugin's, for instance). The report
    draws at most eight lines of at most 10,000 points each; the text alternative lists each
    line's last point.
    """

    title: str
    x_label: str
    y_label: str
    lines: Sequence[Line]
    caption: str
    log_x: bool = False
    log_y: bool = False
