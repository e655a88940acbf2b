"""memcrypt-testbed: memory-encryption attacks on an emulated machine, and what stops them.

The scenario runner (:mod:`testbed.scenarios`) is the everyday entry point; the platform
(:mod:`testbed.platform`) and the ciphers (:mod:`testbed.crypto`) are the layer beneath, usable
directly from a notebook.
"""

from __future__ import annotations

from . import registry
from ._version import __version__
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
