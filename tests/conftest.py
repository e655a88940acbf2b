"""Fixtures shared by the tests."""

from __future__ import annotations

import pytest
from _support.backends import BACKENDS, passes_for

from testbed.crypto import _kernels


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test with each implementation of the XTS mask passes in charge (llvmlite is
    skipped, saying so, where it is not installed)."""
    monkeypatch.setattr(_kernels, "_active", passes_for(request.param))
    return str(request.param)
