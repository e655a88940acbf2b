"""Exploring the interleavings of a live patch: which schedules of CPU and patcher steps tear.

:func:`explore_random` samples schedules with a seeded generator. :func:`explore_all` runs the
whole space, in one of two ways:

- *reduced* (the default): one schedule per equivalence class of schedules, found by dynamic
  partial-order reduction (below);
- *naive* (``reduction=False``): every interleaving, counting as one those that differ only in
  the order of consecutive steps of different CPUs. The reduced explorer is checked against it.

:func:`count_interleavings` tells how many schedules either one runs, without running them. The
states explored are :class:`~testbed.platform.kernel_text.livepatch.LivePatch` objects.

Which steps commute. Two steps of different threads *conflict* when one writes something the
other reads or writes:

- a CPU's fetch step and a patcher write that stores a byte the fetch reads;
- the sync IPI (it notes which CPUs are mid-fetch) and a CPU step that starts or ends a fetch;
- the sync wait and the step that ends an instruction it waits for (that step enables it);
- the patcher step that publishes or retracts the INT3 handler's batch and a CPU step that
  executes an INT3 (the handler looks the batch up).

Everything else commutes: two CPUs never conflict (they read the text and change only their own
state), and a write never conflicts with a fetch of other bytes. Which bytes a step reads and
whether it ends an instruction are taken from the step as it ran. Two schedules are equivalent
when one becomes the other by swapping adjacent steps that do not conflict (a Mazurkiewicz
trace): every step reads the same bytes in both, so every CPU executes the same instructions,
judged the same way. A class either tears in every schedule or in none, and with the same torn
instructions. So the reduced explorer finds a tear exactly when the naive one does, and the same
set of distinct torn instructions (site and bytes executed).

The reduced explorer is source-set DPOR with sleep sets: Algorithm 1 of P. Abdulla, S. Aronis,
B. Jonsson and K. Sagonas, "Optimal dynamic partial order reduction" (POPL 2014), which refines
the dynamic partial-order reduction of C. Flanagan and P. Godefroid (POPL 2005). It runs one
schedule depth first. Each step it adds is compared with the steps before it (vector clocks
give their happens-before order): a *race* is an earlier step of another thread that conflicts
with the new one and is ordered before it by nothing else. For each race that could go the other
way, the state before the earlier step gets, unless it has one already, a thread that can start
the reversed order: a thread that begins the steps after it which do not depend on it, followed
by the new step. The threads chosen at a state so form a source set, often smaller than the
persistent set that Flanagan and Godefroid compute. A sleep set (P. Godefroid, 1996) at each
state holds the threads whose next step was already tried from an earlier sibling and commutes
with every step since: their schedules have been run. Sleep sets keep the explorer from finishing
two equivalent schedules; source sets make it finish at least one of every class. So it finishes
exactly one schedule per class; those it abandons half way (every enabled thread asleep) are
redundant and not counted.

Counting classes (:func:`count_interleavings` with ``reduction``). CPUs interact only through the
patcher, so a class is one class of schedules of each CPU alone with the patcher, and their
number is a product over the CPUs. For one CPU, every class has one schedule in which no patcher
step is directly followed by a CPU step it commutes with (the lexicographically least one, CPU
first); those schedules are counted forward, state by state, after each patcher step. A class of
a schedule cut after a CPU's instruction extends to a class of the whole, so the counts at those
cuts bound the total from below and a space far over the limit is refused after a few patcher
steps.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ...errors import ConfigError, TooManyInterleavings
from .livepatch import MAX_CPUS, PATCHER, ExecClass, Execution, LivePatch
from .patching import OpKind, PatchOp
from .x86 import InsnKind

__all__ = [
    "MAX_INTERLEAVINGS",
    "Exploration",
    "count_interleavings",
    "explore_all",
    "explore_random",
]

MAX_INTERLEAVINGS = 100_000
"""Hard cap on the schedules one exploration runs (exhaustive and reduced: the classes)."""


# -- exploring interleavings ----------------------------------------------------------------
@dataclass(frozen=True)
class Exploration:
    """What the CPUs executed over all the schedules explored.

    Under reduction each schedule stands for its equivalence class: the counts are over the
    classes, one schedule each, not over every interleaving.

    Attributes:
        exhaustive: the whole space was run (else: a seeded sample).
        interleavings: schedules run to completion (reduced: the classes).
        torn_interleavings: those in which at least one execution was torn.
        counts: executions of each category, summed over those schedules.
        first_torn: the finished run of the first schedule that tore.
        first_emulated: the first execution the INT3 handler emulated.
        reduced: one schedule per equivalence class was run (:func:`explore_all`).
        torn_instructions: the distinct torn instructions, as (site, bytes executed).
    """

    exhaustive: bool
    interleavings: int
    torn_interleavings: int
    counts: Mapping[ExecClass, int]
    first_torn: LivePatch | None
    first_emulated: Execution | None
    reduced: bool = False
    torn_instructions: frozenset[tuple[int, bytes]] = frozenset()


class _Tally:
    def __init__(self) -> None:
        self.runs = self.torn_runs = 0
        self.counts = dict.fromkeys(ExecClass, 0)
        self.first_torn: LivePatch | None = None
        self.first_emulated: Execution | None = None
        self.torn: set[tuple[int, bytes]] = set()

    def add(self, run: LivePatch) -> None:
        self.runs += 1
        for e in run.executions:
            self.counts[e.category] += 1
            if e.emulated and self.first_emulated is None:
                self.first_emulated = e
        torn = run.torn()
        if torn:
            self.torn_runs += 1
            self.torn.update((e.site, e.fetched) for e in torn)
            if self.first_torn is None:
                self.first_torn = run

    def result(self, exhaustive: bool, reduced: bool = False) -> Exploration:
        return Exploration(exhaustive, self.runs, self.torn_runs, self.counts, self.first_torn,
                           self.first_emulated, reduced, frozenset(self.torn))


def _too_many(start: LivePatch, limit: int, what: str = "interleavings") -> TooManyInterleavings:
    return TooManyInterleavings(
        f"exhaustive exploration: more than {limit} {what} for {start.cpus} CPUs "
        f"and {len(start.sites)} site(s); use fewer CPUs, sites or visits, larger fetch "
        f"or poke chunks, or sample at random")


def _product(values: Iterable[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


# -- the naive explorer ---------------------------------------------------------------------
def _choices(run: LivePatch, last_cpu: int) -> list[int]:
    """Canonical next threads: consecutive CPU steps go in non-decreasing CPU order."""
    out = [PATCHER] if run.patcher_enabled() else []
    return out + [k for k in range(max(last_cpu, 1), run.cpus + 1) if run.cpu_enabled(k)]


@dataclass(frozen=True)
class _Layer:
    """One CPU's schedules with the patcher, cut after the patcher's ``j``-th step and any
    number of that CPU's steps: how many such prefixes there are, how many end with the CPU
    through its program, and how many with no sync waiting for it."""

    prefixes: int
    finished: int
    unawaited: int


def _cpu_layers(start: LivePatch, cpu: int, limit: int) -> list[_Layer]:
    """The schedules of ``cpu`` alone with the patcher, counted after each patcher step.

    A CPU's steps read the text and change only its own state, so where it is after the
    patcher's ``j``-th step and its own next steps depends on nothing else. Counted forward,
    layer by layer (patcher steps taken), each layer in the order of the CPU's progress.

    Raises:
        TooManyInterleavings: a count above ``limit``: every prefix of one CPU's schedule
            extends to at least one whole interleaving, so the whole count is larger still.
    """
    layers: list[_Layer] = []
    entries: dict[Hashable, tuple[LivePatch, int]] = {start.key(): (start, 1)}
    for _taken in range(len(start.ops) + 1):
        runs = {key: run for key, (run, _n) in entries.items()}
        counts = {key: n for key, (_run, n) in entries.items()}
        queue = [(run.cpu_progress(cpu), i, key) for i, (key, run) in enumerate(runs.items())]
        heapq.heapify(queue)
        while queue:
            key = heapq.heappop(queue)[2]
            run = runs[key]
            if not run.cpu_enabled(cpu):
                continue
            child = run.clone()
            child.step(cpu)
            ckey = child.key()
            if ckey not in runs:
                runs[ckey], counts[ckey] = child, 0
                heapq.heappush(queue, (child.cpu_progress(cpu), len(runs), ckey))
            counts[ckey] += counts[key]
        layer = _Layer(
            prefixes=sum(counts.values()),
            finished=sum(n for key, n in counts.items() if not runs[key].cpu_enabled(cpu)),
            unawaited=sum(n for key, n in counts.items() if not runs[key].sync_waits_for(cpu)))
        if layer.prefixes > limit:
            raise _too_many(start, limit)
        layers.append(layer)
        entries = {}
        for key, run in runs.items():
            if run.patcher_enabled():
                child = run.clone()
                child.step(PATCHER)
                entries[child.key()] = (child, counts[key])
    return layers


def _count_naive(start: LivePatch, limit: int) -> int:
    """How many interleavings the naive explorer runs (see :func:`count_interleavings`)."""
    ops, n = start.ops, len(start.sites)
    tables: dict[int, list[_Layer]] = {}
    per_cpu: list[list[_Layer]] = []
    for cpu in range(1, start.cpus + 1):
        program = (cpu - 1) % n  # CPUs with the same program have the same counts
        if program not in tables:
            tables[program] = _cpu_layers(start, cpu, limit)
        per_cpu.append(tables[program])
    total = _product(t[-1].finished for t in per_cpu)
    if total > limit:
        raise _too_many(start, limit)
    done = len(ops)
    for j in range(done + 1):
        if j < done and ops[j].kind is not OpKind.WAIT:
            continue  # the patcher can step: no schedule stops here
        # A lower CPU stops the schedule when it is not through (the patch is), or when the
        # sync waits for it.
        free = [t[j].finished if j == done else t[j].unawaited for t in per_cpu]
        for k in range(1, start.cpus):  # the last step is cpu k + 1's
            last = per_cpu[k]
            ends = last[j].finished - (last[j - 1].finished if j else 0)
            through = _product(t[j - 1].finished if j else 0 for t in per_cpu[k + 1:])
            stuck = _product(t[j].prefixes for t in per_cpu[:k]) - _product(free[:k])
            total += ends * through * stuck
            if total > limit:
                raise _too_many(start, limit)
    return total


def _explore_naive(start: LivePatch, tally: _Tally) -> None:
    stack = [(start.clone(), 0)]
    while stack:
        run, last = stack.pop()
        threads = _choices(run, last)
        if not threads:
            tally.add(run)
            continue
        for thread in reversed(threads):
            child = run.clone() if thread != threads[0] else run
            child.step(thread)
            stack.append((child, 0 if thread == PATCHER else thread))


# -- what a step reads and writes -----------------------------------------------------------
_VECTOR = 1
"""The batch the INT3 handler knows."""
_BYTES = 2 * MAX_CPUS + 1
"""Bit of the first text byte: bits 1..16 are each CPU's fetch state and its pending sync."""


def _status(cpu: int) -> int:
    """Whether ``cpu`` is in the middle of a fetch (what the IPI looks at)."""
    return 1 << (2 * cpu - 1)


def _pending(cpu: int) -> int:
    """Whether the sync in progress waits for ``cpu``."""
    return 1 << (2 * cpu)


class _Access(NamedTuple):
    """What one step read and wrote, as bit sets (:data:`_VECTOR`, :func:`_status`,
    :func:`_pending`, then one bit per text byte)."""

    thread: int
    reads: int
    writes: int


def _conflict(a: _Access, b: _Access) -> bool:
    """Whether two steps do not commute: one thread, or one writes what the other touches."""
    return (a.thread == b.thread or bool(a.writes & (b.reads | b.writes))
            or bool(b.writes & a.reads))


class _Model:
    """The accesses of ``start``'s steps: the patcher's are fixed by its operations, a CPU's
    are read off the step as it runs (which bytes, whether it starts or ends an instruction,
    whether that was an INT3)."""

    def __init__(self, start: LivePatch) -> None:
        self.base = min(s.address for s in start.sites)
        self.fetch_chunk = start.fetch_chunk
        cpus = range(1, start.cpus + 1)
        self.statuses = sum(_status(k) for k in cpus)
        self.pendings = sum(_pending(k) for k in cpus)
        self.ops = tuple(self._op(op) for op in start.ops)

    def text(self, address: int, length: int) -> int:
        return ((1 << length) - 1) << (_BYTES + address - self.base)

    def _op(self, op: PatchOp) -> _Access:
        vector = _VECTOR if op.publish or op.retract else 0
        if op.kind is OpKind.WRITE:
            return _Access(PATCHER, 0, self.text(op.address, len(op.data)) | vector)
        if op.kind is OpKind.IPI:
            return _Access(PATCHER, self.statuses, self.pendings | vector)
        return _Access(PATCHER, self.pendings, vector)

    def step(self, run: LivePatch, thread: int) -> _Access:
        """Let ``thread`` take its step in ``run``; what that step accessed."""
        if thread == PATCHER:
            access = self.ops[run.patcher_steps]
            run.step(PATCHER)
            return access
        reads = self.text(run.fetch_address(thread), self.fetch_chunk)
        fetching, awaited = run.cpu_progress(thread)[1] > 0, run.sync_waits_for(thread)
        executed = len(run.executions)
        run.step(thread)
        ends = len(run.executions) > executed
        writes = _status(thread) if fetching == ends else 0  # starts or ends a fetch
        if ends:
            writes |= _pending(thread) if awaited else 0
            reads |= _VECTOR if run.executions[-1].kind is InsnKind.INT3 else 0
        return _Access(thread, reads, writes)

    def reversible(self, first: _Access, then: _Access) -> bool:
        """Whether ``then`` could have run before ``first``: not when ``first`` ended the
        instruction a sync wait was waiting for."""
        return not first.writes & then.reads & self.pendings


# -- the reduced explorer -------------------------------------------------------------------
class _Event(NamedTuple):
    """A step of the schedule being run: its access, its position among its thread's steps
    (from 1), and its vector clock (per thread, how many of its steps happen before it)."""

    access: _Access
    nth: int
    clock: tuple[int, ...]


@dataclass
class _Node:
    """A state of the schedule being run, with the threads to try from it."""

    run: LivePatch
    enabled: list[int]
    sleep: dict[int, _Access]
    backtrack: set[int] = field(default_factory=set)
    started: bool = False
    taken: _Access | None = None


class _Reduced:
    """Source-set DPOR with sleep sets from ``start`` (see the module docstring)."""

    def __init__(self, start: LivePatch, tally: _Tally) -> None:
        self.model = _Model(start)
        self.tally = tally
        self.nodes = [_Node(start.clone(), start.enabled(), {})]
        self.trace: list[_Event] = []
        self.at: list[list[int]] = [[] for _ in range(start.cpus + 1)]
        """Where each thread's steps are in the trace."""

    def run(self) -> None:
        nodes = self.nodes
        while nodes:
            node = nodes[-1]
            if node.taken is not None:  # back from a child: its thread sleeps from now on
                node.sleep[node.taken.thread] = node.taken
                node.taken = None
            elif not node.started:
                node.started = True
                awake = [t for t in node.enabled if t not in node.sleep]
                if not node.enabled:
                    self.tally.add(node.run)
                if awake:
                    node.backtrack.add(awake[0])
            todo = [t for t in node.enabled if t in node.backtrack and t not in node.sleep]
            if not todo:
                nodes.pop()
                if self.trace:
                    self.at[self.trace.pop().access.thread].pop()
                continue
            run = node.run.clone()
            access = self.model.step(run, todo[0])
            self.trace.append(self._event(access))
            self.at[access.thread].append(len(self.trace) - 1)
            node.taken = access
            sleep = {q: a for q, a in node.sleep.items() if not _conflict(a, access)}
            nodes.append(_Node(run, run.enabled(), sleep))

    def _event(self, access: _Access) -> _Event:
        """The step ``access`` appended to the schedule, after the races it completes have
        been noted at the states before their first steps."""
        trace, at, p = self.trace, self.at, access.thread
        touches = access.reads | access.writes
        # The steps it depends on directly: the thread's last one, and the conflicting steps
        # of the threads it may conflict with (the patcher for a CPU, every CPU for the
        # patcher) that do not already happen before that last one.
        last = trace[at[p][-1]] if at[p] else None
        direct: list[tuple[int, _Event]] = []
        for t in (PATCHER,) if p else range(1, len(at)):
            for i in at[t][last.clock[t] if last else 0:]:
                e = trace[i]
                if e.access.writes & touches or access.writes & e.access.reads:
                    direct.append((i, e))
        clock = list(last.clock) if last else [0] * len(at)
        for _i, e in direct:
            clock = [max(c, d) for c, d in zip(clock, e.clock, strict=True)]
        clock[p] = len(at[p]) + 1
        event = _Event(access, clock[p], tuple(clock))
        for i, e in direct:
            t, k = e.access.thread, e.nth
            # A race: no other step it depends on comes after step i (the thread's last one
            # does not: the steps before it were left out above).
            if (all(d is e or d.clock[t] < k for _j, d in direct)
                    and self.model.reversible(e.access, access)):
                self._reverse(i, event)
        return event

    def _reverse(self, i: int, event: _Event) -> None:
        """Make the state before step ``i`` try a thread that starts the schedule in which
        ``event`` comes first: the steps after ``i`` that do not depend on it, then ``event``.
        """
        e = self.trace[i]
        t, k = e.access.thread, e.nth
        firsts: dict[int, int] = {}  # thread -> index of its first step in that schedule
        initials = set()
        for f in (*self.trace[i + 1:], event):
            if f.clock[t] >= k and f is not event:
                continue  # depends on step i
            q = f.access.thread
            if q not in firsts:
                if all(f.clock[u] < first for u, first in firsts.items()):
                    initials.add(q)
                firsts[q] = f.nth
        node = self.nodes[i]
        if not initials & node.backtrack:
            ready = [q for q in node.enabled if q in initials]
            node.backtrack.update(ready[:1] or node.enabled)


# -- counting the classes -------------------------------------------------------------------
class _ClassCount:
    """The classes of ``cpu``'s schedules with the patcher alone: the schedules in which no
    patcher step is directly followed by a step of the CPU that commutes with it, one per
    class, counted forward state by state.

    States are taken in the order of the sum of the CPU's progress and the patcher's: every
    step advances one of them, so a state's count is complete when it is taken. A state at the
    end of an instruction of the CPU is reached by the classes of the schedule cut there, each
    of which extends to a class of the whole, so its count bounds the total from below; in
    that order the bound grows from the first steps of both, whatever their length.

    Attributes:
        bound: the lower bound so far.
        total: the classes, once :attr:`done`.
    """

    def __init__(self, start: LivePatch, cpu: int, model: _Model) -> None:
        self.cpu, self.model = cpu, model
        self.bound = 1
        self.total = 0
        # Schedules reaching each state: [ending with a CPU step or empty, with a patcher step].
        self.states: dict[Hashable, tuple[LivePatch, list[int]]] = {
            start.key(): (start.clone(), [1, 0])}
        self.queue = [(self._rank(start), 0, 0, start.key())]
        self.pushed = 1

    @property
    def done(self) -> bool:
        """Every state counted."""
        return not self.queue

    def _rank(self, run: LivePatch) -> int:
        """Steps of the patcher, plus 16 per instruction of the CPU and one per byte fetched
        (fewer than 16: the longest instruction and a fetch chunk)."""
        pc, fetched = run.cpu_progress(self.cpu)
        return run.patcher_steps + 16 * pc + fetched

    def _reach(self, run: LivePatch, patcher: bool, n: int) -> None:
        key = run.key()
        if key not in self.states:
            self.states[key] = (run, [0, 0])
            heapq.heappush(self.queue, (self._rank(run), run.patcher_steps, self.pushed, key))
            self.pushed += 1
        self.states[key][1][patcher] += n

    def advance(self, states: int) -> None:
        """Take up to ``states`` more states."""
        cpu, model, queue = self.cpu, self.model, self.queue
        for _ in range(states):
            if not queue:
                return
            _rank, j, _order, key = heapq.heappop(queue)
            run, (after_cpu, after_patcher) = self.states.pop(key)
            n = after_cpu + after_patcher
            if run.cpu_progress(cpu)[1] == 0:
                self.bound = max(self.bound, n)
            cpu_next, patcher_next = run.cpu_enabled(cpu), run.patcher_enabled()
            if not (cpu_next or patcher_next):
                self.total += n  # both through
            if cpu_next:
                child = run.clone()
                access = model.step(child, cpu)
                if not (after_patcher and _conflict(model.ops[j - 1], access)):
                    after_patcher = 0  # would follow a patcher step it commutes with
                if after_cpu + after_patcher:
                    self._reach(child, False, after_cpu + after_patcher)
            if patcher_next:
                run.step(PATCHER)
                self._reach(run, True, n)


_BATCH = 64
"""States each CPU's class count takes between two looks at the bound."""


def _count_classes(start: LivePatch, limit: int) -> int:
    """How many classes the reduced explorer runs (see :func:`count_interleavings`)."""
    model, n = _Model(start), len(start.sites)
    counters: dict[int, _ClassCount] = {}
    per_cpu: list[_ClassCount] = []
    for cpu in range(1, start.cpus + 1):
        program = (cpu - 1) % n  # CPUs with the same program have the same counts
        if program not in counters:
            counters[program] = _ClassCount(start, cpu, model)
        per_cpu.append(counters[program])
    what = "classes of interleavings"
    while not all(c.done for c in counters.values()):
        for counter in counters.values():
            counter.advance(_BATCH)
        if _product(c.bound for c in per_cpu) > limit:
            raise _too_many(start, limit, what)
    total = _product(c.total for c in per_cpu)
    if total > limit:
        raise _too_many(start, limit, what)
    return total


# -- the entry points -----------------------------------------------------------------------
def count_interleavings(start: LivePatch, limit: int = MAX_INTERLEAVINGS, *,
                        reduction: bool = True) -> int:
    """Exactly how many schedules :func:`explore_all` would run from ``start`` (with the same
    ``reduction``), counted without running them.

    Reduced, the classes of interleavings (module docstring). Naive, the interleavings: CPUs
    interact only through the patcher: each CPU's steps depend on the patcher's progress and its
    own state, and a sync waits for the CPUs that were mid-fetch. So a schedule is one path of
    each CPU among the patcher's steps (:func:`_cpu_layers`) and their number is a product, as
    for a multinomial coefficient. The naive explorer also runs the schedules that stop early:
    a CPU step after which the order it keeps (consecutive CPU steps by increasing CPU) allows
    no step, because the higher CPUs are through and the patcher is through or waits for a lower
    CPU. Those are counted from the same tables. Either count stops as soon as it passes
    ``limit``, so a case far too large is refused after a few patcher steps.

    Raises:
        TooManyInterleavings: more than ``limit``.
    """
    return _count_classes(start, limit) if reduction else _count_naive(start, limit)


def explore_all(start: LivePatch, limit: int = MAX_INTERLEAVINGS, *,
                reduction: bool = True) -> Exploration:
    """Run every schedule from ``start`` that matters: one per equivalence class (with
    ``reduction``), or every interleaving (see the module docstring for both).

    Raises:
        TooManyInterleavings: the case has more than ``limit`` classes (or interleavings),
            checked before running any.
    """
    count_interleavings(start, limit, reduction=reduction)
    tally = _Tally()
    if reduction:
        _Reduced(start, tally).run()
    else:
        _explore_naive(start, tally)
    return tally.result(exhaustive=True, reduced=reduction)


def explore_random(start: LivePatch, count: int, rng: np.random.Generator) -> Exploration:
    """Run ``count`` schedules from ``start``, each step's thread drawn uniformly from ``rng``.

    Raises:
        ConfigError: ``count`` outside 1..:data:`MAX_INTERLEAVINGS`.
    """
    if not 1 <= count <= MAX_INTERLEAVINGS:
        raise ConfigError(f"interleavings: must be 1..{MAX_INTERLEAVINGS}, got {count}")
    tally = _Tally()
    steps = start.max_steps()
    for _ in range(count):
        run = start.clone()
        draws = rng.random(steps)
        for u in draws:
            threads = run.enabled()
            if not threads:
                break
            run.step(threads[int(u * len(threads))])
        tally.add(run)
    return tally.result(exhaustive=False)
