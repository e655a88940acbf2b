"""Reports: the self-contained HTML page and ``results.csv``. The only package that imports
jinja2, matplotlib and pandas."""

from .html import Previous, write_report
from .table import results_frame, write_results_csv

__all__ = ["Previous", "results_frame", "write_report", "write_results_csv"]
