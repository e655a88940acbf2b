"""The handout as HTML (without a browser): what it says for each kind of task, what it keeps
from students (the answers), and lab text that tries markup. The browser's view is in
``test_lab_handout_browser.py``."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _support.labs import CLASS_KEY, EVERY_KIND, derive_for, lab_label, lab_names
from click.testing import CliRunner

from testbed.cli import main
from testbed.labs import answer_key, load_lab
from testbed.labs.model import Tune
from testbed.labs.pages import render_handout

LABS = [pytest.param(name, id=lab_label(name)) for name in lab_names()]


class _Sections(HTMLParser):
    """The text of each ``section.task`` of a page, by task id, and the tags used."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, str] = {}
        self.tags: set[str] = set()
        self._current: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        ids = dict(attrs).get("id") or ""
        if tag == "section" and ids.startswith("task-"):
            self._current, self._depth = ids.removeprefix("task-"), 0
            self.sections[self._current] = ""
        elif tag == "section" and self._current is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self._current is not None:
            if self._depth == 0:
                self._current = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.sections[self._current] += data


def sections(html: str) -> _Sections:
    parser = _Sections()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("name", LABS)
def test_the_handout_has_every_task_and_no_script(name: str) -> None:
    loaded = load_lab(name)
    instance = derive_for(loaded, "s1")
    html = render_handout(instance, loaded.lab)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    parsed = sections(html)
    assert list(parsed.sections) == [t.id for t in loaded.lab.tasks]
    assert not parsed.tags & {"script", "iframe", "object", "embed", "img", "form"}


@pytest.mark.parametrize("name", LABS)
def test_the_students_handout_holds_no_answer(name: str) -> None:
    loaded = load_lab(name)
    instance = derive_for(loaded, "s1")
    html = render_handout(instance, loaded.lab)
    key = answer_key(instance, loaded.solutions)
    for entry in key:
        if entry.kind == "measure" and len(str(entry.answer)) >= 4:
            assert str(entry.answer) not in html, entry
    for text in loaded.solutions.values():
        assert text.strip() not in html
    # The teacher's copy has them.
    keyed = render_handout(instance, loaded.lab, key, loaded.solutions)
    assert "Answer key, for the teacher only" in keyed
    for entry in key:
        if entry.kind == "measure":
            assert str(entry.answer) in keyed, entry


def test_only_tune_tasks_list_values_to_choose_from() -> None:
    loaded = load_lab(EVERY_KIND)
    html = render_handout(derive_for(loaded, "s1"), loaded.lab)
    assert "built-in method" not in html
    for task in loaded.lab.tasks:
        text = sections(html).sections[task.id]
        assert ("Choose among" in text) == isinstance(task, Tune), (task.id, text)


def test_a_tune_task_lists_its_values() -> None:
    loaded = load_lab(EVERY_KIND)
    html = render_handout(derive_for(loaded, "s1"), loaded.lab)
    tune = next(t for t in loaded.lab.tasks if isinstance(t, Tune))
    assert "Choose among: 1, 2, 3, 4, 5, 6, 8." in sections(html).sections[tune.id]


HOSTILE = """\
id: hostile
title: "<b>Bold</b> {{ 7*7 }} {% if 1 %}x{% endif %}"
goals: ["<i>goal</i> *starred*"]
handout: |
  A **strong** claim with `code` and a [link](javascript:alert(3)).

  <script>alert(1)</script>

  <img src=x onerror="alert(2)">
scenarios:
  - use: kernel-map-leak
tasks:
  - id: t1
    kind: explain
    prompt: "Pick **one**: <script>alert(4)</script>"
    choices: ["<script>alert(5)</script>", "{{ 7*7 }}"]
    answer: 0
    hints: ["<script>alert(6)</script>"]
"""


def hostile_lab(folder: Path) -> Path:
    path = folder / "hostile.yaml"
    path.write_text(HOSTILE)
    return path


def test_lab_text_cannot_bring_markup_in(tmp_path: Path) -> None:
    loaded = load_lab(hostile_lab(tmp_path))
    instance = derive_for(loaded, "s1", CLASS_KEY)
    key = answer_key(instance, loaded.solutions)
    for html in (render_handout(instance, loaded.lab),
                 render_handout(instance, loaded.lab, key, loaded.solutions),
                 render_handout(None, loaded.lab)):
        parsed = sections(html)
        assert not parsed.tags & {"script", "img", "iframe", "b", "i"}, parsed.tags
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&lt;script&gt;alert(4)&lt;/script&gt;" in html
        assert "&lt;script&gt;alert(5)&lt;/script&gt;" in html
        assert "javascript:" not in re.sub(r"\[link\]\(javascript:alert\(3\)\)", "", html)
        assert "<strong>strong</strong>" in html  # Markdown in the handout is rendered
        assert "{{ 7*7 }}" in html and "49" not in html  # template syntax stays text


def test_the_handout_command_writes_the_key_only_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "handout.html"
    done = CliRunner().invoke(main, ["lab", "handout", "direct-map", "--student", "s1",
                                     "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "Answer key" not in out.read_text()
    key = tmp_path / "key.html"
    key_file = tmp_path / "class.key"
    key_file.write_bytes(CLASS_KEY)
    done = CliRunner().invoke(main, ["lab", "handout", "direct-map", "--student", "s1", "--key",
                                     "--class-key", str(key_file), "--out", str(key),
                                     "--jobs", "1"])
    assert done.exit_code == 0, done.output
    assert "Answer key, for the teacher only" in key.read_text()
    # No key without the class key (a student would print their answers), nor without a
    # student (every student's answers differ).
    for args in (["--key"], ["--key", "--student", "s1"], ["--key", "--class-key",
                                                           str(key_file)]):
        refused = CliRunner().invoke(main, ["lab", "handout", "direct-map", *args, "--out",
                                            str(tmp_path / "no.html")])
        assert refused.exit_code == 1 and "--key needs --student and --class-key" in \
            refused.stderr, args
        assert not (tmp_path / "no.html").exists()
