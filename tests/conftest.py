"""Fixtures shared by the tests: the XTS mask passes, one implementation at a time."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from testbed.crypto import _kernels
from testbed.crypto._masks_numpy import NumpyPasses

BACKENDS = ["llvmlite", "numpy"]


@functools.cache
def _llvm_passes() -> Any:
    from testbed.crypto._masks_llvm import LlvmPasses

    return LlvmPasses()


def passes_for(name: str) -> Any:
    """The passes called ``name``; skips the test where llvmlite cannot be imported (a JIT
    that fails where llvmlite is installed fails the test)."""
    if name == "numpy":
        return NumpyPasses()
    try:
        import llvmlite.binding  # noqa: F401
    except ImportError:
        pytest.skip("llvmlite not installed")
    return _llvm_passes()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test with each implementation of the XTS mask passes in charge."""
    monkeypatch.setattr(_kernels, "_active", passes_for(request.param))
    return str(request.param)
