"""Scenario files (YAML -> frozen models) and the runner."""

from .loader import LIMITS, find_scenario_files, load_scenario, load_scenarios
from .model import Scenario, engine_names
from .runner import Job, control_of, plan, run_job, run_jobs, run_trials, units

__all__ = [
    "LIMITS",
    "Job",
    "Scenario",
    "control_of",
    "engine_names",
    "find_scenario_files",
    "load_scenario",
    "load_scenarios",
    "plan",
    "run_job",
    "run_jobs",
    "run_trials",
    "units",
]
