"""Render a run as self-contained HTML pages.

The pages work from ``file://`` with no network: styles are inline, plots are embedded as
``data:`` PNGs and a Content-Security-Policy forbids everything else, scripts included. Scenario
text comes from untrusted files, so every value reaches the page through Jinja2 autoescaping;
the only markup built in Python (hex dumps, glossary links) is assembled from escaped pieces
with :class:`markupsafe.Markup`. Identical inputs give byte-identical output.

The report is ``index.html`` (the outcome matrix), one page per scenario with its data file
(``scenarios/ID.html``, ``scenarios/ID.json``) and ``glossary.html``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..errors import ScenarioError
from ..results.model import ResultRow, RunInfo
from ..results.output import atomic_write_text
from ..scenarios.model import Scenario
from .glossary import GLOSSARY_PAGE, TERMS, linked
from .views import (
    OUTCOME_LEGEND,
    SCENARIO_DIR,
    Previous,
    ScenarioView,
    build_context,
    data_of,
    outcome_label,
)

__all__ = ["OUTCOME_LEGEND", "Previous", "outcome_label", "render_report", "write_report"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
"""Folder holding the page templates (shipped as package data)."""

INDEX_TEMPLATE = "index.html.j2"
SCENARIO_TEMPLATE = "scenario.html.j2"
GLOSSARY_TEMPLATE = "glossary.html.j2"
"""What a report folder holds: the index, the glossary and the scenarios' folder."""

def _terms(text: str, root: str) -> Markup:
    """Jinja filter: ``text`` escaped, its glossary terms linked (``root``: to the folder)."""
    return linked(text, f"{root}{GLOSSARY_PAGE}")


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["terms"] = _terms
    return env


def _data_file(view: ScenarioView, rows: Sequence[ResultRow]) -> str:
    """The scenario's data file: every row of it in full, as in ``results.json``."""
    doc = {"scenario": view.id, "title": view.title,
           "results": [r.to_json() for r in rows if r.scenario == view.id]}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def render_report(
    run: RunInfo,
    rows: Sequence[ResultRow],
    scenarios: Sequence[tuple[Scenario, str]],
    previous: Previous | None = None,
    load_errors: Sequence[ScenarioError] = (),
) -> dict[str, str]:
    """Render every file of the report (see :func:`write_report`).

    Args:
        run: Metadata of the run.
        rows: One result row per (scenario, engine) pair that was run.
        scenarios: ``(scenario, source file path)`` pairs in display order.
        previous: the previous run of the same scenarios and what changed since, if any.
        load_errors: the scenario files that did not load (listed on the index).

    Returns:
        Path relative to the report folder (``index.html``, ``glossary.html``,
        ``scenarios/ID.html``, ``scenarios/ID.json``) -> its text, the index last.

    Raises:
        ValueError: If a scenario id repeats, or a row names an unknown scenario or engine, or
            two rows share a (scenario, engine) pair.
    """
    env = _environment()
    context = build_context(run, rows, scenarios, previous, load_errors)
    views: tuple[ScenarioView, ...] = context["scenarios"]
    pages: dict[str, str] = {}
    page_template = env.get_template(SCENARIO_TEMPLATE)
    for i, view in enumerate(views):
        pages[view.page] = page_template.render(
            context, scn=view, root="../",
            prev=views[i - 1] if i > 0 else None,
            next=views[i + 1] if i + 1 < len(views) else None,
        )
        pages[data_of(view.id)] = _data_file(view, rows)
    groups: dict[str, list[Any]] = {}
    for term in TERMS:
        groups.setdefault(term.group, []).append(term)
    pages[GLOSSARY_PAGE] = env.get_template(GLOSSARY_TEMPLATE).render(
        context, root="", groups=tuple(groups.items()))
    pages["index.html"] = env.get_template(INDEX_TEMPLATE).render(context, root="")
    return pages


def write_report(
    out_dir: Path,
    run: RunInfo,
    rows: list[ResultRow],
    scenarios: list[tuple[Scenario, str]],
    previous: Previous | None = None,
    load_errors: Sequence[ScenarioError] = (),
) -> Path:
    """Write the HTML report of a run into ``out_dir``.

    The index holds the outcome matrix (scenarios × engines, with the control, a count per
    engine and CSS-only filters) beside its legend, why cells are not applicable, the files that
    did not load and the run's metadata. Each scenario's page (``scenarios/ID.html``) leads with
    what happened under each engine and the figures across engines, then the teaching notes
    and, per engine, metrics, timeline and evidence; ``scenarios/ID.json`` holds its rows in
    full. ``glossary.html`` explains the terms the pages link to. Every file is replaced
    atomically, the index last, so that it never links to a page that is not there yet; the
    run's publishing step (:class:`testbed.results.publish.StagedOutput`) makes the folder
    hold exactly one run.

    Args:
        out_dir: Folder for the report; created if missing.
        run: Metadata of the run.
        rows: One result row per (scenario, engine) pair that was run.
        scenarios: ``(scenario, source file path)`` pairs in display order.
        previous: the previous run of the same scenarios and what changed since, if any.
        load_errors: the scenario files that did not load.

    Returns:
        Path of the written ``index.html``.

    Raises:
        ValueError: If a scenario id repeats, or a row names an unknown scenario or engine, or
            two rows share a (scenario, engine) pair.
    """
    pages = render_report(run, rows, scenarios, previous, load_errors)
    out_dir = Path(out_dir)
    (out_dir / SCENARIO_DIR).mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        atomic_write_text(out_dir / name, text)
    return out_dir / "index.html"
