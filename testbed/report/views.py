"""What the report's pages show, assembled from a run: one view per scenario, row and cell.

Everything here is plain data (text that the templates escape, or :class:`markupsafe.Markup`
built from escaped pieces); the templates only lay it out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import registry
from ..errors import ScenarioError
from ..results.chance import chance_text
from ..results.model import Control, ResultRow, RunInfo, Step
from ..results.store import Change
from ..results.verdicts import TrialStats
from ..scenarios.model import Scenario, engine_names
from ..text import escape as text_escape
from ..types import Outcome
from .evidence import EvidenceLabels, HexDump, evidence_views
from .plots import Plot, comparison_plots
from .programs import SHOWN_METRICS, ProgramView, evidence_labels, program_view, threat_text
from .values import MetricView, metric_views

__all__ = ["OUTCOME_LEGEND", "Previous", "build_context", "outcome_label"]

SCENARIO_DIR = "scenarios"
"""Folder, inside the report folder, of the per-scenario pages and their data files."""

STOPPED: frozenset[Outcome] = frozenset({Outcome.MITIGATED, Outcome.BLOCKED})
"""Outcomes that count as "the attack was stopped" in the engine summary."""
WORKED: frozenset[Outcome] = frozenset({Outcome.SUCCEEDED, Outcome.PARTIAL})
UNDECIDED: frozenset[Outcome] = frozenset({Outcome.INCONCLUSIVE, Outcome.INEFFECTIVE})
"""Outcomes left out of the engine summary's count: neither stopped nor successful."""

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
    (Outcome.NOT_APPLICABLE, "The threat does not exist under this engine; the notes under "
     "the matrix say why."),
)

SHORT_LABELS = {Outcome.NOT_APPLICABLE: "n/a"}
"""Outcomes shown shorter in the matrix (the legend spells them out)."""


def outcome_label(outcome: Outcome) -> str:
    """Human wording of an outcome (``not_applicable`` becomes ``not applicable``)."""
    return outcome.value.replace("_", " ")


def sentence(text: str) -> str:
    """``text`` as a sentence: a capital first letter and a full stop."""
    text = text.strip()
    if not text:
        return text
    first = text.split(" ", 1)[0]
    if first.isalpha() and first.islower():  # not an identifier such as key_rotation
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"(])")


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (all of it when it has one)."""
    text = " ".join(text.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else text


# --------------------------------------------------------------------------- view models


@dataclass(frozen=True)
class StepView:
    actor: str
    action: str
    capability: str
    address: str
    detail: str


@dataclass(frozen=True)
class ControlView:
    profile: str
    outcome: str
    outcome_label: str
    reason: str
    chance: str
    trials: str


@dataclass(frozen=True)
class RowView:
    engine: str
    anchor: str
    profile: str
    mitigations: tuple[str, ...]
    outcome: str
    outcome_label: str
    short_label: str
    """The outcome as the matrix shows it (``n/a`` for not applicable)."""
    expected_label: str | None
    mismatch: bool
    reason: str
    sentence: str
    """The reason as a sentence, for "what happened"."""
    chance: str
    """How likely a guess does as well: ``2^-248``, or ``not a guess``."""
    trials: str
    """``4 of 4 succeeded: rate 1.00 (95 % interval 0.51-1.00)``, or ``""`` for one run."""
    control: ControlView | None
    metrics: tuple[MetricView, ...]
    series: tuple[MetricView, ...]
    steps: tuple[StepView, ...]
    evidence_address: str
    evidence: tuple[HexDump, ...]
    drawn: bool
    """Whether the row's metrics have figures (drawn across engines at the top of the page)."""

    @property
    def applicable(self) -> bool:
        return self.outcome != Outcome.NOT_APPLICABLE.value

    @property
    def details(self) -> bool:
        """Whether the row has anything to show beyond its reason."""
        return bool(self.metrics or self.series or self.steps or self.evidence)


@dataclass(frozen=True)
class CellView:
    engine: str
    row: RowView | None
    was: str | None = None
    """The outcome of the previous run of the same scenarios, when it differed."""
    note: int | None = None
    """The number of the note under the matrix that says why the cell is not applicable."""


@dataclass(frozen=True)
class Happened:
    """One line of "what happened": engines whose results read the same, and that result."""

    engines: tuple[tuple[str, str], ...]
    """``(engine, anchor of its result)``."""
    row: RowView
    """The first engine's result (the others have the same outcome and reason)."""
    was: str | None
    sentence: str
    """The reason they share, as a sentence."""


@dataclass(frozen=True)
class NaNote:
    """Why some engines do not apply to one scenario: one line per distinct reason."""

    number: int
    title: str
    href: str
    lines: tuple[tuple[str, str], ...]
    """``(engines, reason)``."""


@dataclass(frozen=True)
class ScenarioView:
    id: str
    anchor: str
    title: str
    attack: str
    threat: str
    """The attack's kind, or for a program its capabilities (``program: kernel_read_bug``)."""
    source: str
    defence: str
    """The scenario's mitigations in words (``secretmem``), or ``no software defence``."""
    one_line: str
    summary: str
    look_for: str
    questions: tuple[str, ...]
    cells: tuple[CellView, ...]
    rows: tuple[RowView, ...]
    control: ControlView | None
    """The scenario's control (the same for every row, as every row has the same one)."""
    not_run: tuple[str, ...]
    page: str
    """Path of the scenario's own page, relative to the report folder."""
    data: str
    """Path of the scenario's data file (every row in full), relative to its page."""
    plots: tuple[Plot, ...]
    program: ProgramView | None
    happened: tuple[Happened, ...]

    @property
    def applicable_rows(self) -> tuple[RowView, ...]:
        return tuple(r for r in self.rows if r.applicable)

    @property
    def na_rows(self) -> tuple[RowView, ...]:
        return tuple(r for r in self.rows if not r.applicable)


@dataclass(frozen=True)
class EngineSummary:
    engine: str
    stopped: int
    considered: int
    """Rows that count: neither not applicable nor undecided."""
    worked: int
    not_applicable: int
    undecided: int
    """Rows that are ``inconclusive`` or ``ineffective``: neither stopped nor successful."""
    errors: int
    total: int

    @property
    def text(self) -> str:
        if self.total == 0:
            return "not run"
        scenarios = "scenario" if self.considered == 1 else "scenarios"
        return f"{self.stopped} of {self.considered} {scenarios}"

    @property
    def rest(self) -> str:
        """The other counts, in words (``8 worked · 1 n/a``)."""
        parts = [f"{self.worked} worked"]
        if self.undecided:
            parts.append(f"{self.undecided} undecided")
        if self.errors:
            parts.append(f"{self.errors} error{'s' if self.errors != 1 else ''}")
        if self.not_applicable:
            parts.append(f"{self.not_applicable} n/a")
        return " · ".join(parts) if self.total else ""


@dataclass(frozen=True)
class Mismatch:
    title: str
    href: str
    engine: str
    outcome_label: str
    expected_label: str


@dataclass(frozen=True)
class LegendItem:
    outcome: str
    label: str
    text: str


@dataclass(frozen=True)
class LoadError:
    """A scenario file that did not load, as the report lists it."""

    where: str
    field: str
    message: str


@dataclass(frozen=True)
class Previous:
    """The previous run of the same scenarios, and the outcomes that changed since."""

    run_id: int
    changes: Sequence[Change]


# --------------------------------------------------------------------------- assembly


def _address(address: int | None) -> str:
    return "" if address is None else f"{address:#x}"


def _step_view(step: Step) -> StepView:
    who = step.who
    action = step.action
    # The page shows the actor before the action: an action that names its actor again
    # ("victim guest stores ...") would read "victim victim guest stores ...".
    if action.startswith(f"{who} "):
        action = action[len(who) + 1:]
    return StepView(actor=who, action=action, capability=step.capability,
                    address=_address(step.address), detail=step.detail)


def _duration(seconds: float) -> str:
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)} min {rest:.1f} s"
    return f"{seconds:.2f} s"


def _trials_text(stats: TrialStats | None) -> str:
    if stats is None:
        return ""
    return f"{stats.successes} of {stats.trials} succeeded: {stats.text()}"


def _control_view(control: Control | None) -> ControlView | None:
    if control is None:
        return None
    return ControlView(profile=control.profile, outcome=control.outcome.value,
                       outcome_label=outcome_label(control.outcome), reason=control.reason,
                       chance=chance_text(control.chance_log2),
                       trials=_trials_text(control.trials))


def _row_view(scenario_id: str, row: ResultRow, labels: EvidenceLabels,
              shown: frozenset[str] = frozenset()) -> RowView:
    """One result as shown; ``shown``: metrics the page shows elsewhere (a program's steps)."""
    metrics = row.metrics.to_json() if row.metrics is not None else {}
    plain, series = metric_views({k: v for k, v in metrics.items() if k not in shown})
    mismatch = row.expected is not None and row.expected != row.outcome
    return RowView(
        engine=row.engine,
        anchor=f"res-{scenario_id}.{row.engine}",
        profile=row.profile,
        mitigations=tuple(row.mitigations),
        outcome=row.outcome.value,
        outcome_label=outcome_label(row.outcome),
        short_label=SHORT_LABELS.get(row.outcome, outcome_label(row.outcome)),
        expected_label=None if row.expected is None else outcome_label(row.expected),
        mismatch=mismatch,
        reason=row.reason,
        sentence=sentence(row.reason),
        chance=chance_text(row.chance_log2),
        trials=_trials_text(row.trials),
        control=_control_view(row.control),
        metrics=plain,
        series=series,
        steps=tuple(_step_view(s) for s in row.steps),
        evidence_address=_address(row.evidence.address),
        evidence=evidence_views(labels, row.evidence, metrics),
        drawn=bool(row.metrics.plots()) if row.metrics is not None else False,
    )


def _columns(scenarios: Sequence[tuple[Scenario, str]]) -> tuple[str, ...]:
    """The matrix's engine columns: the built-in engines, and plugin engines a scenario uses."""
    used = {e for s, _ in scenarios for e in s.engines}
    return tuple(e.name for e in registry.engines.entries() if e.builtin or e.name in used)


def page_of(scenario_id: str) -> str:
    """The scenario's page; ids match ``[a-z0-9][a-z0-9_-]*``, so this stays in the folder."""
    return f"{SCENARIO_DIR}/{scenario_id}.html"


def data_of(scenario_id: str) -> str:
    """The scenario's data file, beside its page."""
    return f"{SCENARIO_DIR}/{scenario_id}.json"


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


def _defence(scenario: Scenario) -> str:
    names = [m.name for m in registry.MITIGATIONS if getattr(scenario.mitigations, m.setting)]
    return ", ".join(names) if names else "no software defence"


_ANY_ENGINE = "engine \0"


def _reason_key(row: RowView) -> str:
    """The reason with the engine's own name taken out: reasons that differ only by it
    ("engine none ...", "engine tme ...") read as one."""
    return row.reason.replace(f"engine {row.engine}", _ANY_ENGINE)


def _shared_sentence(rows: Sequence[RowView]) -> str:
    """The reason the ``rows`` share, as a sentence ("the engine" for their names)."""
    if len(rows) == 1:
        return rows[0].sentence
    return sentence(_reason_key(rows[0]).replace(_ANY_ENGINE, "the engine"))


def _na_lines(rows: Sequence[RowView]) -> tuple[tuple[str, str], ...]:
    """One ``(engines, reason)`` per distinct reason."""
    grouped: dict[str, list[RowView]] = {}
    for row in rows:
        grouped.setdefault(_reason_key(row), []).append(row)
    return tuple((", ".join(r.engine for r in members), _shared_sentence(members))
                 for members in grouped.values())


_Rows = dict[tuple[str, str], ResultRow]
"""Result rows by (scenario, engine)."""


def _scenario_view(scenario: Scenario, source: str, engines: Sequence[str], indexed: _Rows,
                   changed: dict[tuple[str, str], Change],
                   note: int | None) -> tuple[ScenarioView, list[Mismatch]]:
    cells: list[CellView] = []
    row_views: list[RowView] = []
    plot_data: list[tuple[str, Sequence[Any]]] = []
    not_run: list[str] = []
    mismatches: list[Mismatch] = []
    page = page_of(scenario.id)
    labels = evidence_labels(scenario)
    program = program_view(scenario, indexed, engines)
    shown = SHOWN_METRICS if program is not None else frozenset()
    for engine in engines:
        row = indexed.get((scenario.id, engine))
        if row is None:
            cells.append(CellView(engine=engine, row=None))
            not_run.append(engine)
            continue
        view = _row_view(scenario.id, row, labels, shown)
        change = changed.get((scenario.id, engine))
        was = outcome_label(Outcome(change.before)) if change and change.before else None
        cells.append(CellView(engine=engine, row=view, was=was,
                              note=None if view.applicable else note))
        row_views.append(view)
        if row.metrics is not None and view.applicable:
            plot_data.append((engine, row.metrics.plots()))
        if view.mismatch and view.expected_label is not None:
            mismatches.append(Mismatch(scenario.title, f"{page}#{view.anchor}", engine,
                                       view.outcome_label, view.expected_label))
    return ScenarioView(
        id=scenario.id,
        anchor=f"scn-{scenario.id}",
        title=scenario.title,
        attack=scenario.attack,
        threat=threat_text(scenario),
        source=source,
        defence=_defence(scenario),
        one_line=first_sentence(scenario.teaching.summary),
        summary=scenario.teaching.summary,
        look_for=scenario.teaching.look_for,
        questions=tuple(scenario.teaching.questions),
        cells=tuple(cells),
        rows=tuple(row_views),
        control=next((v.control for v in row_views if v.control is not None), None),
        not_run=tuple(not_run),
        page=page,
        data=f"{scenario.id}.json",
        plots=comparison_plots(plot_data),
        program=program,
        happened=_happened(cells),
    ), mismatches


def _happened(cells: Sequence[CellView]) -> tuple[Happened, ...]:
    """The cells that were run, those with the same outcome, reason and flags as one line."""
    groups: dict[tuple[Any, ...], list[CellView]] = {}
    for cell in cells:
        row = cell.row
        if row is None:
            continue
        key = (row.outcome, _reason_key(row), row.mismatch, row.expected_label, cell.was,
               row.mitigations)
        groups.setdefault(key, []).append(cell)
    out = []
    for members in groups.values():
        rows = [c.row for c in members if c.row is not None]
        out.append(Happened(tuple((r.engine, r.anchor) for r in rows), rows[0],
                            members[0].was, _shared_sentence(rows)))
    return tuple(out)


def _summaries(engines: Sequence[str],
               indexed: dict[tuple[str, str], ResultRow]) -> tuple[EngineSummary, ...]:
    out = []
    for engine in engines:
        outcomes = [r.outcome for (_, e), r in indexed.items() if e == engine]
        na = sum(o is Outcome.NOT_APPLICABLE for o in outcomes)
        undecided = sum(o in UNDECIDED for o in outcomes)
        out.append(EngineSummary(
            engine=engine,
            stopped=sum(o in STOPPED for o in outcomes),
            considered=len(outcomes) - na - undecided,
            worked=sum(o in WORKED for o in outcomes),
            not_applicable=na,
            undecided=undecided,
            errors=sum(o is Outcome.ERROR for o in outcomes),
            total=len(outcomes),
        ))
    return tuple(out)


def _check_unique(scenarios: Sequence[tuple[Scenario, str]]) -> set[str]:
    seen: set[str] = set()
    for scenario, _ in scenarios:
        if scenario.id in seen:
            raise ValueError(f"scenario id {scenario.id!r} appears twice")
        seen.add(scenario.id)
    return seen


def build_context(
    run: RunInfo,
    rows: Sequence[ResultRow],
    scenarios: Sequence[tuple[Scenario, str]],
    previous: Previous | None = None,
    load_errors: Sequence[ScenarioError] = (),
) -> dict[str, Any]:
    """Everything the pages show (see :func:`testbed.report.html.render_report`)."""
    indexed = _index_rows(rows, _check_unique(scenarios))
    changed = {(c.scenario, c.engine): c for c in (previous.changes if previous else ())
               if c.before is not None and c.after is not None}
    titles = {s.id: s.title for s, _ in scenarios}
    engines = _columns(scenarios)

    views: list[ScenarioView] = []
    mismatches: list[Mismatch] = []
    notes: list[NaNote] = []
    for scenario, source in scenarios:
        has_na = any(r.outcome is Outcome.NOT_APPLICABLE for (s, _), r in indexed.items()
                     if s == scenario.id)
        number = len(notes) + 1 if has_na else None
        view, found = _scenario_view(scenario, source, engines, indexed, changed, number)
        views.append(view)
        mismatches.extend(found)
        if number is not None:
            notes.append(NaNote(number, view.title, view.page, _na_lines(view.na_rows)))

    return {
        "run": {
            "seed": run.seed,
            "testbed_version": run.testbed_version,
            "started": run.started,
            "duration": _duration(run.duration_s),
            "jobs": run.jobs,
            "profiles": tuple(run.profiles),
            "results": len(rows),
        },
        "engines": engines,
        # Filter values come from the schema's fixed sets, never from scenario text.
        "filter_attacks": tuple(sorted({s.attack for s, _ in scenarios})),
        "summaries": _summaries(engines, indexed),
        "mismatches": tuple(mismatches),
        "scenarios": tuple(views),
        "na_notes": tuple(notes),
        "load_errors": tuple(_load_error(e) for e in load_errors),
        "load_error_files": len({e.path for e in load_errors}),
        "legend": tuple(
            LegendItem(outcome=o.value, label=outcome_label(o), text=t) for o, t in OUTCOME_LEGEND
        ),
        "previous": None if previous is None else {
            "run": previous.run_id,
            "changes": tuple(
                {"title": titles.get(c.scenario, c.scenario), "href": page_of(c.scenario),
                 "engine": c.engine, "before": outcome_label(Outcome(c.before or "error")),
                 "after": outcome_label(Outcome(c.after or "error"))}
                for c in changed.values()
            ),
        },
    }


def _load_error(error: ScenarioError) -> LoadError:
    """A load error as the report lists it; the path and field are escaped like the terminal
    line (control and bidirectional characters written out), the message already is."""
    path = text_escape(error.path)
    where = f"{path}:{error.line}" if error.line else path
    field = text_escape(error.field, ScenarioError.FIELD_CHARS) if error.field else "(file)"
    return LoadError(where, field, error.message)
