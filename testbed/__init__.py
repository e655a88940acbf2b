"""memcrypt-testbed: memory-encryption attacks on an emulated machine, and what stops them.

The scenario runner (:mod:`testbed.scenarios`) is the everyday entry point; the platform
(:mod:`testbed.platform`) and the ciphers (:mod:`testbed.crypto`) are the layer beneath, usable
directly from a notebook.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from ._version import __version__

if _typing.TYPE_CHECKING:  # the names below are loaded on first use (see __getattr__)
    from . import registry
    from .attacks import Attack, AttackContext, AttackParams, Verdict
    from .errors import (
        ConfigError,
        PageFault,
        PlatformRefusal,
        RmpViolation,
        ScenarioError,
        TestbedError,
    )
    from .platform import Machine, Mitigations, make_engine
    from .results import ResultRow
    from .scenarios import Scenario, load_scenario, load_scenarios, plan, run_jobs
    from .types import Outcome

_HOMES = {
    "registry": ".registry",
    **dict.fromkeys(("Attack", "AttackContext", "AttackParams", "Verdict"), ".attacks"),
    **dict.fromkeys(("ConfigError", "PageFault", "PlatformRefusal", "RmpViolation",
                     "ScenarioError", "TestbedError"), ".errors"),
    **dict.fromkeys(("Machine", "Mitigations", "make_engine"), ".platform"),
    "ResultRow": ".results",
    **dict.fromkeys(("Scenario", "load_scenario", "load_scenarios", "plan", "run_jobs"),
                    ".scenarios"),
    "Outcome": ".types",
}
"""Where each exported name lives. Importing ``testbed`` itself loads nothing else, so the
``testbed`` command can take over Ctrl-C before the heavy imports start."""


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'testbed' has no attribute {name!r}")
    module = _importlib.import_module(home, __name__)
    value = module if name == "registry" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})

__all__ = [
    "Attack",
    "AttackContext",
    "AttackParams",
    "ConfigError",
    "Machine",
    "Mitigations",
    "Outcome",
    "PageFault",
    "PlatformRefusal",
    "ResultRow",
    "RmpViolation",
    "Scenario",
    "ScenarioError",
    "TestbedError",
    "Verdict",
    "__version__",
    "load_scenario",
    "load_scenarios",
    "make_engine",
    "plan",
    "registry",
    "run_jobs",
]
