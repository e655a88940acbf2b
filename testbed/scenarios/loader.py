"""Scenario files: YAML in, validated :class:`Scenario` out, or one ``file:line: field: message``.

Parsing uses PyYAML's reader, scanner and parser to compose a node tree (no Python objects are
ever built from tags), then converts it by hand so that every value keeps its line number,
duplicate keys are refused, and the size of the document — after alias expansion — is bounded.

Plain scalars are read by YAML 1.2's core schema, not PyYAML's YAML 1.1 one: only ``true`` and
``false`` are booleans (``yes``, ``no``, ``on``, ``off`` are text), ``1:30`` and ``2024-01-01``
are text, integers are decimal, ``0x1F`` or ``0o17``. A number with a leading zero (``010``:
octal 8 in YAML 1.1, ten in YAML 1.2) is refused as ambiguous, as are merge keys (``<<``).
"""

from __future__ import annotations

import math
import os
import re
import stat
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .. import registry
from ..errors import ScenarioError
from ..programs import ERROR_TYPE as PROGRAM_ERROR
from ..programs import OPS, Step
from ..text import EXCERPT_CHARS, escape, excerpt
from .model import (
    FIELD_ERROR,
    NO_ATTACK,
    PROGRAM_ATTACK,
    PROGRAM_KEYS,
    MitigationSpec,
    Scenario,
)

__all__ = [
    "LIMITS",
    "YamlLines",
    "find_scenario_files",
    "load_scenario",
    "load_scenarios",
    "read_document",
    "validate_document",
]

LIMITS = {
    "file_bytes": 256 * 1024,
    "nodes": 20_000,
    "depth": 32,
    "scalar_chars": 16 * 1024,
    "files": 1000,
}
"""Hard limits on one scenario file (and on how many files one run loads)."""

_Path = tuple[str | int, ...]
_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_SUFFIXES = (".yaml", ".yml")
SWEEPS_FOLDER = "sweeps"
"""A folder of this name inside a scanned folder holds sweep specs: it is not scanned."""

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution); each must match whole.
_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_BOOL = re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")
_DECIMAL = re.compile(r"[-+]?[0-9]+\Z")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+\Z")
_OCTAL = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z")
_INT = re.compile(f"(?:{_DECIMAL.pattern}|{_OCTAL.pattern}|{_HEX.pattern})")

# How YAML 1.1 would have read a plain scalar that is text here (for hints in messages).
_YAML11_BOOL = {"yes", "no", "on", "off", "y", "n"}
_YAML11_NUMBER = re.compile(r"[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+"
                            r"(?:\.[0-9_]*)?|[0-9][0-9_]*_[0-9_]*(?:\.[0-9_]*)?)\Z")
_KINDS = {"int": "integer", "float": "number", "bool": "boolean (true or false)", "null": "null"}


class _CoreLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                  yaml.composer.Composer, yaml.resolver.BaseResolver):
    """Composes a node tree only, tagging plain scalars by the YAML 1.2 core schema."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.resolver.BaseResolver.__init__(self)


def _resolve_core_schema() -> None:
    for tag, regexp, first in [
        ("null", _NULL, ["~", "n", "N", ""]),
        ("bool", _BOOL, list("tTfF")),
        ("int", _INT, list("-+0123456789")),
        ("float", _FLOAT, list("-+.0123456789")),
        ("merge", re.compile(r"<<\Z"), ["<"]),  # recognised only to be refused by its name
    ]:
        _CoreLoader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", regexp, first)


_resolve_core_schema()


def _compose(text: str) -> yaml.Node | None:
    """The node tree of a one-document stream (``yaml.compose`` with :class:`_CoreLoader`)."""
    loader = _CoreLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _Converter:
    """Turns a composed YAML node tree into plain data plus a map of path -> line."""

    def line_at(self, where: Iterable[str | int]) -> int:
        """The line of the value at ``where`` (or of the nearest value around it; 0: none)."""
        return self.line_of(tuple(where))

    def __init__(self, path: str, plain_text: bool = False) -> None:
        self.path = path
        self.plain_text = plain_text
        self.lines: dict[_Path, int] = {}
        self.nodes = 0

    def fail(self, node: yaml.Node, where: _Path, message: str) -> ScenarioError:
        return ScenarioError(self.path, node.start_mark.line + 1, _dotted(where), message)

    def convert(self, node: yaml.Node, where: _Path = (), depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > LIMITS["nodes"]:
            raise self.fail(node, where, f"document too large: more than {LIMITS['nodes']} "
                            "values (after expanding aliases)")
        if depth > LIMITS["depth"]:
            raise self.fail(node, where, f"nesting deeper than {LIMITS['depth']} levels")
        self.lines.setdefault(where, node.start_mark.line + 1)
        tag = node.tag
        if tag == _MERGE and isinstance(node, yaml.ScalarNode) and node.value == "<<":
            tag = _STR  # a plain << anywhere but as a key is the text "<<"
        if tag not in _TAGS:
            raise self.fail(node, where, f"YAML tag {excerpt(tag)} is not allowed")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    raise self.fail(key_node, where, "merge keys (<<) are not supported; "
                                    "write the keys out")
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                    raise self.fail(key_node, where, "keys must be plain strings")
                key = key_node.value
                if key in out:
                    raise self.fail(key_node, (*where, key), "duplicate key")
                self.lines[(*where, key)] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, (*where, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*where, i), depth + 1) for i, item in enumerate(node.value)]
        if len(node.value) > LIMITS["scalar_chars"]:
            raise self.fail(node, where, f"value longer than {LIMITS['scalar_chars']} characters")
        return self.scalar(node, where, tag)

    def scalar(self, node: yaml.Node, where: _Path, tag: str) -> Any:
        """The value of a scalar by its tag (resolved, or written as ``!!int`` and the like)."""
        kind, value = tag.rsplit(":", 1)[1], node.value
        if kind == "str":
            return value
        if self.plain_text and kind != "null" and getattr(node, "style", None) is None \
                and tag == node.tag:
            return value  # kept as written: 0421, 0x0edf, 12e45 (the reader converts)
        if kind == "null" and _NULL.match(value):
            return None
        if kind == "bool" and _BOOL.match(value):
            return value.lower() == "true"
        if kind == "int" and _LEADING_ZERO.match(value):
            raise self.fail(node, where, _leading_zero(value))
        if kind == "int" and _INT.match(value):
            base = {"0o": 8, "0x": 16}.get(value[:2], 10)
            try:
                return int(value[2:] if base != 10 else value, base)
            except ValueError:  # more decimal digits than Python converts
                raise self.fail(node, where, f"integer of {len(value)} digits is too long "
                                "to read") from None
        if kind == "float" and _FLOAT.match(value):
            special = value.lower().lstrip("+-")
            if special == ".nan":
                return math.nan
            if special == ".inf":
                return -math.inf if value.startswith("-") else math.inf
            return float(value)
        raise self.fail(node, where, f"bad value: {excerpt(value)} is not a YAML "
                        f"{_KINDS.get(kind, kind)}")

    def line_of(self, where: _Path) -> int:
        for end in range(len(where), -1, -1):
            if where[:end] in self.lines:
                return self.lines[where[:end]]
        return 0


YamlLines = _Converter
"""Where each value of a document read by :func:`read_document` is (``line_at``)."""


def _leading_zero(value: str) -> str:
    """Why ``010`` is refused, and what to write instead."""
    digits = value.lstrip("+-").lstrip("0") or "0"
    decimal = escape(("-" if value.startswith("-") else "") + digits, EXCERPT_CHARS)
    octal = f"0o{escape(digits, EXCERPT_CHARS)} for octal, " if value.isdigit() and not set(
        digits) & {"8", "9"} else ""
    return (f"leading zero in {excerpt(value)} is ambiguous (YAML 1.1 reads it as octal): "
            f"write {decimal} for decimal, {octal}or quote it for text")


def _present(data: Any, where: _Path) -> bool:
    """Whether the file gives a value at ``where``."""
    for part in where:
        if isinstance(part, int):
            if not isinstance(data, list) or not 0 <= part < len(data):
                return False
        elif not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _dotted(where: Iterable[str | int]) -> str:
    """``params.secret``, ``engines[2]``; each key escaped and cut short (keys come from files)."""
    out = ""
    for part in where:
        key = escape(part, EXCERPT_CHARS) if isinstance(part, str) else ""
        out += f"[{part}]" if isinstance(part, int) else (f".{key}" if out else key)
    return out


def _attack_kind(data: Any) -> str | None:
    """The attack ``data`` names (``program`` when it writes one out)."""
    if not isinstance(data, dict):
        return None
    if any(key in data for key in PROGRAM_KEYS):
        return PROGRAM_ATTACK
    kind = data.get("attack")
    return kind if isinstance(kind, str) else None


def _in_file(where: _Path, data: Any) -> _Path:
    """Where the value at ``where`` (a path in the model) is written in the file: a program's
    ``params.program[3]`` is ``program[3]``, its ``params`` the program."""
    written_out = (isinstance(data, dict) and "params" not in data
                   and any(key in data for key in PROGRAM_KEYS))
    if not written_out or where[:1] != ("params",):
        return where
    if len(where) > 1 and where[1] in PROGRAM_KEYS:
        return where[1:]
    return ("program", *where[1:])


def _field_type(model: type[BaseModel], name: str) -> Any:
    """The type of ``model``'s field called ``name`` (or given under that alias)."""
    for field_name, info in model.model_fields.items():
        if name in (field_name, info.alias):
            return info.annotation
    return None


def _allowed_keys(model: type[BaseModel], where: _Path, data: Any) -> list[str] | None:
    """Field names allowed at ``where`` (the parent of an unknown key), walking nested models
    and the file's data beside them.

    ``params`` is the parameter model of the attack ``data`` names; ``mitigations`` the
    registry's settings; a program step's ``args`` the arguments of its operation.
    """
    current: Any = model
    node: Any = data
    if model is Scenario and where[:1] == ("params",):
        kind = _attack_kind(data)
        if kind is None or kind not in registry.attacks:
            return None
        current, where = registry.attacks.get(kind).Params, where[1:]
        node = (data.get("params") if kind != PROGRAM_ATTACK or "params" in data else
                {key: data[key] for key in PROGRAM_KEYS if key in data})
    elif model is Scenario and where[:1] == ("mitigations",):
        current, where = MitigationSpec, where[1:]
    for part in where:
        parent = node
        node = _child(node, part)
        if isinstance(part, int):
            if typing.get_origin(current) is not list:
                return None
            current = typing.get_args(current)[0]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        if current is Step and part == "args":  # the op says which arguments
            op = parent.get("op") if isinstance(parent, dict) else None
            current = OPS[op].args if isinstance(op, str) and op in OPS else None
            continue
        current = _field_type(current, part)
    if isinstance(current, type) and issubclass(current, BaseModel):
        names = {info.alias or name for name, info in current.model_fields.items()}
        if current is Scenario:  # what a scenario written as a program gives instead
            names.update(PROGRAM_KEYS)
        return sorted(names)
    return None


def _child(node: Any, part: str | int) -> Any:
    if isinstance(part, int):
        return node[part] if isinstance(node, list) and 0 <= part < len(node) else None
    return node.get(part) if isinstance(node, dict) else None


def _errors(
    exc: ValidationError, conv: _Converter, model: type[BaseModel], data: Any
) -> list[ScenarioError]:
    """Every error of ``exc``, each where it is in the file, in the file's order, once."""
    found: dict[str, ScenarioError] = {}
    errors = exc.errors()
    for err in errors:
        if NO_ATTACK in err["msg"] and len(errors) > 1:
            continue
        if _other_member(err, errors):
            continue
        one = _error(err, conv, model, data)
        found.setdefault(one.one_line(), one)
    return sorted(found.values(), key=lambda e: e.line) or [
        _error(exc.errors()[0], conv, model, data)]


def _other_member(err: Any, errors: list[Any]) -> bool:
    """Whether ``err`` says that a value is not of one member of a union (``list[...]``)
    while another error is about the value as the member it does match: that one says it."""
    loc = err["loc"]
    tagged = [i for i, part in enumerate(loc) if isinstance(part, str) and "[" in part]
    if not err["type"].endswith("_type") or not tagged:
        return False
    base = loc[: tagged[-1]]
    return any(other is not err and other["loc"][: len(base)] == base
               and not other["type"].endswith("_type") for other in errors)


def _error(err: Any, conv: _Converter, model: type[BaseModel], data: Any) -> ScenarioError:
    where: _Path = tuple(p for p in err["loc"] if p != "[key]")  # a mapping's key: the key
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == FIELD_ERROR:  # a check across fields names the field it is about
        # ... below the model that made the check (a lab's task: tasks[3]).
        ctx = err.get("ctx", {})
        base = _walk(_in_file(where, data), data)
        field = _walk(_in_file((*base, *ctx["field"].split(".")), data), data)
        shown = field if _present(data, field) or not ctx["near"] else _walk(_in_file(
            (*base, *ctx["near"].split(".")), data), data)
        return ScenarioError(conv.path, conv.line_of(shown), _dotted(field), ctx["message"])
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, tuple(err["loc"][:-1]), data)
        message = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    elif err["type"] == "missing":
        message = "required key is missing"
    elif err["type"] == PROGRAM_ERROR:
        pass  # a program's own check says what it got
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message = _with_input(err["type"], message, err["input"])
    shown = _walk(_in_file(where, data), data)
    return ScenarioError(conv.path, conv.line_of(shown), _dotted(shown), message)


def _walk(where: _Path, data: Any) -> _Path:
    """``where`` as it is written in the file: a list index given as text (``tasks.3``) is
    an index, and a tagged union's tag that is no key of the file (``tasks[3].measure``,
    followed by a key that is) is dropped; a key the file does not give stays."""
    out: list[str | int] = []
    node = data
    parts = list(where)
    while parts:
        part = parts.pop(0)
        if isinstance(node, list) and isinstance(part, str) and part.isdigit():
            part = int(part)
        if isinstance(part, str) and "[" in part:  # a union member's tag: list[int]
            continue
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            joined = _dotted_key(node, part, parts)  # a key with dots in it: program.2.args
            if joined is not None:
                part = joined
            elif parts and isinstance(parts[0], str) and parts[0] in node:
                continue  # a tag between a value and its key; a key not in the file stays
        out.append(part)
        node = _child(node, part)
    return tuple(out)


def _dotted_key(node: dict[str, Any], part: str, rest: list[str | int]) -> str | None:
    """The key of ``node`` written ``part.rest[0]...`` (taking those parts from ``rest``)."""
    for k in range(len(rest), 0, -1):
        joined = ".".join([part, *map(str, rest[:k])])
        if joined in node:
            del rest[:k]
            return joined
    return None


def _with_input(kind: str, message: str, value: Any) -> str:
    """``message`` about ``value`` (a scalar from the file), which it shows as a short excerpt.

    A value that YAML 1.1 would have read as a boolean or a number, given where one is
    expected, gets a hint: it is text under the YAML 1.2 rules the loader follows.
    """
    shown = excerpt(value)
    if isinstance(value, str):
        message = message.replace(repr(value), shown)  # a validator may quote the whole value
    if kind == "bool_type":
        message = "expected true or false"
        if isinstance(value, str) and value.lower() in _YAML11_BOOL:
            return (f"{message} (got {shown}); YAML 1.1 words like yes/no/on/off are not "
                    "booleans here")
    if shown not in message:  # a validator's message may already say what it got
        message = f"{message} (got {shown})"
    if kind in ("int_type", "float_type") and isinstance(value, str) and \
            _YAML11_NUMBER.match(value):
        message += "; YAML 1.1 forms such as 1:30, 1_000 or 0b101 are text here"
    return message


def _parse(path: str, raw: bytes, what: str = "scenario", plain_text: bool = False
           ) -> tuple[Any, _Converter]:
    if len(raw) > LIMITS["file_bytes"]:
        raise ScenarioError(path, 0, "", f"file is {len(raw)} bytes; the limit is "
                            f"{LIMITS['file_bytes']}")
    if b"\0" in raw:
        raise ScenarioError(path, 0, "", "binary file (contains NUL bytes), not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(path, line, "", f"not UTF-8 text (byte {exc.start})") from None
    conv = _Converter(path, plain_text)
    try:
        node = _compose(text)
    except RecursionError:
        raise ScenarioError(path, 0, "", f"nesting deeper than {LIMITS['depth']} levels") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        message = f"invalid YAML: {exc.problem or exc}"
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            message += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise ScenarioError(path, line, "", message) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ScenarioError(path, line, "", f"invalid YAML: control character U+{code:04X} is "
                            "not allowed") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, 0, "", f"invalid YAML: {exc}") from None
    if node is None:
        raise ScenarioError(path, 0, "", f"empty file: a {what} is a YAML mapping")
    if not isinstance(node, yaml.MappingNode):
        raise ScenarioError(path, node.start_mark.line + 1, "",
                            f"a {what} file must be a YAML mapping (key: value)")
    return conv.convert(node), conv


def _read_bounded(name: str, what: str = "scenario") -> bytes:
    """Read at most one byte more than the limit, from a regular file only."""
    try:
        mode = os.stat(name).st_mode
        if stat.S_ISDIR(mode):
            raise ScenarioError(name, 0, "", f"is a directory, not a {what} file")
        if not stat.S_ISREG(mode):
            raise ScenarioError(name, 0, "", "not a regular file")
        with open(name, "rb") as handle:
            return handle.read(LIMITS["file_bytes"] + 1)
    except OSError as exc:
        raise ScenarioError(name, 0, "", f"cannot read: {exc.strerror or exc}") from None


def read_document(path: str | Path, what: str = "scenario", raw: bytes | None = None,
                  plain_text: bool = False) -> tuple[Any, YamlLines]:
    """The plain data of one YAML file (or of ``raw``, its bytes), read under the limits and
    rules of this module, with the line of every value. With ``plain_text`` every unquoted
    scalar but null is the text as written (``0421``, ``0x0edf``, ``true``), for the reader
    to convert as it needs.

    Raises:
        ScenarioError: the file cannot be read or is not a YAML mapping within the limits.
    """
    name = str(path)
    return _parse(name, _read_bounded(name, what) if raw is None else raw, what, plain_text)


M = typing.TypeVar("M", bound=BaseModel)


def validate_document(model: type[M], data: Any, lines: YamlLines,
                      context: dict[str, Any] | None = None) -> M:
    """``data`` (from :func:`read_document`) validated as ``model``.

    Raises:
        ScenarioError: the first error, where it is in the file; the others in ``more``.
    """
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        first, *more = _errors(exc, lines, model, data)
        first.more = tuple(more)
        raise first from None


def load_scenario(path: str | Path) -> tuple[Scenario, str]:
    """Load and validate one scenario file.

    Returns:
        The scenario and the path as given.

    Raises:
        ScenarioError: anything wrong, with file, line and field.
    """
    name = str(path)
    raw = _read_bounded(name)
    data, conv = _parse(name, raw)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        first, *more = _errors(exc, conv, Scenario, data)
        first.more = tuple(more)
        raise first from None
    return scenario, name


def find_scenario_files(
    paths: Iterable[str | Path],
) -> tuple[list[Path], list[ScenarioError]]:
    """Expand folders into their ``*.yaml`` / ``*.yml`` files (sorted); keep files as given.

    A folder named ``sweeps`` inside it holds sweep specs and is skipped. A folder is scanned
    without leaving it: a symlink whose target is outside the folder is
    refused (not followed), a symlinked folder inside it is not entered (its files are found
    under their own path), so a link loop cannot hold the scan. A file named on its own is
    read wherever a symlink leads.

    Returns:
        The files, and the problems found: a folder with no scenario files, a folder named
        like a scenario file, a symlink that leaves its folder, a folder that cannot be read.
    """
    files: list[Path] = []
    errors: list[ScenarioError] = []
    for given in paths:
        p = Path(given)
        if not p.is_dir():
            files.append(p)
        elif p.suffix in _SUFFIXES:
            errors.append(ScenarioError(str(given), 0, "", "is a directory, not a scenario file"))
        else:
            found, problems = _scan(p)
            files.extend(found)
            errors.extend(problems)
            if not found and not problems:
                name = str(given) if str(given).endswith(os.sep) else f"{given}{os.sep}"
                errors.append(ScenarioError(name, 0, ScenarioError.FOLDER, "no scenario files "
                                            "(*.yaml, *.yml) in this folder"))
    return files, errors


def _scan(folder: Path) -> tuple[list[Path], list[ScenarioError]]:
    """The scenario files under ``folder``, and the symlinks refused for leaving it."""
    base = os.path.realpath(folder)
    files: list[Path] = []
    errors: list[ScenarioError] = []

    def unreadable(exc: OSError) -> None:
        errors.append(ScenarioError(str(exc.filename or folder), 0, ScenarioError.FOLDER,
                                    f"cannot read: {exc.strerror or exc}"))

    def leaves(entry: Path, field: str = "") -> bool:
        if not entry.is_symlink():
            return False
        if os.path.commonpath([base, os.path.realpath(entry)]) == base:
            return False
        errors.append(ScenarioError(str(entry), 0, field, "symlink leaves the folder, not "
                                    "followed"))
        return True

    for top, dirs, names in os.walk(folder, onerror=unreadable):  # never into a symlinked dir
        here = Path(top)
        dirs[:] = [d for d in dirs if d != SWEEPS_FOLDER]  # sweep specs, not scenarios
        for name in dirs:
            leaves(here / name, ScenarioError.FOLDER)
        for name in names:
            entry = here / name
            if entry.suffix in _SUFFIXES and not leaves(entry) and entry.is_file():
                files.append(entry)
    return sorted(files), sorted(errors, key=lambda e: e.path)


def load_scenarios(
    paths: Iterable[str | Path],
) -> tuple[list[tuple[Scenario, str]], list[ScenarioError]]:
    """Load every file (folders as :func:`find_scenario_files` scans them); bad files and the
    problems of the scan become errors and do not stop the others.

    Scenario ids must be unique across the run.
    """
    files, errors = find_scenario_files(paths)
    loaded: list[tuple[Scenario, str]] = []
    if len(files) > LIMITS["files"]:
        errors.append(ScenarioError(str(files[LIMITS["files"]]), 0, "",
                                    f"more than {LIMITS['files']} scenario files; rest skipped"))
        files = files[: LIMITS["files"]]
    ids: dict[str, str] = {}
    for f in files:
        try:
            scenario, name = load_scenario(f)
        except ScenarioError as exc:
            errors += [exc, *exc.more]
            continue
        if scenario.id in ids:
            errors.append(ScenarioError(name, 1, "id", f"duplicate id {scenario.id!r} (also in "
                                        f"{ids[scenario.id]})"))
            continue
        ids[scenario.id] = name
        loaded.append((scenario, name))
    return loaded, errors
