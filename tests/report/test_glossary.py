"""The glossary: every term the issue names is explained, and text links to it safely."""

from __future__ import annotations

import re

from testbed.report.glossary import TERMS, linked

HREF = "../glossary.html"


def test_the_terms_readers_meet_are_explained() -> None:
    mentioned = {m for t in TERMS for m in t.mentions}
    for word in ("KeyID", "ASID", "RMP", "C-bit", "PEK", "CEK", "mnonce", "tweak", "PSP",
                 "direct map", "secretmem", "interposer", "birthday bound", "reduced-width"):
        assert word in mentioned, word
    assert len({t.id for t in TERMS}) == len(TERMS)
    for term in TERMS:
        assert re.fullmatch(r"[a-z0-9-]+", term.id)
        assert len(term.text) > 60 and term.text.endswith(".")


def test_the_first_mention_of_each_term_links_to_it() -> None:
    html = str(linked("KeyID 0 and KeyID 4; SEV-SNP is not SEV.", HREF))
    assert html == ('<a class="term" href="../glossary.html#term-keyid">KeyID</a> 0 and KeyID 4; '
                    '<a class="term" href="../glossary.html#term-sev-snp">SEV-SNP</a> is not '
                    '<a class="term" href="../glossary.html#term-sev">SEV</a>.')
    # Whole words only, case as written.
    assert "<a" not in str(linked("keyid, ASIDE, TMEs, mktme", HREF))
    assert 'href="../glossary.html#term-keyid">KeyIDs</a>' in str(linked("two KeyIDs", HREF))
    assert '#term-keyid">KeyID</a>-0' in str(linked("the KeyID-0 direct map", HREF))


def test_text_around_terms_stays_escaped() -> None:
    html = str(linked('<script>alert("KeyID")</script> & RMP', HREF))
    assert "<script>" not in html
    assert html.startswith("&lt;script&gt;alert(&#34;")
    assert '#term-rmp">RMP</a>' in html and "&amp;" in html
