"""Stands in for llvmlite on ``PYTHONPATH`` (``make test-noaccel``): importing it fails, as
where the ``fast`` extra is not installed."""

raise ImportError("llvmlite is blocked for this run (tests/_no_llvmlite)")
