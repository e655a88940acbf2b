"""What the command line knows of the signals that arrived while a command ran, shared by the
commands that must notice one Python swallowed (a Ctrl-C arriving inside a finaliser)."""

from __future__ import annotations

__all__ = ["SIGNALLED", "Terminated"]


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (workers stopped, staged outputs removed)."""


SIGNALLED: list[int] = []
"""The signals that arrived while the command ran (Ctrl-C, SIGTERM)."""
