"""The interpreter's state while a program runs: the machine, the values bound so far, the log.

The load-time checks have already made sure each reference names a value of the right kind;
the lookups here still check, and a value of the wrong kind is an :class:`AttackError`, never a
crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..attacks._base import AttackContext, BaseMetrics
from ..errors import AttackError
from ..platform import Domain, Machine
from ..results import Actor, Evidence
from ..types import PAGE_SIZE, PhysAddr
from ._args import At, Read
from ._values import Location, Value

__all__ = ["Runtime", "SystemResult"]

_ACTORS = {"victim": Actor.VICTIM, "attacker": Actor.ATTACKER,
           "hypervisor": Actor.HYPERVISOR, "kernel": Actor.KERNEL}


@dataclass(frozen=True)
class SystemResult:
    """What a system step did: the record its built-in attack's judge reads, and the evidence
    it left (what was secret, captured, recovered, and where)."""

    op: str
    run: object
    evidence: Evidence


@dataclass
class Runtime:
    """One run of one program on ``ctx.machine``."""

    ctx: AttackContext
    values: dict[str, Value] = field(default_factory=dict)
    who: str = "victim"
    op: str = ""
    """The operation of the current step."""
    capability: str = ""
    name: str | None = None
    """What the current step binds with ``as:`` (named in the log)."""
    secret: bytes | None = None
    space_log2: float | None = None
    """log2 of how many secrets the victim could have stored (a PIN); ``None``: the bytes tell."""
    secret_kind: str = "secret"
    guesses: int | None = None
    guess_space: int | None = None
    candidates: dict[str, int] = field(default_factory=dict)
    """Names a ``guess`` step bound -> how many candidates it had: picking one of them blind
    is right at least one time in that many, whatever the secret's own space."""
    known: dict[str, bytes] = field(default_factory=dict)
    """Names a ``guess`` step bound -> the text it put before every candidate itself (its
    ``prefix``): bytes the attacker wrote, never bytes it recovered."""
    captured: bool = False
    victim_writes: dict[tuple[str, int], bytes] = field(default_factory=dict)
    """(domain, address) -> what the victim last wrote there itself."""
    systems: dict[str, SystemResult] = field(default_factory=dict)
    """Names a system step bound -> what that step did."""
    system_metrics: list[BaseMetrics] = field(default_factory=list)
    """The metrics each system step measured, in order."""

    @property
    def machine(self) -> Machine:
        return self.ctx.machine

    def reboot(self) -> Machine:
        """A new machine (new keys, memory lost); the log goes back to setting the victim up."""
        self.ctx.machine = self.ctx.reboot()
        return self.ctx.machine

    def _get(self, ref: str) -> Value:
        try:
            return self.values[ref[1:]]
        except KeyError:
            raise AttackError(f"{ref} has no value") from None

    def domain(self, ref: str) -> Domain:
        value = self._get(ref)
        if not isinstance(value, Domain):
            raise AttackError(f"{ref} is not a domain")
        return value

    def location(self, ref: str) -> Location:
        value = self._get(ref)
        if not isinstance(value, Location):
            raise AttackError(f"{ref} is not an address")
        return value

    def data(self, ref: str) -> bytes | None:
        value = self._get(ref)
        if value is not None and not isinstance(value, bytes):
            raise AttackError(f"{ref} is not bytes")
        return value

    def system(self, ref: str, op: str) -> SystemResult:
        """What the ``op`` step that bound ``ref`` did."""
        found = self.systems.get(ref[1:])
        if found is None or found.op != op:
            raise AttackError(f"{ref} is not what a {op} step bound")
        return found

    def keep(self, run: object, before: Evidence) -> None:
        """Remember what the current system step did and the evidence it left, under the name
        it binds; the log's evidence goes back to ``before`` (the program's own)."""
        log = self.ctx.log
        if self.name is not None:
            self.systems[self.name] = SystemResult(self.op, run, log.evidence())
        log.secret, log.captured = before.secret, before.captured
        log.recovered, log.address = before.recovered, before.address

    def show(self, result: SystemResult) -> None:
        """Put the evidence ``result`` left back in the log (its goal is being judged)."""
        log, found = self.ctx.log, result.evidence
        log.secret, log.captured = found.secret, found.captured
        log.recovered, log.address = found.recovered, found.address

    def place(self, args: At) -> tuple[PhysAddr, Location]:
        """The physical address ``args`` names, and the location it is in."""
        return self.resolve(args.address, args.page, args.offset)

    def resolve(self, ref: str, page: int, offset: int) -> tuple[PhysAddr, Location]:
        """The physical address ``ref`` + ``page`` + ``offset``, and the location of ``ref``."""
        loc = self.location(ref)
        if page >= len(loc.addrs):
            raise AttackError(f"{ref} has no page {page}")
        return PhysAddr(loc.addrs[page] + offset), loc

    @staticmethod
    def within(loc: Location, page: int, pa: PhysAddr, size: int,
               data: bytes | None = None) -> Location:
        """The one address ``pa`` in page ``page`` of ``loc``, holding ``size`` bytes."""
        gpns = (loc.gpns[page],) if page < len(loc.gpns) else ()
        return Location((pa,), loc.domain, size, gpns, data)

    @staticmethod
    def length(args: Read, loc: Location) -> int:
        """Bytes ``args`` reads: its length, or what is known at the address."""
        if args.length is not None:
            return args.length
        known = PAGE_SIZE - loc.addrs[0] % PAGE_SIZE if len(loc.addrs) > 1 else loc.size
        return known - args.offset

    def note(self, action: str, address: int | None = None, detail: str = "") -> None:
        """Log the current step: its actor, ``action``, the capability it used."""
        if self.name:
            detail = f"{detail}; as {self.name}" if detail else f"as {self.name}"
        self.ctx.log.step(_ACTORS[self.who], action, self.capability, address, detail)
