"""The shipped scenarios and labs are package data: a plain install (no source checkout
around) has them as ``testbed/_shipped/`` and the lab commands work from an empty folder.

The package is built from a copy of the repository's files (so the build leaves nothing in
the repository) and installed with ``pip --target`` into a folder of its own: only a process
that puts that folder on ``PYTHONPATH`` sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _support.paths import ROOT
from _support.plugin import pip_install_target

from testbed.labs import lab_ids, load_lab
from testbed.labs.loader import shipped_scenarios

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "testbed", "scenarios",
           "labs")
"""What the build reads (no virtualenv, build folder or egg-info)."""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("package")
    source, target = scratch / "source", scratch / "site"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    pip_install_target(source, target)
    return target


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "MPLCONFIGDIR": str(cwd.parent / "mpl")}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_installed_package_has_the_shipped_files(installed: Path) -> None:
    shipped = installed / "testbed" / "_shipped"
    assert (shipped / "scenarios").is_dir() and (shipped / "labs").is_dir()
    names = sorted(p.name for p in (shipped / "scenarios").glob("*.yaml"))
    assert names == sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))
    for lab_id in lab_ids():
        assert (shipped / "labs" / lab_id / "lab.yaml").read_bytes() == (
            ROOT / "labs" / lab_id / "lab.yaml").read_bytes()
    assert any((installed / "testbed" / "labs" / "templates").glob("*.j2"))


def test_the_lab_commands_work_from_an_empty_folder(installed: Path,
                                                    tmp_path: Path) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    where = _run(installed, cwd, "-c", "import json, testbed, testbed.shipped as s; "
                 "print(json.dumps([testbed.__file__, str(s.labs_dir()), "
                 "str(s.scenarios_dir())]))")
    assert where.returncode == 0, where.stderr
    module, labs, scenarios = json.loads(where.stdout)
    shipped = installed.resolve() / "testbed" / "_shipped"
    assert Path(module).resolve().is_relative_to(installed.resolve())
    assert Path(labs).resolve() == shipped / "labs"
    assert Path(scenarios).resolve() == shipped / "scenarios"
    listed = _run(installed, cwd, "-m", "testbed", "lab", "list")
    assert listed.returncode == 0, listed.stderr
    for lab_id in lab_ids():
        assert any(line.startswith(lab_id) for line in listed.stdout.splitlines())
    started = _run(installed, cwd, "-m", "testbed", "lab", "start", "direct-map", "--student",
                   "x")
    assert started.returncode == 0, started.stderr
    folder = cwd / "direct-map-x"
    assert (folder / "answers.yaml").is_file() and (folder / "handout.html").is_file()
    scenario_files = sorted(p.name for p in (folder / "scenarios").glob("*.yaml"))
    assert len(scenario_files) == len(load_lab("direct-map").lab.scenarios)
    assert {n.split("-", 1)[1].removesuffix(".yaml") for n in scenario_files} <= set(
        shipped_scenarios())
    assert sorted(p.name for p in cwd.iterdir()) == ["direct-map-x"]
