"""``python -m testbed``: the ``testbed`` command."""

from __future__ import annotations

from ._main import main

main()
