"""Parameter sweeps: one scenario over a grid of settings, engines and seeds, with rates,
intervals and figures (:mod:`.spec` loads a spec, :mod:`.run` runs it on any executor and
keeps every run, :mod:`.outputs` writes the tables and the page)."""

from __future__ import annotations

from .run import SweepRun, executor, run_sweep
from .spec import Point, Sweep, SweepPlan, load_sweep

__all__ = ["Point", "Sweep", "SweepPlan", "SweepRun", "executor", "load_sweep", "run_sweep"]
