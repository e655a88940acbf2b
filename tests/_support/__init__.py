"""Shared test support: builders, the mask-pass backends, vector loaders and the repository's
paths. ``tests/`` is on ``sys.path`` (``pythonpath`` in the pytest configuration), so a test in
any folder imports ``from _support.scenarios import run``."""
