"""Running a live patch: emulated CPUs fetch and execute the text while a patcher rewrites it.

The model, in scheduler steps (each step is atomic; the scheduler picks whose step is next):

- A CPU runs a fixed program: the patch sites, visited in order. It *fetches* an instruction
  ``fetch_chunk`` bytes per step until the decoder knows the length and holds all its bytes; the
  step that completes the fetch also executes the instruction. Because each chunk is read at its
  own step, one instruction's bytes may come from different moments of the patch: a torn fetch.
  (A real CPU fetches 16-byte blocks, but a fetch that straddles a block or cache line, or runs
  from stale prefetched bytes, sees the same thing.) After a site's instruction the model records
  where control went (next ip, pushed return address) and moves the CPU to its next site; it
  does not follow the branch.
- The patcher is a list of operations, one per step: writes of ``poke_chunk`` bytes, and syncs.
  A sync (``on_each_cpu(do_sync_core)``) takes two steps: the IPI, taken at once by every CPU at
  an instruction boundary, and the wait, which completes only when every CPU that was in the
  middle of a fetch at the IPI has finished that instruction (interrupts are taken between
  instructions; ``sync_core`` serialises instruction fetch). CPUs are never blocked.
- A CPU whose fetch yields INT3 traps to
  :func:`~testbed.platform.kernel_text.patching.poke_int3_handler`:
  at a site of the batch in progress the handler emulates that site's new instruction, otherwise
  the trap goes on to the normal INT3 path.

:class:`LivePatch` holds one such state and steps it; each instruction a CPU executes is recorded
as an :class:`Execution` and judged (:class:`ExecClass`). The patch sites and the patchers are in
:mod:`testbed.platform.kernel_text.patching`; the exploration of schedules is in
:mod:`testbed.platform.kernel_text.interleavings`.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from ...errors import ConfigError, DecodeError, InvalidPatch
from .patching import (
    POKE_MAX_OPCODE_SIZE,
    OpKind,
    Patcher,
    PatchOp,
    PokeSite,
    Regs,
    TextSegment,
    poke_int3_handler,
    text_poke_bp_ops,
    text_poke_ops,
)
from .x86 import MAX_INSN_LENGTH, Insn, InsnKind, decode, insn_length

__all__ = [
    "MAX_CPUS",
    "PATCHER",
    "ExecClass",
    "Execution",
    "LivePatch",
]

MAX_CPUS = 8
MAX_SITES = 64
PATCHER = 0
"""Thread id of the patcher; CPUs are 1..N."""


# -- what the CPUs executed -----------------------------------------------------------------
class ExecClass(enum.StrEnum):
    """What one executed instruction was, judged from its bytes and its effect."""

    OLD = "old"
    """The whole old instruction."""
    NEW = "new"
    """The whole new instruction."""
    EMULATED = "emulated"
    """The patcher's INT3, with the new instruction's effect emulated by the handler."""
    TORN = "torn"
    """Anything else: old and new bytes mixed, garbage, or a stray INT3."""


@dataclass(frozen=True)
class Execution:
    """One instruction a CPU executed at a patch site.

    Attributes:
        steps: the scheduler step of each fetch chunk.
        kind: what the bytes decoded to (``None``: invalid opcode, #UD).
        next_ip: where control went (``None`` after #UD or a trap to the normal INT3 path).
        pushed: the return address pushed, if any.
        emulated: the INT3 handler emulated the site's new instruction.
    """

    cpu: int
    site: int
    address: int
    fetched: bytes
    steps: tuple[int, ...]
    kind: InsnKind | None
    next_ip: int | None
    pushed: int | None
    emulated: bool
    category: ExecClass

    def describe(self) -> str:
        """What was executed, for a timeline."""
        if self.kind is None:
            what = "an invalid opcode (#UD)"
        elif self.emulated:
            what = f"int3, handler emulates the new instruction -> {self.next_ip:#x}"
        elif self.kind is InsnKind.INT3:
            what = "int3, not consumed: normal INT3 path"
        else:
            what = decode(self.fetched).text(self.address)
        return f"executes {self.fetched.hex(' ')}: {what} [{self.category.value}]"


@dataclass
class _Cpu:
    pc: int = 0
    fetched: bytes = b""
    steps: tuple[int, ...] = ()


def _first_insn(site: PokeSite) -> bytes:
    """The bytes of the new text's first instruction (all of it when it does not decode: text
    restored by a kprobe may be anything)."""
    try:
        return decode(site.text).raw
    except DecodeError:
        return site.text


@dataclass(frozen=True)
class _Setup:
    sites: tuple[PokeSite, ...]
    old: tuple[Insn, ...]
    new: tuple[bytes, ...]
    ops: tuple[PatchOp, ...]
    programs: tuple[tuple[int, ...], ...]
    fetch_chunk: int


class LivePatch:
    """One live patch: the text, the patcher's steps and N CPUs, at some point of a schedule.

    Args:
        text: the kernel text before the patch (copied).
        sites: the batch (:func:`poke_site`); each site must hold one decodable instruction
            and have 16 bytes of text from its address on (fetches read ahead).
        patcher: which patcher writes the batch.
        cpus: CPUs executing the sites (1..8); CPU ``k`` starts at site ``(k - 1) % sites``.
        visits: times each CPU executes each site.
        fetch_chunk: bytes a CPU reads per fetch step (1..8).
        poke_chunk: bytes the patcher writes per step (1..5).
        trace: keep one line of text per step (:attr:`events`).

    Raises:
        ConfigError: a count out of range, or a site too close to the end of the text.
        InvalidPatch: overlapping sites, or a site whose current text does not decode.
    """

    def __init__(
        self, text: TextSegment, sites: Sequence[PokeSite], *, patcher: Patcher | str,
        cpus: int, visits: int = 1, fetch_chunk: int = 1, poke_chunk: int = 1,
        trace: bool = False,
    ) -> None:
        _check_range("cpus", cpus, 1, MAX_CPUS)
        _check_range("sites", len(sites), 1, MAX_SITES)
        _check_range("visits", visits, 1, 1 << 10)
        _check_range("fetch_chunk", fetch_chunk, 1, MAX_INSN_LENGTH)
        _check_range("poke_chunk", poke_chunk, 1, POKE_MAX_OPCODE_SIZE)
        ordered = sorted(sites, key=lambda s: s.address)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.address < a.address + a.length:
                raise InvalidPatch(f"patches at {a.address:#x} and {b.address:#x} overlap")
        old = []
        for s in sites:
            try:
                old.append(decode(text.read(s.address, 2 * MAX_INSN_LENGTH)))
            except DecodeError as exc:
                raise InvalidPatch(f"site {s.address:#x} does not hold an instruction: "
                                   f"{exc}") from None
        ops = (text_poke_bp_ops if Patcher(patcher) is Patcher.TEXT_POKE_BP else text_poke_ops)(
            sites, poke_chunk)
        n = len(sites)
        programs = tuple(tuple((k + i) % n for i in range(n)) * visits for k in range(cpus))
        self._setup = _Setup(tuple(sites), tuple(old), tuple(map(_first_insn, sites)), ops,
                             programs, fetch_chunk)
        self.text = text.copy()
        self._op = 0
        self._vector: dict[int, PokeSite] = {}
        self._pending: frozenset[int] = frozenset()
        self._cpus = [_Cpu() for _ in range(cpus)]
        self.executions: list[Execution] = []
        self.schedule: list[int] = []
        self.events: list[str] | None = [] if trace else None

    # -- state --------------------------------------------------------------------------
    @property
    def cpus(self) -> int:
        """Number of CPUs."""
        return len(self._cpus)

    @property
    def sites(self) -> tuple[PokeSite, ...]:
        """The batch."""
        return self._setup.sites

    @property
    def ops(self) -> tuple[PatchOp, ...]:
        """The patcher's steps."""
        return self._setup.ops

    def old_insn(self, site: int) -> Insn:
        """The instruction at ``site`` before the patch."""
        return self._setup.old[site]

    def clone(self, trace: bool = False) -> LivePatch:
        """An independent copy of this state (with an empty trace when ``trace``)."""
        other = object.__new__(LivePatch)
        other._setup = self._setup
        other.text = self.text.copy()
        other._op = self._op
        other._vector = self._vector
        other._pending = self._pending
        other._cpus = [_Cpu(c.pc, c.fetched, c.steps) for c in self._cpus]
        other.executions = list(self.executions)
        other.schedule = list(self.schedule)
        other.events = [] if trace else None
        return other

    def key(self) -> Hashable:
        """What decides the future: patcher position, pending sync, each CPU's progress."""
        return (self._op, self._pending, tuple((c.pc, c.fetched) for c in self._cpus))

    @property
    def patcher_steps(self) -> int:
        """Steps the patcher has taken (its next one is ``ops[patcher_steps]``)."""
        return self._op

    def patcher_enabled(self) -> bool:
        """The patcher has a step left and is not waiting for a CPU to finish a fetch."""
        if self._op >= len(self._setup.ops):
            return False
        return self._setup.ops[self._op].kind is not OpKind.WAIT or not self._pending

    def cpu_enabled(self, cpu: int) -> bool:
        """CPU ``cpu`` (1..N) has an instruction left to execute."""
        return self._cpus[cpu - 1].pc < len(self._setup.programs[cpu - 1])

    def cpu_progress(self, cpu: int) -> tuple[int, int]:
        """How far CPU ``cpu`` (1..N) is: instructions executed, bytes of the next one fetched.
        Every step of that CPU makes it larger."""
        state = self._cpus[cpu - 1]
        return state.pc, len(state.fetched)

    def fetch_address(self, cpu: int) -> int:
        """Where the next fetch step of CPU ``cpu`` (1..N) reads its :attr:`fetch_chunk`
        bytes."""
        state, setup = self._cpus[cpu - 1], self._setup
        return setup.sites[setup.programs[cpu - 1][state.pc]].address + len(state.fetched)

    @property
    def fetch_chunk(self) -> int:
        """Bytes a CPU reads per fetch step."""
        return self._setup.fetch_chunk

    def sync_waits_for(self, cpu: int) -> bool:
        """Whether the sync in progress waits for CPU ``cpu`` to finish its instruction."""
        return cpu in self._pending

    def enabled(self) -> list[int]:
        """Threads that can take the next step (:data:`PATCHER` = 0, CPUs 1..N)."""
        out = [PATCHER] if self.patcher_enabled() else []
        return out + [k for k in range(1, len(self._cpus) + 1) if self.cpu_enabled(k)]

    @property
    def done(self) -> bool:
        """Patch written and every CPU through its program."""
        return not self.enabled()

    def max_steps(self) -> int:
        """Most steps one schedule can take."""
        per_insn = -(-MAX_INSN_LENGTH // self._setup.fetch_chunk)
        return len(self._setup.ops) + per_insn * sum(map(len, self._setup.programs))

    def torn(self) -> list[Execution]:
        """The torn executions so far."""
        return [e for e in self.executions if e.category is ExecClass.TORN]

    def schedule_text(self) -> str:
        """The schedule as one character per step: ``P`` the patcher, ``1``..``8`` a CPU."""
        return "".join("P" if t == PATCHER else str(t) for t in self.schedule)

    # -- steps --------------------------------------------------------------------------
    def step(self, thread: int) -> None:
        """Let ``thread`` take one step.

        Raises:
            ConfigError: the thread cannot step now.
        """
        if thread == PATCHER and self.patcher_enabled():
            self._patcher_step()
        elif 1 <= thread <= len(self._cpus) and self.cpu_enabled(thread):
            self._cpu_step(thread)
        else:
            raise ConfigError(f"thread {thread} cannot take a step now")
        self.schedule.append(thread)

    def _site_of(self, address: int) -> str:
        for i, s in enumerate(self._setup.sites):
            if s.address <= address < s.address + max(s.length, MAX_INSN_LENGTH):
                return f"site {i}+{address - s.address}"
        return f"{address:#x}"

    def _log(self, text: str) -> None:
        if self.events is not None:
            self.events.append(f"{len(self.schedule):3d} {text}")

    def _patcher_step(self) -> None:
        op = self._setup.ops[self._op]
        if op.publish:
            self._vector = {s.address: s for s in op.publish}
        if op.kind is OpKind.WRITE:
            self.text.write(op.address, op.data)
        elif op.kind is OpKind.IPI:
            self._pending = frozenset(k for k, c in enumerate(self._cpus, 1) if c.fetched)
        if op.retract:
            self._vector = {}
        self._op += 1
        if self.events is not None:
            busy = ", ".join(f"cpu{k}" for k in sorted(self._pending)) or "none"
            self._log(f"patcher writes {op.data.hex(' ')} at {self._site_of(op.address)}"
                      if op.kind is OpKind.WRITE else
                      f"patcher sends the sync IPI (mid-fetch, to finish first: {busy})"
                      if op.kind is OpKind.IPI else "patcher: sync complete")

    def _cpu_step(self, k: int) -> None:
        cpu, setup = self._cpus[k - 1], self._setup
        site = setup.programs[k - 1][cpu.pc]
        address = setup.sites[site].address + len(cpu.fetched)
        chunk = self.text.read(address, setup.fetch_chunk)
        fetched, steps = cpu.fetched + chunk, (*cpu.steps, len(self.schedule))
        insn: Insn | None = None
        try:
            length = insn_length(fetched)
            complete = length is not None and length <= len(fetched)
            if complete:
                insn = decode(fetched[:length])
        except DecodeError:
            complete = True  # an invalid opcode: the CPU stops here (#UD)
        executed = None
        if complete:
            raw = fetched if insn is None else insn.raw
            executed = self._execute(k, site, raw, steps, insn)
        else:
            cpu.fetched, cpu.steps = fetched, steps
        if self.events is not None:
            text = f"cpu{k} fetches {chunk.hex(' ')} at {self._site_of(address)}"
            self._log(text if executed is None else f"{text}; {executed.describe()}")

    def _execute(self, k: int, site: int, raw: bytes, steps: tuple[int, ...],
                 insn: Insn | None) -> Execution:
        """Execute ``insn`` (``None``: the bytes are an invalid opcode) and record it."""
        address = self._setup.sites[site].address
        next_ip: int | None = None
        pushed: int | None = None
        emulated = False
        if insn is not None and insn.kind is InsnKind.INT3:
            regs = Regs(address + 1)
            emulated = poke_int3_handler(self._vector, regs)
            next_ip = regs.ip if emulated else None
            pushed = regs.stack[-1] if regs.stack else None
        elif insn is not None:
            target = insn.target(address)
            next_ip = address + insn.length if target is None else target
            pushed = address + insn.length if insn.kind is InsnKind.CALL else None
        execution = Execution(k, site, address, raw, steps, None if insn is None else insn.kind,
                              next_ip, pushed, emulated,
                              self._judge(site, raw, emulated, next_ip, pushed))
        self.executions.append(execution)
        cpu = self._cpus[k - 1]
        cpu.pc, cpu.fetched, cpu.steps = cpu.pc + 1, b"", ()
        self._pending -= {k}
        return execution

    def _judge(self, site: int, raw: bytes, emulated: bool, next_ip: int | None,
               pushed: int | None) -> ExecClass:
        setup = self._setup
        if raw == setup.old[site].raw:
            return ExecClass.OLD
        if raw == setup.new[site]:
            return ExecClass.NEW
        poke = setup.sites[site]
        want = poke.emulate.target(poke.address)
        want_push = poke.address + poke.length if poke.emulate.kind is InsnKind.CALL else None
        if emulated and (next_ip, pushed) == (want, want_push):
            return ExecClass.EMULATED
        return ExecClass.TORN

    def replay(self, schedule: Sequence[int], trace: bool = True) -> LivePatch:
        """Run ``schedule`` from this state on a copy (with a trace, by default)."""
        run = self.clone(trace=trace)
        for thread in schedule:
            run.step(thread)
        return run


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be {low}..{high}, got {value}")
