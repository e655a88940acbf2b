"""Torn live patch (being built: replaced by the real module)."""

from __future__ import annotations

from ..errors import AttackError
from ._base import Attack, AttackContext, AttackParams, Verdict

__all__ = ["TornLivePatch"]


class TornLivePatchParams(AttackParams):
    pass


class TornLivePatch(Attack):
    kind = "torn-live-patch"
    title = "Torn live patch"
    capabilities = ("concurrent_execution",)
    Params = TornLivePatchParams

    def run(self, ctx: AttackContext, params: TornLivePatchParams) -> Verdict:
        raise AttackError("torn-live-patch: not built yet")
