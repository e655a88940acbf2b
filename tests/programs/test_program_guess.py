"""The ``guess`` loop and the transforms: exact results, counts and cost."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from _support import programs
from _support.program_steps import step
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.programs import Program, ProgramMetrics, run_program
from testbed.programs._args_attack import Guess
from testbed.programs._guess import candidate_bytes
from testbed.programs._interpreter import execute
from testbed.types import Outcome

BOTH = ["bus_interposer", "chosen_plaintext"]


def dictionary(secret: dict[str, Any], guess: dict[str, Any], *, at: str = "$secret",
               capture: int = 0) -> Program:
    """The victim stores ``secret`` in a zero-filled line; the attacker captures the line,
    takes the address over and tries ``guess`` there."""
    return Program.model_validate({"threat": BOTH, "goal": {"recovered": "found"}, "program": [
        step("create_domain", "victim", "victim", kind="guest"),
        step("alloc_pages", "victim", "page", domain="$victim"),
        step("store_secret", "victim", "secret", address="$page", pad_to=64, **secret),
        step("capture", "attacker", "line", address="$page", offset=capture, length=64),
        step("destroy_domain", "victim", domain="$victim"),
        step("create_domain", "attacker", "me", kind="guest"),
        step("alloc_pages", "attacker", "frame", domain="$me", until=at),
        step("guess", "attacker", "found", address="$frame", target="$line", **guess)]})


def test_candidates_are_built_exactly() -> None:
    pins = candidate_bytes(Guess.model_validate({"address": "$a", "target": "$t",
                                                 "prefix": "PIN:", "digits": 4}), 998, 3)
    assert [bytes(r) for r in pins] == [b"PIN:0998", b"PIN:0999", b"PIN:1000"]
    nums = candidate_bytes(Guess.model_validate(
        {"address": "$a", "target": "$t", "range": {"start": 250, "stop": 300, "width": 2}}), 0, 7)
    assert [bytes(r) for r in nums] == [bytes([250 + i, 0]) for i in range(6)] + [b"\x00\x01"]
    words = candidate_bytes(Guess.model_validate(
        {"address": "$a", "target": "$t", "prefix": "pw=", "words": ["a", "bc", "déf"]}), 1, 2)
    assert words == [b"pw=bc", "pw=déf".encode()]


@pytest.mark.parametrize(("engine", "found"), [("none", True), ("tme", True), ("mktme", False),
                                               ("sev", False)])
def test_a_pin_falls_where_the_key_is_shared(engine: str, found: bool) -> None:
    prog = dictionary({"digits": 4, "prefix": "PIN:"}, {"digits": 4, "prefix": "PIN:"})
    ctx = programs.context(engine)
    verdict = run_program(ctx, prog)
    secret = ctx.log.secret
    assert secret is not None
    metrics = ctx.log.metrics
    assert isinstance(metrics, ProgramMetrics) and metrics.guess_space == 10_000
    if found:
        assert verdict.outcome is Outcome.SUCCEEDED and ctx.log.recovered == secret
        assert metrics.guesses == int(secret[4:]) + 1
        assert verdict.chance_log2 == pytest.approx(-4 * np.log2(10))
    else:
        assert verdict.outcome is Outcome.MITIGATED and ctx.log.recovered is None
        assert metrics.guesses == 10_000 and metrics.produced[-1] == "7 guess: nothing"


def test_a_word_list() -> None:
    words = ["letmein", "qwerty", "hunter2", "dragon"]
    ctx = programs.context("tme")
    rt = execute(ctx, dictionary({"text": "hunter2"}, {"words": words}))
    assert rt.values["found"] == b"hunter2" and rt.guesses == 3 and rt.guess_space == 4


def test_a_byte_range() -> None:
    ctx = programs.context("tme")
    rt = execute(ctx, dictionary({"size": 2}, {"range": {"stop": 65536, "width": 2}}))
    assert rt.values["found"] == ctx.log.secret
    assert rt.guesses == int.from_bytes(ctx.log.secret or b"", "little") + 1


def test_a_candidate_across_two_blocks_uses_whole_lines() -> None:
    prefix = "0123456789abcd"  # 14 bytes + 3 digits: crosses the first 16-byte block
    ctx = programs.context("tme")
    rt = execute(ctx, dictionary({"digits": 3, "prefix": prefix}, {"digits": 3, "prefix": prefix}))
    assert rt.values["found"] == ctx.log.secret is not None
    assert ctx.log.secret is not None and ctx.log.secret.startswith(prefix.encode())


def test_a_secret_inside_its_line() -> None:
    data = dictionary({"text": "x", "offset": 20}, {"words": ["w", "x"]}).model_dump(by_alias=True)
    ctx = programs.context("tme")
    # The line holds what the victim's key makes of raw zeros: no zero-filled guess matches it.
    assert execute(ctx, Program.model_validate(data)).values["found"] is None
    # Once the victim's buffer fills the line, the candidate at byte 20 is the only difference.
    data["program"].insert(2, step("store", "victim", "zeros", address="$page", hex="00" * 64))
    ctx = programs.context("tme")
    rt = execute(ctx, Program.model_validate(data))
    assert rt.values["found"] == b"x" and rt.guesses == 2
    assert ctx.log.address is not None and ctx.log.address % 64 == 20


def test_nothing_found_flows_through_transforms_as_nothing() -> None:
    prog = dictionary({"digits": 2}, {"digits": 2}).model_dump(by_alias=True)
    prog["program"].append(step("slice", "attacker", "part", value="$found", length=1))
    prog["program"].append(step("concat", "attacker", "both", values=["$part", "$line"]))
    prog["goal"] = {"recovered": "both"}
    ctx = programs.context("mktme")
    verdict = run_program(ctx, Program.model_validate(prog))
    assert verdict.outcome is Outcome.MITIGATED and ctx.log.recovered is None
    assert "recovered nothing" in verdict.reason


def test_transforms_compute_exactly() -> None:
    prog = Program.model_validate({"threat": [], "goal": {"recovered": "x"}, "program": [
        step("create_domain", "victim", "v", kind="process"),
        step("alloc_pages", "victim", "p", domain="$v"),
        step("store_secret", "victim", "s", address="$p", size=4),
        step("constant", "attacker", "a", hex="0f0f0f0f"),
        step("constant", "attacker", "b", text="ABCD"),
        step("xor", "attacker", "x", a="$a", b="$b"),
        step("slice", "attacker", "mid", value="$b", start=1, length=2),
        step("concat", "attacker", "all", values=["$mid", "$x", "$a"])]})
    rt = execute(programs.context("none"), prog)
    assert rt.values["x"] == bytes(c ^ 0x0F for c in b"ABCD")
    assert rt.values["mid"] == b"BC"
    assert rt.values["all"] == b"BC" + rt.values["x"] + b"\x0f" * 4


def test_a_million_candidates_stay_fast() -> None:
    prog = dictionary({"digits": 6, "prefix": "PIN:"}, {"digits": 6, "prefix": "PIN:"})
    ctx = programs.context("mktme", pages=64)  # no match: every candidate is tried
    start = time.perf_counter()
    rt = execute(ctx, prog)
    elapsed = time.perf_counter() - start
    assert rt.guesses == rt.guess_space == 10**6 and rt.values["found"] is None
    assert elapsed < 20, f"{elapsed:.1f} s for 10^6 candidates"


@settings(max_examples=100, deadline=None)
@given(digits=st.integers(1, 8), column=st.integers(0, 4), prefix=st.sampled_from(["", "PIN:"]),
       data=st.data())
def test_pin_blocks_built_from_tables_are_the_candidates_placed(
    digits: int, column: int, prefix: str, data: st.DataObject
) -> None:
    from testbed.programs._guess import _digit_grid, _placed

    if column + len(prefix) + digits > 16:
        return
    space = 10**digits
    first = data.draw(st.integers(0, space - 1))
    count = data.draw(st.integers(1, min(30_000, space - first)))
    args = Guess.model_validate({"address": "$a", "target": "$t", "prefix": prefix,
                                 "digits": digits})
    want = _placed(candidate_bytes(args, first, count), 16, column)
    assert np.array_equal(_digit_grid(prefix.encode(), digits, first, count, column).blocks(), want)


def test_a_value_from_a_short_word_list_is_weighed_by_the_list() -> None:
    """Picking one of six words blind is right one time in six: that, not the password's
    alphabet, is what a success from the list must beat."""
    prog = programs.program("dictionary-words")
    assert prog.best_chance_log2() == pytest.approx(-math.log2(6))
    row = programs.raw(prog, "tme")
    assert row.outcome is Outcome.INCONCLUSIVE, row.reason
    assert row.chance_log2 == pytest.approx(-math.log2(6))
    pins = programs.raw(programs.program("capture-compare"), "tme")
    assert pins.chance_log2 == pytest.approx(-4 * math.log2(10))  # the PIN's space: the same
