"""A student's instance of a lab: the seed, the values of the lab's variables, the scenarios.

Everything a student's instance holds is derived with HMAC-SHA256 from (class key, lab id,
student id): the run seed (and so the PINs, secrets and keys the runs draw from it) and the
value of each ``vary:`` variable. Two students of one class get different instances; a
student cannot derive another's without the class key, and nothing derived reveals it (only
HMAC outputs leave this module). Without a class key the instance is a *practice* one,
derived under a public key: anyone can make it, and a teacher's grading recognises it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..scenarios.model import Scenario
from .model import Lab, placeholders, variable

__all__ = [
    "MAX_KEY_BYTES",
    "PRACTICE_KEY",
    "STUDENT_ID",
    "Instance",
    "build",
    "check_student",
    "derive",
    "fill",
    "read_class_key",
    "scenario_documents",
    "set_path",
]

PRACTICE_KEY = b"memcrypt-testbed practice instance"
"""The public key of practice instances (no class key given)."""
MAX_KEY_BYTES = 4096
"""Longest class key file read."""
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")
"""A student id: letters, digits and ``. _ @ + -``, up to 64 characters (an e-mail works)."""
_MAX_SEED = 2**63 - 1


def read_class_key(path: Path) -> bytes:
    """The class key in ``path`` (its bytes, surrounding whitespace dropped).

    Raises:
        ConfigError: the file cannot be read, is empty, too long or shorter than 16 bytes.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the class key: {exc.strerror or exc}") from None
    key = raw.strip()
    if len(raw) > MAX_KEY_BYTES:
        raise ConfigError(f"{path}: a class key file is at most {MAX_KEY_BYTES} bytes")
    if len(key) < 16:
        raise ConfigError(f"{path}: the class key is {len(key)} bytes; use at least 16 "
                          "(testbed lab keygen makes one)")
    return key


def check_student(student: str) -> str:
    if not STUDENT_ID.match(student):
        raise ConfigError("a student id is 1 to 64 letters, digits and . _ @ + - (starting "
                          "with a letter or digit)")
    return student


@dataclass(frozen=True)
class Instance:
    """One student's lab."""

    lab: Lab
    student: str
    practice: bool
    seed: int
    """The run seed of every scenario of the instance."""
    values: dict[str, Any]
    """The student's value of each ``vary:`` variable."""
    fingerprint: str
    """A public name of the instance (an HMAC output, 16 hex digits): the same for the
    student's and the teacher's derivation, different for any other instance."""
    scenarios: dict[str, Scenario]
    """The lab's scenarios with the student's values, by id in the lab."""
    documents: dict[str, dict[str, Any]]
    """The same as plain data, as the student's files hold them."""

    def text(self, text: str) -> str:
        """``text`` with each ``{name}`` of a variable replaced by the student's value."""
        return fill(text, self.values)


def fill(text: str, values: dict[str, Any]) -> str:
    """``text`` with each ``{name}`` of ``values`` replaced (other braces stay as written)."""
    for name in placeholders(text) & set(values):
        text = text.replace("{" + name + "}", str(values[name]))
    return text


def _mac(key: bytes, *parts: str) -> bytes:
    message = b"\0".join(p.encode() for p in ("testbed-lab-v1", *parts))
    return hmac.new(key, message, hashlib.sha256).digest()


def derive(lab: Lab, student: str, class_key: bytes | None, bases: dict[str, dict[str, Any]]
           ) -> Instance:
    """The instance of ``lab`` for ``student`` (practice when ``class_key`` is ``None``).

    ``bases`` maps each shipped scenario id the lab uses to its plain data.

    Raises:
        ConfigError: the student id is malformed, or a scenario with the student's values
            does not validate (a lab whose values were not all checked when it loaded).
    """
    check_student(student)
    key = PRACTICE_KEY if class_key is None else class_key
    seed = int.from_bytes(_mac(key, lab.id, student, "seed")[:8], "big") & _MAX_SEED
    values: dict[str, Any] = {}
    for name, choices in lab.vary.items():
        pick = int.from_bytes(_mac(key, lab.id, student, "vary", name)[:8], "big")
        values[name] = choices[pick % len(choices)]
    fingerprint = _mac(key, lab.id, student, "fingerprint")[:8].hex()
    return build(lab, student, class_key is None, seed, values, fingerprint, bases)


def build(lab: Lab, student: str, practice: bool, seed: int, values: dict[str, Any],
          fingerprint: str, bases: dict[str, dict[str, Any]]) -> Instance:
    """The instance with these derived parts (a student's folder records them; see
    :func:`derive`).

    Raises:
        ConfigError: a value is not one the lab allows, or a scenario does not validate.
    """
    check_student(student)
    if set(values) != set(lab.vary) or any(values[n] not in lab.vary[n] for n in values):
        raise ConfigError(f"the values {values} are not an instance of lab {lab.id}")
    if not 0 <= seed <= _MAX_SEED:
        raise ConfigError(f"seed {seed} is out of range")
    documents = scenario_documents(lab, values, bases)
    scenarios = {}
    for sid, doc in documents.items():
        try:
            scenarios[sid] = Scenario.model_validate(doc)
        except ValueError as exc:
            raise ConfigError(f"lab {lab.id}: scenario {sid} with {values}: {exc}") from None
    return Instance(lab, student, practice, seed, values, fingerprint, scenarios, documents)


def scenario_documents(lab: Lab, values: dict[str, Any], bases: dict[str, dict[str, Any]]
                       ) -> dict[str, dict[str, Any]]:
    """Each scenario of ``lab`` as plain data, with ``values`` for its variables."""
    out = {}
    for i, spec in enumerate(lab.scenarios):
        base = bases[spec.use] if spec.use is not None else spec.scenario or {}
        doc = _copy(base)
        sid = lab.scenario_id(i)
        doc["id"] = sid
        for path, value in spec.set.items():
            set_path(doc, path, substitute(value, values))
        out[sid] = doc
    return out


def substitute(value: Any, values: dict[str, Any]) -> Any:
    """``value`` (from ``set:``, at any depth) with each ``"{name}"`` replaced by the
    variable's value and each ``{name}`` inside a text by its text."""
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    name = variable(value)
    if name is not None and name in values:
        return values[name]
    return fill(value, values) if isinstance(value, str) else value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``doc``'s value at the dotted ``path`` (a number is a list index; mappings on the
    way are made when missing).

    Raises:
        ConfigError: the path goes through a value that is not a mapping or a list, or an
            index past a list's end.
    """
    parts = path.split(".")
    node: Any = doc
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{path}: {part} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"{path}: {'.'.join(parts[:n])} is not a mapping or a list")
