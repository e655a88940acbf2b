"""The README's reference tables are generated from the registries and kept in step with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import paths
from click.testing import CliRunner

from testbed import reference, registry
from testbed.cli import main
from testbed.programs import OPS
from testbed.scenarios import Job, load_scenario, run_job

README = paths.README


def test_readme_tables_match_the_registries() -> None:
    text = README.read_text(encoding="utf-8")
    _, changed = reference.update_text(text)
    assert changed == [], f"run: testbed reference --update README.md ({', '.join(changed)})"
    for name in reference.SECTIONS:
        home = paths.ROOT / reference.HOMES.get(name, "README.md")
        assert f"<!-- reference: {name} -->" in home.read_text(encoding="utf-8"), home


def test_the_step_reference_page_matches_the_step_registry() -> None:
    page = paths.ROOT / "docs" / "programs.md"
    _, changed = reference.update_text(page.read_text(encoding="utf-8"))
    assert changed == [], "run: testbed reference --update docs/programs.md"
    text = page.read_text(encoding="utf-8")
    for op in OPS:
        assert f"### `{op}`" in text


@pytest.mark.parametrize(("page", "after"), [("docs/programs.md", "## A first program"),
                                             ("README.md", "### Attacks written as programs")])
def test_the_first_program_of_the_page_runs(tmp_path: Path, page: str, after: str) -> None:
    """A new user copies the page's first program: it loads and gets its expected verdicts."""
    text = (paths.ROOT / page).read_text(encoding="utf-8").split(after, 1)[1]
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "first.yaml"
    path.write_text(example, encoding="utf-8")
    s, _ = load_scenario(path)
    assert s.attack == "program" and s.expect
    for engine, expected in s.expect.items():
        assert run_job(Job(s, str(path), engine, 7)).outcome is expected, engine


def test_every_registered_name_and_limit_is_in_the_tables() -> None:
    attacks = reference.render("attacks")
    for entry in registry.attacks.entries():
        assert f"| `{entry.name}` |" in attacks
        if entry.name == "program":  # its parameters are the steps, in docs/programs.md
            assert "[docs/programs.md](docs/programs.md)" in attacks
            continue
        for field in entry.item.Params.model_fields:
            assert f"| `{field}` |" in attacks
    assert "| `max_pairs` | int | 16 .. 4,194,304 | `32768` |" in attacks
    mitigations = reference.render("mitigations")
    for m in registry.MITIGATIONS:
        assert f"| `{m.name}` | `{m.setting}` |" in mitigations
    engines = reference.render("engines")
    assert all(f"| `{name}` |" in engines for name in registry.engines.names())


def test_check_and_update_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "doc.md"
    stale.write_text("# Doc\n<!-- reference: engines -->\nold\n<!-- /reference: engines -->\n")
    runner = CliRunner()
    checked = runner.invoke(main, ["reference", "--check", str(stale)])
    assert checked.exit_code == 2 and "out of date: engines" in checked.output
    updated = runner.invoke(main, ["reference", "--update", str(stale)])
    assert updated.exit_code == 0
    assert "STALE TABLE" not in stale.read_text() and "| `sev-snp` |" in stale.read_text()
    assert runner.invoke(main, ["reference", "--check", str(stale)]).exit_code == 0
