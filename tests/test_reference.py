"""The README's reference tables are generated from the registries and kept in step with them."""

from __future__ import annotations

from pathlib import Path

from _support import paths
from click.testing import CliRunner

from testbed import reference, registry
from testbed.cli import main

README = paths.README


def test_readme_tables_match_the_registries() -> None:
    text = README.read_text(encoding="utf-8")
    _, changed = reference.update_text(text)
    assert changed == [], f"run: testbed reference --update README.md ({', '.join(changed)})"
    for name in reference.SECTIONS:
        assert f"<!-- reference: {name} -->" in text


def test_every_registered_name_and_limit_is_in_the_tables() -> None:
    attacks = reference.render("attacks")
    for entry in registry.attacks.entries():
        assert f"| `{entry.name}` |" in attacks
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
