"""The HTML report: one self-contained page with the outcome matrix and per-scenario detail."""

from .html import write_report

__all__ = ["write_report"]
