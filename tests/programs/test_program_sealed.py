"""The bus steps that carry a line's sideband word with it: the bytes they bind, what they write,
and the lengths the loader refuses."""

from __future__ import annotations

from typing import Any

import pytest
from _support import programs
from _support.program_steps import SECRET, build, step
from pydantic import ValidationError

from testbed.attacks import AttackContext
from testbed.errors import IntegrityViolation
from testbed.programs._interpreter import execute
from testbed.programs._runtime import Runtime
from testbed.programs._values import Location

BUS = ["bus_interposer"]
SAVE = step("capture_sealed", "attacker", "old", address="$secret")


def run(steps: list[dict[str, Any]], engine: str) -> tuple[Runtime, AttackContext]:
    ctx = programs.context(engine)
    return execute(ctx, build(steps, BUS)), ctx


@pytest.mark.parametrize("engine", ["tme", "mktme-i"])
def test_capture_sealed_binds_each_line_then_its_sideband_word(engine: str) -> None:
    rt, ctx = run([SAVE], engine)
    secret = rt.values["secret"]
    assert isinstance(secret, Location)
    pa = secret.addrs[0]
    got = rt.values["old"]
    assert isinstance(got, bytes) and len(got) == 72  # the secret fits in one line
    m = ctx.machine
    assert got[:64] == m.dram(pa, 64)
    word = int.from_bytes(got[64:], "little")
    assert word == int(m.bus_sideband(pa, 64)[0])
    if engine == "tme":
        assert word == 0  # nothing keeps a MAC there
    else:
        assert word >> 63 == 1 and word & ((1 << 28) - 1)  # owner bit and a 28-bit MAC
    assert ctx.log.captured == got


def test_write_sealed_puts_back_the_line_and_its_word_which_then_pass() -> None:
    steps = [SAVE,
             step("store", "victim", address="$vpage", text="overwritten by the victim"),
             step("write_sealed", "attacker", address="$secret", data="$old"),
             step("read_own", "victim", "back", address="$secret", length=len(SECRET))]
    rt, _ = run(steps, "mktme-i")
    assert rt.values["back"] == SECRET.encode()


def test_write_bus_leaves_the_word_so_a_changed_line_is_refused() -> None:
    steps = [step("capture", "attacker", "line", address="$secret"),
             step("store", "victim", address="$vpage", text="overwritten by the victim"),
             step("write_bus", "attacker", address="$secret", data="$line"),
             step("read_own", "victim", "back", address="$secret", length=len(SECRET))]
    with pytest.raises(IntegrityViolation, match="MAC does not match"):
        run(steps, "mktme-i")


@pytest.mark.parametrize("length", [64, 71, 73])
def test_write_sealed_refuses_data_that_is_not_whole_sealed_lines(length: int) -> None:
    steps = [step("capture", "attacker", "line", address="$secret", length=length),
             step("write_sealed", "attacker", address="$secret", data="$line")]
    with pytest.raises(ValidationError, match="a line with its sideband word is 72 bytes"):
        build(steps, BUS)


def test_capture_sealed_binds_72_bytes_a_line_at_load_time() -> None:
    steps = [step("capture_sealed", "attacker", "old", address="$vpage", length=65),
             step("slice", "attacker", "word", value="$old", start=136, length=8)]
    build(steps, BUS)  # two lines with their words: 144 bytes
    too_far = [steps[0], step("slice", "attacker", "word", value="$old", start=137, length=8)]
    with pytest.raises(ValidationError):
        build(too_far, BUS)
