"""The attacks: one module each, the same small contract for all (:class:`Attack`)."""

from __future__ import annotations

from ._base import Attack, AttackContext, AttackLog, AttackParams, Verdict, judge_bytes
from .attestation import AttestationBypass
from .capture_compare import CaptureCompare
from .cross_domain_replay import CrossDomainReplay
from .dirty_page_leak import DirtyPageLeak
from .freed_data_leak import FreedDataLeak
from .hypervisor_replay import HypervisorReplay
from .kernel_map_leak import KernelMapLeak
from .key_wearout import KeyWearout
from .secretmem_exhaustion import SecretmemExhaustion
from .torn_live_patch import TornLivePatch

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackContext",
    "AttackLog",
    "AttackParams",
    "Verdict",
    "get_attack",
    "judge_bytes",
]

ATTACKS: dict[str, Attack] = {
    attack.kind: attack
    for attack in (
        KernelMapLeak(),
        FreedDataLeak(),
        CrossDomainReplay(),
        HypervisorReplay(),
        CaptureCompare(),
        KeyWearout(),
        SecretmemExhaustion(),
        DirtyPageLeak(),
        TornLivePatch(),
        AttestationBypass(),
    )
}


def get_attack(kind: str) -> Attack:
    """The attack of ``kind`` (a key of :data:`ATTACKS`)."""
    return ATTACKS[kind]
