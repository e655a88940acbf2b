"""One step of a program, and the goal that says what success means.

A step is ``{op, by, args, as}``. ``args`` is validated against the model of its ``op`` (from
the step registry), the way a scenario's ``params`` is validated against its attack's model, so
an error points at ``program[3].args.address``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..types import PAGE_SIZE
from ._args import MAX_ALLOC, Args
from ._values import Name, Ref, Who
from ._vocabulary import OPS, system_goals

__all__ = ["GOALS", "PLACED_GOALS", "Goal", "Step"]

PLACED_GOALS = ("victim_reads", "page_holds")
"""The goals that read a page back (and take ``at``, ``page``, ``offset``)."""
GOALS = ("recovered", *PLACED_GOALS, *system_goals())
"""The kinds of goal: the program's own, then those judging a system step's result."""



def _unref(value: object) -> object:
    """A goal names a value: ``leaked`` or, as a step would refer to it, ``$leaked``."""
    return value[1:] if isinstance(value, str) and value.startswith("$") else value


Named = Annotated[Name, BeforeValidator(_unref)]
"""The value a goal judges: its name, with or without the ``$`` of a reference."""

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class Step(_Strict):
    """One operation done by one actor; ``as`` binds its result for later steps."""

    op: str = Field(description="the operation (see the step registry)")
    by: Who = Field(description="victim, attacker, hypervisor or kernel")
    args: SerializeAsAny[Args] = Field(description="the operation's arguments")
    as_: Name | None = Field(None, alias="as", description="the name its result is bound to")

    @model_validator(mode="before")
    @classmethod
    def _no_args(cls, data: Any) -> Any:
        # An operation without arguments (reboot) may leave args out.
        if isinstance(data, dict) and "args" not in data:
            return {**data, "args": {}}
        return data

    @field_validator("op")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in OPS:
            raise ValueError(f"unknown operation {value!r}; known: {', '.join(OPS)}")
        return value

    @field_validator("args", mode="plain")
    @classmethod
    def _args(cls, value: Any, info: ValidationInfo) -> Args:
        op = info.data.get("op")
        if op is None:  # the operation itself was refused; that error is the one reported
            raise ValueError("no operation to check the arguments against")
        model = OPS[op].args
        if isinstance(value, model):
            return value
        return model.model_validate(value)


class Goal(_Strict):
    """What success means: exactly one of the kinds in :data:`GOALS`.

    - ``recovered: NAME``: the attacker's value NAME equals the victim's secret.
    - ``victim_reads: NAME``: the victim, reading where it stored NAME (or at ``at``), gets
      NAME's bytes back although it wrote something else there since (a rollback).
    - ``page_holds: NAME`` with ``at``: the page's owner reads the attacker's bytes NAME there.
    - The goal of a system step names what that step bound and judges what the step did with
      the judge of its built-in attack: ``modified`` (``wear_out``: the victim read the
      attacker's value, in enough trials), ``denied`` (``exhaust_secretmem``: the victim's
      secret allocation was refused), ``recovered_bits`` (``track_dirty_pages``: the key's
      bits read from the dirty bitmaps), ``torn`` (``live_patch``: a CPU executed a torn
      instruction), ``accepted`` (``attest``: the owner released its disk key to a guest
      running the hypervisor's image, and the backdoor sent it out).
    """

    recovered: Named | None = Field(None, description="bytes the attacker holds, compared with "
                                   "the secret a store_secret step stored")
    victim_reads: Named | None = Field(None, description="what a victim store step bound: the "
                                      "victim reads it back although it wrote something else")
    page_holds: Named | None = Field(None, description="bytes the attacker chose: the owner of "
                                    "the page at reads them there")
    modified: Named | None = Field(None, description="the victim read the attacker's value in "
                                  "enough of the trials (the 95 % interval of the success rate "
                                  "at or above one half)")
    denied: Named | None = Field(None, description="the victim's secret-memory allocation was "
                                "refused: a denial of service (no guess, so no chance)")
    recovered_bits: Named | None = Field(None, description="the decoded key, compared bit by bit "
                                        "with the guest's (all bits: succeeded; far more than "
                                        "coin flips get: partial)")
    torn: Named | None = Field(None, description="a CPU executed a torn instruction, neither the "
                              "old one nor the new (no guess, so no chance)")
    accepted: Named | None = Field(None, description="the owner released its disk key to a guest "
                                  "running the hypervisor's modified image, and the backdoor "
                                  "sent the key out")
    at: Ref | None = Field(None, description="where the victim reads")
    page: int = Field(0, ge=0, le=MAX_ALLOC - 1, description="which page of at")
    offset: int = Field(0, ge=0, le=PAGE_SIZE - 1, description="bytes past at")

    @model_validator(mode="after")
    def _one(self) -> Goal:
        given = [k for k in GOALS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(GOALS)}, got {len(given)}")
        if self.page_holds is not None and self.at is None:
            raise ValueError("page_holds needs at: the address of the page")
        if given[0] not in PLACED_GOALS and (self.at is not None or self.page or self.offset):
            raise ValueError(f"at, page and offset go with {' or '.join(PLACED_GOALS)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in GOALS if getattr(self, k) is not None)

    @property
    def name(self) -> str:
        value = getattr(self, self.kind)
        assert isinstance(value, str)
        return value
