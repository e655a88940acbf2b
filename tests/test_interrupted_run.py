"""A run killed midway leaves the previous report, results and history exactly as they were."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _support.paths import SCENARIOS

SLOW = """\
id: slow-{n}
title: A long dictionary attack
engines: [mktme]
threat: [bus_interposer, chosen_plaintext]
program:
  - {{op: create_domain, by: victim, args: {{kind: guest}}, as: victim}}
  - {{op: alloc_pages, by: victim, args: {{domain: $victim}}, as: page}}
  - {{op: store_secret, by: victim, args: {{address: $page, digits: 8, prefix: "PIN:", pad_to: 64}},
     as: pin}}
  - {{op: capture, by: attacker, args: {{address: $pin, length: 64}}, as: line}}
  - {{op: destroy_domain, by: victim, args: {{domain: $victim}}}}
  - {{op: create_domain, by: attacker, args: {{kind: guest}}, as: me}}
  - {{op: alloc_pages, by: attacker, args: {{domain: $me, until: $pin}}, as: frame}}
  - {{op: guess, by: attacker, args: {{address: $frame, target: $line, prefix: "PIN:", digits: 8}},
     as: found}}
goal: {{recovered: found}}
teaching: {{summary: slow on purpose}}
"""
SLOW_COPIES = 40
"""10^8 candidates take several seconds each here: forty of them keep two workers busy
for minutes, far longer than the test waits before it interrupts the run."""
OUTPUTS = ("index.html", "results.json", "results.csv")


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``testbed`` in a process group of its own, so that a signal reaches its workers too."""
    return subprocess.Popen([sys.executable, "-m", "testbed.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """As from a terminal. A shell's background job inherits SIGINT ignored, and Python then
    leaves it ignored, so the test would not see what Ctrl-C does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_leaves_earlier_outputs_intact(tmp_path: Path, sig: signal.Signals) -> None:
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}
    out = tmp_path / "out"
    first = start("run", str(SCENARIOS / "01-kernel-map-leak.yaml"), "--out", str(out),
                    "--jobs", "1", env=env)
    assert first.wait(timeout=120) == 0
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    db_before = (out / "history.sqlite").read_bytes()

    folder = tmp_path / "slow"
    folder.mkdir()
    for n in range(SLOW_COPIES):
        (folder / f"slow-{n}.yaml").write_text(SLOW.format(n=n))
    shutil.copy(SCENARIOS / "07-capture-compare.yaml", folder)
    victim = start("run", str(folder), "--out", str(out), "--jobs", "2", env=env)
    time.sleep(2.0)  # well inside the 10^8-candidate attacks
    assert victim.poll() is None, "the slow run ended before it could be interrupted"
    try:
        os.killpg(victim.pid, sig)  # as Ctrl-C (SIGINT) or kill -9 would reach the whole group
        victim.wait(timeout=60)
        if sig is signal.SIGINT:  # a clean stop: exit 130, and no worker left running
            assert victim.returncode == 130
            time.sleep(0.5)
            with pytest.raises(ProcessLookupError):
                os.killpg(victim.pid, 0)
    finally:
        try:
            os.killpg(victim.pid, signal.SIGKILL)  # no worker may outlive the test
        except ProcessLookupError:
            pass

    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    assert (out / "history.sqlite").read_bytes() == db_before
    with sqlite3.connect(out / "history.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files left
