"""Sweep specs: YAML in, a validated :class:`Sweep` and its expanded points out.

A sweep names one scenario (a shipped one by id, a file beside the spec, or one written
inline), settings fixed for the whole sweep (``set:``), a grid over dotted paths of the
scenario (lists, or ranges ``{from, to, step}`` / ``{from, to, times}``), combined as a
product or a zip, the engines, and ``seeds:`` repetitions per point. Loading builds and
validates the scenario of every point (each within the per-job work limit) and refuses a
sweep whose runs or total estimated work are over :data:`MAX_RUNS` / :data:`LIMIT_UNITS`, so
a sweep that loads can run to its end. Errors are ``file:line: field: message``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ..attacks.cost import UNIT_SECONDS, units_text
from ..errors import ConfigError, ScenarioError
from ..labs.instance import set_path
from ..labs.loader import shipped_scenarios
from ..scenarios.loader import read_document, validate_document
from ..scenarios.model import EngineName, Scenario, field_error

__all__ = [
    "LIMIT_UNITS",
    "MAX_RUNS",
    "MAX_VALUES",
    "PlotSpec",
    "Point",
    "Range",
    "Sweep",
    "SweepPlan",
    "load_sweep",
]

MAX_VALUES = 256
"""Most values one grid key may take."""
MAX_RUNS = 20_000
"""Most runs (points x engines x seeds) one sweep may make."""
LIMIT_UNITS = 3_600_000_000
"""The estimated work one sweep may take: an hour on the reference machine."""
MAX_SEED = 2**63 - 1
FIXED_COLUMNS = frozenset({"sweep", "point", "engine", "repeat", "seed", "outcome", "success",
                           "control_outcome", "run_trials", "run_successes", "chance_log2"})
"""Columns of ``sweep.csv`` that are not grid keys (a grid key may not be one of them)."""

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Dotted = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z0-9_-]+){0,7}$")]
Text = Annotated[str, StringConstraints(max_length=4000)]
FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.ya?ml$")]
Scalar = int | float | str | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class Range(_Strict):
    """Values from ``from`` to ``to`` (both included when reached): ``step`` apart, or each
    ``times`` the one before."""

    start: float = Field(alias="from")
    to: float
    step: float | None = Field(None, gt=0)
    times: float | None = Field(None, gt=1)
    integer: bool = Field(True, description="round each value to an integer")

    @model_validator(mode="after")
    def _one_rule(self) -> Range:
        if (self.step is None) == (self.times is None):
            raise field_error("step", "give step: (arithmetic) or times: (geometric)")
        if self.to < self.start:
            raise field_error("to", "must not be below from")
        if self.times is not None and self.start <= 0:
            raise field_error("from", "a geometric range starts above 0")
        if len(self._raw()) > MAX_VALUES:
            raise field_error("to", f"more than {MAX_VALUES} values")
        return self

    def _raw(self) -> list[float]:
        """The values, each computed from ``from`` (not added up), rounded to 12 significant
        digits, ``to`` included when the steps reach it."""
        out: list[float] = []
        slack = 1e-9
        if self.step is not None:
            count = math.floor((self.to - self.start) / self.step + slack) + 1
            if count > MAX_VALUES:
                return [self.start] * (MAX_VALUES + 1)
            out = [self.start + i * self.step for i in range(count)]
        else:
            times = self.times or 2.0
            count = math.floor(math.log(self.to / self.start) / math.log(times) + slack) + 1
            if count > MAX_VALUES:
                return [self.start] * (MAX_VALUES + 1)
            out = [self.start * times**i for i in range(count)]
        return [float(f"{v:.12g}") for v in out]

    def values(self) -> list[int | float]:
        raw = self._raw()
        if not self.integer:
            return list(raw)
        return list(dict.fromkeys(round(v) for v in raw))


class PlotSpec(_Strict):
    """One figure of the sweep's page."""

    x: Dotted = Field(description="a grid key, on the horizontal axis")
    y: Annotated[str, StringConstraints(pattern=r"^(success|metrics\.[a-z0-9_]+)$")] = Field(
        "success", description="success (the rate, with its interval) or metrics.NAME (mean)")
    lines: str = Field("engine", description="one line per engine, or per value of a grid key")
    stat: Literal["median", "mean"] = Field(
        "median", description="for a metric: the line is its median or mean over the runs "
        "(the band: 10th to 90th percentile)")
    log_x: bool = False
    analytic: Literal["birthday"] | None = Field(
        None, description="birthday: q^2/2^(n+1), q on x, n the platform's reduced width")
    title: Annotated[str, StringConstraints(max_length=200)] = ""


class Sweep(_Strict):
    """One sweep: a scenario, a grid over its settings, engines and seeds."""

    id: Id
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: Text = ""
    use: Id | None = Field(None, description="a shipped scenario's id")
    scenario: FileName | dict[str, Any] | None = Field(
        None, description="a scenario file in the spec's folder, or one written out")
    set: dict[Dotted, Any] = Field(default_factory=dict, max_length=32)
    grid: dict[Dotted, list[Scalar] | Range] = Field(min_length=1, max_length=4)
    combine: Literal["product", "zip"] = "product"
    engines: list[EngineName] | None = Field(None, min_length=1, max_length=16)
    seeds: int = Field(1, ge=1, le=1000, description="runs per point and engine")
    seed: int = Field(1, ge=0, le=MAX_SEED, description="the sweep's base seed")
    plots: list[PlotSpec] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _checks(self) -> Sweep:
        if (self.use is None) == (self.scenario is None):
            raise field_error("use", "give either use: (a shipped scenario's id) or scenario: "
                              "(a file beside this spec, or one written out)")
        sizes = {key: len(self.values(key)) for key in self.grid}
        for key, n in sizes.items():
            if not 1 <= n <= MAX_VALUES:
                raise field_error(f"grid.{key}", f"give 1 to {MAX_VALUES} values")
            values = self.values(key)
            if len({json.dumps(v) for v in values}) != len(values):
                raise field_error(f"grid.{key}", "each value once (two points would be one)")
            if key in FIXED_COLUMNS:
                raise field_error(f"grid.{key}", f"{key} is a column of the sweep's table: "
                                  "sweep it under its full path (params..., platform...)")
        if self.engines is not None and len(set(self.engines)) != len(self.engines):
            raise field_error("engines", "each engine once")
        if self.combine == "zip" and len(set(sizes.values())) > 1:
            raise field_error("combine", "zip needs as many values under every grid key "
                              f"({', '.join(f'{k}: {n}' for k, n in sizes.items())})")
        for i, plot in enumerate(self.plots):
            if plot.x not in self.grid:
                raise field_error(f"plots.{i}.x", f"{plot.x} is not a grid key "
                                  f"({', '.join(self.grid)})")
            if plot.lines != "engine" and plot.lines not in self.grid:
                raise field_error(f"plots.{i}.lines", "engine, or a grid key")
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool)
                          for v in self.values(plot.x))
            if not numeric:
                raise field_error(f"plots.{i}.x", f"{plot.x} takes values that are not numbers: "
                                  "plot another key (or none: the tables hold every run)")
            if plot.log_x and min(self.values(plot.x)) <= 0:
                raise field_error(f"plots.{i}.log_x", "a log axis needs values above 0")
        return self

    def values(self, key: str) -> list[Any]:
        spec = self.grid[key]
        return spec.values() if isinstance(spec, Range) else list(spec)

    def figure_specs(self) -> list[PlotSpec]:
        """The figures: as given, or the success rate against the first grid key."""
        return list(self.plots) or [PlotSpec(x=next(iter(self.grid)))]


@dataclass(frozen=True)
class Point:
    """One point of the grid: its index, its values by grid key, its scenario."""

    index: int
    values: dict[str, Any]
    scenario: Scenario

    @property
    def key(self) -> str:
        """The point's values as canonical JSON (its identity across changed specs)."""
        return json.dumps(self.values, sort_keys=True)


@dataclass(frozen=True)
class SweepPlan:
    """A loaded sweep: the spec, its file, the points, the engines."""

    sweep: Sweep
    path: Path
    text: str
    points: list[Point]
    engines: list[str]

    @property
    def runs(self) -> int:
        return len(self.points) * len(self.engines) * self.sweep.seeds

    def run_seed(self, point: Point, repeat: int) -> int:
        """The seed of one run: from the sweep's seed, the point's values and the repeat, so
        it is the same whatever runs it and whatever else the sweep holds."""
        text = f"testbed-sweep-v1\0{self.sweep.seed}\0{point.key}\0{repeat}"
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & MAX_SEED


def _base(sweep: Sweep, path: Path, lines: Any) -> dict[str, Any]:
    if sweep.use is not None:
        found = shipped_scenarios().get(sweep.use)
        if found is None:
            raise ScenarioError(str(path), lines.line_at(("use",)), "use",
                                f"no shipped scenario {sweep.use!r}")
        return copy.deepcopy(found[1])
    if isinstance(sweep.scenario, dict):
        return copy.deepcopy(sweep.scenario)
    assert isinstance(sweep.scenario, str)
    folder = path.parent
    target = folder / sweep.scenario
    if target.is_symlink() and os.path.commonpath(
            [os.path.realpath(folder), os.path.realpath(target)]) != os.path.realpath(folder):
        raise ScenarioError(str(path), lines.line_at(("scenario",)), "scenario",
                            "a symlink that leaves the spec's folder, not followed")
    data, _ = read_document(target)
    return dict(data)


def _set(doc: dict[str, Any], key: str, value: Any, path: Path, lines: Any,
         where: tuple[str, ...]) -> None:
    try:
        set_path(doc, key, value)
    except ConfigError as exc:
        raise ScenarioError(str(path), lines.line_at(where), ".".join(where), str(exc)) from None


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"]


def _check_base(sweep: Sweep, base: dict[str, Any], path: Path, lines: Any) -> None:
    """The scenario itself, before any point: its own errors are its own, not the grid's."""
    if isinstance(sweep.scenario, str):
        data, file_lines = read_document(path.parent / sweep.scenario)
        validate_document(Scenario, data, file_lines)  # raises with the scenario file's line
    try:
        Scenario.model_validate(base)
    except ValidationError as exc:
        where, message = _first_error(exc)
        head = ("scenario", *where.split(".")) if isinstance(sweep.scenario, dict) else ("set",)
        field = "scenario." + where if isinstance(sweep.scenario, dict) else "set"
        raise ScenarioError(str(path), lines.line_at(head), field,
                            f"the scenario{' with set:' if sweep.set else ''}: {where}: "
                            f"{message}") from None


def load_sweep(path: str | Path) -> SweepPlan:
    """Load a sweep spec and build every point's scenario (see the module).

    Raises:
        ScenarioError: the first problem, with file, line and field.
    """
    path = Path(path)
    data, lines = read_document(path, "sweep")
    sweep = validate_document(Sweep, data, lines)
    base = _base(sweep, path, lines)
    for key, value in sweep.set.items():
        _set(base, key, value, path, lines, ("set", key))
    _check_base(sweep, base, path, lines)
    keys = list(sweep.grid)
    columns = [sweep.values(k) for k in keys]
    combos = (itertools.product(*columns) if sweep.combine == "product"
              else zip(*columns, strict=True))
    count = math.prod(len(c) for c in columns) if sweep.combine == "product" else len(columns[0])
    engines_given = sweep.engines
    if count * len(engines_given or [0]) * sweep.seeds > MAX_RUNS:
        raise ScenarioError(str(path), lines.line_at(("grid",)), "grid",
                            f"{count} points x {len(engines_given or [0])} engines x "
                            f"{sweep.seeds} seeds is over {MAX_RUNS:,} runs")
    points: list[Point] = []
    for i, combo in enumerate(combos):
        values = dict(zip(keys, combo, strict=True))
        doc = copy.deepcopy(base)
        for key, value in values.items():
            _set(doc, key, value, path, lines, ("grid", key))
        try:
            scenario = Scenario.model_validate(doc)
        except ValidationError as exc:
            where, message = _first_error(exc)
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            key = next((k for k in keys if where.startswith(k)
                        or where.removeprefix("params.").startswith(k)), keys[0])
            raise ScenarioError(str(path), lines.line_at(("grid", key)), f"grid.{key}",
                                f"the point {shown}: {where}: {message}") from None
        points.append(Point(i, values, scenario))
    engines = list(engines_given or points[0].scenario.engines)
    plan = SweepPlan(sweep, path, path.read_text(encoding="utf-8"), points, engines)
    if plan.runs > MAX_RUNS:
        raise ScenarioError(str(path), lines.line_at(("seeds",)), "seeds",
                            f"{plan.runs:,} runs is over the limit of {MAX_RUNS:,}")
    # Every run has a control run of its own (its seed is the point's): twice the work.
    work = 2 * sum((p.scenario.work_units() or 0.0) for p in points) * len(engines) * sweep.seeds
    if work > LIMIT_UNITS:
        raise ScenarioError(str(path), lines.line_at(("grid",)), "grid",
                            f"the sweep, with its control runs, is estimated at "
                            f"{units_text(work)}, over the limit of "
                            f"{units_text(LIMIT_UNITS)} (about "
                            f"{LIMIT_UNITS * UNIT_SECONDS / 3600:.0f} hour on the reference "
                            "machine); use fewer points, seeds or engines")
    return plan
