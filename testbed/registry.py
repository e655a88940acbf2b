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
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .attacks import BUILTIN_ATTACKS, Attack, AttackParams, BaseMetrics
from .errors import ConfigError
from .platform import ENGINES, Engine, Mitigations
from .programs import ProgramAttack

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
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
"""Attack kinds and engine names: lower-case letters, digits and dashes, at most 32 (matched
whole, with ``fullmatch``: they become HTML ids and CSS selectors in the report)."""

T = TypeVar("T")

_REGISTRIES: weakref.WeakSet[Registry[Any]] = weakref.WeakSet()


def _after_fork() -> None:
    """A child forked while another thread held a registry's lock finds it free."""
    for reg in list(_REGISTRIES):
        reg._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


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

    def __post_init__(self) -> None:
        # Plugin text goes to terminals and pages: one line, no control characters.
        for name in ("entry_point", "distribution", "message"):
            object.__setattr__(self, name, _printable(getattr(self, name)))

    def one_line(self) -> str:
        return (f"plugin {self.entry_point!r} of {self.distribution} ({self.group}) refused: "
                f"{self.message}")


def _printable(text: str) -> str:
    """``text`` on one line with every control character replaced."""
    return "".join(c if c.isprintable() else "\ufffd" for c in " ".join(text.split()))[:500]


class Registry(Generic[T]):
    """Built-in items plus the entry points of ``group``, loaded once on first use.

    The table is replaced whole, never changed in place: a reader always sees a complete
    snapshot, whatever another thread adds meanwhile. Plugins are imported outside the lock,
    so a plugin that looks at the registry while it is imported sees what is there so far
    (and never waits for itself).

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
        self._added: dict[str, Registered[T]] = {}
        """What :meth:`add` registered: kept across :meth:`reload`."""
        self._problems: tuple[PluginProblem, ...] = ()
        self._loading = False
        self._lock = threading.Lock()
        _REGISTRIES.add(self)

    def _builtin_entries(self) -> dict[str, Registered[T]]:
        return {self._name_of(item): Registered(self._name_of(item), item, BUILTIN_DISTRIBUTION)
                for item in self._builtins()}

    def _load(self) -> dict[str, Registered[T]]:
        entries = self._entries
        if entries is not None:
            return entries
        with self._lock:
            if self._entries is not None:
                return self._entries
            if self._loading:  # a plugin being imported asks: it sees what is there so far
                return {**self._builtin_entries(), **self._added}
            self._loading = True
        try:
            entries = self._builtin_entries()
            problems: list[PluginProblem] = []
            for ep in sorted(importlib.metadata.entry_points(group=self.group),
                             key=lambda e: (e.name, e.value)):
                self._add_plugin(entries, ep, problems)
            with self._lock:
                for name, entry in self._added.items():
                    if name in entries:  # an entry point took the name since: it wins
                        problems.append(PluginProblem(
                            self.group, name, entry.distribution,
                            f"{self.noun} name {name!r} is now taken by "
                            f"{entries[name].distribution}"))
                    else:
                        entries[name] = entry
                self._entries, self._problems = entries, tuple(problems)
        finally:
            self._loading = False
        for problem in problems:
            _log.debug("%s", problem.one_line())
        return entries

    def _add_plugin(
        self, entries: dict[str, Registered[T]], ep: importlib.metadata.EntryPoint,
        problems: list[PluginProblem],
    ) -> None:
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        try:
            item = self._accept(ep.load())
            name = _check_name(self.noun, self._name_of(item))
        except Exception as exc:  # a broken plugin is refused, never fatal
            problems.append(PluginProblem(self.group, ep.name, dist,
                                          f"{type(exc).__name__}: {exc}"))
            return
        if name in entries:
            problems.append(PluginProblem(self.group, ep.name, dist,
                                          f"{self.noun} name {name!r} is already taken by "
                                          f"{entries[name].distribution}"))
            return
        entries[name] = Registered(name, item, dist)

    def add(self, obj: object, distribution: str = "a script") -> T:
        """Register ``obj`` from a running script or notebook, as an entry point would.

        The runner hands each job its attack and engine class, so worker processes have
        them however they are started.

        Returns:
            The registered item.

        Raises:
            ConfigError: ``obj`` is not of the right kind, or its name is taken.
        """
        try:
            item = self._accept(obj)
            name = _check_name(self.noun, self._name_of(item))
        except TypeError as exc:
            raise ConfigError(f"{self.noun}: {exc}") from None
        self._load()
        with self._lock:
            entries = self._entries if self._entries is not None else {}
            if name in entries:
                raise ConfigError(f"{self.noun} name {name!r} is already taken by "
                                  f"{entries[name].distribution}")
            entry = Registered(name, item, distribution)
            self._added = {**self._added, name: entry}
            self._entries = {**entries, name: entry}
        return item

    def remove(self, name: str) -> None:
        """Unregister what :meth:`add` registered (built-ins and entry points stay)."""
        self._load()
        with self._lock:
            if name not in self._added:
                raise ConfigError(f"{self.noun} {name!r} cannot be removed: only what add() "
                                  "registered can")
            self._added = {k: v for k, v in self._added.items() if k != name}
            if self._entries is not None:
                self._entries = {k: v for k, v in self._entries.items() if k != name}

    def reload(self) -> None:
        """Look at the entry points again on next use (what :meth:`add` registered stays)."""
        with self._lock:
            self._entries = None

    @property
    def problems(self) -> tuple[PluginProblem, ...]:
        """Plugins refused when the registry was loaded."""
        self._load()
        return self._problems

    def names(self) -> tuple[str, ...]:
        """Every registered name, built-ins first, in display order."""
        return tuple(self._load())

    def builtin_names(self) -> tuple[str, ...]:
        """The names that ship with the testbed, in display order."""
        return tuple(name for name, entry in self._load().items() if entry.builtin)

    def entries(self) -> tuple[Registered[T], ...]:
        return tuple(self._load().values())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[T]:
        return iter([entry.item for entry in self._load().values()])

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
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise TypeError(f"{noun} name {name!r} must match {NAME_PATTERN.pattern}")
    return name


def _accept_attack(obj: object) -> Attack[Any]:
    if isinstance(obj, type) and issubclass(obj, Attack):
        obj = obj()
    if not isinstance(obj, Attack):
        raise TypeError(f"{obj!r} is not an Attack subclass or instance")
    cls = type(obj)
    _check_name("attack", getattr(obj, "kind", None))
    for attr in ("title", "capabilities", "Params", "Metrics"):
        if not hasattr(obj, attr):
            raise TypeError(f"{cls.__name__} has no {attr}")
    if not isinstance(obj.title, str):
        raise TypeError(f"{cls.__name__}.title is not text")
    if not (isinstance(obj.capabilities, tuple)
            and all(isinstance(c, str) and NAME_PATTERN.fullmatch(c.replace("_", "-"))
                    for c in obj.capabilities)):
        raise TypeError(f"{cls.__name__}.capabilities must be a tuple of names "
                        "([a-z0-9_], like 'bus_interposer')")
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
    "attack", ATTACK_GROUP, lambda: (*(cls() for cls in BUILTIN_ATTACKS), ProgramAttack()),
    lambda attack: attack.kind, _accept_attack,
)
"""Every attack a scenario can name in ``attack:``; ``program`` runs an attack a scenario
writes out as steps (:mod:`testbed.programs`)."""

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
