"""secretmem pool exhaustion (being built: replaced by the real module)."""

from __future__ import annotations

from ..errors import AttackError
from ._base import Attack, AttackContext, AttackParams, Verdict

__all__ = ["SecretmemExhaustion"]


class SecretmemExhaustionParams(AttackParams):
    pass


class SecretmemExhaustion(Attack):
    kind = "secretmem-exhaustion"
    title = "secretmem pool exhaustion"
    capabilities = ("unprivileged_task",)
    Params = SecretmemExhaustionParams

    def run(self, ctx: AttackContext, params: SecretmemExhaustionParams) -> Verdict:
        raise AttackError("secretmem-exhaustion: not built yet")
