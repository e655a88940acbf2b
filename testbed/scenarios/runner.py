"""Runs every scenario under every engine profile, in parallel, reproducibly.

Each (scenario, engine) job gets its own random streams derived from the run seed, the scenario
id and the engine name, so results do not depend on job order or on the number of workers.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import registry
from ..attacks import Attack, AttackContext, Phase, Verdict
from ..errors import ConfigError, PlatformRefusal, UnsupportedMitigation
from ..platform import Engine, EngineOptions, KeySource, Machine
from ..results import Evidence, ResultRow
from ..types import Outcome
from .model import Scenario

__all__ = ["Job", "plan", "run_job", "run_jobs"]

_log = logging.getLogger("testbed")


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
        if self.attack is None and self.scenario.attack in registry.attacks:
            object.__setattr__(self, "attack", registry.attacks.get(self.scenario.attack))
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


def _streams(job: Job) -> tuple[np.random.Generator, np.random.Generator]:
    digest = hashlib.sha256(f"{job.seed}\0{job.scenario.id}\0{job.engine}".encode()).digest()
    keys, attack = np.random.SeedSequence(int.from_bytes(digest[:16], "little")).spawn(2)
    return np.random.default_rng(keys), np.random.default_rng(attack)


def _machine_factory(job: Job, key_rng: np.random.Generator) -> Callable[[], Machine]:
    s = job.scenario
    mitigations = s.machine_mitigations()

    options = EngineOptions(
        reduced_width_bits=s.platform.reduced_width_bits,
        keyid_bits=s.platform.keyid_bits,
        asids=s.platform.asids,
        ciphertext_hiding=s.platform.ciphertext_hiding,
    )

    def build() -> Machine:
        if job.engine_class is None:
            raise ConfigError(f"unknown engine {job.engine!r}")
        engine = job.engine_class.build(KeySource(key_rng), options)
        return Machine(engine, s.platform.memory_pages, mitigations,
                       secretmem_reserve_pages=s.platform.secretmem_reserve_pages)

    return build


def run_job(job: Job) -> ResultRow:
    """Run one job and judge it. Never raises: failures become ``error`` rows."""
    s = job.scenario
    key_rng, attack_rng = _streams(job)
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
        metrics=log.metrics if log else None,
        evidence=log.evidence() if log else Evidence(),
        steps=tuple(log.steps) if log else (),
    )


def _error_row(job: Job, message: str) -> ResultRow:
    s = job.scenario
    return ResultRow(s.id, s.title, s.attack, job.profile, job.engine, s.mitigation_names(),
                     Outcome.ERROR, s.expect.get(job.engine),
                     message)


def run_jobs(
    jobs: Sequence[Job], workers: int = 1, progress: Callable[[ResultRow], None] | None = None
) -> list[ResultRow]:
    """Run ``jobs`` on ``workers`` processes; rows come back in job order.

    A worker that dies (killed, out of memory) turns its jobs into ``error`` rows; the run goes on.
    """
    rows: list[ResultRow | None] = [None] * len(jobs)
    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            row = rows[i] = run_job(job)
            if progress:
                progress(row)
        return [r for r in rows if r is not None]
    pool = cf.ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
    try:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for future in cf.as_completed(futures):
            i = futures[future]
            try:
                row = future.result()
            except Exception as exc:  # a crashed worker: BrokenProcessPool and kin
                row = _error_row(jobs[i], f"worker failed: {type(exc).__name__}: {exc}")
            rows[i] = row
            if progress:
                progress(row)
    except BaseException:
        # Ctrl-C (or any failure here): stop the workers now rather than wait for their jobs.
        for child in multiprocessing.active_children():
            child.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return [r for r in rows if r is not None]


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
