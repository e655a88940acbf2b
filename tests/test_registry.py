"""The registries: built-ins in order, lookups with clear errors, adding from a script."""

from __future__ import annotations

import pytest
from _support.scenarios import scenario

from testbed import registry
from testbed.attacks import KernelMapLeak
from testbed.errors import ConfigError
from testbed.platform import TmeEngine
from testbed.scenarios import Job, run_job
from testbed.types import Outcome


def test_builtins_in_display_order() -> None:
    assert registry.attacks.names()[:3] == ("kernel-map-leak", "freed-data-leak",
                                            "cross-domain-replay")
    assert registry.engines.names()[:5] == ("none", "tme", "mktme", "sev", "sev-snp")
    assert all(e.builtin for e in registry.engines.entries()[:5])
    assert registry.mitigation_names() == ("init_on_free", "secretmem", "memlock_limit",
                                           "key_rotation", "dirty_all_pages", "text_poke_bp")


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown engine 'sev-es'; known: none, tme"):
        registry.engines.get("sev-es")
    with pytest.raises(ConfigError, match="unknown attack 'rowhammer'; known: kernel-map-leak"):
        registry.attacks.get("rowhammer")


class _Quiet(KernelMapLeak):
    kind = "quiet-leak"
    title = "The kernel map leak under another name"


class _Fifth(TmeEngine):
    """TME under another name."""

    name = "tme-again"


def test_an_attack_and_an_engine_added_from_a_script_run() -> None:
    registry.attacks.add(_Quiet)
    registry.engines.add(_Fifth)
    try:
        assert registry.attacks.distribution("quiet-leak") == "a script"
        row = run_job(Job(scenario("quiet-leak", engines=["none", "tme-again"]), "<script>",
                          "tme-again", 1))
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
    (type("Bad", (KernelMapLeak,), {"kind": "Bad Name"}), "must match"),
    (KernelMapLeak, "already taken by memcrypt-testbed"),
])
def test_what_add_refuses(obj: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        registry.attacks.add(obj)
