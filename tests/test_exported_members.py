"""The public API, pinned: each package's ``__all__`` exactly as written here, sorted, resolving.

A name added to or dropped from a package's ``__all__`` fails ``test_exported_members`` until the
list below is changed with it: the public API changes only on purpose.
"""

from __future__ import annotations

import ast
import importlib
import types

import pytest
from _support import paths

import testbed

EXPORTED: dict[str, list[str]] = {
    "testbed": [
        "Attack", "AttackContext", "AttackParams", "ConfigError", "Machine", "Mitigations",
        "Outcome", "PageFault", "PlatformRefusal", "ResultRow", "RmpViolation", "Scenario",
        "ScenarioError", "TestbedError", "Verdict", "__version__", "load_scenario",
        "load_scenarios", "make_engine", "plan", "registry", "run_jobs"
    ],
    "testbed.attacks": [
        "BUILTIN_ATTACKS", "Actor", "Attack", "AttackContext", "AttackLog", "AttackParams",
        "AttestationBypass", "BaseMetrics", "CiphertextSideChannel", "DirtyPageLeak",
        "KeyWearout", "Phase", "SecretParams", "SecretmemExhaustion", "TornLivePatch", "Verdict",
        "judge_bytes", "make_secret", "plant_secret"
    ],
    "testbed.crypto": [
        "NARROW_KEY_SIZE", "XEX_KEY_SIZE", "XTS_KEY_SIZE", "BlockGrid", "LineCipher",
        "NarrowLineCipher", "XexLineCipher", "XtsLineCipher", "as_blocks", "mask_backend"
    ],
    "testbed.platform": [
        "DIRECT_MAP_BASE", "ENGINES", "HOST", "INT3", "MAX_INTERLEAVINGS", "MAX_MEMORY_PAGES",
        "PATCHER", "PMD_PAGES", "POLICY_NODBG", "SIGNATURE_OFFSET", "AttestationReport", "BusTap",
        "Certificate", "CipherFamily", "DirectMap", "Domain", "DomainKind", "Engine",
        "EngineOptions", "EngineWithAttestation", "EngineWithGuestIsolation",
        "EngineWithIntegrity", "EngineWithKeyIds", "EngineWithRmp", "EngineWithRuntimeRotation",
        "EngineWithSnpAttestation", "ExecClass", "Execution", "Exploration", "InsnKind",
        "KeySource", "KeyUsage", "LivePatch", "Machine", "Mitigations", "MktmeEngine",
        "MktmeIntegrityEngine", "NoEngine", "PageAllocator", "Patcher", "PconfigCommand",
        "PconfigStatus",
        "PhysicalMemory", "Psp", "SecretmemArea", "SecretmemFile", "SevAttestationReport",
        "SevEngine", "SevReport", "SevSnpEngine", "TextSegment", "TmeEngine", "Vendor", "Verifier",
        "VfioContainer", "count_interleavings", "decode", "decode_mnonce", "dirty_bitmap_bytes",
        "dirty_page_indexes", "encode", "engine_class", "explore_all", "explore_random",
        "issue_certificate", "make_engine", "open_guest_container", "poke_site",
        "query_attestation_report", "sign_report"
    ],
    "testbed.registry": [
        "ATTACK_GROUP", "BUILTIN_DISTRIBUTION", "ENGINE_GROUP", "MITIGATIONS", "NAME_PATTERN",
        "MitigationInfo", "PluginProblem", "Registered", "Registry", "attacks", "engines",
        "mitigation_names"
    ],
    "testbed.results": [
        "APPLICATION_ID", "DEFENCE_BYTES", "FORMAT_VERSION", "MARGIN_LOG2", "MAX_TRIALS",
        "SCHEMA_VERSION", "Actor", "Change", "Control", "CurvePoint", "DictionaryPlot",
        "DirtyBitmapPlot", "Evidence", "FragmentationSeries", "JsonValue", "Line", "LinePlot",
        "Metrics", "PendingRun", "PlotData", "ResultRow", "RunInfo", "RunStore", "Step",
        "StoreError", "StoredRun", "TraceInterval", "TrialStats", "UnknownRun", "Verdict",
        "WearoutPlot", "atomic_write_text", "chance_text", "json_value", "junit_document",
        "log2_tail", "matched_bytes", "omitted_when_none",
        "results_document", "wilson_interval", "write_junit", "write_results_json"
    ],
    "testbed.scenarios": [
        "LIMITS", "Job", "Scenario", "control_of", "engine_names", "find_scenario_files",
        "load_scenario", "load_scenarios", "plan", "run_job", "run_jobs", "run_trials", "units"
    ],
}


def isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest (the order ruff's RUF022 keeps)."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("module", sorted(EXPORTED))
def test_exported_members(module: str) -> None:
    assert list(importlib.import_module(module).__all__) == EXPORTED[module]


@pytest.mark.parametrize("module", sorted(EXPORTED))
def test_all_is_sorted_without_repeats(module: str) -> None:
    names = list(importlib.import_module(module).__all__)
    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)
    assert EXPORTED[module] == sorted(EXPORTED[module], key=isort_key)


@pytest.mark.parametrize("module", sorted(EXPORTED))
def test_every_exported_name_resolves(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []


def _bound_at_top_level(tree: ast.Module) -> set[str]:
    """The names a module's own source binds at top level (``from __future__`` aside)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_the_top_level_package_exports_every_public_name_it_defines() -> None:
    source = (paths.PACKAGE / "__init__.py").read_text(encoding="utf-8")
    defined = _bound_at_top_level(ast.parse(source))
    assert {"_HOMES", "__version__", "__all__"} <= defined  # the parse sees them
    public = {name for name in defined if not name.startswith("_")}
    assert sorted(public - set(testbed.__all__)) == []
    # The exports are loaded on first use: each one named in __all__ has a home, and loads.
    assert sorted({*testbed._HOMES, "__version__"}) == sorted(testbed.__all__)
    for name in testbed.__all__:
        assert getattr(testbed, name) is not None
    # At run time too: every public attribute that is not a subpackage is exported.
    attributes = {
        name for name, value in vars(testbed).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
        and name != "annotations"  # the `from __future__ import annotations` feature
    }
    assert sorted(attributes - set(testbed.__all__)) == []
