"""The scenario schema: YAML becomes these frozen models, and nothing else travels further."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..platform.machine import MITIGATION_NAMES, Mitigations
from ..types import Outcome

__all__ = [
    "ENGINE_NAMES",
    "MITIGATION_NAMES",
    "EngineName",
    "MitigationSpec",
    "PlatformSpec",
    "Scenario",
    "Teaching",
]

EngineName = Literal["none", "tme", "mktme", "sev", "sev-snp"]
ENGINE_NAMES: tuple[EngineName, ...] = ("none", "tme", "mktme", "sev", "sev-snp")

Text = Annotated[str, StringConstraints(max_length=4000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
OutcomeName = Annotated[Outcome, Field(strict=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Teaching(_Strict):
    """Text for students: what the scenario shows, what to look at, questions to discuss."""

    summary: Text
    look_for: Text = ""
    questions: list[Text] = Field(default_factory=list, max_length=20)


class PlatformSpec(_Strict):
    """The emulated machine of a scenario."""

    memory_pages: int = Field(256, ge=16, le=65536, description="4 KiB frames of DRAM")
    keyid_bits: int = Field(6, ge=1, le=15, description="MKTME KeyID bits (KeyIDs 1..2^bits-1)")
    asids: int = Field(15, ge=1, le=1006, description="SEV guest ASIDs")
    ciphertext_hiding: bool = Field(False, description="SEV-SNP: hypervisor reads return 0xff")
    reduced_width_bits: int | None = Field(
        None, ge=16, le=32, description="use the reduced-width cipher of this width (wear-out)"
    )
    secretmem_reserve_pages: int = Field(
        0, ge=0, le=65536,
        description="secretmem= boot reservation for PMD-size secret-memory pools, in 4 KiB "
        "frames, a multiple of 512 (0: secret pages leave the direct map one by one)",
    )

    @field_validator("secretmem_reserve_pages")
    @classmethod
    def _whole_pmds(cls, value: int) -> int:
        if value % 512:
            raise ValueError(f"must be a multiple of 512 frames (2 MiB), got {value}")
        return value

    @model_validator(mode="after")
    def _reserve_fits(self) -> PlatformSpec:
        if self.secretmem_reserve_pages >= self.memory_pages:
            raise ValueError(f"secretmem_reserve_pages ({self.secretmem_reserve_pages}) must be "
                             f"below memory_pages ({self.memory_pages})")
        return self

    @field_validator("reduced_width_bits")
    @classmethod
    def _even(cls, value: int | None) -> int | None:
        if value is not None and value % 2:
            raise ValueError(f"must be even, got {value}")
        return value


class MitigationSpec(_Strict):
    """Software mitigations applied on top of every engine of the scenario."""

    init_on_free: bool = False
    secretmem: bool = False
    memlock_limit_pages: int = Field(
        0, ge=0, le=65536,
        description="per-task RLIMIT_MEMLOCK charged for secret memory, in pages (0: none)",
    )
    key_rotation_blocks: int = Field(
        0, ge=0, le=1 << 40, description="rotate a domain key after this many blocks (0: never)"
    )
    dirty_all_pages: bool = Field(
        False, description="VFIO: report every mapped page dirty (no pinned-page scope)"
    )
    text_poke_bp: bool = Field(
        False, description="live patching uses the INT3 breakpoint protocol (text_poke_bp)"
    )


class Scenario(_Strict):
    """One attack definition, run once per engine."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    title: ShortText
    attack: Literal[
        "kernel-map-leak",
        "freed-data-leak",
        "cross-domain-replay",
        "hypervisor-replay",
        "capture-compare",
        "key-wearout",
        "secretmem-exhaustion",
        "dirty-page-leak",
        "torn-live-patch",
        "attestation",
    ]
    engines: list[EngineName] = Field(default_factory=lambda: list(ENGINE_NAMES), min_length=1)
    platform: PlatformSpec = Field(default_factory=PlatformSpec)
    mitigations: MitigationSpec = Field(default_factory=MitigationSpec)
    params: dict[str, Any] = Field(default_factory=dict)
    expect: dict[EngineName, OutcomeName] = Field(default_factory=dict)
    teaching: Teaching

    @field_validator("engines")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("engines must not repeat")
        return value

    def machine_mitigations(self) -> Mitigations:
        """The platform's view of this scenario's mitigations."""
        return Mitigations(
            init_on_free=self.mitigations.init_on_free,
            secretmem=self.mitigations.secretmem,
            memlock_pages=self.mitigations.memlock_limit_pages,
            rotation_blocks=self.mitigations.key_rotation_blocks,
            dirty_all_pages=self.mitigations.dirty_all_pages,
            text_poke_bp=self.mitigations.text_poke_bp,
        )

    def mitigation_names(self) -> tuple[str, ...]:
        """Mitigation names as they appear in profile names."""
        return self.machine_mitigations().names()

    def profile_name(self, engine: str) -> str:
        """``engine`` plus ``+mitigation`` for each mitigation in force."""
        return "+".join((engine, *self.mitigation_names()))
