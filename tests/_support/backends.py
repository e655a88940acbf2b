"""The XTS mask passes by name, for tests that run once with each implementation."""

from __future__ import annotations

import functools
import importlib
from typing import Any

import pytest

from testbed.crypto._masks_numpy import NumpyPasses

BACKENDS = ["llvmlite", "numpy"]


@functools.cache
def _llvm_passes() -> Any:
    from testbed.crypto._masks_llvm import LlvmPasses

    return LlvmPasses()


def passes_for(name: str) -> Any:
    """The passes called ``name``. Skips the calling test where llvmlite cannot be imported;
    where it is installed, a JIT that fails fails the test."""
    if name == "numpy":
        return NumpyPasses()
    try:
        importlib.import_module("llvmlite.binding")
    except ImportError:
        pytest.skip("llvmlite not installed")
    return _llvm_passes()
