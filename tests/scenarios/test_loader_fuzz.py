"""Fuzzing the scenario loader: random and mutated documents either load or raise ScenarioError.

Nothing else may escape: no traceback from YAML, pydantic, the attacks' parameter models or the
frame check. Failing examples found by hypothesis are kept below as explicit regressions.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import yaml
from _support.paths import SCENARIOS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.errors import ScenarioError
from testbed.scenarios import load_scenario

SHIPPED = sorted(SCENARIOS.glob("*.yaml"))
KEYS = ["id", "title", "attack", "engines", "platform", "mitigations", "params", "expect",
        "teaching", "summary", "memory_pages", "keyid_bits", "reduced_width_bits", "victim",
        "secret", "pin_digits", "batch", "max_pairs", "trials", "wear_domain", "secretmem",
        "key_rotation_blocks", "tme", "mktme", "offset", "victim_pages", "read_with", "threat",
        "program", "goal", "op", "by", "args", "as", "tamper"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.text(max_size=40), st.sampled_from(["guest", "process", "tme", "succeeded", "attacker",
                                           "program", "key-wearout", "attestation"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)),
    max_leaves=30,
)


def _check(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    try:
        load_scenario(path)
    except ScenarioError as exc:
        line = exc.one_line()
        assert line.startswith(str(path)) and "\n" not in line
        unsafe = [c for c in line if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
        assert not unsafe, line


SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=10))
def test_random_documents(tmp_path: Path, doc: dict[str, object]) -> None:
    _check(tmp_path, yaml.safe_dump(doc).encode())


@SETTINGS
@given(base=st.sampled_from(SHIPPED), data=st.data())
def test_mutated_shipped_scenarios(tmp_path: Path, base: Path, data: st.DataObject) -> None:
    raw = bytearray(base.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw[pos:pos] = data.draw(st.sampled_from([b"&a ", b"*a", b"!!binary ", b"{", b"[",
                                                      b"\n  - ", b": ", b"'", b"\t", b"\xff"]))
        else:
            del raw[pos : pos + data.draw(st.integers(1, 20))]
    _check(tmp_path, bytes(raw))


@SETTINGS
@given(doc=st.fixed_dictionaries({
    "id": st.just("fz"), "title": st.just("t"),
    "attack": st.sampled_from(["program", "attestation", "dirty-page-leak", "torn-live-patch",
                               "secretmem-exhaustion", "key-wearout"]),
    "teaching": st.just({"summary": "s"}),
    "params": st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=4),
    "platform": st.dictionaries(st.sampled_from(["memory_pages", "reduced_width_bits",
                                                 "keyid_bits", "asids"]), SCALARS, max_size=3),
}))
def test_valid_skeleton_with_random_parameters(tmp_path: Path, doc: dict[str, object]) -> None:
    _check(tmp_path, yaml.safe_dump(doc).encode())


@SETTINGS
@given(doc=st.dictionaries(st.text(max_size=80), st.one_of(SCALARS, st.text()), max_size=4),
       where=st.sampled_from(["", "params", "platform", "expect", "teaching"]))
def test_any_key_or_text_gives_one_escaped_line(tmp_path: Path, doc: dict[str, object],
                                                where: str) -> None:
    base: dict[str, object] = {"id": "x", "title": "t", "attack": "attestation",
                               "teaching": {"summary": "s"}}
    if where:
        base[where] = doc
    else:
        base.update(doc)
    _check(tmp_path, yaml.safe_dump(base, allow_unicode=True).encode())


SKELETON = b"id: x\ntitle: t\nattack: attestation\nteaching: {summary: s}\n"
"""A valid scenario: a case built on it is refused for its own line, not for a missing key."""


@pytest.mark.parametrize(("raw", "refused"), [
    # float overflow in a scalar: 1.0e+400 reads as inf (YAML 1.1 wants the dot)
    (SKELETON + b"platform: {memory_pages: 1.0e+400}\n",
     ":5: platform.memory_pages: Input should be a valid integer (got inf)"),
    # YAML 1.2 reads a float without the dot as well (1.1 read the text '1e400')
    (SKELETON + b"platform: {memory_pages: 1e400}\n",
     ":5: platform.memory_pages: Input should be a valid integer (got inf)"),
    # a hex integer too long to write in decimal is described, not printed
    (SKELETON + b"platform: {memory_pages: 0x" + b"f" * 5000 + b"}\n",
     ":5: platform.memory_pages: Input should be less than or equal to 65536 (got an integer "
     "of 20000 bits)"),
    # a non-plain tag
    (b"id: !!binary AAAA\n", ":1: id: YAML tag 'tag:yaml.org,2002:binary' is not allowed"),
    # a self-referencing alias
    (b"a: &a [*a]\n", ": nesting deeper than 32 levels"),
    (SKELETON.replace(b"attestation", b"key-wearout") + b"params: {max_pairs: .nan}\n",
     ":5: params.max_pairs: Input should be a valid integer (got nan)"),
    # a byte-order mark: read past, the scenario loads
    (b"\xef\xbb\xbf" + SKELETON, None),
    # two documents
    (b"--- {}\n--- {}\n", ":2: (file): invalid YAML: but found another document"),
    # a merge key
    (b"<<: {id: x}\n", ":1: (file): merge keys (<<) are not supported"),
], ids=["float-overflow", "float-without-dot", "long-hex", "binary-tag", "self-alias", "nan",
        "bom", "two-documents", "merge-key"])
def test_regressions(tmp_path: Path, raw: bytes, refused: str | None) -> None:
    """Each case loads, or is refused on one line for the reason its comment names."""
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    if refused is None:
        scenario, _ = load_scenario(path)
        assert scenario.id == "x"
        return
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    line = info.value.one_line()
    assert "\n" not in line
    assert line.startswith(f"{path}:") and refused in line, line


def test_control_character_is_one_line_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "ctrl.yaml"
    path.write_bytes(b"id: x\ntitle: \x01\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.one_line() == (
        f"{path}:2: (file): invalid YAML: control character U+0001 is not allowed")
