"""A sweep's outputs: the tidy tables, the aggregates per point, the figures and the page.

- ``sweep.csv`` / ``sweep.parquet``: one row per run (point, its grid values, engine, repeat,
  seed, outcome, control outcome, trials and successes, chance, numeric metrics ``m.NAME``);
- ``points.csv`` / ``points.parquet``: one row per point and engine: runs, the count of each
  outcome, successes, the success rate and its 95 % Wilson interval, and for each numeric
  metric its mean, median and 10th / 90th percentiles;
- ``index.html``: the spec, one figure per plot (rate or metric against the swept value, one
  line per engine or per value of another key, intervals as bands, the analytic curve where
  asked), and the per-point table;
- ``results.json``: every run as a result row (``testbed run``'s format), so the history can
  tell the run is published.

Text cells of the CSV files are neutralised for spreadsheets, as in ``results.csv``.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..results.output import atomic_write_text, csv_cell
from ..results.verdicts import wilson_interval
from ..types import Outcome
from .run import SweepRun
from .spec import FIXED_COLUMNS, PlotSpec, SweepPlan

__all__ = ["FIXED_COLUMNS", "OWNED", "birthday", "missing_metrics", "points_frame", "runs_frame",
           "write_outputs"]

OWNED = frozenset({"index.html", "sweep.csv", "points.csv", "sweep.parquet", "points.parquet",
                   "results.json"})
"""The entries of a sweep's folder a sweep writes (the store and the history are kept)."""
SUCCESS = Outcome.SUCCEEDED
UNJUDGED = (Outcome.ERROR.value, Outcome.NOT_APPLICABLE.value)
"""Outcomes that are no trial of the attack: left out of the rate and its interval."""



def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(float(value))


def runs_frame(plan: SweepPlan, runs: Sequence[SweepRun]) -> pd.DataFrame:
    """One row per run."""
    keys = list(plan.sweep.grid)
    metric_names = sorted({name for r in runs for name, v in
                           (r.row.metrics.to_json() if r.row.metrics else {}).items()
                           if _numeric(v)})
    records = []
    for r in runs:
        metrics = r.row.metrics.to_json() if r.row.metrics else {}
        chance = r.row.chance_log2
        records.append({
            "sweep": plan.sweep.id, "point": r.point.index,
            **{k: r.point.values[k] for k in keys},
            "engine": r.engine, "repeat": r.repeat, "seed": str(r.seed),
            "outcome": r.row.outcome.value,
            "success": int(r.row.outcome is SUCCESS),
            "control_outcome": r.row.control.outcome.value if r.row.control else "",
            "run_trials": r.row.trials.trials if r.row.trials else 1,
            "run_successes": (r.row.trials.successes if r.row.trials else
                              int(r.row.outcome is SUCCESS)),
            # As results.json rounds it: the same whether the run was made now or kept.
            "chance_log2": round(chance, 3) if chance is not None and math.isfinite(chance)
            else None,
            **{f"m.{n}": metrics.get(n) if _numeric(metrics.get(n)) else None
               for n in metric_names},
        })
    columns = ["sweep", "point", *keys, "engine", "repeat", "seed", "outcome", "success",
               "control_outcome", "run_trials", "run_successes", "chance_log2",
               *(f"m.{n}" for n in metric_names)]
    return pd.DataFrame.from_records(records, columns=columns)


def points_frame(plan: SweepPlan, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per point and engine: outcome counts, rate and interval, metric summaries."""
    keys = list(plan.sweep.grid)
    metrics = [c for c in frame.columns if c.startswith("m.")]
    outcomes = [o.value for o in Outcome if (frame["outcome"] == o.value).any()]
    records = []
    for (point, engine), group in frame.groupby(["point", "engine"], sort=False):
        n = len(group)
        successes = int(group["success"].sum())
        # A run that failed to run (error) or does not apply is no trial of the attack.
        judged = int((~group["outcome"].isin(UNJUDGED)).sum())
        low, high = wilson_interval(successes, judged) if judged else (math.nan, math.nan)
        record: dict[str, Any] = {"point": point,
                                  **{k: group[k].iloc[0] for k in keys}, "engine": engine,
                                  "runs": n, **{f"n_{o}": int((group["outcome"] == o).sum())
                                                for o in outcomes},
                                  "judged": judged, "successes": successes,
                                  "rate": successes / judged if judged else math.nan,
                                  "rate_low": low, "rate_high": high}
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce").dropna()
            name = m.removeprefix("m.")
            record[f"{name}.mean"] = float(values.mean()) if len(values) else None
            record[f"{name}.median"] = float(values.median()) if len(values) else None
            record[f"{name}.p10"] = float(values.quantile(0.1)) if len(values) else None
            record[f"{name}.p90"] = float(values.quantile(0.9)) if len(values) else None
        records.append(record)
    return pd.DataFrame.from_records(records)


def _csv(frame: pd.DataFrame) -> str:
    return frame.map(csv_cell).to_csv(index=False, lineterminator="\n",
                                      quoting=csv.QUOTE_NONNUMERIC)


def birthday(q: float, bits: int) -> float:
    """The birthday bound: the chance of a collision among ``q`` blocks of ``bits`` bits,
    ``q^2 / 2^(bits+1)``, capped at 1."""
    return min(1.0, q * q / 2.0 ** (bits + 1))


def _label(key: str) -> str:
    return key.split(".")[-1].replace("_", " ")


_SHORT = {"platform.reduced_width_bits": "n"}
"""Names short enough for a legend."""


def _short(key: str) -> str:
    return _SHORT.get(key, key if key.count(".") > 1 else _label(key))


def _plain(text: str) -> str:
    """Text from a spec as matplotlib draws it: a ``$`` is a dollar, never mathtext."""
    return text.replace("$", r"\$")


def _figures(plan: SweepPlan, points: pd.DataFrame) -> list[dict[str, str]]:
    out = []
    for spec in plan.sweep.figure_specs():
        # Zipped keys move together with x: one figure. In a product every other key's value
        # is a figure of its own, and so is every engine when the lines are a grid key's.
        others = ([] if plan.sweep.combine == "zip" else
                  [k for k in plan.sweep.grid if k not in (spec.x, spec.lines)])
        if spec.lines != "engine":
            others = ["engine", *others]
        panels = (itertools.product(*(
            [e for e in plan.engines if e in set(points[k])] if k == "engine"
            else sorted(points[k].unique().tolist()) for k in others)) if others else [()])
        for panel in panels:
            data = points
            for k, v in zip(others, panel, strict=True):
                data = data[data[k] == v]
            if data.empty:
                continue
            caption = ", ".join(f"{_label(k)} = {v}" for k, v in zip(others, panel,
                                                                     strict=True))
            caption = caption.replace("engine = ", "under ")
            out.append(_figure(plan, spec, data, caption))
    return out


def _figure(plan: SweepPlan, spec: PlotSpec, data: pd.DataFrame, caption: str
            ) -> dict[str, str]:
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    buf = io.BytesIO()
    with (matplotlib.style.context("default"),
          matplotlib.rc_context({"figure.dpi": 100, "savefig.dpi": 120, "font.size": 9,
                                 "axes.titlesize": 10})):
        fig = Figure(figsize=(7.2, 4.0), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        lines = data["engine" if spec.lines == "engine" else spec.lines]
        seen = lines.unique().tolist()
        order = ([e for e in plan.engines if e in seen] if spec.lines == "engine"
                 else sorted(seen, key=lambda v: (isinstance(v, str), v)))
        for n, value in enumerate(order):
            part = data[lines == value].sort_values(spec.x)
            color = f"C{n % 10}"
            x = part[spec.x].astype(float).to_numpy()
            name = _plain(str(value) if spec.lines == "engine"
                          else f"{_short(spec.lines)} = {value}")
            if spec.y == "success":
                ax.plot(x, part["rate"], marker="o", color=color, label=name)
                ax.fill_between(x, part["rate_low"], part["rate_high"], color=color, alpha=0.1,
                                linewidth=0)
            else:
                metric = spec.y.removeprefix("metrics.")
                if f"{metric}.{spec.stat}" not in part:
                    if n == 0:
                        ax.text(0.5, 0.5, f"no run reported {spec.y}", ha="center",
                                va="center", transform=ax.transAxes)
                    continue
                ax.plot(x, part[f"{metric}.{spec.stat}"], marker="o", color=color, label=name)
                ax.fill_between(x, part[f"{metric}.p10"], part[f"{metric}.p90"], color=color,
                                alpha=0.15, linewidth=0)
            if spec.analytic == "birthday":
                bits = _width(plan, part)
                if bits is not None:
                    grid = sorted({float(v) for v in x})
                    ax.plot(grid, [birthday(q, bits) for q in grid], linestyle="--",
                            color=color, linewidth=1,
                            label=f"q²/2^(n+1), n = {bits}" if spec.lines != "engine" or n == 0
                            else None)
        if spec.log_x:
            ax.set_xscale("log", base=2)
        elif all(isinstance(v, int) for v in plan.sweep.values(spec.x)):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ylabel = ("success rate (95 % interval)" if spec.y == "success" else
                  f"{_label(spec.y)} ({spec.stat}, 10th-90th percentile)")
        if spec.y == "success":
            ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(_label(spec.x))
        ax.set_ylabel(ylabel)
        title = spec.title or f"{ylabel.split(' (')[0]} against {_label(spec.x)}"
        ax.set_title(_plain(title + (f"\n{caption}" if caption else "")))
        ax.grid(True, linewidth=0.5, alpha=0.5)
        fig.legend(loc="outside right upper", frameon=False, fontsize=8)
        fig.savefig(buf, format="png", metadata={"Software": None})
        fig.clear()
    alt = f"{title}{', ' + caption if caption else ''}: one line per " + (
        "engine" if spec.lines == "engine" else _label(spec.lines))
    return {"src": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
            "alt": alt, "caption": caption}


def _width(plan: SweepPlan, part: pd.DataFrame) -> int | None:
    key = "platform.reduced_width_bits"
    if key in part and part[key].notna().all():
        values = part[key].unique().tolist()
        return int(values[0]) if len(values) == 1 else None
    width = plan.points[int(part["point"].iloc[0])].scenario.platform.reduced_width_bits
    return width


def missing_metrics(plan: SweepPlan, points: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """The plotted metrics (``y: metrics.NAME``) no run reported, each with the metrics the
    runs did report (a name can be checked only against what the attack measured)."""
    have = sorted({c.removesuffix(".median") for c in points.columns if c.endswith(".median")})
    out = []
    for spec in plan.sweep.figure_specs():
        metric = spec.y.removeprefix("metrics.")
        if spec.y != "success" and f"{metric}.{spec.stat}" not in points.columns:
            out.append((spec.y, have))
    return out


def write_outputs(staging: Path, plan: SweepPlan, runs: Sequence[SweepRun], info: dict[str, Any]
                  ) -> pd.DataFrame:
    """Write every output file of the sweep into ``staging``; returns the per-point table."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    frame = runs_frame(plan, runs)
    points = points_frame(plan, frame)
    atomic_write_text(staging / "sweep.csv", _csv(frame))
    atomic_write_text(staging / "points.csv", _csv(points))
    frame.to_parquet(staging / "sweep.parquet", index=False)
    points.to_parquet(staging / "points.parquet", index=False)
    env = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                      autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    shown = points.copy()
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    page = env.get_template("sweep.html.j2").render(
        sweep=plan.sweep, plan=plan, info=info, figures=_figures(plan, points),
        columns=[c for c in shown.columns if not c.endswith((".p10", ".p90"))],
        rows=shown.to_dict("records"),
        grid=[(k, plan.sweep.values(k)) for k in plan.sweep.grid])
    atomic_write_text(staging / "index.html", page)
    return points
