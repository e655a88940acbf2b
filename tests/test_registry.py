"""The registries: built-ins in order, lookups with clear errors, adding from a script."""

from __future__ import annotations

import pytest
from _support.programs import leak
from _support.scenarios import scenario

from testbed import registry
from testbed.attacks import KeyWearout
from testbed.errors import ConfigError
from testbed.platform import TmeEngine
from testbed.programs import ProgramAttack
from testbed.scenarios import Job, run_job
from testbed.types import Outcome


def test_builtins_in_display_order() -> None:
    assert registry.attacks.builtin_names() == (
        "key-wearout", "secretmem-exhaustion", "dirty-page-leak", "torn-live-patch",
        "attestation", "ciphertext-side-channel", "program")
    assert registry.engines.names()[:6] == ("none", "tme", "mktme", "mktme-i", "sev", "sev-snp")
    assert all(e.builtin for e in registry.engines.entries()[:5])
    assert registry.mitigation_names() == ("init_on_free", "secretmem", "memlock_limit",
                                           "key_rotation", "dirty_all_pages", "text_poke_bp",
                                           "alias_check", "restrict_page_move")


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown engine 'sev-es'; known: none, tme"):
        registry.engines.get("sev-es")
    with pytest.raises(ConfigError, match="unknown attack 'rowhammer'; known: key-wearout"):
        registry.attacks.get("rowhammer")


class _Quiet(ProgramAttack):
    kind = "quiet-leak"
    title = "Attack programs under another name"


class _Fifth(TmeEngine):
    """TME under another name."""

    name = "tme-again"


def test_an_attack_and_an_engine_added_from_a_script_run() -> None:
    registry.attacks.add(_Quiet)
    registry.engines.add(_Fifth)
    try:
        assert registry.attacks.distribution("quiet-leak") == "a script"
        quiet = scenario("quiet-leak", engines=["none", "tme-again"], params=leak())
        row = run_job(Job(quiet, "<script>", "tme-again", 1))
        assert row.outcome is Outcome.SUCCEEDED, row.reason
        assert row.evidence.recovered == row.evidence.secret
        with pytest.raises(ConfigError, match="already taken by a script"):
            registry.attacks.add(_Quiet())
    finally:
        registry.attacks.remove("quiet-leak")
        registry.engines.remove("tme-again")
    assert "quiet-leak" not in registry.attacks
    with pytest.raises(ConfigError, match="cannot be removed"):
        registry.engines.remove("tme")


@pytest.mark.parametrize(("obj", "message"), [
    (object(), "is not an Attack subclass or instance"),
    (type("Bad", (KeyWearout,), {"kind": "Bad Name"}), "must match"),
    (KeyWearout, "already taken by memcrypt-testbed"),
])
def test_what_add_refuses(obj: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        registry.attacks.add(obj)


def test_a_job_carries_its_attack_and_engine_to_any_worker() -> None:
    import pickle

    registry.attacks.add(_Quiet)
    registry.engines.add(_Fifth)
    try:
        quiet = scenario("quiet-leak", engines=["tme-again"], params=leak())
        job = Job(quiet, "<script>", "tme-again", 1)
    finally:
        registry.attacks.remove("quiet-leak")
        registry.engines.remove("tme-again")
    # What a spawned worker gets: the pickled job, with a registry that never saw the script.
    again = pickle.loads(pickle.dumps(job))
    assert isinstance(again.attack, _Quiet) and again.engine_class is _Fifth
    row = run_job(again)
    assert row.outcome is Outcome.SUCCEEDED, row.reason


def test_a_plugin_may_look_at_the_registry_while_it_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, ...]] = []

    class _Peeking:
        name, value, dist = "peek", "x:y", None

        def load(self) -> object:
            seen.append(registry.attacks.names())  # would wait forever on a held lock
            return _Quiet

    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group: [_Peeking()] if group == registry.ATTACK_GROUP else [])
    registry.attacks.reload()
    try:
        assert "quiet-leak" in registry.attacks.names()
        assert seen and seen[0][0] == "key-wearout"
    finally:
        monkeypatch.undo()
        registry.attacks.reload()
    assert "quiet-leak" not in registry.attacks


def test_names_are_matched_whole_and_taken_from_the_object() -> None:
    class _Sneaky(KeyWearout):
        kind = "sneaky"

        def __init__(self) -> None:
            self.kind = "<img src=x onerror=alert(1)>"  # type: ignore[misc]  # on purpose

    with pytest.raises(ConfigError, match="must match"):
        registry.attacks.add(_Sneaky())
    trailing = type("Trailing", (KeyWearout,), {"kind": "evil\n"})
    with pytest.raises(ConfigError, match="must match"):
        registry.attacks.add(trailing)
