"""The contract every attack module follows, and the judge that turns evidence into an outcome.

An attack module defines one :class:`Attack` subclass, generic over its parameter model: its
kind, the attacker capabilities it uses, a pydantic ``Params`` model (ranges documented there;
the scenario loader validates it once, and :meth:`Attack.run` receives that object), a frozen
:class:`~testbed.results.Metrics` type, :meth:`Attack.precondition` (why the threat does not
exist on a machine, from the engine's capabilities) and :meth:`Attack.run`, which performs the
steps on the machine and records what it achieved in an :class:`AttackLog`.

The attack phase starts explicitly, with :meth:`AttackLog.begin_attack`. A
:class:`~testbed.errors.PlatformRefusal` escaping :meth:`Attack.run` after that means a platform
check refused the attacker a step: the runner records ``blocked``. Before it (the victim being
set up), or inside :meth:`AttackLog.victim_acts` (the victim acting later on), a refusal is a
failed run, never the attack being blocked, with one exception: a memory-integrity failure
(:class:`~testbed.errors.IntegrityViolation`) the victim meets during the attack is a line the
victim's own CPU did not write (a forged or replayed line the attacker put there), caught when the
victim reads it; it is the platform stopping the attacker, so the outcome is ``blocked``.
"""

from __future__ import annotations

import contextlib
import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import IntegrityViolation, PlatformRefusal
from ..platform import Domain, Engine, Machine
from ..results import Actor, Evidence, Step
from ..results import Metrics as BaseMetrics
from ..results.chance import (
    byte_chance,
    chance_text,
    informative_matches,
    log2_tail,
    matched_bytes,
)
from ..results.verdicts import Verdict
from ..types import Outcome, PhysAddr
from .cost import MachineShape, Work

__all__ = [
    "Actor",
    "Attack",
    "AttackContext",
    "AttackLog",
    "AttackParams",
    "BaseMetrics",
    "Phase",
    "SecretParams",
    "Verdict",
    "judge_bytes",
    "make_secret",
    "plant_secret",
]


class AttackParams(BaseModel):
    """Base of every attack's parameter model: unknown keys and loose types are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def pages_needed(self) -> int:
        """Page frames the attack allocates at most (checked against the scenario's memory)."""
        return 2

    def best_chance_log2(self, *, block_bits: int = 128) -> float | None:
        """log2 of the chance that a guess matches the attack's best possible result in one
        run (the secret recovered exactly), or ``None`` when its result is no guess or the
        attack does not say. The scenario warns when even that cannot beat
        :data:`~testbed.results.verdicts.MARGIN_LOG2` over its trials. ``block_bits`` is the
        width of the cipher's block (the reduced-width cipher's, or 128)."""
        return None

    def work(self, machine: MachineShape) -> Work | None:
        """An upper bound on the work of one run on ``machine``, under any built-in engine, in
        work units (:mod:`testbed.attacks.cost`), or ``None``: the attack does not say (the
        default), and the loader accepts it without a bound. The loader multiplies it by the
        scenario's trials and refuses a job above
        :data:`~testbed.attacks.cost.JOB_LIMIT_UNITS`."""
        return None


MAX_SECRET_BYTES = 1024


class SecretParams(AttackParams):
    """A victim secret: given text (at most 1024 bytes of UTF-8) or that many random bytes."""

    secret: str | None = Field(None, min_length=1, max_length=MAX_SECRET_BYTES,
                               description="the victim's secret as text (at most 1024 bytes "
                               "of UTF-8)")
    secret_bytes: int = Field(32, ge=1, le=MAX_SECRET_BYTES,
                              description="random secret size when no text is given")

    @field_validator("secret")
    @classmethod
    def _fits(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise ValueError(f"at most {MAX_SECRET_BYTES} bytes in UTF-8, got "
                             f"{len(value.encode('utf-8'))}")
        return value

    def best_chance_log2(self, *, block_bits: int = 128) -> float | None:
        """A text secret by its alphabet and repeats; random bytes at 8 bits each."""
        if self.secret is None:
            return -8.0 * self.secret_bytes
        text = self.secret.encode("utf-8")
        return log2_tail(len(text), informative_matches(text, text), byte_chance(text))

    @property
    def secret_size(self) -> int:
        """Bytes the secret will take."""
        return len(self.secret.encode("utf-8")) if self.secret is not None else self.secret_bytes


class Phase(enum.Enum):
    """Who a platform refusal is charged to."""

    SETUP = "setup"
    """The victim is being set up: a refusal is a failed run."""
    ATTACK = "attack"
    """The attacker drives: a refusal blocks the attack."""
    VICTIM = "victim"
    """The victim acts during the attack: a refusal is a failed run."""


@dataclass
class AttackLog:
    """What happened, filled in step by step so that a refused step still leaves its trail."""

    steps: list[Step] = field(default_factory=list)
    metrics: BaseMetrics | None = None
    """The attack's own frozen metrics object, replaced as measurements come in."""
    secret: bytes | None = None
    captured: bytes | None = None
    recovered: bytes | None = None
    address: int | None = None
    phase: Phase = Phase.SETUP
    victim_refusal: BaseException | None = None
    """The last refusal the victim met inside :meth:`victim_acts` (the runner charges that very
    exception to the victim, whatever the phase is when it arrives)."""

    def step(
        self, actor: Actor, action: str, capability: str = "", address: int | None = None,
        detail: str = "", *, cpu: int | None = None,
    ) -> None:
        """Append one timeline entry."""
        self.steps.append(Step(actor, action, capability, address, detail, cpu))

    def begin_attack(self) -> None:
        """The victim is set up; from here on the attacker drives."""
        self.phase = Phase.ATTACK

    def begin_setup(self) -> None:
        """The victim is being set up again (after a reboot, for another trial)."""
        self.phase = Phase.SETUP

    @property
    def attacking(self) -> bool:
        """Whether a refusal now is the platform refusing the attacker."""
        return self.phase is Phase.ATTACK

    @contextlib.contextmanager
    def victim_acts(self) -> Iterator[None]:
        """The victim acts during the attack: a refusal inside is a failed run, not a block.

        A refusal leaving the block is remembered (:attr:`victim_refusal`), so the runner
        charges it to the victim; one the attack catches does not change later verdicts.
        """
        before, self.phase = self.phase, Phase.VICTIM
        try:
            yield
        except PlatformRefusal as exc:
            if not isinstance(exc, IntegrityViolation):  # a forged line: the attacker's doing
                self.victim_refusal = exc
            raise
        finally:
            self.phase = before

    def evidence(self) -> Evidence:
        """Freeze the bytes gathered so far."""
        return Evidence(self.secret, self.captured, self.recovered, self.address)


@dataclass
class AttackContext:
    """Everything an attack run gets: the machine, randomness, a way to reboot, the log."""

    machine: Machine
    rng: np.random.Generator
    reboot: Callable[[], Machine]
    log: AttackLog = field(default_factory=AttackLog)


def judge_bytes(
    secret: bytes, recovered: bytes | None, what: str = "secret", *,
    space_log2: float | None = None,
) -> Verdict:
    """Compare what the attacker recovered with the truth, and weigh it against chance.

    ``succeeded`` when every byte matches; ``partial`` when at least half do; otherwise
    ``mitigated``. The chance is that of a guess matching as many bytes (each 1 in 256, or 1
    in 95 for a text secret; bytes a defence writes,
    :data:`~testbed.results.chance.DEFENCE_BYTES`, and repeats never count), or, for an exact
    match of a secret from a known space (a PIN, or one of a ``guess`` step's candidates), one
    guess in ``2^space_log2``, whatever its bytes (a PIN's repeated digits are no likelier).
    The runner then weighs it (:func:`testbed.results.verdicts.weigh`): a success a guess
    reaches more often than 2^-32 is ``inconclusive``.
    """
    n = len(secret)
    if recovered is None:
        return Verdict(Outcome.MITIGATED, f"the attacker recovered nothing of the {what}", 0.0)
    same = matched_bytes(secret, recovered)
    counted = informative_matches(secret, recovered)
    chance = log2_tail(n, counted, byte_chance(secret))
    if recovered == secret:
        if space_log2 is not None:  # the space, not the bytes, says how often a guess is right
            chance = -space_log2
        size = (f"{n} bytes" if counted == n else
                f"{n} bytes, {counted} of them counted as evidence")
        return Verdict(Outcome.SUCCEEDED, f"the attacker recovered the {what} exactly ({size}; "
                       f"by chance {chance_text(chance)})", chance)
    if same > 0 and same * 2 >= n:
        return Verdict(Outcome.PARTIAL, f"the attacker recovered {same} of {n} bytes of the "
                       f"{what} (by chance {chance_text(chance)})", chance)
    got = "zeros" if not any(recovered) else "ciphertext or garbage"
    return Verdict(
        Outcome.MITIGATED,
        f"the attacker read {len(recovered)} bytes, but only {same} of {n} match the {what}: "
        f"it got {got}",
        chance,
    )


P = TypeVar("P", bound=AttackParams)


class Attack(ABC, Generic[P]):
    """One attack, as described by its source.

    Attributes:
        kind: the name scenarios use in ``attack:`` (``[a-z0-9-]``).
        title: a short human title.
        capabilities: the attacker capabilities it needs (see the README's threat model).
        Params: its parameter model (a subclass of :class:`AttackParams`).
        Metrics: its frozen metrics type.
        control_engine: the engine of the control run every result is weighed against: the
            weakest engine under which the threat exists (``none``, plaintext DRAM, unless the
            attack needs a cipher or an untrusted hypervisor to exist at all). The control
            runs with no mitigations and no ciphertext hiding
            (:func:`testbed.results.verdicts.attribute`).
        platform_settings: the settings of ``platform:`` made for one experiment
            (``reduced_width_bits``, ``ciphertext_hiding``, ``secretmem_reserve_pages``) that
            it makes use of; the loader refuses the others on its scenarios. ``None`` (the
            default): the attack does not say, and every setting is accepted.
    """

    kind: ClassVar[str]
    title: ClassVar[str]
    capabilities: ClassVar[tuple[str, ...]]
    Params: type[P]
    Metrics: ClassVar[type[BaseMetrics]]
    control_engine: ClassVar[str] = "none"
    platform_settings: ClassVar[frozenset[str] | None] = None

    def precondition(self, machine: Machine, params: P) -> str | None:
        """Why the threat does not exist on ``machine`` (``None``: it does)."""
        return None

    def run_key(self) -> object:
        """What, beside the scenario, the engine and the seed, makes a run of this attack: jobs
        whose attacks give equal keys give the same row, so the runner runs it once. By
        default the object's identity, ``id(self)`` (a job may carry an attack object of its
        own); an attack that is all in its parameters says so."""
        return id(self)

    def bound(self, params: P, engines: Sequence[type[Engine]]) -> Attack[P]:
        """The attack that runs ``params``: itself, unless its control engine, capabilities
        or platform settings depend on the parameters (an attack program's do), when it is
        an attack of its own for them. ``engines``: the registered engine classes, in display
        order. A scenario asks once, and every job of the scenario runs the same object."""
        return self

    @abstractmethod
    def run(self, ctx: AttackContext, params: P) -> Verdict:
        """Perform the attack on ``ctx.machine``; record steps and evidence in ``ctx.log``."""


def plant_secret(
    ctx: AttackContext, params: SecretParams, kind: str, *, pages: int = 1,
    secret_page: bool = False, offset: int = 0,
) -> tuple[Domain, PhysAddr, bytes]:
    """The usual opening: a victim of ``kind`` gets ``pages`` pages and stores its secret in the
    middle one at ``offset``. Records the truth and the step; returns (victim, address, secret).
    """
    m, log = ctx.machine, ctx.log
    secret = make_secret(ctx.rng, params.secret, params.secret_bytes)
    victim = m.create_domain(kind, "victim")
    frames = [m.alloc_page(victim, secret=secret_page) for _ in range(pages)]
    pa = PhysAddr(frames[len(frames) // 2] + offset)
    m.write(victim, pa, secret)
    log.secret, log.address = secret, pa
    owns = f", owns {pages} pages" if pages > 1 else ""
    log.step(Actor.VICTIM, f"stores a {len(secret)}-byte secret{owns}", address=pa,
             detail=f"{victim.kind.value} with key slot {victim.slot}")
    return victim, pa, secret


def make_secret(rng: np.random.Generator, text: str | None, size: int) -> bytes:
    """The victim's secret: the given text, or ``size`` random bytes."""
    if text is not None:
        return text.encode("utf-8")
    return rng.bytes(size)
