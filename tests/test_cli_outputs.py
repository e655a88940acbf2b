"""The files a run writes get the modes the umask gives new files, like any program's."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support.paths import SCENARIOS
from click.testing import CliRunner

from testbed.cli import main

SCENARIO = SCENARIOS / "01-kernel-map-leak.yaml"


@pytest.fixture()
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in [folder, *folder.rglob("*")]}


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077], indirect=True)
def test_outputs_respect_the_umask(umask: int, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    result = CliRunner().invoke(main, ["run", str(SCENARIO), "--out", str(out), "--junit",
                                       str(junit), "--jobs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    files, folders = 0o666 & ~umask, 0o777 & ~umask
    modes = _modes(out)
    assert set(modes) == {".", "index.html", "glossary.html", "results.json", "results.csv",
                          "history.sqlite", "scenarios", "scenarios/kernel-map-leak.html",
                          "scenarios/kernel-map-leak.json"}
    for name, mode in modes.items():
        want = folders if name in (".", "scenarios") else files
        assert mode == want, f"{name}: {mode:o}, not {want:o}"
    assert stat.S_IMODE(junit.stat().st_mode) == files


def test_carried_over_files_keep_their_mode(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    out = tmp_path / "out"
    out.mkdir()
    notes = out / "notes.txt"
    notes.write_text("mine")
    notes.chmod(0o600)
    result = CliRunner().invoke(main, ["run", str(SCENARIO), "--out", str(out), "--jobs", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(notes.stat().st_mode) == 0o600
    assert notes.read_text() == "mine"


def test_reference_update_keeps_the_files_mode(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("<!-- reference: engines -->\nold\n<!-- /reference: engines -->\n")
    readme.chmod(0o664)
    result = CliRunner().invoke(main, ["reference", "--update", str(readme)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "engines updated" in result.output
    assert stat.S_IMODE(readme.stat().st_mode) == 0o664


def test_an_error_a_signal_turned_into_is_the_signals_exit() -> None:
    """SIGTERM raised inside a C extension's import comes out as that extension's ImportError
    (pandas does so): the command still exits as terminated, with one line."""
    import signal

    import click
    from click.testing import CliRunner

    from testbed import cli, signals

    @click.group(cls=cli._Command)
    def group() -> None:
        pass

    signalled = [True]

    @group.command()
    def publish() -> None:
        if signalled[0]:
            signals.SIGNALLED.append(signal.SIGTERM)
        raise ImportError("pd_parser.c could not import module pandas")

    try:
        result = CliRunner().invoke(group, ["publish"])
    finally:
        signals.SIGNALLED.clear()
    assert result.exit_code == 143
    assert result.output.strip().startswith("terminated: nothing was written")
    assert "Traceback" not in result.output
    signalled[0] = False
    plain = CliRunner().invoke(group, ["publish"])
    assert isinstance(plain.exception, ImportError)  # not a signal's doing: raised as it is
