"""The scenario schema: YAML becomes these frozen models, and nothing else travels further.

The names a scenario may use (attacks, engines, mitigations) and their limits come from the
registries (:mod:`testbed.registry`); ``params`` is validated once, against the parameter model
of the attack the scenario names, and travels as that typed object.
"""

from __future__ import annotations

import math
import weakref
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    StringConstraints,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .. import registry
from ..attacks import Attack, AttackParams
from ..attacks.cost import JOB_LIMIT_UNITS, LIMIT_TEXT, MachineShape, Work, units_text
from ..platform import (
    MAX_MEMORY_PAGES,
    EngineOptions,
    EngineWithKeyIds,
    Mitigations,
    MktmeEngine,
    MktmeIntegrityEngine,
    SevEngine,
)
from ..platform.machine import effective_secretmem_reserve, secretmem_min_pages
from ..platform.mm import RESERVED_FRAMES
from ..programs import OPS
from ..results.chance import chance_text
from ..results.verdicts import MARGIN_LOG2, MAX_TRIALS
from ..types import Outcome

__all__ = [
    "EXPERIMENT_SETTINGS",
    "WORK_LIMIT_CONTEXT",
    "AttackName",
    "EngineName",
    "MitigationSpec",
    "PlatformSpec",
    "Scenario",
    "Teaching",
    "engine_names",
]


FIELD_ERROR = "scenario_field"
"""The pydantic error type of a check across fields; its context names the field it is about."""
WORK_LIMIT_CONTEXT = "work_limit_units"
"""Key of the validation context that sets another limit on a job's work than
:data:`~testbed.attacks.cost.JOB_LIMIT_UNITS` (``Scenario.model_validate(doc,
context={WORK_LIMIT_CONTEXT: units})``; the tests use smaller budgets)."""
EXPERIMENT_SETTINGS = ("reduced_width_bits", "ciphertext_hiding", "secretmem_reserve_pages",
                       "secretmem_before_pmd_pool")
"""The settings of ``platform:`` made for one experiment: an attack that says which ones it
uses (:attr:`~testbed.attacks.Attack.platform_settings`) is refused the others."""


NO_ATTACK = "no attack to check the parameters against"
"""The error of ``params`` when the attack itself was refused (that error says it all)."""

_BOUND: dict[int, Attack[Any]] = {}
"""The attack of each scenario alive, by the scenario's ``id()`` (:meth:`Scenario.attack_object`;
not a field, so equal scenarios stay equal)."""

PROGRAM_ATTACK = "program"
"""The attack of a scenario that writes its attack out as steps."""
PROGRAM_KEYS = ("threat", "program", "goal")
"""The top-level keys of a scenario written as a program; they travel as the ``params`` of
the ``program`` attack (:class:`~testbed.programs.Program`)."""


def _program_params(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its ``threat``, ``program`` and ``goal`` moved into ``params`` of the
    ``program`` attack; a scenario that also names another attack or gives ``params`` is
    refused (it would have two definitions of its attack)."""
    attack = data.get("attack", PROGRAM_ATTACK)
    if attack != PROGRAM_ATTACK:
        raise field_error("attack", f"a scenario with {'/'.join(PROGRAM_KEYS)} writes its "
                          f"attack out as a program: remove attack: {attack!r} (or the "
                          "program)")
    if "params" in data:
        raise field_error("params", "a scenario written as a program gives its attack in "
                          f"{', '.join(PROGRAM_KEYS)}, not params: remove params")
    program = {key: data[key] for key in PROGRAM_KEYS if key in data}
    rest = {key: value for key, value in data.items() if key not in PROGRAM_KEYS}
    return {**rest, "attack": PROGRAM_ATTACK, "params": program}


def field_error(field: str, message: str, *, near: str = "") -> PydanticCustomError:
    """An error about ``field`` (a dotted path) found by a check across fields; ``near`` is
    where to point when the field itself is not in the file."""
    return PydanticCustomError(FIELD_ERROR, "{field}: {message}",
                               {"field": field, "message": message, "near": near})


def engine_names() -> tuple[str, ...]:
    """Every registered engine, in display order (the built-in five first)."""
    return registry.engines.names()


def _known_engine(name: str) -> str:
    if name not in registry.engines:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(engine_names())}")
    return name


def _known_attack(name: str) -> str:
    if name not in registry.attacks:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(registry.attacks.names())}")
    return name


EngineName = Annotated[str, AfterValidator(_known_engine)]
"""A registered engine's name."""
AttackName = Annotated[str, AfterValidator(_known_attack)]
"""A registered attack's kind."""

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

    memory_pages: int = Field(256, ge=16, le=MAX_MEMORY_PAGES, description="4 KiB frames of DRAM")
    keyid_bits: int = Field(6, ge=1, le=MktmeEngine.MAX_KEYID_BITS,
                            description="MKTME KeyID bits (KeyIDs 1..2^bits-1)")
    asids: int = Field(15, ge=1, le=SevEngine.MAX_ASIDS, description="SEV guest ASIDs")
    ciphertext_hiding: bool = Field(False, description="SEV-SNP: hypervisor reads return 0xff")
    pconfig_entropy_failures: int = Field(
        0, ge=0, le=MktmeEngine.MAX_ENTROPY_FAILURES,
        description="MKTME: PCONFIG SET_KEY_RANDOM fails with ENTROPY_ERROR this many times in "
        "a row before each success (0: never fails; the kernel makes 10 attempts, so 10 fails "
        "the first key request); only for engines with PCONFIG",
    )
    mac_bits: int = Field(
        28, ge=MktmeIntegrityEngine.MIN_MAC_BITS, le=MktmeIntegrityEngine.MAX_MAC_BITS,
        description="memory integrity (mktme-i): MAC bits kept beside every line; a forged "
        "line passes with probability 2^-bits")
    reduced_width_bits: int | None = Field(
        None, ge=16, le=32, description="use the reduced-width cipher of this width (wear-out)"
    )
    secretmem_reserve_pages: int = Field(
        0, ge=0, le=MAX_MEMORY_PAGES,
        description="secretmem= boot reservation for PMD-size secret-memory pools, in 4 KiB "
        "frames, a multiple of 512 (0: none, and memfd_secret fails with ENOMEM; but 512, "
        "secretmem=2M, under the secretmem mitigation)",
    )
    secretmem_before_pmd_pool: bool = Field(
        False, description="for comparison, memfd_secret as before the PMD-pool patch: no "
        "secretmem= reservation, each secret page comes from the page allocator and leaves the "
        "direct map on its own",
    )

    def engine_options(self) -> EngineOptions:
        """The options an engine is built with on this platform."""
        return EngineOptions(reduced_width_bits=self.reduced_width_bits,
                             keyid_bits=self.keyid_bits, asids=self.asids,
                             ciphertext_hiding=self.ciphertext_hiding,
                             pconfig_entropy_failures=self.pconfig_entropy_failures,
                             mac_bits=self.mac_bits)

    @field_validator("secretmem_reserve_pages")
    @classmethod
    def _whole_pmds(cls, value: int) -> int:
        if value % 512:
            raise ValueError(f"must be a multiple of 512 frames (2 MiB), got {value}")
        return value

    @model_validator(mode="after")
    def _reserve_fits(self) -> PlatformSpec:
        least = secretmem_min_pages(self.secretmem_reserve_pages)
        if self.memory_pages < least:
            raise ValueError(f"secretmem_reserve_pages ({self.secretmem_reserve_pages}) needs "
                             f"memory_pages of at least {least}, 512 above it (the pool starts "
                             f"at a 2 MiB boundary, above frame 0), got {self.memory_pages}")
        if self.secretmem_reserve_pages and self.secretmem_before_pmd_pool:
            raise ValueError("secretmem_before_pmd_pool: the code before the PMD-pool patch has "
                             "no secretmem= reservation; set secretmem_reserve_pages to 0")
        return self

    @field_validator("reduced_width_bits")
    @classmethod
    def _even(cls, value: int | None) -> int | None:
        if value is not None and value % 2:
            raise ValueError(f"must be even, got {value}")
        return value


def _mitigation_field(info: registry.MitigationInfo) -> Any:
    if info.kind is bool:
        return (bool, Field(False, description=info.description))
    return (int, Field(0, ge=0, le=info.maximum, description=info.description))


MitigationSpec: type[BaseModel] = create_model(
    "MitigationSpec",
    __config__=ConfigDict(extra="forbid", frozen=True, strict=True),
    __doc__="Software mitigations applied on top of every engine of the scenario.",
    **{m.setting: _mitigation_field(m) for m in registry.MITIGATIONS},
)
"""The ``mitigations:`` block, one key per entry of :data:`testbed.registry.MITIGATIONS`."""


class Scenario(_Strict):
    """One attack definition, run once per engine."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    title: ShortText
    attack: AttackName = Field(description="a registered attack, or ``program`` (written out "
                               "in ``threat:``, ``program:`` and ``goal:``)")
    engines: list[EngineName] = Field(
        default_factory=lambda: list(registry.engines.builtin_names()), min_length=1,
        max_length=64)
    platform: PlatformSpec = Field(default_factory=PlatformSpec)
    mitigations: Mitigations = Field(default_factory=Mitigations)
    params: SerializeAsAny[AttackParams] = Field(default_factory=AttackParams)
    expect: dict[EngineName, OutcomeName] = Field(default_factory=dict)
    trials: int = Field(1, ge=1, le=MAX_TRIALS, description="independent runs of the attack "
                        "per profile; the outcome follows from the success rate's 95 % "
                        "interval")
    teaching: Teaching

    @model_validator(mode="before")
    @classmethod
    def _params_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if any(key in data for key in PROGRAM_KEYS):
            return _program_params(data)
        if "attack" not in data:
            raise field_error("attack", "required: name the attack (attack: KIND, with its "
                              f"params) or write it out ({', '.join(PROGRAM_KEYS)})")
        # An absent params block is the attack's defaults: validate it like a given one.
        if "params" not in data:
            return {**data, "params": {}}
        return data

    @field_validator("mitigations", mode="plain")
    @classmethod
    def _mitigations(cls, value: Any) -> Mitigations:
        if isinstance(value, Mitigations):
            return value
        spec = MitigationSpec.model_validate(value)
        return Mitigations(**spec.model_dump())

    @field_validator("params", mode="plain")
    @classmethod
    def _params(cls, value: Any, info: ValidationInfo) -> AttackParams:
        kind = info.data.get("attack")
        if kind is None:  # the attack itself was refused; that error is the one reported
            raise ValueError(NO_ATTACK)
        model: type[AttackParams] = registry.attacks.get(kind).Params
        if isinstance(value, model):
            return value
        return model.model_validate(value)

    @field_validator("engines")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("engines must not repeat")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Scenario:
        usable = self.platform.memory_pages - RESERVED_FRAMES
        if self.params.pages_needed() > usable:
            raise field_error("platform.memory_pages",
                              f"the attack needs {self.params.pages_needed()} free frames; "
                              f"{self.platform.memory_pages} frames leave {usable}",
                              near="params")
        for engine in self.expect:
            if engine not in self.engines:
                raise field_error(f"expect.{engine}",
                                  f"engine {engine!r} is not in this scenario's engines")
        self._check_settings()
        self._check_pconfig()
        reserve = effective_secretmem_reserve(self.mitigations,
                                              self.platform.secretmem_reserve_pages,
                                              self.platform.secretmem_before_pmd_pool)
        if self.platform.memory_pages < secretmem_min_pages(reserve):
            raise field_error("mitigations.secretmem",
                              f"the mitigation's default secretmem=2M reservation ({reserve} "
                              f"frames) needs platform.memory_pages of at least "
                              f"{secretmem_min_pages(reserve)} (the pool starts at a 2 MiB "
                              f"boundary, above frame 0), got {self.platform.memory_pages}")
        limit = (info.context or {}).get(WORK_LIMIT_CONTEXT, JOB_LIMIT_UNITS)
        self._check_work(limit)
        return self

    def attack_object(self) -> Attack[Any] | None:
        """The attack that runs this scenario (:meth:`~testbed.attacks.Attack.bound` to its
        parameters), the same object for every job of the scenario and its control; ``None``
        when the attack is no longer registered (a script removed it)."""
        key = id(self)
        found = _BOUND.get(key)
        if found is None and self.attack in registry.attacks:
            found = registry.attacks.get(self.attack).bound(self.params, tuple(registry.engines))
            _BOUND[key] = found
            weakref.finalize(self, _BOUND.pop, key, None)
        return found

    def _check_settings(self) -> None:
        """Refuse a setting made for one experiment that this scenario's attack does not use."""
        attack = self.attack_object()
        used = attack.platform_settings if attack is not None else None
        if used is None:
            return
        for name in EXPERIMENT_SETTINGS:
            if name in used or getattr(self.platform, name) == (
                    PlatformSpec.model_fields[name].default):
                continue
            users = [attack.kind for attack in registry.attacks if attack.kind != PROGRAM_ATTACK
                     and name in (attack.platform_settings or ())]
            steps = [op for op, spec in OPS.items() if name in spec.platform_settings]
            if steps:
                users.append(f"programs with a step {' or '.join(steps)}")
            who = ("no step of this program makes" if self.attack == PROGRAM_ATTACK else
                   f"attack {self.attack!r} makes no")
            raise field_error(f"platform.{name}",
                              f"{who} use of this setting (it is for "
                              f"{', '.join(users) or 'no registered attack'}); remove it")

    def _check_pconfig(self) -> None:
        """Refuse PCONFIG entropy failures for an engine that programs no keys with PCONFIG."""
        if not self.platform.pconfig_entropy_failures:
            return
        def pconfig(name: str) -> bool:
            return issubclass(registry.engines.get(name), EngineWithKeyIds)

        without = [name for name in self.engines if name in registry.engines
                   and not pconfig(name)]
        if without:
            able = [name for name in registry.engines.names() if pconfig(name)]
            raise field_error("platform.pconfig_entropy_failures",
                              f"{', '.join(without)} make no keys with PCONFIG; list only "
                              f"engines that do in engines: ({', '.join(able)})")

    def bare(self) -> Scenario:
        """This scenario as its control runs it: no mitigations, no ciphertext hiding, the
        rest unchanged."""
        return self.model_copy(update={
            "mitigations": Mitigations(),
            "platform": self.platform.model_copy(update={"ciphertext_hiding": False}),
        })

    def machine_shape(self, *, control: bool = False) -> MachineShape:
        """The machine a run of this scenario builds, as its work depends on it; with
        ``control``, that of the control run (:meth:`bare`)."""
        s = self.bare() if control else self
        p = s.platform
        return MachineShape(p.memory_pages, p.engine_options(), s.mitigations,
                            effective_secretmem_reserve(s.mitigations, p.secretmem_reserve_pages,
                                                        p.secretmem_before_pmd_pool))

    def _run_work(self) -> tuple[Work, bool] | None:
        """The larger estimate of one run, the scenario's own or its control's (``True``)."""
        own = self.params.work(self.machine_shape())
        bare = self.params.work(self.machine_shape(control=True))
        if own is None or bare is None:
            return None
        return (bare, True) if bare.units > own.units else (own, False)

    def job_units(self) -> float | None:
        """The estimated work of one job of this scenario (one engine, every trial), the larger
        of its own runs and its control's, in work units (:mod:`testbed.attacks.cost`);
        ``None`` when the attack does not estimate its work."""
        found = self._run_work()
        return None if found is None else found[0].units * self.trials

    def work_units(self) -> float | None:
        """The estimated work of one job of this scenario (every trial; the job or its
        control, the larger), in work units (``None``: the attack gives no estimate)."""
        found = self._run_work()
        return None if found is None else found[0].units * self.trials

    def _check_work(self, limit: float) -> None:
        found = self._run_work()
        if found is None or found[0].units * self.trials <= limit:
            return
        work, control = found
        runs = (f"{self.trials} trials of {work.units:,.0f} work units each"
                if self.trials > 1 else "one trial")
        whose = "the control of a job (no mitigations)" if control else "a job"
        limit_text = (LIMIT_TEXT if limit == JOB_LIMIT_UNITS else
                      "the limit set for this validation")
        lower = [work.hint] if work.hint else []
        if self.trials > 1:
            lower.append("use fewer trials")
        field = "trials" if self.trials > 1 and work.units <= limit else "params"
        raise field_error(
            field, f"{whose} (one engine, {runs}) is estimated at "
            f"{units_text(work.units * self.trials)}, over the limit of {limit:,.0f} "
            f"({limit_text}); most of the work: {work.largest()}"
            + (f"; to fit, {' or '.join(lower)}" if lower else ""), near="attack")

    def evidence_warning(self) -> str | None:
        """Why this scenario can never reach a verdict of success (``None``: it can).

        Even the attack's best result, the secret recovered exactly in every trial, must be
        rarer by chance than :data:`~testbed.results.verdicts.MARGIN_LOG2`; otherwise every
        success is ``inconclusive``.
        """
        bits = self.platform.reduced_width_bits or 128
        best = self.params.best_chance_log2(block_bits=bits)
        if best is None or best * self.trials <= MARGIN_LOG2:
            return None
        hint = "use a larger secret"
        if best < 0:
            needed = math.ceil(MARGIN_LOG2 / best)
            if needed <= MAX_TRIALS:
                hint += f" or trials: {needed}"
        return (f"even recovered exactly in all {self.trials} trial(s), this secret is guessed "
                f"{chance_text(best * self.trials)} of the time, more than the "
                f"2^{MARGIN_LOG2:.0f} a success needs: every success will be inconclusive "
                f"({hint})")

    def machine_mitigations(self) -> Mitigations:
        """The platform's view of this scenario's mitigations."""
        return self.mitigations

    def mitigation_names(self) -> tuple[str, ...]:
        """Mitigation names as they appear in profile names."""
        return self.mitigations.names()

    def profile_name(self, engine: str) -> str:
        """``engine`` plus ``+mitigation`` for each mitigation in force."""
        return "+".join((engine, *self.mitigation_names()))
