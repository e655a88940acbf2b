"""The public API of ``testbed.programs``, pinned like the other packages'."""

from __future__ import annotations

import testbed.programs

EXPORTED = [
    "CAPABILITIES", "ERROR_TYPE", "GOALS", "MAX_GUESSES", "MAX_PAGES", "MAX_STEPS",
    "MAX_VALUE_BYTES", "OPS", "Goal", "OpSpec", "Program", "ProgramAttack", "ProgramMetrics",
    "Step", "control_engine_for", "engine_problem", "goal_op", "op_names", "reference_markdown",
    "run_program",
]


def test_programs_exports() -> None:
    assert list(testbed.programs.__all__) == EXPORTED
    assert all(hasattr(testbed.programs, name) for name in EXPORTED)


def test_capabilities_are_the_readmes_threat_model() -> None:
    from _support.paths import README

    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Threat model in brief"):]
    for capability in testbed.programs.CAPABILITIES:
        assert f"| `{capability}` |" in table
