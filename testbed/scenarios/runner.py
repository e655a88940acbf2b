"""Runs every scenario under every engine profile, and its control, in parallel, reproducibly.

Each (scenario, engine) job gets its own random streams derived from the run seed, the scenario
id, the engine name and the trial, so results do not depend on job order or on the number of
workers. Every job is judged against a control (:func:`control_of`): the same scenario and
seed under the attack's control engine with no defence; a job that is its own control runs
once.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import registry
from ..attacks import Attack, AttackContext, AttackLog, Phase, Verdict
from ..errors import ConfigError, PlatformFailure, PlatformRefusal, UnsupportedMitigation
from ..platform import Engine, KeySource, Machine
from ..results import Control, Evidence, ResultRow
from ..results.verdicts import attribute, combine
from ..types import Outcome
from .model import Scenario

__all__ = [
    "Job",
    "control_of",
    "error_row",
    "judged",
    "plan",
    "run_job",
    "run_jobs",
    "run_trials",
    "signature",
    "units",
    "worker_init",
]

_log = logging.getLogger("testbed")

PARENT_POLL_S = 0.2
"""How often a worker checks that the process that started it is still there."""


@dataclass(frozen=True)
class Job:
    """One scenario under one engine.

    The attack and the engine class are looked up when the job is made and travel with it,
    so a worker process runs what the parent registered, however the worker was started
    (an attack a script added with ``registry.attacks.add`` included).
    """

    scenario: Scenario
    source: str
    engine: str
    seed: int
    attack: Attack[Any] | None = field(default=None, compare=False, repr=False)
    engine_class: type[Engine] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attack is None:
            object.__setattr__(self, "attack", self.scenario.attack_object())
        if self.engine_class is None and self.engine in registry.engines:
            object.__setattr__(self, "engine_class", registry.engines.get(self.engine))

    @property
    def profile(self) -> str:
        return self.scenario.profile_name(self.engine)


def plan(
    scenarios: Sequence[tuple[Scenario, str]], seed: int, profiles: Sequence[str] | None = None
) -> list[Job]:
    """The jobs of a run, in report order. ``profiles`` filters by engine or profile name."""
    wanted = set(profiles) if profiles else None
    jobs = []
    for scenario, source in scenarios:
        for engine in registry.engines.names():
            if engine not in scenario.engines:
                continue
            if wanted and engine not in wanted and scenario.profile_name(engine) not in wanted:
                continue
            jobs.append(Job(scenario, source, engine, seed))
    return jobs


def _streams(job: Job, trial: int = 0) -> tuple[np.random.Generator, np.random.Generator]:
    label = f"{job.seed}\0{job.scenario.id}\0{job.engine}"
    if trial:  # trial 0 keeps the streams of a single run
        label += f"\0trial {trial}"
    digest = hashlib.sha256(label.encode()).digest()
    keys, attack = np.random.SeedSequence(int.from_bytes(digest[:16], "little")).spawn(2)
    return np.random.default_rng(keys), np.random.default_rng(attack)


def _machine_factory(job: Job, key_rng: np.random.Generator) -> Callable[[], Machine]:
    s = job.scenario
    mitigations = s.machine_mitigations()

    options = s.platform.engine_options()

    def build() -> Machine:
        if job.engine_class is None:
            raise ConfigError(f"unknown engine {job.engine!r}")
        engine = job.engine_class.build(KeySource(key_rng), options)
        return Machine(engine, s.platform.memory_pages, mitigations,
                       secretmem_reserve_pages=s.platform.secretmem_reserve_pages,
                       secretmem_before_pmd_pool=s.platform.secretmem_before_pmd_pool)

    return build


def _run_trial(job: Job, trial: int) -> tuple[Verdict, AttackLog | None]:
    """One run of the attack, judged by the attack itself (before any rule of
    :mod:`testbed.results.verdicts`). Never raises."""
    s = job.scenario
    key_rng, attack_rng = _streams(job, trial)
    build = _machine_factory(job, key_rng)
    ctx: AttackContext | None = None
    try:
        attack = job.attack
        if attack is None:
            raise ConfigError(f"unknown attack {s.attack!r}")
        machine = build()
        params = s.params
        why_not = attack.precondition(machine, params)
        if why_not is not None:
            verdict = Verdict(Outcome.NOT_APPLICABLE, why_not)
        else:
            ctx = AttackContext(machine, attack_rng, build)
            verdict = attack.run(ctx, params)
    except UnsupportedMitigation as exc:
        verdict = Verdict(Outcome.NOT_APPLICABLE, str(exc))
    except PlatformFailure as exc:  # not a check of the platform: never a block
        verdict = Verdict(Outcome.ERROR, f"the platform failed: {exc}")
    except PlatformRefusal as exc:
        phase = ctx.log.phase if ctx is not None else Phase.SETUP
        if ctx is not None and ctx.log.victim_refusal is exc:
            verdict = Verdict(Outcome.ERROR, f"the platform refused the victim a step: {exc}")
        elif phase is Phase.ATTACK:
            verdict = Verdict(Outcome.BLOCKED, f"the platform refused a step: {exc}")
        else:
            verdict = Verdict(Outcome.ERROR, f"setting up the victim failed: {exc}")
    except Exception as exc:  # one failing scenario must not stop the run
        _log.warning("%s under %s failed: %s", s.id, job.profile, exc)
        verdict = Verdict(Outcome.ERROR, f"{type(exc).__name__}: {exc}")
    log = ctx.log if ctx is not None else None
    attack = job.attack
    if (log is not None and log.metrics is not None and attack is not None
            and not isinstance(log.metrics, attack.Metrics)):
        # A contract broken by the attack: an error row, never a report that cannot be written.
        verdict = Verdict(Outcome.ERROR, f"the attack recorded metrics of type "
                          f"{type(log.metrics).__name__}, not its {attack.Metrics.__name__}")
        log.metrics = None
    return verdict, log


def run_trials(job: Job) -> ResultRow:
    """Run ``job``'s trials and combine them (rules 1 and 2 of
    :mod:`testbed.results.verdicts`), without a control. Never raises."""
    s = job.scenario
    verdicts: list[Verdict] = []
    first: AttackLog | None = None
    for trial in range(s.trials):
        verdict, log = _run_trial(job, trial)
        verdicts.append(verdict)
        if trial == 0:
            first = log
        if verdict.outcome in (Outcome.ERROR, Outcome.NOT_APPLICABLE):
            break  # the same would happen again, or the run is broken
    verdict, stats = combine(verdicts)
    return ResultRow(
        scenario=s.id,
        title=s.title,
        attack=s.attack,
        profile=job.profile,
        engine=job.engine,
        mitigations=s.mitigation_names(),
        outcome=verdict.outcome,
        expected=s.expect.get(job.engine),
        reason=verdict.reason,
        chance_log2=verdict.chance_log2,
        metrics=first.metrics if first else None,
        evidence=first.evidence() if first else Evidence(),
        steps=tuple(first.steps) if first else (),
        trials=stats,
    )


def control_of(job: Job) -> Job | None:
    """The control of ``job``: the same scenario and seed under the attack's control engine,
    with no mitigations and no ciphertext hiding (``None``: the attack or the engine is not
    registered, so nothing can be run)."""
    attack = job.attack
    if attack is None or attack.control_engine not in registry.engines:
        return None
    return Job(job.scenario.bare(), job.source, attack.control_engine, job.seed, attack=attack)


def signature(job: Job) -> tuple[str, int, str, object]:
    """What makes a run: two jobs with the same signature give the same row (the attack
    included, by :meth:`~testbed.attacks.Attack.run_key`: a job may carry its own, not the
    registry's)."""
    key = job.attack.run_key() if job.attack is not None else None
    return job.engine, job.seed, repr(job.scenario), key


def _same_run(a: Job, b: Job) -> bool:
    """Whether two jobs are one run (a job that is its own control)."""
    return signature(a) == signature(b)


def judged(row: ResultRow, control: ResultRow | None) -> ResultRow:
    """``row`` weighed against its control (rule 3 of :mod:`testbed.results.verdicts`)."""
    if control is None:
        return row
    own = Verdict(row.outcome, row.reason, row.chance_log2)
    reference = Verdict(control.outcome, control.reason, control.chance_log2)
    verdict = attribute(own, reference, control.profile)
    return replace(row, outcome=verdict.outcome, reason=verdict.reason,
                   chance_log2=verdict.chance_log2,
                   control=Control(control.profile, control.outcome, control.reason,
                                   control.chance_log2, control.trials))


def run_job(job: Job) -> ResultRow:
    """Run one job and its control, and judge it. Never raises: failures become ``error``
    rows."""
    row = run_trials(job)
    control = control_of(job)
    if control is None:
        return judged(row, None)
    return judged(row, row if _same_run(job, control) else run_trials(control))


def error_row(job: Job, message: str) -> ResultRow:
    """The row of a job that did not run (a worker that died, a run that did not finish)."""
    s = job.scenario
    return ResultRow(s.id, s.title, s.attack, job.profile, job.engine, s.mitigation_names(),
                     Outcome.ERROR, s.expect.get(job.engine),
                     message)


def units(jobs: Sequence[Job]) -> tuple[list[Job], list[int | None]]:
    """The runs ``jobs`` need: the jobs themselves, then each control that is not already one
    of them (one per scenario and control engine). The second list gives, for each job, the
    index of its control's run (``None``: no control)."""
    runs = list(jobs)
    index: dict[tuple[str, int, str, object], int] = {}
    for i, job in enumerate(jobs):
        index.setdefault(signature(job), i)
    where: list[int | None] = []
    for job in jobs:
        control = control_of(job)
        if control is None:
            where.append(None)
            continue
        key = signature(control)
        if key not in index:
            runs.append(control)
            index[key] = len(runs) - 1
        where.append(index[key])
    return runs, where


def run_jobs(
    jobs: Sequence[Job], workers: int = 1, progress: Callable[[ResultRow], None] | None = None
) -> list[ResultRow]:
    """Run ``jobs`` and their controls on ``workers`` processes; rows come back in job order,
    each judged against its control.

    ``progress`` is called once per run, controls included (:func:`units` counts them). A
    worker that dies (killed, out of memory) turns its runs into ``error`` rows; the run goes
    on.
    """
    runs, controls = units(jobs)
    raw: list[ResultRow | None] = [None] * len(runs)
    if workers <= 1 or len(runs) <= 1:
        for i, job in enumerate(runs):
            row = raw[i] = run_trials(job)
            if progress:
                progress(row)
    else:
        _run_pool(runs, raw, workers, progress)
    done = [r if r is not None else error_row(runs[i], "the run did not finish")
            for i, r in enumerate(raw)]
    return [judged(done[i], None if c is None else done[c]) for i, c in enumerate(controls)]


def _run_pool(runs: Sequence[Job], raw: list[ResultRow | None], workers: int,
              progress: Callable[[ResultRow], None] | None) -> None:
    pool = cf.ProcessPoolExecutor(max_workers=workers, initializer=worker_init)
    try:
        futures = {pool.submit(run_trials, job): i for i, job in enumerate(runs)}
        for future in cf.as_completed(futures):
            i = futures[future]
            try:
                row = future.result()
            except Exception as exc:  # a crashed worker: BrokenProcessPool and kin
                row = error_row(runs[i], f"worker failed: {type(exc).__name__}: {exc}")
            raw[i] = row
            if progress:
                progress(row)
    except BaseException:
        # Ctrl-C (or any failure here): stop the workers now rather than wait for their jobs.
        for child in multiprocessing.active_children():
            child.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def worker_init() -> None:
    """A worker leaves Ctrl-C to the parent, which stops it, and ends itself when the parent
    is gone (killed with SIGKILL, it cannot stop anyone): a thread watches the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
