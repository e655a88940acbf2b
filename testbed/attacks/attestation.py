"""Attestation bypass (being built: replaced by the real module)."""

from __future__ import annotations

from ..errors import AttackError
from ._base import Attack, AttackContext, AttackParams, Verdict

__all__ = ["AttestationBypass"]


class AttestationBypassParams(AttackParams):
    pass


class AttestationBypass(Attack):
    kind = "attestation"
    title = "Attestation bypass"
    capabilities = ("malicious_hypervisor",)
    Params = AttestationBypassParams

    def run(self, ctx: AttackContext, params: AttestationBypassParams) -> Verdict:
        raise AttackError("attestation: not built yet")
