"""Attack programs for the tests: the YAML files under ``tests/programs/``, and runners.

A program travels as the ``params`` of a scenario whose attack is ``program`` (what a
scenario file's top-level ``threat``, ``program`` and ``goal`` become).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import numpy as np
import yaml

from _support.paths import TESTS
from testbed.attacks import AttackContext
from testbed.platform import KeySource, Machine, Mitigations, make_engine
from testbed.programs import Program
from testbed.results import ResultRow
from testbed.scenarios import Job, Scenario, run_job, run_trials

__all__ = ["PROGRAMS", "TEXT", "context", "freed", "leak", "load", "pins", "program", "raw",
           "replay", "rollback", "run", "scenario", "work_estimates"]

PROGRAMS = TESTS / "programs"


def load(name: str) -> dict[str, Any]:
    """The data of ``tests/programs/NAME.yaml``."""
    data = yaml.safe_load((PROGRAMS / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def program(name: str) -> Program:
    return Program.model_validate(load(name))


def scenario(prog: Program, id: str = "t-program", **fields: Any) -> Scenario:
    """A minimal valid scenario running ``prog``."""
    doc: dict[str, Any] = {"id": id, "title": "test program", "attack": "program",
                           "params": prog, "teaching": {"summary": "test"}, **fields}
    return Scenario.model_validate(doc)


def _job(prog: Program, engine: str, seed: int, id: str, fields: dict[str, Any]) -> Job:
    return Job(scenario(prog, id, **fields), "<test>", engine, seed)


def run(prog: Program, engine: str, seed: int = 7, id: str = "t-program",
        **fields: Any) -> ResultRow:
    """Run ``prog`` under ``engine`` and return the row judged against its control."""
    return run_job(_job(prog, engine, seed, id, fields))


def raw(prog: Program, engine: str, seed: int = 7, id: str = "t-program",
        **fields: Any) -> ResultRow:
    """The row of ``prog`` under ``engine`` without a control (its own trials only)."""
    return run_trials(_job(prog, engine, seed, id, fields))


def context(engine: str = "tme", seed: int = 1, pages: int = 64,
            mitigations: Mitigations | None = None, *,
            ciphertext_hiding: bool = False,
            secretmem_before_pmd_pool: bool = False) -> AttackContext:
    """An attack context on a fresh machine (for driving the interpreter directly); a reboot
    builds a new one from the same key source, so it gets new keys."""
    keys = KeySource(np.random.default_rng(seed))

    def build() -> Machine:
        return Machine(make_engine(engine, keys, ciphertext_hiding=ciphertext_hiding), pages,
                       mitigations, secretmem_before_pmd_pool=secretmem_before_pmd_pool)

    return AttackContext(build(), np.random.default_rng(seed + 1), build)


# -- the programs of the shipped attacks, with their knobs -------------------------------------
# What the built-in attacks' parameters were, as programs: the tests that used those attacks as
# fixtures build their scenarios with these (``scenario("program", params=leak("x"))``).

TEXT = "the quick brown fox 0123456789"


def _secret_args(text: str | None, size: int | None) -> dict[str, Any]:
    return {"size": size} if size is not None else {"text": TEXT if text is None else text}


def leak(text: str | None = None, *, size: int | None = None, victim: str = "guest",
         offset: int = 0) -> dict[str, Any]:
    """The kernel direct-map leak: the victim's secret read through the KeyID-0 direct map."""
    return {"threat": ["kernel_read_bug"], "goal": {"recovered": "leaked"}, "program": [
        {"op": "create_domain", "by": "victim", "args": {"kind": victim}, "as": "victim"},
        {"op": "alloc_pages", "by": "victim", "args": {"domain": "$victim", "secret": True},
         "as": "page"},
        {"op": "store_secret", "by": "victim",
         "args": {"address": "$page", "offset": offset, **_secret_args(text, size)},
         "as": "secret"},
        {"op": "read_direct_map", "by": "attacker", "args": {"address": "$secret"},
         "as": "leaked"},
    ]}


def freed(text: str | None = None, *, size: int | None = None, victim: str = "guest",
          attacker: str = "process", pages: int = 4, stale: bool = False) -> dict[str, Any]:
    """The freed-data leak: the victim exits; the attacker reallocates the frame of its secret
    and reads it before writing it (``stale``: reads it through the victim's old KeyID)."""
    steps: list[dict[str, Any]] = [
        {"op": "create_domain", "by": "victim", "args": {"kind": victim}, "as": "victim"},
        {"op": "alloc_pages", "by": "victim", "args": {"domain": "$victim", "count": pages},
         "as": "pages"},
        {"op": "store_secret", "by": "victim",
         "args": {"address": "$pages", "page": pages // 2, **_secret_args(text, size)},
         "as": "secret"},
        {"op": "destroy_domain", "by": "victim", "args": {"domain": "$victim"}},
    ]
    if stale:
        steps.append({"op": "read_keyid_map", "by": "attacker",
                      "args": {"address": "$secret", "keyid_of": "$victim"}, "as": "leaked"})
    else:
        steps += [
            {"op": "create_domain", "by": "attacker", "args": {"kind": attacker},
             "as": "attacker"},
            {"op": "alloc_pages", "by": "attacker",
             "args": {"domain": "$attacker", "count": pages, "until": "$secret"},
             "as": "frame"},
            {"op": "read_uninit", "by": "attacker", "args": {"address": "$frame"},
             "as": "leaked"},
        ]
    return {"threat": ["uninit_page_read"], "program": steps, "goal": {"recovered": "leaked"}}


def replay(text: str | None = None, *, size: int | None = None, victim: str = "guest",
           attacker: str = "guest") -> dict[str, Any]:
    """The cross-domain replay: captured ciphertext written back once the attacker owns the
    address, read through the attacker's own key."""
    return {"threat": ["bus_interposer", "chosen_plaintext"], "goal": {"recovered": "replayed"},
            "program": [
        {"op": "create_domain", "by": "victim", "args": {"kind": victim}, "as": "victim"},
        {"op": "alloc_pages", "by": "victim", "args": {"domain": "$victim"}, "as": "page"},
        {"op": "store_secret", "by": "victim",
         "args": {"address": "$page", **_secret_args(text, size)}, "as": "secret"},
        {"op": "capture", "by": "attacker", "args": {"address": "$secret"}, "as": "old"},
        {"op": "destroy_domain", "by": "victim", "args": {"domain": "$victim"}},
        {"op": "create_domain", "by": "attacker", "args": {"kind": attacker}, "as": "attacker"},
        {"op": "alloc_pages", "by": "attacker",
         "args": {"domain": "$attacker", "until": "$secret"}, "as": "frame"},
        {"op": "write_bus", "by": "attacker", "args": {"address": "$frame", "data": "$old"}},
        {"op": "read_own", "by": "attacker", "args": {"address": "$frame"}, "as": "replayed"},
    ]}


def rollback(old: str = "balance=0000100", new: str = "balance=0000000") -> dict[str, Any]:
    """The hypervisor replay: a guest page's old ciphertext written back after the guest
    updated it; success is the guest reading its old value."""
    length = -(-len(old.encode()) // 64) * 64
    return {"threat": ["malicious_hypervisor"], "goal": {"victim_reads": "old"}, "program": [
        {"op": "create_domain", "by": "victim", "args": {"kind": "guest"}, "as": "guest"},
        {"op": "alloc_pages", "by": "victim", "args": {"domain": "$guest"}, "as": "page"},
        {"op": "store", "by": "victim", "args": {"address": "$page", "text": old}, "as": "old"},
        {"op": "hv_read", "by": "hypervisor", "args": {"address": "$old", "length": length},
         "as": "saved"},
        {"op": "store", "by": "victim", "args": {"address": "$page", "text": new}, "as": "new"},
        {"op": "hv_write", "by": "hypervisor", "args": {"address": "$old", "data": "$saved"}},
    ]}


def pins(digits: int = 4, *, victim: str = "guest", attacker: str = "guest") -> dict[str, Any]:
    """Capture and delayed compare on a PIN of ``digits`` digits."""
    return {"threat": ["bus_interposer", "chosen_plaintext"], "goal": {"recovered": "found"},
            "program": [
        {"op": "create_domain", "by": "victim", "args": {"kind": victim}, "as": "victim"},
        {"op": "alloc_pages", "by": "victim", "args": {"domain": "$victim"}, "as": "page"},
        {"op": "store_secret", "by": "victim",
         "args": {"address": "$page", "digits": digits, "prefix": "PIN:", "pad_to": 64},
         "as": "pin"},
        {"op": "capture", "by": "attacker", "args": {"address": "$pin", "length": 64},
         "as": "line"},
        {"op": "destroy_domain", "by": "victim", "args": {"domain": "$victim"}},
        {"op": "create_domain", "by": "attacker", "args": {"kind": attacker}, "as": "attacker"},
        {"op": "alloc_pages", "by": "attacker", "args": {"domain": "$attacker", "until": "$pin"},
         "as": "frame"},
        {"op": "guess", "by": "attacker",
         "args": {"address": "$frame", "target": "$line", "prefix": "PIN:", "digits": digits},
         "as": "found"},
    ]}


def work_estimates() -> ModuleType:
    """``tests/attacks/test_work_estimates.py``, whose ``slowdown`` fixture and ``measured``
    timer the programs' timing tests share: the module pytest collects, or the same file
    loaded under the same name when it has not collected it."""
    name = "test_work_estimates"
    found = sys.modules.get(name)
    if found is None:
        spec = importlib.util.spec_from_file_location(name, TESTS / "attacks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        found = importlib.util.module_from_spec(spec)
        sys.modules[name] = found
        spec.loader.exec_module(found)
    return found
