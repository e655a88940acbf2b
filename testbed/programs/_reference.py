"""The step reference, generated from the step registry so that it cannot drift from it.

:func:`reference_markdown` renders every operation: who may do it and with which capability,
its arguments (type, default, description), what it does, and an example step. The page of the
documentation that lists the steps is this text.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ._values import MAX_GUESSES, MAX_PAGES, MAX_STEPS, MAX_VALUE_BYTES, _ref
from ._vocabulary import OPS, OpSpec

__all__ = ["reference_markdown"]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
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
    high = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
    if low is not None and high is not None:
        text += f" {low:,}..{high:,}"
    return text


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default() if info.default is not PydanticUndefined else None
    return "—" if value is None else f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def _who(spec: OpSpec) -> str:
    return "; ".join(f"{who} ({', '.join(f'`{c}`' for c in caps) or 'no capability'})"
                     for who, caps in spec.actors.items())


def _op(spec: OpSpec) -> list[str]:
    lines = [f"### `{spec.name}`", "", f"{spec.summary[:1].upper()}{spec.summary[1:]}.", "",
             f"Done by: {_who(spec)}." + ("" if spec.binds else " Binds no value.")]
    if spec.engine is not None:
        lines.append("Not applicable on an engine without what it needs (see its reason).")
    fields = spec.args.model_fields
    if fields:
        lines += ["", "| argument | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{name}` | {_cell(_field_type(info))} | {_cell(_default(info))} | "
                  f"{_cell(info.description or '')} |" for name, info in fields.items()]
    return [*lines, "", "```yaml", f"- {spec.example}", "```", ""]


def reference_markdown() -> str:
    """The step reference, as Markdown."""
    out = ["# Attack program steps", "",
           "A program is `threat:` (the attacker's capabilities), `program:` (at most "
           f"{MAX_STEPS} steps, each `{{op, by, args, as}}`) and `goal:` (`recovered: NAME`, "
           "`victim_reads: NAME`, or `page_holds: NAME` with `at:`). A step refers to an "
           "earlier result as `$NAME`.", "",
           f"Limits: a value holds at most {MAX_VALUE_BYTES} bytes; the guess steps of a "
           f"program try at most {MAX_GUESSES:,} candidates together; its steps allocate at "
           f"most {MAX_PAGES} pages.", ""]
    for spec in OPS.values():
        out += _op(spec)
    return "\n".join(out).rstrip() + "\n"
