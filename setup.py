"""Build step: the shipped scenarios and labs (top-level ``scenarios/`` and ``labs/``) go into
the package as ``testbed/_shipped/``, so a plain ``pip install`` has them
(:mod:`testbed.shipped` finds them there, or in a source checkout). The labs' reference
solutions (``labs/*/solutions/``) do not: they are the teacher's, in the source repository.

Everything else about the package is declared in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("scenarios", "labs")
SUFFIXES = {".yaml", ".yml"}
TEACHERS_ONLY = "solutions"
"""A lab's reference solutions: not in the package students install."""


class BuildWithShippedData(build_py):
    """``build_py`` that also copies the shipped YAML files (regular files only, no links)."""

    def run(self) -> None:
        super().run()
        for folder in SHIPPED:
            source = HERE / folder
            if not source.is_dir():
                continue
            for path in sorted(source.rglob("*")):
                if path.suffix not in SUFFIXES or path.is_symlink() or not path.is_file():
                    continue
                if TEACHERS_ONLY in path.relative_to(source).parts:
                    continue  # reference solutions stay in the source repository
                dest = Path(self.build_lib) / "testbed" / "_shipped" / path.relative_to(HERE)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)


setup(cmdclass={"build_py": BuildWithShippedData})
