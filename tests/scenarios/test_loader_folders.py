"""Scanning a folder for scenario files: it never leaves the folder, and says when it is empty.

A symlink whose target is outside the folder is refused, a symlinked folder is not entered (a
loop cannot hold the scan), a folder without scenario files and a folder named like a file are
errors. A file named on its own is read wherever its symlink leads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from _support.paths import SCENARIOS

from testbed.errors import ScenarioError
from testbed.scenarios import find_scenario_files, load_scenario, load_scenarios

SHIPPED = SCENARIOS / "01-kernel-map-leak.yaml"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``root/`` with one scenario of its own and ``outside/`` with another beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (outside / "deep").mkdir(parents=True)
    (root / "own.yaml").write_bytes(SHIPPED.read_bytes())
    (outside / "secret.yaml").write_text(SHIPPED.read_text().replace("id: kernel-map-leak",
                                                                     "id: outside"))
    (outside / "deep" / "more.yaml").write_text(SHIPPED.read_text().replace(
        "id: kernel-map-leak", "id: deep"))
    return root


def lines(errors: Sequence[ScenarioError]) -> list[str]:
    return [e.one_line() for e in errors]


def test_a_file_symlink_leaving_the_folder_is_refused(tree: Path) -> None:
    (tree / "sub" / "link.yaml").symlink_to(tree.parent / "outside" / "secret.yaml")
    loaded, errors = load_scenarios([tree])
    assert [s.id for s, _ in loaded] == ["kernel-map-leak"]
    assert lines(errors) == [f"{tree}/sub/link.yaml: (file): symlink leaves the folder, "
                             "not followed"]


def test_an_absolute_symlink_and_a_dangling_one_outside_are_refused(tree: Path) -> None:
    (tree / "abs.yml").symlink_to(tree.parent / "outside" / "secret.yaml")
    (tree / "gone.yaml").symlink_to(tree.parent / "nowhere.yaml")
    (tree / "notes.txt").symlink_to("/etc/passwd")  # not a scenario file: not looked at
    files, errors = find_scenario_files([tree])
    assert files == [tree / "own.yaml"]
    assert lines(errors) == [
        f"{tree}/abs.yml: (file): symlink leaves the folder, not followed",
        f"{tree}/gone.yaml: (file): symlink leaves the folder, not followed",
    ]


def test_a_symlinked_folder_leaving_the_folder_is_refused(tree: Path) -> None:
    (tree / "sub" / "elsewhere").symlink_to(tree.parent / "outside", target_is_directory=True)
    (tree / "up").symlink_to("..", target_is_directory=True)
    loaded, errors = load_scenarios([tree])
    assert [s.id for s, _ in loaded] == ["kernel-map-leak"]
    assert lines(errors) == [
        f"{tree}/sub/elsewhere: (folder): symlink leaves the folder, not followed",
        f"{tree}/up: (folder): symlink leaves the folder, not followed",
    ]


def test_links_inside_the_folder(tree: Path) -> None:
    """A symlinked folder inside is not entered (its files are found once, under their own
    path); a file symlink inside is read."""
    (tree / "sub" / "other.yaml").write_text(SHIPPED.read_text().replace(
        "id: kernel-map-leak", "id: other"))
    (tree / "again").symlink_to("sub", target_is_directory=True)
    (tree / "alias.yaml").symlink_to(tree / "sub" / "other.yaml")
    files, errors = find_scenario_files([tree])
    assert files == [tree / "alias.yaml", tree / "own.yaml", tree / "sub" / "other.yaml"]
    assert errors == []


def test_link_loops_do_not_hold_the_scan(tree: Path) -> None:
    (tree / "sub" / "loop").symlink_to("..", target_is_directory=True)  # back to root
    (tree / "self").symlink_to(".", target_is_directory=True)
    (tree / "a.yaml").symlink_to("b.yaml")
    (tree / "b.yaml").symlink_to("a.yaml")
    files, errors = find_scenario_files([tree])
    assert files == [tree / "own.yaml"]
    assert errors == []


def test_a_folder_given_through_a_symlink_is_scanned(tree: Path) -> None:
    link = tree.parent / "link"
    link.symlink_to(tree, target_is_directory=True)
    (tree / "inner.yaml").symlink_to(tree / "own.yaml")  # absolute, under the real path
    files, errors = find_scenario_files([link])
    assert files == [link / "inner.yaml", link / "own.yaml"]
    assert errors == []


def test_a_file_named_on_its_own_keeps_its_symlink(tree: Path) -> None:
    link = tree / "link.yaml"
    link.symlink_to(tree.parent / "outside" / "secret.yaml")
    loaded, errors = load_scenarios([link])
    assert [(s.id, source) for s, source in loaded] == [("outside", str(link))]
    assert errors == []


@pytest.mark.parametrize("given", ["empty", "empty/"])
def test_an_empty_folder_is_an_error(tmp_path: Path, given: str) -> None:
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    (tmp_path / "empty" / "notes" / "README.txt").write_text("no scenarios here")
    loaded, errors = load_scenarios([f"{tmp_path}/{given}"])
    assert loaded == []
    assert lines(errors) == [f"{tmp_path}/empty/: (folder): no scenario files (*.yaml, *.yml) "
                             "in this folder"]


def test_a_folder_of_refused_links_is_not_called_empty(tree: Path) -> None:
    (tree / "own.yaml").unlink()
    (tree / "link.yaml").symlink_to(tree.parent / "outside" / "secret.yaml")
    _, errors = load_scenarios([tree])
    assert lines(errors) == [f"{tree}/link.yaml: (file): symlink leaves the folder, not followed"]


@pytest.mark.parametrize("name", ["x.yaml", "x.yml"])
def test_a_folder_named_like_a_scenario_file(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "inner.yaml").write_bytes(SHIPPED.read_bytes())
    loaded, errors = load_scenarios([folder])
    assert loaded == []
    assert lines(errors) == [f"{folder}: (file): is a directory, not a scenario file"]


def test_a_folder_named_like_a_file_inside_a_scan_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").mkdir()
    (tmp_path / "x.yaml" / "inner.yaml").write_bytes(SHIPPED.read_bytes())
    files, errors = find_scenario_files([tmp_path])
    assert files == [tmp_path / "x.yaml" / "inner.yaml"] and errors == []


@pytest.mark.skipif(os.geteuid() == 0,
                    reason="as root every folder is readable: no unreadable folder to report")
def test_an_unreadable_subfolder_is_reported(tree: Path) -> None:
    (tree / "sub").chmod(0)
    try:
        _, errors = find_scenario_files([tree])
    finally:
        (tree / "sub").chmod(0o755)
    assert lines(errors) == [f"{tree}/sub: (folder): cannot read: Permission denied"]


def test_scan_errors_come_before_file_errors(tree: Path) -> None:
    (tree / "bad.yaml").write_text("id: [\n")
    (tree / "zz.yaml").symlink_to(tree.parent / "outside" / "secret.yaml")
    _, errors = load_scenarios([tree])
    assert [e.path for e in errors] == [str(tree / "zz.yaml"), str(tree / "bad.yaml")]


def test_loading_a_folder_as_a_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path)
    assert info.value.one_line() == f"{tmp_path}: (file): is a directory, not a scenario file"
