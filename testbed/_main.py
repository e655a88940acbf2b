"""The ``testbed`` command's entry point: quiet on Ctrl-C and SIGTERM from its first moment.

Until the command line module is loaded (numpy, pydantic, the registries), an interrupt ends
the process at once with its exit status (130 for Ctrl-C, 143 for SIGTERM) and one line:
nothing has been written yet. :mod:`testbed.cli` then installs the handlers that clean up.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

__all__ = ["main"]


def _quit_while_starting(signum: int, frame: FrameType | None) -> None:
    os.write(sys.stderr.fileno(), b"\ninterrupted while starting: nothing was written\n")
    os._exit(128 + signum)


def main() -> None:
    """Run the ``testbed`` command line."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _quit_while_starting)
    from .cli import main as cli

    cli()


if __name__ == "__main__":  # python -m testbed._main
    main()
