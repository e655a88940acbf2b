"""The step reference, generated from the step registry so that it cannot drift from it.

:func:`reference_markdown` renders every operation: who may do it and with which capability,
what it asks of the engine, its arguments (type, default, description), what it does, and an
example step; a system step also names its built-in attack, the parameter limits that attack
states and the goal that judges it. Then every kind of goal. The page of the documentation
that lists the steps is this text.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..attacks._base import AttackParams
from ._args import Args
from ._step import GOALS, Goal
from ._values import MAX_GUESSES, MAX_PAGES, MAX_STEPS, MAX_VALUE_BYTES, _ref
from ._vocabulary import OPS, OpSpec, goal_op

__all__ = ["reference_markdown"]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # a reference, or a type with constraints
        return "`$name`" if _is_ref(annotation) else _type(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " | ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is list:
        return f"list of {_type(typing.get_args(annotation)[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return getattr(annotation, "__name__", str(annotation))


def _is_ref(annotation: Any) -> bool:
    return typing.get_origin(annotation) is typing.Annotated and any(
        getattr(m, "func", None) is _ref for m in typing.get_args(annotation)[1:])


def _field_type(info: FieldInfo) -> str:
    text = _type(info.annotation)
    if any(getattr(m, "func", None) is _ref for m in info.metadata):
        text = "`$name`"
    elif typing.get_origin(info.annotation) is list and _is_ref(
            typing.get_args(info.annotation)[0]):
        text = "list of `$name`"
    low = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
    above = next((m.gt for m in info.metadata if getattr(m, "gt", None) is not None), None)
    high = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
    shortest = next((m.min_length for m in info.metadata
                     if getattr(m, "min_length", None) is not None), None)
    longest = next((m.max_length for m in info.metadata
                    if getattr(m, "max_length", None) is not None), None)
    if typing.get_origin(info.annotation) is list and shortest is not None:
        text += f", {shortest}..{longest} of them" if longest else f", at least {shortest}"
    if low is not None and high is not None:
        text += f" {low:,}..{high:,}"
    elif above is not None and high is not None:
        text += f" over {above:,}, at most {high:,}"
    return text


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default() if info.default is not PydanticUndefined else None
    return "—" if value is None else f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def _who(spec: OpSpec) -> str:
    return "; ".join(f"{who} ({', '.join(f'`{c}`' for c in caps) or 'no capability'})"
                     for who, caps in spec.actors.items())


def _params(args: type[Args]) -> type[AttackParams] | None:
    """The built-in attack's parameter model a system step's arguments are."""
    return next((c for c in args.__mro__[1:] if issubclass(c, AttackParams)
                 and c is not AttackParams and not issubclass(c, Args)), None)


def _system(spec: OpSpec) -> list[str]:
    params = _params(spec.args)
    limits = " ".join((params.__doc__ or "").split()).rstrip(".") if params is not None else ""
    lines = [f"System step: the machinery and parameters of the built-in attack "
             f"`{spec.attack}`; the goal `{spec.goal}` judges its result."]
    if limits:
        lines.append(f"Limits: {limits[:1].lower()}{limits[1:]}.")
    if spec.platform_settings:
        settings = " and ".join(f"`{name}`" for name in sorted(spec.platform_settings))
        noun = "setting" if len(spec.platform_settings) == 1 else "settings"
        lines.append(f"It uses the platform {noun} {settings}.")
    return lines


def _op(spec: OpSpec) -> list[str]:
    lines = [f"### `{spec.name}`", "", f"{spec.summary[:1].upper()}{spec.summary[1:]}.", "",
             f"Done by: {_who(spec)}." + ("" if spec.binds else " Binds no value.")]
    if spec.engine is not None:
        needs = spec.needs or "what it needs of the engine"
        lines.append(f"Needs {needs}: on any other a program using it is not applicable.")
    if spec.attack:
        lines += _system(spec)
    elif spec.platform_settings:
        settings = ", ".join(f"`{name}`" for name in sorted(spec.platform_settings))
        lines.append(f"It uses the platform setting {settings}.")
    fields = spec.args.model_fields
    if fields:
        lines += ["", "| argument | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{name}` | {_cell(_field_type(info))} | {_cell(_default(info))} | "
                  f"{_cell(info.description or '')} |" for name, info in fields.items()]
    return [*lines, "", "```yaml", f"- {spec.example}", "```", ""]


def _goals() -> list[str]:
    fields = Goal.model_fields
    lines = ["## Goals", "",
             "A goal is one of these, naming a value an earlier step bound "
             "(`goal: {recovered: leaked}`). The judge compares what the attack achieved "
             "with the truth, and says how likely a guess would have done as well.", "",
             "| goal | judges | meaning |", "|---|---|---|"]
    for kind in GOALS:
        system = goal_op(kind)
        judges = (f"what the `{system.name}` step binding NAME did" if system is not None
                  else "what the program's steps left")
        lines.append(f"| `{kind}: NAME` | {judges} | {_cell(fields[kind].description or '')} |")
    lines += ["", "`victim_reads` and `page_holds` also take "
              + ", ".join(f"`{name}` ({_cell(fields[name].description or '')})"
                          for name in ("at", "page", "offset")) + ".", ""]
    return lines


def reference_markdown() -> str:
    """The step reference, as Markdown."""
    goals = ", ".join(f"`{kind}`" for kind in GOALS)
    out = ["# Attack program steps", "",
           "A program is `threat:` (the attacker's capabilities), `program:` (at most "
           f"{MAX_STEPS} steps, each `{{op, by, args, as}}`) and `goal:` (one of {goals}, "
           "naming a value a step bound: see Goals at the end). A step refers to an earlier "
           "result as `$NAME`.", "",
           "The system steps (" + ", ".join(f"`{s.name}`" for s in OPS.values() if s.attack)
           + ") each run a built-in attack's machinery on the program's machine, with that "
           "attack's parameters, so a program can combine them with each other and with the "
           "other steps.", "",
           f"Limits: a value holds at most {MAX_VALUE_BYTES} bytes; the guess steps of a "
           f"program try at most {MAX_GUESSES:,} candidates together; its steps allocate at "
           f"most {MAX_PAGES} pages.", "", "## Steps", ""]
    for spec in OPS.values():
        out += _op(spec)
    out += _goals()
    return "\n".join(out).rstrip() + "\n"
