"""One registry per noun: attacks, engines and mitigations.

Every list of names and every limit the schema, the CLI, ``testbed list`` and the README show
comes from here. Attacks and engines are the built-in ones plus those that installed packages
declare as entry points (groups ``testbed.attacks`` and ``testbed.engines``), discovered on
first use. An entry point names an :class:`~testbed.attacks.Attack` subclass (or instance) or
an :class:`~testbed.platform.Engine` subclass::

    [project.entry-points."testbed.attacks"]
    rowhammer-flip = "my_package.attacks:RowhammerFlip"

A plugin that does not load, is not of the right kind, has a malformed name or takes a name
already registered is refused: it is left out and a :class:`PluginProblem` says why
(:attr:`Registry.problems`; ``testbed list`` and ``testbed run`` show them).

Mitigations are fields of :class:`~testbed.platform.Mitigations`: the platform implements
each one, so they are not pluggable; :data:`MITIGATIONS` describes them.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .attacks import BUILTIN_ATTACKS, Attack, AttackParams, BaseMetrics
from .errors import ConfigError
from .platform import ENGINES, Engine, Mitigations

__all__ = [
    "ATTACK_GROUP",
    "BUILTIN_DISTRIBUTION",
    "ENGINE_GROUP",
    "MITIGATIONS",
    "NAME_PATTERN",
    "MitigationInfo",
    "PluginProblem",
    "Registered",
    "Registry",
    "attacks",
    "engines",
    "mitigation_names",
]

_log = logging.getLogger("testbed")

ATTACK_GROUP = "testbed.attacks"
ENGINE_GROUP = "testbed.engines"
BUILTIN_DISTRIBUTION = "memcrypt-testbed"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
"""Attack kinds and engine names: lower-case letters, digits and dashes, at most 32."""

T = TypeVar("T")


@dataclass(frozen=True)
class Registered(Generic[T]):
    """One registered item and the distribution that provides it."""

    name: str
    item: T
    distribution: str

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


@dataclass(frozen=True)
class PluginProblem:
    """A plugin entry point that was refused, and why."""

    group: str
    entry_point: str
    distribution: str
    message: str

    def one_line(self) -> str:
        return (f"plugin {self.entry_point!r} of {self.distribution} ({self.group}) refused: "
                f"{self.message}")


class Registry(Generic[T]):
    """Built-in items plus the entry points of ``group``, loaded once on first use.

    Args:
        noun: what the items are (for messages).
        group: the entry-point group plugins register under.
        builtins: the built-in items, in display order.
        name_of: an item's name.
        accept: turns what an entry point loads into an item, or raises ``TypeError`` naming
            what is wrong with it.
    """

    def __init__(
        self, noun: str, group: str, builtins: Callable[[], Iterable[T]],
        name_of: Callable[[T], str], accept: Callable[[object], T],
    ) -> None:
        self.noun, self.group = noun, group
        self._builtins, self._name_of, self._accept = builtins, name_of, accept
        self._entries: dict[str, Registered[T]] | None = None
        self._problems: list[PluginProblem] = []
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Registered[T]]:
        with self._lock:
            if self._entries is None:
                entries = {self._name_of(item): Registered(self._name_of(item), item,
                                                           BUILTIN_DISTRIBUTION)
                           for item in self._builtins()}
                self._problems = []
                for ep in sorted(importlib.metadata.entry_points(group=self.group),
                                 key=lambda e: (e.name, e.value)):
                    self._add_plugin(entries, ep)
                self._entries = entries
            return self._entries

    def _add_plugin(
        self, entries: dict[str, Registered[T]], ep: importlib.metadata.EntryPoint
    ) -> None:
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        try:
            item = self._accept(ep.load())
        except Exception as exc:  # a broken plugin is refused, never fatal
            self._refuse(ep, dist, f"{type(exc).__name__}: {exc}")
            return
        name = self._name_of(item)
        if name in entries:
            self._refuse(ep, dist, f"{self.noun} name {name!r} is already taken by "
                         f"{entries[name].distribution}")
            return
        entries[name] = Registered(name, item, dist)

    def _refuse(self, ep: importlib.metadata.EntryPoint, dist: str, message: str) -> None:
        problem = PluginProblem(self.group, ep.name, dist, " ".join(message.split()))
        self._problems.append(problem)
        _log.warning("%s", problem.one_line())

    def add(self, obj: object, distribution: str = "a script") -> T:
        """Register ``obj`` from a running script or notebook, as an entry point would.

        Worker processes started by fork see it; with another start method, use an entry
        point (or run with ``jobs=1``).

        Returns:
            The registered item.

        Raises:
            ConfigError: ``obj`` is not of the right kind, or its name is taken.
        """
        try:
            item = self._accept(obj)
        except TypeError as exc:
            raise ConfigError(f"{self.noun}: {exc}") from None
        entries = self._load()
        name = self._name_of(item)
        with self._lock:
            if name in entries:
                raise ConfigError(f"{self.noun} name {name!r} is already taken by "
                                  f"{entries[name].distribution}")
            entries[name] = Registered(name, item, distribution)
        return item

    def remove(self, name: str) -> None:
        """Unregister what :meth:`add` registered (built-ins and entry points stay)."""
        entries = self._load()
        with self._lock:
            entry = entries.get(name)
            if entry is None or entry.builtin:
                raise ConfigError(f"{self.noun} {name!r} cannot be removed")
            del entries[name]

    def reload(self) -> None:
        """Forget what was discovered; the next use looks at the entry points again."""
        with self._lock:
            self._entries = None

    @property
    def problems(self) -> tuple[PluginProblem, ...]:
        """Plugins refused when the registry was loaded."""
        self._load()
        return tuple(self._problems)

    def names(self) -> tuple[str, ...]:
        """Every registered name, built-ins first, in display order."""
        return tuple(self._load())

    def entries(self) -> tuple[Registered[T], ...]:
        return tuple(self._load().values())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[T]:
        return (entry.item for entry in self._load().values())

    def get(self, name: str) -> T:
        """The item called ``name``.

        Raises:
            ConfigError: no such item; the message lists the known names.
        """
        try:
            return self._load()[name].item
        except KeyError:
            raise ConfigError(f"unknown {self.noun} {name!r}; known: "
                              f"{', '.join(self.names())}") from None

    def distribution(self, name: str) -> str:
        """The distribution that provides ``name``."""
        return self._load()[name].distribution


def _check_name(noun: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise TypeError(f"{noun} name {name!r} must match {NAME_PATTERN.pattern}")
    return name


def _accept_attack(obj: object) -> Attack[Any]:
    if isinstance(obj, type) and issubclass(obj, Attack):
        obj = obj()
    if not isinstance(obj, Attack):
        raise TypeError(f"{obj!r} is not an Attack subclass or instance")
    cls = type(obj)
    _check_name("attack", getattr(cls, "kind", None))
    for attr in ("title", "capabilities", "Params", "Metrics"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} has no {attr}")
    if not (isinstance(obj.Params, type) and issubclass(obj.Params, AttackParams)):
        raise TypeError(f"{cls.__name__}.Params is not an AttackParams subclass")
    if not (isinstance(cls.Metrics, type) and issubclass(cls.Metrics, BaseMetrics)):
        raise TypeError(f"{cls.__name__}.Metrics is not a Metrics subclass")
    return obj


def _accept_engine(obj: object) -> type[Engine]:
    if not (isinstance(obj, type) and issubclass(obj, Engine)):
        raise TypeError(f"{obj!r} is not an Engine subclass")
    _check_name("engine", obj.__dict__.get("name"))
    return obj


attacks: Registry[Attack[Any]] = Registry(
    "attack", ATTACK_GROUP, lambda: (cls() for cls in BUILTIN_ATTACKS),
    lambda attack: attack.kind, _accept_attack,
)
"""Every attack a scenario can name in ``attack:``."""

engines: Registry[type[Engine]] = Registry(
    "engine", ENGINE_GROUP, lambda: ENGINES.values(), lambda cls: cls.name, _accept_engine,
)
"""Every engine a scenario can name in ``engines:``."""


@dataclass(frozen=True)
class MitigationInfo:
    """One software mitigation: its name in profile names and the setting that turns it on."""

    name: str
    """As it appears in profile names (``tme+init_on_free``)."""
    setting: str
    """The key of a scenario's ``mitigations:`` (and the field of ``Mitigations``)."""
    kind: type
    """``bool``, or ``int`` for a limit (0: off)."""
    maximum: int | None
    description: str


def _mitigations() -> tuple[MitigationInfo, ...]:
    out = []
    for f in dataclasses.fields(Mitigations):
        meta = f.metadata
        kind = bool if f.type in (bool, "bool") else int
        out.append(MitigationInfo(meta["profile"], f.name, kind, meta.get("maximum"),
                                  meta["description"]))
    return tuple(out)


MITIGATIONS: tuple[MitigationInfo, ...] = _mitigations()
"""Every software mitigation, in the order they appear in profile names."""


def mitigation_names() -> tuple[str, ...]:
    """Mitigation names as they appear in profile names."""
    return tuple(m.name for m in MITIGATIONS)
