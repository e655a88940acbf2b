"""Reference tables generated from the registries: attacks and their parameters, engines,
mitigations and platform settings, as Markdown.

The README holds these tables between ``<!-- reference: NAME -->`` and
``<!-- /reference: NAME -->`` markers; ``testbed reference --update README.md`` rewrites them,
and a test fails when they differ from the registries. The tables describe what is
registered when they are made: built-ins, and plugins if any are installed.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from . import registry
from .programs import reference_markdown
from .scenarios.model import PROGRAM_ATTACK, PROGRAM_KEYS, PlatformSpec

__all__ = ["HOMES", "SECTIONS", "render", "update_text"]

T = TypeVar("T")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _kind(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(_kind(a) for a in parts) + " (optional)"
    return getattr(annotation, "__name__", str(annotation))


def _range(info: FieldInfo) -> str:
    low = high = ""
    for m in info.metadata:  # pydantic's constraint objects (annotated-types)
        if getattr(m, "ge", None) is not None:
            low = f"{m.ge:,}"
        elif getattr(m, "gt", None) is not None:
            low = f"> {m.gt:,}"
        elif getattr(m, "le", None) is not None:
            high = f"{m.le:,}"
        elif getattr(m, "lt", None) is not None:
            high = f"< {m.lt:,}"
        elif getattr(m, "min_length", None) is not None:
            low = f"{m.min_length} chars"
        elif getattr(m, "max_length", None) is not None:
            high = f"{m.max_length:,} chars"
    if low and high:
        return f"{low} .. {high}"
    return low or high


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return ""
    value = info.default
    if value is None:
        return ""
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{value}`"


def _fields_table(model: type[BaseModel]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        rows.append(f"| `{name}` | {_cell(_kind(info.annotation))} | {_cell(_range(info))} | "
                    f"{_cell(_default(info))} | {_cell(info.description or '')} |")
    return rows


def _shown(entries: tuple[registry.Registered[T], ...], builtin_only: bool
           ) -> list[registry.Registered[T]]:
    return [e for e in entries if e.builtin or not builtin_only]


def attacks_section(builtin_only: bool = False) -> str:
    """One table of all attacks, then one of each attack's parameters."""
    out = ["| attack | title | capabilities | provided by |", "|---|---|---|---|"]
    attacks = _shown(registry.attacks.entries(), builtin_only)
    for entry in attacks:
        a = entry.item
        needs = (", ".join(f"`{c}`" for c in a.capabilities) if entry.name != PROGRAM_ATTACK
                 else "those its `threat:` lists")
        out.append(f"| `{entry.name}` | {_cell(a.title)} | {needs} | {entry.distribution} |")
    for entry in attacks:
        if entry.name == PROGRAM_ATTACK:
            keys = ", ".join(f"`{k}:`" for k in PROGRAM_KEYS)
            out += ["", f"`{PROGRAM_ATTACK}`: a scenario writes its attack out in {keys} at the "
                    "top of the file instead of `attack:` and `params:`; the steps, their "
                    "arguments and limits are in [docs/programs.md](docs/programs.md)."]
            continue
        doc = " ".join((entry.item.Params.__doc__ or "").split())
        out += ["", f"`{entry.name}` parameters (`{entry.item.Params.__name__}`)"
                + (f": {doc}" if doc else ":"), "",
                "| parameter | type | range | default | meaning |", "|---|---|---|---|---|"]
        out += _fields_table(entry.item.Params) or ["| (none) | | | | |"]
    return "\n".join(out)


def engines_section(builtin_only: bool = False) -> str:
    out = ["| engine | what it is | provided by |", "|---|---|---|"]
    for entry in _shown(registry.engines.entries(), builtin_only):
        doc = (entry.item.__doc__ or "").strip().splitlines()
        out.append(f"| `{entry.name}` | {_cell(doc[0] if doc else '')} | {entry.distribution} |")
    return "\n".join(out)


def mitigations_section(builtin_only: bool = False) -> str:
    out = ["| mitigation (profile name) | setting in `mitigations:` | values | what it does |",
           "|---|---|---|---|"]
    for m in registry.MITIGATIONS:
        values = "`true` | `false`" if m.kind is bool else f"0 .. {m.maximum:,} (0: off)"
        out.append(f"| `{m.name}` | `{m.setting}` | {_cell(values)} | {_cell(m.description)} |")
    return "\n".join(out)


def platform_section(builtin_only: bool = False) -> str:
    out = ["| setting in `platform:` | type | range | default | meaning |", "|---|---|---|---|---|"]
    return "\n".join(out + _fields_table(PlatformSpec))


def steps_section(builtin_only: bool = False) -> str:
    """The step language: every operation of the step registry, its arguments and an example
    (docs/programs.md)."""
    lines = reference_markdown().splitlines()
    if lines and lines[0].startswith("# "):  # the page has a title of its own
        lines = lines[1:]
    return "\n".join(lines).strip()


SECTIONS: dict[str, Callable[[bool], str]] = {
    "attacks": attacks_section,
    "engines": engines_section,
    "mitigations": mitigations_section,
    "platform": platform_section,
    "steps": steps_section,
}
"""The generated tables, by the name their markers use (``steps`` in docs/programs.md, the
others in the README)."""
HOMES: dict[str, str] = {"steps": "docs/programs.md"}
"""The file that holds a section, where it is not the README."""


def render(name: str, builtin_only: bool = False) -> str:
    """The Markdown of section ``name``: everything registered, or what ships with the
    testbed only (``builtin_only``, as in the README)."""
    return SECTIONS[name](builtin_only)


_BLOCK = re.compile(r"(<!-- reference: (?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- /reference: "
                    r"(?P=name) -->)", re.S)


def update_text(text: str, builtin_only: bool = True) -> tuple[str, list[str]]:
    """``text`` with every reference block regenerated, and the names of the blocks changed.

    By default the blocks describe what ships with the testbed, whatever plugins are
    installed where this runs.

    Raises:
        KeyError: a block names an unknown section.
    """
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        body = render(name, builtin_only) + "\n"
        if match.group("body") != body:
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return _BLOCK.sub(replace, text), changed
