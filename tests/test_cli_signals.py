"""A signal that arrives while Python runs a finaliser is raised there, where Python cannot
pass it on: it prints the exception with a traceback and goes on. The command line keeps
quiet about its own signal exceptions and passes every other one on."""

from __future__ import annotations

import sys
import weakref
from typing import Any

import pytest

from testbed.cli import _quiet_in_finalisers
from testbed.signals import Terminated


class _Thing:
    pass


@pytest.mark.parametrize("raised", [KeyboardInterrupt, Terminated, ValueError])
def test_a_signal_raised_in_a_finaliser_prints_nothing(raised: type[BaseException],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    passed_on: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", _quiet_in_finalisers(passed_on.append))

    def callback(_ref: object) -> None:
        raise raised()

    thing = _Thing()
    ref = weakref.ref(thing, callback)
    del thing  # the callback runs now, and its exception goes to the unraisable hook
    assert ref() is None
    if raised is ValueError:  # not a signal: Python's own report, as before
        assert [info.exc_type for info in passed_on] == [ValueError]
    else:
        assert passed_on == []
