"""JUnit XML: one test case per (scenario, profile), so CI systems can gate on the verdicts.

A case fails when its outcome differs from the scenario's expectation, and errors when the run
itself failed. A case without an expectation passes (it is reported, not judged).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ..types import Outcome
from .model import ResultRow
from .output import atomic_write_text

__all__ = ["junit_document", "write_junit"]


def junit_document(rows: Sequence[ResultRow], duration_s: float = 0.0) -> str:
    """The JUnit XML text for ``rows``."""
    failures = sum(r.as_expected is False and r.outcome is not Outcome.ERROR for r in rows)
    errors = sum(r.outcome is Outcome.ERROR for r in rows)
    suite = ET.Element("testsuite", {
        "name": "memcrypt-testbed",
        "tests": str(len(rows)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": f"{duration_s:.3f}",
    })
    for row in rows:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"{row.attack}.{row.scenario}",
            "name": row.profile,
        })
        if row.outcome is Outcome.ERROR:
            ET.SubElement(case, "error", {"message": row.reason, "type": "error"})
        elif row.as_expected is False:
            expected = row.expected.value if row.expected else "-"
            ET.SubElement(case, "failure", {
                "message": f"expected {expected}, observed {row.outcome.value}",
                "type": "outcome-mismatch",
            }).text = row.reason
        ET.SubElement(case, "system-out").text = f"{row.outcome.value}: {row.reason}"
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, rows: Sequence[ResultRow], duration_s: float = 0.0) -> None:
    """Write the JUnit XML file atomically."""
    atomic_write_text(path, junit_document(rows, duration_s))
