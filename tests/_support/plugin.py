"""The example plugin package, installed with pip into a folder of its own.

The package is copied to a scratch folder first, so that the build leaves nothing in the
repository, and installed with ``--target``: the venv is never changed, and only a process
that puts the folder on ``PYTHONPATH`` sees the plugin.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from _support.paths import TESTS

__all__ = ["PLUGIN", "install_example_plugin", "pip_install_target"]

PLUGIN = TESTS / "plugins" / "example_plugin"


def install_example_plugin(scratch: Path) -> Path:
    """Install the example plugin below ``scratch``; returns the folder to put on the path."""
    source, target = scratch / "source", scratch / "site"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip_install_target(source, target)
    assert any(target.glob("testbed_example_plugin-*.dist-info")), "no dist-info installed"
    return target


def pip_install_target(source: Path, target: Path) -> None:
    """``pip install --no-deps --target TARGET SOURCE`` with this interpreter, asserting
    that it worked."""
    # The test extras bring setuptools and wheel, so no build environment is downloaded.
    local = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel"))
    isolation = ["--no-build-isolation"] if local else []
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation,
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
