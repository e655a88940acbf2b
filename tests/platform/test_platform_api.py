"""The platform's packages: each has a sorted ``__all__`` whose names all resolve."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "testbed.platform",
    "testbed.platform.engines",
    "testbed.platform.kernel_text",
    "testbed.platform.mm",
    "testbed.platform.sev",
]


def isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions (the order ruff's RUF022 keeps)."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_resolves(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)
    assert [name for name in names if not hasattr(module, name)] == []


def test_the_platform_exports_what_attacks_use() -> None:
    import testbed.platform as platform

    for name in ("Machine", "Psp", "Verifier", "LivePatch", "open_guest_container",
                 "SecretmemFile", "PMD_PAGES", "ENGINES", "EngineWithRmp", "make_engine"):
        assert name in platform.__all__, name
