"""Load-time checks: each is refused before anything runs, at the location it is about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from _support import programs
from _support.program_steps import EXAMPLES, PRELUDE, build, doc, step
from pydantic import ValidationError

from testbed.errors import ScenarioError
from testbed.programs import CAPABILITIES, MAX_GUESSES, MAX_STEPS, OPS, Program
from testbed.scenarios import load_scenario


def errors(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """The (location, message) of every error building ``data`` raises."""
    with pytest.raises(ValidationError) as info:
        Program.model_validate(data)
    return [(tuple(e["loc"]), e["msg"]) for e in info.value.errors()]


def first(data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    return errors(data)[0]


def test_every_operation_has_an_example_that_loads() -> None:
    assert set(EXAMPLES) == set(OPS)
    for steps, threat in EXAMPLES.values():
        build(steps, threat)


CAPABLE = [(op, cap) for op, (_, threat) in EXAMPLES.items() for cap in threat]


@pytest.mark.parametrize(("op", "capability"), CAPABLE)
def test_a_capability_outside_the_threat_is_refused_naming_step_and_capability(
        op: str, capability: str) -> None:
    steps, threat = EXAMPLES[op]
    found = errors(doc(steps, [c for c in threat if c != capability]))
    assert found, "nothing refused"
    for loc, message in found:
        assert loc[0] == "program" and isinstance(loc[1], int)
        assert f"step {loc[1]} (" in message and f"needs capability {capability}" in message
    own = [s for s in steps if s["op"] == op and capability in OPS[op].actors[s["by"]]]
    if own:  # the operation itself needs it (not only a step before it, as slice after capture)
        assert any(f"({op} by" in m for _, m in found)


def test_each_operation_needs_exactly_its_registered_capabilities() -> None:
    # The examples declare what their steps need and nothing more: the registry says so.
    for op, (steps, threat) in EXAMPLES.items():
        needed = {c for s in steps for c in OPS[s["op"]].actors[s["by"]]}
        assert needed == set(threat), op
    assert {c for spec in OPS.values() for caps in spec.actors.values() for c in caps} <= set(
        CAPABILITIES)


def test_an_actor_the_operation_does_not_allow() -> None:
    loc, message = first(doc([step("read_direct_map", "victim", "x", address="$secret")],
                             ["kernel_read_bug"]))
    assert loc == ("program", 3, "by")
    assert message == "read_direct_map is done by the attacker, not the victim"


def test_an_unknown_operation_lists_the_vocabulary() -> None:
    loc, message = first(doc([{"op": "rowhammer", "by": "attacker", "args": {}}]))
    assert loc == ("program", 3, "op")
    assert "unknown operation 'rowhammer'; known: create_domain, alloc_pages" in message
    assert all(name in message for name in OPS)


def test_an_undefined_name_is_named() -> None:
    loc, message = first(doc([step("read_direct_map", "attacker", "x", address="$nowhere")],
                             ["kernel_read_bug"]))
    assert loc == ("program", 3, "args", "address")
    assert message.startswith("$nowhere is not bound by an earlier step")


def test_a_name_bound_only_later_says_where() -> None:
    steps = [step("read_direct_map", "attacker", "x", address="$late"),
             step("alloc_pages", "victim", "late", domain="$victim")]
    loc, message = first(doc(steps, ["kernel_read_bug"]))
    assert loc == ("program", 3, "args", "address")
    assert message == "$late is not bound by an earlier step; it is bound later, by step 4"


@pytest.mark.parametrize(("steps", "where", "text"), [
    ([step("destroy_domain", "victim", domain="$secret")], "domain",
     "$secret is an address (bound by step 2), not a domain"),
    ([step("alloc_pages", "victim", "p", domain="$victim"), step("store", "victim", "again",
      address="$p", text="x"), step("read_direct_map", "attacker", "x", address="$victim")],
     "address", "$victim is a domain (bound by step 0), not an address"),
])
def test_a_value_of_the_wrong_kind(steps: list[dict[str, Any]], where: str, text: str) -> None:
    loc, message = first(doc(steps, ["kernel_read_bug"]))
    assert loc[-1] == where and message == text


def test_the_attacker_cannot_use_what_only_the_victim_read() -> None:
    steps = [step("read_own", "victim", "mine", address="$secret")]
    loc, message = first(doc(steps, goal={"recovered": "mine"}))
    assert loc == ("goal", "recovered")
    assert "is what the victim read (step 3)" in message
    steps += [step("slice", "attacker", "part", value="$mine", length=4)]
    loc, message = first(doc(steps))
    assert loc == ("program", 4, "args", "value")
    assert message == "$mine is what the victim read (step 3); the attacker does not know it"


def test_the_attacker_reading_its_page_before_writing_it_needs_read_uninit() -> None:
    steps = [step("create_domain", "attacker", "me", kind="process"),
             step("alloc_pages", "attacker", "mine", domain="$me"),
             step("read_own", "attacker", "got", address="$mine")]
    loc, message = first(doc(steps))
    assert loc == ("program", 5, "args", "address")
    assert "that is read_uninit (capability uninit_page_read)" in message


def test_acting_as_another_sides_domain_or_a_destroyed_one() -> None:
    steps = [step("create_domain", "attacker", "me", kind="process"),
             step("alloc_pages", "victim", "p", domain="$me")]
    assert first(doc(steps)) == (("program", 4, "args", "domain"),
                                 "$me belongs to the attacker, not the victim")
    steps = [step("destroy_domain", "victim", domain="$victim"),
             step("store", "victim", "x", address="$vpage", text="late")]
    assert first(doc(steps)) == (("program", 4, "args", "address"),
                                 "the domain of $vpage was destroyed by step 3")


def test_addresses_and_domains_do_not_survive_a_reboot() -> None:
    steps = [step("capture", "attacker", "line", address="$secret", length=64),
             step("reboot", "kernel"),
             step("read_direct_map", "attacker", "x", address="$secret")]
    loc, message = first(doc(steps, ["bus_interposer", "kernel_read_bug"]))
    assert loc == ("program", 5, "args", "address")
    assert message == "$secret was bound before the reboot of step 4: the machine it named is gone"
    # Bytes do survive: they are the attacker's notes.
    build([*steps[:2], step("slice", "attacker", "x", value="$line", length=8)],
          ["bus_interposer"])


@pytest.mark.parametrize(("steps", "where", "text"), [
    ([step("read_direct_map", "attacker", "x", address="$vpage", offset=4000, length=200)],
     "length", "200 bytes at offset 4000 of the page pass its end (4096 bytes)"),
    ([step("read_direct_map", "attacker", "x", address="$vpage", page=1)],
     "page", "$vpage spans 1 page(s): page must be 0..0, got 1"),
    ([step("capture", "attacker", "x", address="$vpage", offset=8)],
     "offset", "the bus carries whole 64-byte lines: this address is 8 bytes into its line"),
    ([step("capture", "attacker", "x", address="$secret"),
      step("write_bus", "attacker", address="$vpage", data="$x"),
      step("slice", "attacker", "y", value="$x", start=60, length=8)],
     "length", "$x has 64 bytes: bytes 60..67 are not all there"),
])
def test_sizes_are_checked(steps: list[dict[str, Any]], where: str, text: str) -> None:
    loc, message = first(doc(steps, ["kernel_read_bug", "bus_interposer"]))
    assert loc[-1] == where and message == text


def test_value_sizes_are_bounded() -> None:
    grab = [step("capture", "attacker", "a", address="$vpage", length=4096),
            step("capture", "attacker", "b", address="$vpage", length=64),
            step("concat", "attacker", "big", values=["$a", "$b"])]
    loc, message = first(doc(grab, ["bus_interposer"]))
    assert loc == ("program", 5, "args")
    assert message == "the result would be 4160 bytes; a value holds at most 4096"
    loc, message = first(doc([step("constant", "attacker", "k", text="x" * 4097)]))
    assert loc == ("program", 3, "args", "text")


def test_the_guess_space_is_counted_against_its_limit() -> None:
    guess = EXAMPLES["guess"][0]
    seven = [*guess, step("guess", "attacker", "g2", address="$mine", target="$line", digits=7)]
    assert build(seven, ["bus_interposer", "chosen_plaintext"]).guess_space == 2 + 10**7
    eight = [*seven[:-1], {**seven[-1], "args": {**seven[-1]["args"], "digits": 8}}]
    loc, message = first(doc(eight, ["bus_interposer", "chosen_plaintext"]))
    assert loc == ("program", 7, "args", "digits")
    assert message == (f"100000000 candidates bring the program's guesses to 100000002; the "
                       f"limit is {MAX_GUESSES}")


def test_the_guess_space_includes_every_guess_step() -> None:
    steps = [*EXAMPLES["guess"][0][:-1]] + [
        step("guess", "attacker", f"g{i}", address="$mine", target="$line", digits=8)
        for i in range(2)]
    loc, message = first(doc(steps, ["bus_interposer", "chosen_plaintext"]))
    assert loc == ("program", 7, "args", "digits") and "to 200000000" in message


def test_steps_and_pages_are_bounded() -> None:
    many = [step("constant", "attacker", None, text="x")] * (MAX_STEPS - len(PRELUDE))
    loc, message = first(doc(many))  # the goal's constant makes one too many
    assert loc == ("program",) and f"at most {MAX_STEPS} items" in message
    pages = [step("alloc_pages", "victim", None, domain="$victim", count=64)] * 16
    loc, message = first(doc(pages))
    assert loc == ("program", 18, "args", "count")
    assert message == "the program's steps allocate 1025 pages; the limit is 1024"


def test_a_name_is_bound_once_and_only_to_a_result() -> None:
    again = [step("alloc_pages", "victim", "vpage", domain="$victim")]
    assert first(doc(again)) == (("program", 3, "as"), "vpage is already bound by step 1")
    none = [step("destroy_domain", "victim", "gone", domain="$victim")]
    assert first(doc(none)) == (("program", 3, "as"), "destroy_domain produces no value to bind")


def test_one_secret_per_program() -> None:
    steps = [step("store_secret", "victim", "two", address="$vpage", offset=64, size=8)]
    assert first(doc(steps)) == (("program", 3, "args"),
                                 "the victim stores one secret; step 2 did")


@pytest.mark.parametrize(("goal", "where", "text"), [
    ({"recovered": "nothing"}, "recovered", "$nothing is not bound by an earlier step"),
    ({"recovered": "secret"}, "recovered", "$secret is an address (bound by step 2), not bytes"),
    ({"victim_reads": "vpage", "page_holds": "x"}, None, "give exactly one of recovered"),
    ({"page_holds": "k"}, None, "page_holds needs at"),
    ({"recovered": "$nope"}, "recovered", "$nope is not bound by an earlier step"),
])
def test_goal_checks(goal: dict[str, Any], where: str | None, text: str) -> None:
    loc, message = first(doc([step("constant", "attacker", "k", text="x")], goal=goal))
    assert loc[0] == "goal" and (where is None or loc[1] == where)
    assert text in message


def test_recovering_needs_a_secret() -> None:
    data = doc([step("constant", "attacker", "k", text="x")], goal={"recovered": "k"},
               prelude=False)
    assert first(data) == (("goal", "recovered"),
                           "no store_secret step: there is no secret to recover")


def test_threat_names_are_the_readmes() -> None:
    loc, _ = first({**doc([]), "threat": ["telepathy"]})
    assert loc == ("threat", 0)
    assert first({**doc([]), "threat": ["bus_interposer", "bus_interposer"]}) == (
        ("threat", 1), "bus_interposer is listed twice")


def test_loose_types_and_unknown_keys_are_refused() -> None:
    loc, _ = first(doc([step("capture", "attacker", "x", address="$secret", length="64")],
                       ["bus_interposer"]))
    assert loc == ("program", 3, "args", "length")
    loc, _ = first(doc([step("capture", "attacker", "x", address="$secret", path="/etc")],
                       ["bus_interposer"]))
    assert loc == ("program", 3, "args", "path")
    loc, _ = first({**doc([]), "code": "import os"})
    assert loc == ("code",)


def test_a_scenario_file_reports_file_line_and_field(tmp_path: Path) -> None:
    data = programs.load("capture-compare")
    data["program"][3]["args"]["address"] = "$pni"
    text = yaml.safe_dump({"id": "typo", "title": "a typo", "attack": "program", "params": data,
                           "teaching": {"summary": "x"}}, sort_keys=False)
    path = tmp_path / "typo.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "$pni" in t)
    assert info.value.one_line() == (
        f"{path}:{line}: params.program[3].args.address: $pni is not bound by an earlier step; "
        "no step has as: pni")
    # Written at the top of the file, as a scenario spells out its attack.
    text = yaml.safe_dump({"id": "typo", "title": "a typo", **data,
                           "teaching": {"summary": "x"}}, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "$pni" in t)
    assert info.value.one_line() == (
        f"{path}:{line}: program[3].args.address: $pni is not bound by an earlier step; "
        "no step has as: pni")


def test_a_goal_may_name_its_value_as_a_step_refers_to_it() -> None:
    data = programs.load("kernel-map-leak")
    written = Program.model_validate({**data, "goal": {"recovered": "$leaked"}})
    assert written == programs.program("kernel-map-leak")
