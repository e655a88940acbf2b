"""The lab's pages: the printable handout (and the teacher's answer key), a student's
feedback page, and the class's gradebook page.

Text from a lab file is Markdown (CommonMark through markdown-it-py, with raw HTML turned
into text and images off, so a lab can neither run a script nor load anything); every other
value is escaped by Jinja. The pages carry a Content-Security-Policy that allows no script
and no request, and print on paper with a line to write on below each task.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markdown_it import MarkdownIt
from markupsafe import Markup

from .check import KeyEntry, TaskResult
from .instance import Instance, fill
from .model import Build, BuildRules, Explain, Lab, Predict, Tune

__all__ = ["markdown", "render_class", "render_feedback", "render_handout", "rules_text"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    return md


def markdown(text: str) -> Markup:
    """``text`` (Markdown from a lab file) as safe HTML."""
    # html=False: raw HTML in the text is escaped, not passed through.
    return Markup(_markdown().render(text))


@functools.cache
def _env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True, auto_reload=False)


def rules_text(rules: BuildRules) -> list[str]:
    """A build task's rules in words."""
    out = [f"be {' or '.join(o.value for o in accepted)} under {engine}"
           for engine, accepted in rules.outcomes.items()]
    if rules.attack is not None:
        out.append(f"use the attack {rules.attack}" + (" (steps written out)"
                                                      if rules.attack == "program" else ""))
    if rules.threat_only is not None:
        out.append(f"declare no capability but {', '.join(rules.threat_only)}")
    if rules.max_guesses is not None:
        out.append(f"need at most {rules.max_guesses:,} guesses in each run")
    if rules.max_steps is not None:
        out.append(f"have at most {rules.max_steps} steps")
    return out


def render_handout(instance: Instance | None, lab: Lab,
                   key: Sequence[KeyEntry] | None = None,
                   solutions: dict[str, str] | None = None,
                   engines: dict[str, list[str]] | None = None) -> str:
    """The handout of ``lab`` with ``instance``'s values, and the answer key when ``key`` is
    given; without an instance, each variable shows its possible values (``6/7/8``) and
    ``engines`` gives each scenario's engines."""
    if instance is not None:
        values: dict[str, Any] = instance.values
        engines = {sid: list(s.engines) for sid, s in instance.scenarios.items()}
    else:
        values = {name: "/".join(str(v) for v in vs) for name, vs in lab.vary.items()}

    def text(t: str) -> str:
        return fill(t, values)
    keyed = {k.task: k for k in key or ()}
    tasks = []
    for task in lab.tasks:
        item: dict[str, Any] = {"id": task.id, "kind": task.kind, "points": task.points,
                                "prompt": markdown(text(task.prompt)), "engines": [],
                                "choices": [], "rules": [], "choose": "", "file": "",
                                "hints": [text(h) for h in task.hints], "solution": "",
                                "key_shown": "", "key_answer": {}}
        if isinstance(task, Predict):
            item["engines"] = task.engines or (engines or {}).get(task.scenario, [])
        elif isinstance(task, Explain):
            item["choices"] = list(task.choices)
        elif isinstance(task, Build):
            item["rules"] = rules_text(task.require)
            item["file"] = f"build/{task.id}.yaml"
            item["solution"] = (solutions or {}).get(task.id, "")
        elif isinstance(task, Tune):
            item["choose"] = ", ".join(f"{v:g}" for v in task.values)
        entry = keyed.get(task.id)
        if entry is not None:
            item["key_shown"] = entry.shown
            if isinstance(entry.answer, dict):
                item["key_answer"] = entry.answer
        tasks.append(item)
    return _env().get_template("handout.html.j2").render(
        lab=lab, key=key is not None, student=instance.student if instance else "",
        practice=instance.practice if instance else False,
        goals=[text(g) for g in lab.goals], handout=markdown(text(lab.handout)),
        tasks=tasks, has_build=any(isinstance(t, Build) for t in lab.tasks))


def _points(value: float) -> str:
    return f"{value:g}"


def render_feedback(lab: Lab, student: str, results: Sequence[TaskResult],
                    texts: dict[str, str], notes: Sequence[str],
                    answers: dict[str, str] | None = None) -> str:
    """A student's feedback page: each task's result and answer, and their written answers."""
    feedback = {t.id: t.feedback for t in lab.tasks}
    rows = [{**r.to_json(), "points_shown": _points(r.points),
             "answer": (answers or {}).get(r.task, ""),
             "feedback": feedback.get(r.task, "") if r.status in ("failed", "partial") else ""}
            for r in results]
    score = _points(round(sum(r.points for r in results), 2))
    manual = sum(1 for r in results if r.status == "manual")
    return _env().get_template("feedback.html.j2").render(
        lab=lab, student=student, results=rows, score=score, max_points=lab.max_points,
        manual=f"{manual} answer{'s' if manual != 1 else ''}" if manual else "",
        texts=[{"task": k, "text": v} for k, v in texts.items()], notes=list(notes))


def render_class(lab: Lab, rows: Sequence[dict[str, str]]) -> str:
    """The gradebook page: one line per submission, linking its feedback page."""
    return _env().get_template("class.html.j2").render(lab=lab, rows=list(rows),
                                                        max_points=lab.max_points)
