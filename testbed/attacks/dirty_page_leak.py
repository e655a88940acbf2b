"""Dirty-page access-pattern leak (being built: replaced by the real module)."""

from __future__ import annotations

from ..errors import AttackError
from ._base import Attack, AttackContext, AttackParams, Verdict

__all__ = ["DirtyPageLeak"]


class DirtyPageLeakParams(AttackParams):
    pass


class DirtyPageLeak(Attack):
    kind = "dirty-page-leak"
    title = "Dirty-page access-pattern leak"
    capabilities = ("malicious_hypervisor",)
    Params = DirtyPageLeakParams

    def run(self, ctx: AttackContext, params: DirtyPageLeakParams) -> Verdict:
        raise AttackError("dirty-page-leak: not built yet")
