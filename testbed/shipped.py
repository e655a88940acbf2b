"""Where the shipped scenarios and labs are.

An installed package has them as package data (``testbed/_shipped/``, put there by the build
step in ``setup.py``); a source checkout or an editable install reads the repository's
top-level ``scenarios/`` and ``labs/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import ConfigError

__all__ = ["labs_dir", "scenarios_dir"]

_PACKAGE = Path(__file__).resolve().parent


def _shipped(kind: str) -> Path:
    packaged = resources.files("testbed").joinpath("_shipped", kind)
    if packaged.is_dir():
        return Path(str(packaged))
    source = _PACKAGE.parent / kind
    if source.is_dir() and (_PACKAGE.parent / "pyproject.toml").is_file():
        return source
    raise ConfigError(f"the shipped {kind} are missing from this installation (looked in "
                      f"{packaged} and {source}); reinstall memcrypt-testbed")


def scenarios_dir() -> Path:
    """The folder of the shipped scenario files."""
    return _shipped("scenarios")


def labs_dir() -> Path:
    """The folder of the shipped labs (one folder each, ``LAB/lab.yaml``)."""
    return _shipped("labs")
