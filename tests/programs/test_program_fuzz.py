"""Fuzzing programs: building one raises only a pydantic ValidationError; running one raises
only the project's errors and stays within the cost it declared at load time.

The system steps are drawn with small parameters (their ranges are the built-in attacks',
tested there), so that each example runs in a fraction of a second."""

from __future__ import annotations

from typing import Any

from _support import programs
from _support.program_steps import EXAMPLES, PRELUDE, doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from testbed.attacks.cost import MachineShape
from testbed.errors import TestbedError
from testbed.platform import Mitigations
from testbed.programs import (
    CAPABILITIES,
    GOALS,
    MAX_GUESSES,
    OPS,
    Program,
    ProgramAttack,
    ProgramMetrics,
    run_program,
)
from testbed.programs._values import SIDES

NAMES = ["victim", "vpage", "secret", "me", "mine", "line", "frame", "a", "b", "got"]
REFS = st.one_of(st.sampled_from(NAMES).map(lambda n: f"${n}"), st.text(max_size=6))
SMALL = st.integers(-2, 70)
INSNS = st.sampled_from(["nop5", "call", "jmp32", "nop2", "jmp8", "ret"])
ARGS: dict[str, st.SearchStrategy[Any]] = {
    "address": REFS, "domain": REFS, "until": REFS, "value": REFS, "keyid_of": REFS,
    "data": REFS, "to": REFS, "target": REFS, "a": REFS, "b": REFS,
    "values": st.lists(REFS, max_size=9),
    "page": SMALL, "to_page": SMALL, "count": SMALL, "digits": st.integers(0, 9),
    "offset": st.one_of(SMALL, st.integers(0, 5000)), "start": st.integers(-1, 5000),
    "length": st.one_of(st.none(), SMALL, st.integers(0, 5000)), "size": st.integers(0, 1100),
    "pad_to": st.one_of(st.none(), st.integers(0, 5000)), "width": st.integers(0, 9),
    "stop": st.integers(0, 2**20), "secret": st.one_of(st.booleans(), st.text(max_size=40)),
    "kind": st.sampled_from(["guest", "process", "kernel"]),
    "text": st.text(max_size=40), "hex": st.text("0123456789abcdefg", max_size=20),
    "prefix": st.text(max_size=20),
    "words": st.lists(st.text(max_size=20), max_size=8),
    "range": st.fixed_dictionaries({"stop": st.integers(0, 70000)},
                                   optional={"start": st.integers(-1, 10),
                                             "width": st.integers(0, 3)}),
    # the system steps' parameters
    "max_pairs": st.integers(0, 2048), "trials": st.integers(0, 3),
    "buffer_pages": st.integers(0, 4), "packet_lines": st.integers(0, 70),
    "bandwidth_gb_s": st.one_of(st.floats(-1, 1e7), st.integers(-1, 10)),
    "wear_domain": st.sampled_from(["victim", "attacker", "nobody"]),
    "secret_bytes": st.integers(0, 200), "attacker_files": st.integers(0, 4),
    "pages_per_file": st.integers(0, 600), "workload_pages": st.integers(0, 300),
    "workload_tasks": st.integers(0, 5), "victim_resident_pages": st.integers(0, 300),
    "unmap_after_touch": st.booleans(),
    "guest_pages": st.integers(0, 20),
    "background_pages": st.integers(0, 20), "constant_access": st.booleans(),
    "cpus": st.integers(1, 2), "sites": st.integers(0, 1), "visits": st.integers(0, 1),
    "old": INSNS, "new": INSNS, "fetch_chunk": st.integers(2, 9),
    "poke_chunk": st.integers(0, 6), "interleavings": st.integers(0, 300),
    "explore": st.sampled_from(["exhaustive", "random", "dfs"]),
    "tamper": st.sampled_from(["image", "replay", "forge", "vmsa", "debug", "none"]),
    "evidence": st.sampled_from(["report", "launch_measure", "quote"]),
    "backdoor_rip": st.one_of(st.just(0xFFF0), st.integers(-1, 2**64)),
    "image_bytes": st.integers(0, 20000), "cmdline": st.text(max_size=30),
    "backdoor": st.text(max_size=30), "policy": st.one_of(st.none(), st.integers(-1, 2**64)),
    "require_platform_info": st.lists(st.sampled_from(["ciphertext_hiding", "alias_check",
                                                       "smt"]), max_size=3),
}
SYSTEM_LOG_ENTRIES = 16
"""Log entries a system step makes at most, besides one per secretmem file it opens."""
ENGINES = st.sampled_from(["none", "tme", "mktme", "sev", "sev-snp"])
MITIGATIONS = st.builds(Mitigations, init_on_free=st.booleans(), secretmem=st.booleans())


@st.composite
def steps(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from([*OPS, "rowhammer"]))
    spec = OPS.get(op)
    fields = list(spec.args.model_fields) if spec else ["address"]
    keys = draw(st.lists(st.sampled_from([*fields, "junk"]), unique=True, max_size=6))
    args = {k: draw(ARGS.get(k, st.integers())) for k in keys}
    actors = list(spec.actors) if spec else list(SIDES)
    out: dict[str, Any] = {"op": op, "args": args,
                           "by": draw(st.one_of(st.sampled_from(actors), st.sampled_from(SIDES)))}
    name = draw(st.one_of(st.none(), st.sampled_from(NAMES)))
    if name is not None:
        out["as"] = name
    return out


GOAL = st.builds(lambda kind, name, at: {kind: name, **({"at": at} if at else {})},
                 st.sampled_from(GOALS), st.sampled_from(NAMES),
                 st.one_of(st.none(), st.sampled_from(["$vpage", "$secret", "$mine"])))


def check(data: dict[str, Any], engine: str, mitigations: Mitigations) -> None:
    try:
        prog = Program.model_validate(data)
    except ValidationError:
        return
    assert prog.guess_space <= MAX_GUESSES
    # secretmem's default secretmem=2M reservation needs more than 512 frames.
    ctx = programs.context(engine, pages=1024 if mitigations.secretmem else 256,
                           mitigations=mitigations)
    if ProgramAttack().precondition(ctx.machine, prog) is not None:
        return
    allocated, alloc_page = [0], ctx.machine.alloc_page

    def counting(*args: Any, **kwargs: Any) -> Any:
        allocated[0] += 1
        return alloc_page(*args, **kwargs)

    vars(ctx.machine)["alloc_page"] = counting
    try:
        run_program(ctx, prog)
    except TestbedError:
        pass
    metrics = ctx.log.metrics
    assert isinstance(metrics, ProgramMetrics)
    assert metrics.steps == len(prog.steps) and metrics.steps_run <= metrics.steps
    assert (metrics.guesses or 0) <= (metrics.guess_space or 0) <= prog.guess_space
    # One entry a step, one for the goal; a system step logs what its built-in attack does.
    systems = [step.args for step in prog.steps if OPS[step.op].attack]
    entries = len(prog.steps) + 1 + sum(SYSTEM_LOG_ENTRIES + getattr(args, "attacker_files", 0)
                                        for args in systems)
    assert len(ctx.log.steps) <= entries
    assert allocated[0] <= prog.pages_needed()
    work = prog.work(MachineShape(256, mitigations=mitigations))
    assert work.units > 0 and all(units >= 0 for _, units in work.parts)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(threat=st.lists(st.sampled_from([*CAPABILITIES, "telepathy"]), max_size=8),
       prelude=st.booleans(), body=st.lists(steps(), max_size=10), goal=GOAL,
       engine=ENGINES, mitigations=MITIGATIONS)
def test_random_programs(threat: list[str], prelude: bool, body: list[dict[str, Any]],
                         goal: dict[str, Any], engine: str, mitigations: Mitigations) -> None:
    data = {"threat": threat, "program": [*PRELUDE, *body] if prelude else body, "goal": goal}
    check(data, engine, mitigations)


def _renamed(op: str, k: int) -> list[dict[str, Any]]:
    """The steps of ``EXAMPLES[op]`` with the names they bind suffixed ``_k`` (so that several
    examples can follow each other)."""
    steps = EXAMPLES[op][0]
    names = {s["as"] for s in steps if "as" in s}

    def rename(value: Any) -> Any:
        if isinstance(value, list):
            return [rename(v) for v in value]
        if isinstance(value, str) and value.startswith("$") and value[1:] in names:
            return f"{value}_{k}"
        return value

    return [{**s, "args": {key: rename(v) for key, v in s["args"].items()},
             **({"as": f"{s['as']}_{k}"} if "as" in s else {})} for s in steps]


@SETTINGS
@given(ops=st.lists(st.sampled_from(sorted(EXAMPLES)), min_size=1, max_size=4),
       goal=st.one_of(st.none(), GOAL), engine=ENGINES, mitigations=MITIGATIONS,
       mutate=st.integers(0, 3), data=st.data())
def test_mutated_examples(ops: list[str], goal: dict[str, Any] | None, engine: str,
                          mitigations: Mitigations, mutate: int, data: st.DataObject) -> None:
    body = [s for k, op in enumerate(ops) for s in _renamed(op, k)]
    for _ in range(mutate if body else 0):
        s = data.draw(st.sampled_from(body))
        if s["args"]:
            key = data.draw(st.sampled_from(sorted(s["args"])))
            s["args"][key] = data.draw(ARGS.get(key, st.integers()))
    check(doc(body, list(CAPABILITIES), goal), engine, mitigations)


SYSTEMS = sorted(op for op, spec in OPS.items() if spec.attack)


@SETTINGS
@given(op=st.sampled_from(SYSTEMS),
       before=st.lists(st.sampled_from(sorted(EXAMPLES)), max_size=2), engine=ENGINES,
       mitigations=MITIGATIONS, data=st.data())
def test_system_steps_with_drawn_parameters(op: str, before: list[str], engine: str,
                                            mitigations: Mitigations,
                                            data: st.DataObject) -> None:
    spec = OPS[op]
    keys = data.draw(st.lists(st.sampled_from(sorted(spec.args.model_fields)), unique=True,
                              max_size=4))
    args = {k: data.draw(ARGS[k]) for k in keys}
    body = [s for k, name in enumerate(before) for s in _renamed(name, k)]
    body.append({"op": op, "by": next(iter(spec.actors)), "args": args, "as": "result"})
    check(doc(body, list(CAPABILITIES), {spec.goal: "result"}), engine, mitigations)
