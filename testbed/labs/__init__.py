"""Classroom labs: handouts, per-student instances, auto-checked answers, a gradebook.

A lab (:mod:`.model`, loaded by :mod:`.loader`) names scenarios and tasks; each student gets an
instance derived from the class key (:mod:`.instance`) in a working folder
(:mod:`.workspace`); answers are checked by running the student's instance (:mod:`.check`);
a class is graded in isolated processes (:mod:`.grade`); pages are in :mod:`.pages`.
"""

from __future__ import annotations

from .check import Answers, KeyEntry, Status, TaskResult, answer_key, check
from .instance import Instance, derive, read_class_key
from .loader import LoadedLab, find_lab, lab_ids, load_lab
from .model import Lab

__all__ = [
    "Answers",
    "Instance",
    "KeyEntry",
    "Lab",
    "LoadedLab",
    "Status",
    "TaskResult",
    "answer_key",
    "check",
    "derive",
    "find_lab",
    "lab_ids",
    "load_lab",
    "read_class_key",
]
