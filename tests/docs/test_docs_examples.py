"""The guides in docs/ hold examples that run, and links that lead somewhere.

Every block fenced as ```python in a guide is a complete program: each runs on its own, in a
fresh interpreter started from the repository root, as a reader would run it after pasting it
into a file. A block fails the test with the guide's file and the line the block starts on
(the traceback's line numbers are the guide's). The guides about plugins run with the example
plugin (``tests/plugins/example_plugin``) installed, the way ``tests/test_plugins.py`` installs
it: with pip, into a folder of its own that only those runs see.

A block whose first line is ``# PATH`` quotes the file PATH (relative to the repository root):
it must be a verbatim excerpt of that file, so that the guide cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from _support.plugin import install_example_plugin

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDES = ("writing-an-attack.md", "writing-an-engine.md", "python-api.md")
NEEDS_PLUGIN = frozenset({"writing-an-attack.md", "writing-an-engine.md"})
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a guide."""

    guide: str
    line: int
    """1-based line of the block's first line of code."""
    lang: str
    code: str
    end: int
    """1-based line of the closing fence."""

    @property
    def where(self) -> str:
        return f"docs/{self.guide}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of the Markdown file ``path``, in order.

    Raises:
        ValueError: a fence is never closed.
    """
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, lang = opening.group(2), opening.group(3).strip().split(" ")[0]
        start = i + 1
        i = start
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        if i == len(lines):
            raise ValueError(f"{path.name}:{start}: the code fence is never closed")
        code = "".join(f"{line}\n" for line in lines[start:i])
        blocks.append(Block(path.name, start + 1, lang, code, i + 1))
        i += 1
    return blocks


def python_blocks() -> list[Block]:
    out: list[Block] = []
    for guide in GUIDES:
        if (DOCS / guide).is_file():
            out.extend(b for b in fenced_blocks(DOCS / guide) if b.lang == "python")
    return out


BLOCKS = python_blocks()


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_example_plugin(tmp_path_factory.mktemp("docs-plugin"))


def test_every_guide_exists_and_has_examples() -> None:
    for guide in GUIDES:
        assert (DOCS / guide).is_file(), f"docs/{guide} is missing"
        assert any(b.guide == guide for b in BLOCKS), f"docs/{guide} has no ```python block"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_the_example_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["MPLBACKEND"] = "Agg"
    if block.guide in NEEDS_PLUGIN:
        env["PYTHONPATH"] = str(request.getfixturevalue("plugin_site"))
    script = tmp_path / f"{Path(block.guide).stem}_line_{block.line}.py"
    # Blank lines first, so that the traceback's line numbers are the guide's.
    script.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).replace(str(script), f"docs/{block.guide}")
        pytest.fail(f"{block.where}: the example exits with status {done.returncode}\n{output}",
                    pytrace=False)


QUOTE = re.compile(r"^# ([\w.-]+(?:/[\w.-]+)+\.\w+)$")
"""The first line of a block that quotes a file: ``# path/to/file.py``."""
QUOTES = [b for b in BLOCKS if QUOTE.match(b.code.partition("\n")[0])]


@pytest.mark.parametrize("block", QUOTES, ids=[b.where for b in QUOTES])
def test_a_quoted_file_is_quoted_verbatim(block: Block) -> None:
    first, _, body = block.code.partition("\n")
    match = QUOTE.match(first)
    assert match is not None
    path = ROOT / match.group(1)
    assert path.is_file(), f"{block.where}: quotes {match.group(1)}, which does not exist"
    assert body in path.read_text(encoding="utf-8"), (
        f"{block.where}: the block is no longer an excerpt of {match.group(1)}")


def test_the_guides_quote_the_example_plugin() -> None:
    quoted = {b.code.partition("\n")[0] for b in QUOTES}
    package = "# tests/plugins/example_plugin/src/testbed_example_plugin"
    assert {f"{package}/cold_boot.py", f"{package}/sme.py"} <= quoted, quoted


# -- links ------------------------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
INLINE_CODE = re.compile(r"`+[^`]*`+")


def _prose(path: Path) -> str:
    """The Markdown of ``path`` without its code blocks and code spans."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for block in fenced_blocks(path):
        for n in range(block.line - 2, block.end):
            lines[n] = ""
    return INLINE_CODE.sub("", "\n".join(lines))


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", _prose(path),
                                                     re.MULTILINE)}


def _links(path: Path) -> list[str]:
    text = _prose(path)
    return [*LINK.findall(text), *REFERENCE.findall(text)]


LINKED = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]


@pytest.mark.parametrize("page", LINKED, ids=[p.name for p in LINKED])
def test_every_relative_link_points_to_a_file_that_exists(page: Path) -> None:
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file: {os.path.relpath(dest, ROOT)})")
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{fragment})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: " + "; ".join(broken)


def test_the_link_checker_sees_links() -> None:
    # The README links the guides, so the checker must find those links.
    links = _links(ROOT / "README.md")
    assert {f"docs/{g}" for g in GUIDES} <= set(links), links
