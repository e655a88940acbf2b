"""Render a run as one self-contained HTML page.

The page works from ``file://`` with no network: styles are inline, plots are embedded as
``data:`` PNGs and a Content-Security-Policy forbids everything else. Scenario text comes from
untrusted files, so every value reaches the page through Jinja2 autoescaping; the only markup
built in Python (hex dumps) is assembled from escaped pieces with :class:`markupsafe.Markup`.
Identical inputs give byte-identical output.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from .. import registry
from ..results.chance import chance_text
from ..results.model import Control, Evidence, ResultRow, RunInfo, Step
from ..results.output import atomic_write_text
from ..results.store import Change
from ..results.verdicts import TrialStats
from ..scenarios.model import Scenario, engine_names
from ..types import Outcome
from .plots import Plot, plots_for

__all__ = ["write_report"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
"""Folder holding the page templates (shipped as package data)."""

INDEX_TEMPLATE = "index.html.j2"
SCENARIO_TEMPLATE = "scenario.html.j2"
SCENARIO_DIR = "scenarios"
"""Folder, inside the report folder, of the per-scenario pages."""

STOPPED: frozenset[Outcome] = frozenset({Outcome.MITIGATED, Outcome.BLOCKED})
"""Outcomes that count as "the attack was stopped" in the engine summary."""
UNDECIDED: frozenset[Outcome] = frozenset({Outcome.INCONCLUSIVE, Outcome.INEFFECTIVE})
"""Outcomes left out of the engine summary's count: neither stopped nor successful."""

HEX_LIMIT = 256
"""Evidence bytes shown per buffer; longer buffers are truncated with a note."""
HEX_ROW = 16
"""Bytes per hex-dump line."""
METRIC_TEXT_LIMIT = 300
"""Characters shown for one metric value before it is truncated."""

OUTCOME_LEGEND: tuple[tuple[Outcome, str], ...] = (
    (Outcome.SUCCEEDED, "The attacker got exactly what it wanted."),
    (Outcome.PARTIAL, "The attacker got part of what it wanted; a metric says how much."),
    (Outcome.INCONCLUSIVE, "What the attacker got, a guess gets more often than 2^-32: success "
     "cannot be told from luck (a bigger secret or more trials can tell)."),
    (Outcome.MITIGATED, "The attack ran to the end but got only garbage or ciphertext, where the "
     "control without the defence succeeded."),
    (Outcome.BLOCKED, "A platform check refused a step (fault, RMP violation, ENOMEM, signature), "
     "where the control without the defence succeeded."),
    (Outcome.INEFFECTIVE, "The attack failed, and fails without any defence too (the control): "
     "it does not work with these parameters, so no defence is credited."),
    (Outcome.ERROR, "The run itself failed."),
    (Outcome.NOT_APPLICABLE, "The threat does not exist under this profile."),
)


def outcome_label(outcome: Outcome) -> str:
    """Human wording of an outcome (``not_applicable`` becomes ``not applicable``).

    Args:
        outcome: The outcome to describe.

    Returns:
        The outcome value with underscores replaced by spaces.
    """
    return outcome.value.replace("_", " ")


# --------------------------------------------------------------------------- view models


@dataclass(frozen=True)
class _HexLine:
    offset: str
    cells: Markup


@dataclass(frozen=True)
class _HexDump:
    key: str
    label: str
    length: int
    lines: tuple[_HexLine, ...]
    truncated: bool
    matches: int | None
    compared: int


@dataclass(frozen=True)
class _StepView:
    actor: str
    action: str
    capability: str
    address: str
    detail: str


@dataclass(frozen=True)
class _ControlView:
    profile: str
    outcome: str
    outcome_label: str
    reason: str
    chance: str
    trials: str


@dataclass(frozen=True)
class _RowView:
    engine: str
    anchor: str
    profile: str
    mitigations: tuple[str, ...]
    outcome: str
    outcome_label: str
    expected_label: str | None
    mismatch: bool
    reason: str
    chance: str
    """How likely a guess does as well: ``2^-248``, or ``not a guess``."""
    trials: str
    """``4 of 4 succeeded: rate 1.00 (95 % interval 0.51-1.00)``, or ``""`` for one run."""
    control: _ControlView | None
    metrics: tuple[tuple[str, str], ...]
    steps: tuple[_StepView, ...]
    evidence_address: str
    evidence: tuple[_HexDump, ...]
    plots: tuple[Plot, ...]


@dataclass(frozen=True)
class _CellView:
    engine: str
    row: _RowView | None
    was: str | None = None
    """The outcome of the previous run of the same scenarios, when it differed."""


@dataclass(frozen=True)
class _ScenarioView:
    id: str
    anchor: str
    title: str
    attack: str
    source: str
    summary: str
    look_for: str
    questions: tuple[str, ...]
    cells: tuple[_CellView, ...]
    rows: tuple[_RowView, ...]
    control: _ControlView | None
    """The scenario's control (the same for every row, as every row has the same one)."""
    not_run: tuple[str, ...]
    page: str
    """Path of the scenario's own page, relative to the report folder."""


@dataclass(frozen=True)
class _EngineSummary:
    engine: str
    stopped: int
    considered: int
    not_applicable: int
    total: int
    undecided: int = 0
    """Rows that are ``inconclusive`` or ``ineffective``: neither stopped nor successful."""

    @property
    def text(self) -> str:
        if self.total == 0:
            return f"{self.engine}: not run"
        return f"{self.engine}: {self.stopped} of {self.considered} attacks stopped"


@dataclass(frozen=True)
class _Mismatch:
    title: str
    href: str
    engine: str
    outcome_label: str
    expected_label: str


@dataclass(frozen=True)
class _LegendItem:
    outcome: str
    label: str
    text: str


# --------------------------------------------------------------------------- formatting


def _hex_dump(key: str, label: str, data: bytes, secret: bytes | None) -> _HexDump:
    """Hex lines of ``data``; bytes equal to ``secret`` at the same position are marked."""
    shown = data[:HEX_LIMIT]
    lines: list[_HexLine] = []
    for start in range(0, len(shown), HEX_ROW):
        pieces: list[Markup] = []
        for i in range(start, min(start + HEX_ROW, len(shown))):
            text = f"{shown[i]:02x}"
            if secret is not None and i < len(secret) and secret[i] == shown[i]:
                piece = Markup('<mark class="match">{}</mark>').format(text)
            else:
                piece = escape(text)
            if i > start:
                gap = "  " if (i - start) == HEX_ROW // 2 else " "
                pieces.append(escape(gap))
            pieces.append(piece)
        lines.append(_HexLine(offset=f"{start:04x}", cells=Markup("").join(pieces)))
    matches: int | None = None
    compared = 0
    if secret is not None:
        compared = min(len(data), len(secret))
        matches = sum(1 for a, b in zip(data, secret, strict=False) if a == b)
    return _HexDump(
        key=key,
        label=label,
        length=len(data),
        lines=tuple(lines),
        truncated=len(data) > HEX_LIMIT,
        matches=matches,
        compared=compared,
    )


def _evidence_views(evidence: Evidence) -> tuple[_HexDump, ...]:
    out: list[_HexDump] = []
    if evidence.secret is not None:
        out.append(_hex_dump("secret", "Secret (what the victim held)", evidence.secret, None))
    if evidence.captured is not None:
        out.append(
            _hex_dump(
                "captured",
                "DRAM / bus capture (what the attacker saw)",
                evidence.captured,
                evidence.secret,
            )
        )
    if evidence.recovered is not None:
        out.append(
            _hex_dump(
                "recovered",
                "Recovered (what the attacker ended up with)",
                evidence.recovered,
                evidence.secret,
            )
        )
    return tuple(out)


def _metric_text(value: Any) -> str:
    """One metric value as compact text, truncated to :data:`METRIC_TEXT_LIMIT` characters."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    if len(text) > METRIC_TEXT_LIMIT:
        text = text[: METRIC_TEXT_LIMIT - 1] + "\u2026"
    return text


def _address(address: int | None) -> str:
    return "" if address is None else f"{address:#x}"


def _step_view(step: Step) -> _StepView:
    return _StepView(
        actor=step.who,
        action=step.action,
        capability=step.capability,
        address=_address(step.address),
        detail=step.detail,
    )


def _duration(seconds: float) -> str:
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)} min {rest:.1f} s"
    return f"{seconds:.2f} s"


# --------------------------------------------------------------------------- assembly


def _trials_text(stats: TrialStats | None) -> str:
    if stats is None:
        return ""
    return f"{stats.successes} of {stats.trials} succeeded: {stats.text()}"


def _control_view(control: Control | None) -> _ControlView | None:
    if control is None:
        return None
    return _ControlView(profile=control.profile, outcome=control.outcome.value,
                        outcome_label=outcome_label(control.outcome), reason=control.reason,
                        chance=chance_text(control.chance_log2),
                        trials=_trials_text(control.trials))


def _row_view(scenario_id: str, row: ResultRow) -> _RowView:
    metrics = row.metrics.to_json() if row.metrics is not None else {}
    mismatch = row.expected is not None and row.expected != row.outcome
    return _RowView(
        engine=row.engine,
        anchor=f"res-{scenario_id}.{row.engine}",
        profile=row.profile,
        mitigations=tuple(row.mitigations),
        outcome=row.outcome.value,
        outcome_label=outcome_label(row.outcome),
        expected_label=None if row.expected is None else outcome_label(row.expected),
        mismatch=mismatch,
        reason=row.reason,
        chance=chance_text(row.chance_log2),
        trials=_trials_text(row.trials),
        control=_control_view(row.control),
        metrics=tuple((k, _metric_text(v)) for k, v in metrics.items()),
        steps=tuple(_step_view(s) for s in row.steps),
        evidence_address=_address(row.evidence.address),
        evidence=_evidence_views(row.evidence),
        plots=plots_for(row.metrics.plots() if row.metrics is not None else ()),
    )


def _columns(scenarios: Sequence[tuple[Scenario, str]]) -> tuple[str, ...]:
    """The matrix's engine columns: the built-in engines, and plugin engines a scenario uses."""
    used = {e for s, _ in scenarios for e in s.engines}
    return tuple(e.name for e in registry.engines.entries() if e.builtin or e.name in used)


def _page(scenario_id: str) -> str:
    """The scenario's page; ids match ``[a-z0-9][a-z0-9_-]*``, so this stays in the folder."""
    return f"{SCENARIO_DIR}/{scenario_id}.html"


def _index_rows(
    rows: Sequence[ResultRow], scenario_ids: set[str]
) -> dict[tuple[str, str], ResultRow]:
    indexed: dict[tuple[str, str], ResultRow] = {}
    known = set(engine_names())
    for row in rows:
        if row.engine not in known:
            raise ValueError(f"row for scenario {row.scenario!r} has unknown engine {row.engine!r}")
        if row.scenario not in scenario_ids:
            raise ValueError(f"row for unknown scenario {row.scenario!r}")
        key = (row.scenario, row.engine)
        if key in indexed:
            raise ValueError(f"two rows for scenario {row.scenario!r} under engine {row.engine!r}")
        indexed[key] = row
    return indexed


def _context(
    run: RunInfo,
    rows: Sequence[ResultRow],
    scenarios: Sequence[tuple[Scenario, str]],
    previous: Previous | None = None,
) -> dict[str, Any]:
    ids = [s.id for s, _ in scenarios]
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise ValueError(f"scenario id {sid!r} appears twice")
        seen.add(sid)
    indexed = _index_rows(rows, seen)
    changed = {(c.scenario, c.engine): c for c in (previous.changes if previous else ())
               if c.before is not None and c.after is not None}
    titles = {s.id: s.title for s, _ in scenarios}
    engines = _columns(scenarios)

    views: list[_ScenarioView] = []
    mismatches: list[_Mismatch] = []
    for scenario, source in scenarios:
        cells: list[_CellView] = []
        row_views: list[_RowView] = []
        not_run: list[str] = []
        for engine in engines:
            row = indexed.get((scenario.id, engine))
            if row is None:
                cells.append(_CellView(engine=engine, row=None))
                not_run.append(engine)
                continue
            view = _row_view(scenario.id, row)
            change = changed.get((scenario.id, engine))
            was = outcome_label(Outcome(change.before)) if change and change.before else None
            cells.append(_CellView(engine=engine, row=view, was=was))
            row_views.append(view)
            if view.mismatch and view.expected_label is not None:
                mismatches.append(
                    _Mismatch(
                        title=scenario.title,
                        href=f"{_page(scenario.id)}#{view.anchor}",
                        engine=engine,
                        outcome_label=view.outcome_label,
                        expected_label=view.expected_label,
                    )
                )
        views.append(
            _ScenarioView(
                id=scenario.id,
                anchor=f"scn-{scenario.id}",
                title=scenario.title,
                attack=scenario.attack,
                source=source,
                summary=scenario.teaching.summary,
                look_for=scenario.teaching.look_for,
                questions=tuple(scenario.teaching.questions),
                cells=tuple(cells),
                rows=tuple(row_views),
                control=next((v.control for v in row_views if v.control is not None), None),
                not_run=tuple(not_run),
                page=_page(scenario.id),
            )
        )

    summaries: list[_EngineSummary] = []
    for engine in engines:
        engine_rows = [r for (_, e), r in indexed.items() if e == engine]
        applicable = [r for r in engine_rows if r.outcome is not Outcome.NOT_APPLICABLE]
        decided = [r for r in applicable if r.outcome not in UNDECIDED]
        summaries.append(
            _EngineSummary(
                engine=engine,
                stopped=sum(1 for r in decided if r.outcome in STOPPED),
                considered=len(decided),
                not_applicable=len(engine_rows) - len(applicable),
                total=len(engine_rows),
                undecided=len(applicable) - len(decided),
            )
        )

    return {
        "run": {
            "seed": run.seed,
            "testbed_version": run.testbed_version,
            "started": run.started,
            "duration": _duration(run.duration_s),
            "jobs": run.jobs,
            "profiles": tuple(run.profiles),
        },
        "engines": engines,
        # Filter values come from the schema's fixed sets, never from scenario text.
        "filter_attacks": tuple(sorted({s.attack for s, _ in scenarios})),
        "summaries": tuple(summaries),
        "mismatches": tuple(mismatches),
        "scenarios": tuple(views),
        "legend": tuple(
            _LegendItem(outcome=o.value, label=outcome_label(o), text=t) for o, t in OUTCOME_LEGEND
        ),
        "hex_limit": HEX_LIMIT,
        "previous": None if previous is None else {
            "run": previous.run_id,
            "changes": tuple(
                {"title": titles.get(c.scenario, c.scenario), "href": _page(c.scenario),
                 "engine": c.engine, "before": outcome_label(Outcome(c.before or "error")),
                 "after": outcome_label(Outcome(c.after or "error"))}
                for c in changed.values()
            ),
        },
    }


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


@dataclass(frozen=True)
class Previous:
    """The previous run of the same scenarios, and the outcomes that changed since."""

    run_id: int
    changes: Sequence[Change]


def render_report(
    run: RunInfo,
    rows: Sequence[ResultRow],
    scenarios: Sequence[tuple[Scenario, str]],
    previous: Previous | None = None,
) -> dict[str, str]:
    """Render every page of the report (see :func:`write_report`).

    Args:
        run: Metadata of the run.
        rows: One result row per (scenario, engine) pair that was run.
        scenarios: ``(scenario, source file path)`` pairs in display order.
        previous: the previous run of the same scenarios and what changed since, if any.

    Returns:
        Page path relative to the report folder (``index.html``, ``scenarios/ID.html``) ->
        complete HTML document, the index last.

    Raises:
        ValueError: If a scenario id repeats, or a row names an unknown scenario or engine, or
            two rows share a (scenario, engine) pair.
    """
    env = _environment()
    context = _context(run, rows, scenarios, previous)
    views: tuple[_ScenarioView, ...] = context["scenarios"]
    pages: dict[str, str] = {}
    page_template = env.get_template(SCENARIO_TEMPLATE)
    for i, view in enumerate(views):
        pages[view.page] = page_template.render(
            context, scn=view, root="../",
            prev=views[i - 1] if i > 0 else None,
            next=views[i + 1] if i + 1 < len(views) else None,
        )
    pages["index.html"] = env.get_template(INDEX_TEMPLATE).render(context, root="")
    return pages


def write_report(
    out_dir: Path,
    run: RunInfo,
    rows: list[ResultRow],
    scenarios: list[tuple[Scenario, str]],
    previous: Previous | None = None,
) -> Path:
    """Write the HTML report of a run: ``out_dir/index.html`` and one page per scenario.

    The index holds the run metadata, a per-engine summary, the outcome matrix (scenarios ×
    engines) with its filters and a legend. Each scenario's page (``scenarios/ID.html``) holds
    the teaching text and, per engine, the reason, plots, metrics, the steps as a timeline and
    the evidence as hex dumps. Every file is replaced atomically, the index last, so that it
    never links to a page that is not there yet.

    Args:
        out_dir: Folder for the report; created if missing.
        run: Metadata of the run.
        rows: One result row per (scenario, engine) pair that was run.
        scenarios: ``(scenario, source file path)`` pairs in display order.
        previous: the previous run of the same scenarios and what changed since, if any.

    Returns:
        Path of the written ``index.html``.

    Raises:
        ValueError: If a scenario id repeats, or a row names an unknown scenario or engine, or
            two rows share a (scenario, engine) pair.
    """
    pages = render_report(run, rows, scenarios, previous)
    out_dir = Path(out_dir)
    (out_dir / SCENARIO_DIR).mkdir(parents=True, exist_ok=True)
    for name, html in pages.items():
        atomic_write_text(out_dir / name, html)
    return out_dir / "index.html"
