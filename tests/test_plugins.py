"""Plugins: a third-party package adds an attack and an engine through entry points, with no edit
in testbed/.

The example package (``tests/plugins/example_plugin``) is installed with pip into a folder of
its own, which the testbed then finds on ``PYTHONPATH``: the venv is never changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _support.plugin import install_example_plugin

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "plugins" / "cold-boot.yaml"
SME_SCENARIOS = HERE / "plugins" / "sme"


def _testbed(*args: str, path: Path | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_example_plugin(tmp_path_factory.mktemp("plugin"))


def test_the_plugin_attack_runs_from_a_scenario(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _testbed("run", str(SCENARIO), "--seed", "3", "--jobs", "1", "--out", str(out),
                    path=installed)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    got = {r["engine"]: r["outcome"] for r in rows}
    assert got == {"none": "succeeded", "tme": "mitigated", "mktme": "mitigated",
                   "mktme-i": "mitigated", "sev": "mitigated", "sev-snp": "mitigated"}
    plain = next(r for r in rows if r["engine"] == "none")
    assert plain["metrics"] == {"bytes_read": len(b"ssh-key: 9f2c1e77d04b")}
    assert plain["evidence"]["recovered"] == plain["evidence"]["secret"]
    page = (out / "scenarios" / "cold-boot.html").read_text()
    assert "Cold-boot read of DRAM" in page


def test_the_plugin_engine_runs_scenarios_and_the_evidence_decides(
    installed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = _testbed("run", str(SME_SCENARIOS), "--seed", "3", "--jobs", "1", "--out", str(out),
                    path=installed)
    assert done.returncode == 0, done.stdout + done.stderr  # every outcome as expected
    rows = {(r["scenario"], r["engine"]): r
            for r in json.loads((out / "results.json").read_text())["results"]}
    assert {key: row["outcome"] for key, row in rows.items()} == {
        ("sme-cold-boot", "none"): "succeeded",
        ("sme-cold-boot", "sme"): "mitigated",
        ("sme-hypervisor-replay", "none"): "not_applicable",
        ("sme-hypervisor-replay", "sev"): "succeeded",
        ("sme-hypervisor-replay", "sme"): "not_applicable",
        ("sme-kernel-map-leak", "none"): "succeeded",
        ("sme-kernel-map-leak", "sme"): "succeeded",
    }
    # One key for everything: DRAM holds ciphertext, yet the kernel's read decrypts it.
    leak = rows[("sme-kernel-map-leak", "sme")]["evidence"]
    assert leak["recovered"] == leak["secret"] == b"db-password=Tr0ub4dor&3 (guest)".hex()
    assert leak["captured"] != leak["secret"]
    plain = rows[("sme-kernel-map-leak", "none")]["evidence"]
    assert plain["captured"] == plain["secret"]
    # The moved DIMM gives the attacker exactly that ciphertext, and nothing else.
    cold = rows[("sme-cold-boot", "sme")]["evidence"]
    assert cold["recovered"] == cold["captured"] != cold["secret"]
    # No guest isolation: the precondition says so, from the capability, not from the name.
    assert "does not protect guests from the hypervisor" in rows[
        ("sme-hypervisor-replay", "sme")]["reason"]


def test_list_names_the_plugin_and_its_distribution(installed: Path) -> None:
    done = _testbed("list", str(SCENARIO), path=installed)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("cold-boot "))
    assert "(plugin: testbed-example-plugin)" in line
    engine = next(x for x in done.stdout.splitlines() if x.strip().startswith("sme "))
    assert "AMD SME" in engine and "(plugin: testbed-example-plugin)" in engine
    assert "key-wearout" in done.stdout and "plugin" not in done.stdout.split(
        "key-wearout")[1].splitlines()[0]


def test_without_the_plugin_the_scenario_is_refused_by_name() -> None:
    done = _testbed("validate", str(SCENARIO))
    assert done.returncode == 1
    assert f"{SCENARIO}:3: attack: unknown attack 'cold-boot'" in done.stderr + done.stdout


def _fake_distribution(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_broken_and_colliding_plugins_are_refused_with_a_reason(tmp_path: Path) -> None:
    _fake_distribution(tmp_path, "shaky-plugin", (
        "[testbed.attacks]\n"
        "missing = no_such_module_anywhere:Attack\n"
        "key-wearout = testbed.attacks:KeyWearout\n"
        "not-an-attack = json:dumps\n"
        "[testbed.engines]\n"
        "dict = builtins:dict\n"))
    done = _testbed("list", path=tmp_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = [x for x in done.stderr.splitlines() if x.startswith("warning: plugin")]
    assert len(warnings) == 4, done.stderr
    text = "\n".join(warnings)
    assert "'missing' of shaky-plugin (testbed.attacks) refused: ModuleNotFoundError" in text
    assert "attack name 'key-wearout' is already taken by memcrypt-testbed" in text
    assert "is not an Attack subclass or instance" in text
    assert "'dict' of shaky-plugin (testbed.engines) refused" in text
    # The built-in attacks are all still there, none of them replaced.
    assert "key-wearout" in done.stdout and "plugin:" not in done.stdout
    # The run still works with the broken plugin around.
    ok = _testbed("validate", str(HERE.parent / "scenarios" / "01-kernel-map-leak.yaml"),
                  path=tmp_path)
    assert ok.returncode == 0, ok.stderr
