"""Small programs for the step tests: a victim prelude, and one working example per operation
(a system step's with small parameters).

Every example starts with :data:`PRELUDE` (a guest victim storing a text secret at ``$secret``
in its page ``$vpage``, steps 0..2); :func:`build` adds a goal when none is given.
"""

from __future__ import annotations

from typing import Any

from testbed.programs import Program

__all__ = ["EXAMPLES", "PRELUDE", "SECRET", "build", "doc", "step"]

SECRET = "secret-of-the-victim-0123456789!"


def step(op: str, by: str, as_: str | None = None, **args: Any) -> dict[str, Any]:
    """One step as a program file would give it."""
    out: dict[str, Any] = {"op": op, "by": by, "args": args}
    if as_ is not None:
        out["as"] = as_
    return out


PRELUDE = [
    step("create_domain", "victim", "victim", kind="guest"),
    step("alloc_pages", "victim", "vpage", domain="$victim"),
    step("store_secret", "victim", "secret", address="$vpage", text=SECRET),
]

_ATTACKER = [
    step("create_domain", "attacker", "me", kind="guest"),
    step("alloc_pages", "attacker", "mine", domain="$me"),
]
_CAPTURED = [step("capture", "attacker", "line", address="$secret", length=64)]

_ALIASED = [
    step("alias_dimm", "hypervisor"),
    step("create_domain", "victim", "guest", kind="guest"),
    step("alloc_pages", "victim", "gpage", domain="$guest"),
]
_SAVED = [step("alias_read", "hypervisor", "saved", address="$gpage", length=64)]
_MOVED = [
    step("hv_read", "hypervisor", "line", address="$secret", length=64),
    step("alloc_pages", "victim", "buf", domain="$victim"),
    step("move_guest_page", "hypervisor", "moved", address="$secret"),
    step("move_guest_page", "hypervisor", "buffer", address="$buf", to="$secret"),
]

# op -> (steps after the prelude, the capabilities they need)
EXAMPLES: dict[str, tuple[list[dict[str, Any]], list[str]]] = {
    "create_domain": (_ATTACKER[:1], []),
    "alloc_pages": (_ATTACKER, []),
    "free_pages": ([step("free_pages", "victim", address="$vpage")], []),
    "destroy_domain": ([step("destroy_domain", "victim", domain="$victim")], []),
    "store_secret": ([], []),
    "store": ([*_ATTACKER, step("store", "attacker", "mark", address="$mine", text="attacker")],
              ["chosen_plaintext"]),
    "read_own": ([step("read_own", "victim", "seen", address="$secret")], []),
    "read_uninit": ([*_ATTACKER, step("read_uninit", "attacker", "got", address="$mine")],
                    ["uninit_page_read"]),
    "read_direct_map": ([step("read_direct_map", "attacker", "got", address="$secret")],
                        ["kernel_read_bug"]),
    "read_keyid_map": ([step("read_keyid_map", "attacker", "got", address="$secret",
                             keyid_of="$victim")], ["uninit_page_read"]),
    "guest_read": ([step("guest_read", "victim", "seen", address="$secret")], []),
    "capture": (_CAPTURED, ["bus_interposer"]),
    "write_bus": ([*_CAPTURED, step("write_bus", "attacker", address="$vpage", data="$line")],
                  ["bus_interposer"]),
    "capture_sealed": ([step("capture_sealed", "attacker", "old", address="$secret")],
                       ["bus_interposer"]),
    "write_sealed": ([step("capture_sealed", "attacker", "old", address="$secret"),
                      step("write_sealed", "attacker", address="$secret", data="$old")],
                     ["bus_interposer"]),
    "hv_read": ([step("hv_read", "hypervisor", "saved", address="$vpage", length=64)],
                ["malicious_hypervisor"]),
    "hv_write": ([step("hv_read", "hypervisor", "saved", address="$vpage", length=64),
                  step("hv_write", "hypervisor", address="$vpage", data="$saved")],
                 ["malicious_hypervisor"]),
    "remap_guest_page": ([step("alloc_pages", "victim", "other", domain="$victim"),
                          step("remap_guest_page", "hypervisor", address="$vpage",
                               to="$other")], ["malicious_hypervisor"]),
    "alias_dimm": (_ALIASED, ["malicious_hypervisor"]),
    "alias_read": ([*_ALIASED, *_SAVED], ["malicious_hypervisor"]),
    "alias_write": ([*_ALIASED, *_SAVED,
                     step("alias_write", "hypervisor", address="$gpage", data="$saved")],
                    ["malicious_hypervisor"]),
    "move_guest_page": (_MOVED[2:3], ["malicious_hypervisor"]),
    "feed_guess": ([*_MOVED, step("feed_guess", "hypervisor", "found", address="$buffer",
                                  target="$line", words=["secret-", "guess"])],
                   ["malicious_hypervisor", "chosen_plaintext"]),
    "serve": ([step("serve", "victim", address="$vpage")], []),
    "request_page": ([step("serve", "victim", address="$vpage"),
                      step("request_page", "attacker", "reply", address="$secret")], []),
    "rotate_key": ([step("rotate_key", "kernel", domain="$victim")], []),
    "reboot": ([step("reboot", "kernel")], []),
    "guess": ([*_CAPTURED, *_ATTACKER,
               step("guess", "attacker", "found", address="$mine", target="$line",
                    words=["secret-", "guess"])], ["bus_interposer", "chosen_plaintext"]),
    "constant": ([step("constant", "attacker", "k", hex="00ff")], []),
    "slice": ([*_CAPTURED, step("slice", "attacker", "head", value="$line", start=0,
                                length=16)], ["bus_interposer"]),
    "xor": ([*_CAPTURED, step("xor", "attacker", "zero", a="$line", b="$line")],
            ["bus_interposer"]),
    "concat": ([*_CAPTURED, step("concat", "attacker", "two", values=["$line", "$line"])],
               ["bus_interposer"]),
    # The system steps, with small parameters (each sets up its own victim).
    "wear_out": ([step("wear_out", "attacker", "target", max_pairs=256, trials=1)],
                 ["bus_interposer", "chosen_plaintext"]),
    "exhaust_secretmem": ([step("exhaust_secretmem", "attacker", "kept", pages_per_file=64,
                                workload_pages=0)], ["unprivileged_task"]),
    "track_dirty_pages": ([step("track_dirty_pages", "hypervisor", "bits", secret="key!",
                                guest_pages=4)], ["malicious_hypervisor"]),
    "live_patch": ([step("live_patch", "attacker", "executed")], ["concurrent_execution"]),
    "attest": ([step("attest", "hypervisor", "leaked", image_bytes=512)],
               ["malicious_hypervisor"]),
}


def doc(steps: list[dict[str, Any]], threat: list[str] | tuple[str, ...] = (),
        goal: dict[str, Any] | None = None, *, prelude: bool = True) -> dict[str, Any]:
    """A program's data: the prelude, ``steps``, and ``goal`` (default: the attacker's
    constant ``dummy`` is the secret, added as a last step)."""
    body = [*PRELUDE, *steps] if prelude else list(steps)
    if goal is None:
        body.append(step("constant", "attacker", "dummy", text="dummy"))
        goal = {"recovered": "dummy"}
    return {"threat": list(threat), "program": body, "goal": goal}


def build(steps: list[dict[str, Any]], threat: list[str] | tuple[str, ...] = (),
          goal: dict[str, Any] | None = None, *, prelude: bool = True) -> Program:
    """The :class:`Program` of :func:`doc`."""
    return Program.model_validate(doc(steps, threat, goal, prelude=prelude))
