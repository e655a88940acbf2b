"""A scenario written as an attack program shows its steps: actor, capability, what each
step produced under each engine, and where the platform stopped it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _support.paths import SCENARIOS

from testbed.programs import Program, ProgramMetrics
from testbed.report import write_report
from testbed.results import RunInfo
from testbed.scenarios import Job, load_scenario, run_job

ENGINES = ("none", "sev", "sev-snp")


@pytest.fixture(autouse=True)
def _mpl(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("mpl")))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    scenario, source = load_scenario(SCENARIOS / "06-hypervisor-replay.yaml")
    assert isinstance(scenario.params, Program)
    rows = [run_job(Job(scenario, source, engine, 7)) for engine in ENGINES]
    refused = rows[2].metrics
    assert isinstance(refused, ProgramMetrics) and refused.refused_step is not None
    out = tmp_path_factory.mktemp("program")
    run = RunInfo(7, "test", "2026-01-01T00:00:00+00:00", 1.0, ENGINES, 1)
    write_report(out, run, rows, [(scenario, source)])
    return Path(out / "scenarios" / "hypervisor-replay.html").read_text(encoding="utf-8")


def _steps(page: str) -> list[str]:
    section = page[page.index('<ol class="steps program-steps">') :]
    section = section[: section.index("</ol>")]
    return re.findall(r"<li value=\"\d+\">(.*?)</ul>\n</li>", section, re.S)


def test_each_step_shows_its_actor_operation_and_capability(page: str) -> None:
    assert '<h2 id="program">The attack program</h2>' in page
    assert ("The attacker's capabilities: <span class=\"capability\">malicious_hypervisor</span>."
            " Goal: <code>victim_reads: old</code>.") in page
    steps = _steps(page)
    assert len(steps) == 6
    assert steps[0].startswith('<span class="actor">victim</span> <code class="op">create_domain'
                               '</code> <code class="args">kind: guest</code>')
    assert ('<span class="actor">hypervisor</span> <code class="op">hv_read</code> '
            '<code class="args">address: $old, length: 64</code> '
            '<span class="capability" title="capability">malicious_hypervisor</span> '
            '<span class="binds">&rarr; saved</span>') in steps[3]
    assert "capability" not in steps[0]  # the victim's own steps need none


def test_what_each_step_produced_and_where_the_run_stopped(page: str) -> None:
    steps = _steps(page)
    assert '<li class="done"><strong>sev, sev-snp</strong>: guest with key slot 1</li>' \
        in steps[0]
    assert '<li class="done"><strong>sev</strong>: done</li>' in steps[5]
    assert ('<li class="refused"><strong>sev-snp</strong>: refused by the platform: the run '
            "stopped here</li>") in steps[5]
    # Engines the program does not apply to are named once, not under every step.
    assert "Not run under <strong>none</strong>: the program does not apply there." in page
    assert all("<strong>none</strong>" not in step for step in steps)
    # What the steps show is not repeated in the metrics table.
    assert "<code>produced</code>" not in page


def test_program_evidence_is_labelled_from_its_steps_and_goal(page: str) -> None:
    assert "The value $old: what the attack wants read back" in page
    assert "What the hypervisor read of the guest&#39;s page" in page
    assert "What the page&#39;s owner read back there" in page
