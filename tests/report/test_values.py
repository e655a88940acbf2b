"""Metric values as a reader sees them: rounded, with units, series as tables."""

from __future__ import annotations

import pytest

from testbed.report.values import (
    INLINE_ITEMS,
    TABLE_ROWS,
    metric_view,
    metric_views,
    number_text,
    unit_of,
)


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (7, "7"), (43520, "43,520"), (-3, "-3"), (True, "yes"), (False, "no"),
    (1.0, "1"), (0.0, "0"), (13.287712379549449, "13.3"), (93.526727375, "93.5"),
    (110.119306184, "110"), (4822.671452223, "4,823"), (0.6756, "0.676"),
    (2.171938135516356e19, "2.17 × 10¹⁹"), (1.5e-7, "1.50 × 10⁻⁷"), (2_000_000.0, "2.00 × 10⁶"),
    (float("inf"), "∞"), (float("nan"), "not a number"),
])
def test_numbers_keep_three_digits(value: float, text: str) -> None:
    assert number_text(value) == text


@pytest.mark.parametrize(("key", "unit"), [
    ("blocks_captured", "blocks"), ("bandwidth_gb_s", "GB/s"), ("bytes_read", "bytes"),
    ("extrapolated_years_for_2pow64_blocks", "years"), ("entropy_bits", "bits"),
    ("free_chunks_left", "chunks"), ("attacker_locked_pages", "pages"), ("max_pairs", "pairs"),
    ("bits", ""), ("bit_accuracy", ""), ("guesses", ""), ("direct_map_splits", ""),
])
def test_units_come_from_the_metric_name(key: str, unit: str) -> None:
    assert unit_of(key) == unit


def test_scalars_lists_and_objects() -> None:
    assert metric_view("bytes_read", 31).text == "31 bytes"
    assert metric_view("check_failed", None).text == "—"
    assert metric_view("pairs_to_collision", [6756, None, 940]).text == "6,756, —, 940 pairs"
    assert metric_view("executions", {"old": 1665, "torn": 2507}).text == \
        "old: 1,665 · torn: 2,507"
    long = metric_view("trace", list(range(INLINE_ITEMS + 1)))
    assert long.text == "0, 1, 2, 3, 4, 5, 6, 7, … (13 values)"
    assert long.more.endswith(", 12")
    digest = "ab" * 60
    shown = metric_view("digest", digest)
    assert len(shown.text) == 80 and shown.text.endswith("…") and shown.more == digest


def test_series_become_tables() -> None:
    records = [{"pairs": q, "measured": q / 7, "bound": None} for q in range(100)]
    view = metric_view("curve", records)
    assert view.table is not None
    assert view.text == "a series of 100 rows (pairs, measured, bound)"
    assert view.table.heads == ("pairs", "measured", "bound")
    assert view.table.rows[1] == ("1", "0.143", "—")
    assert len(view.table.rows) == TABLE_ROWS and view.table.total == 100
    columns = metric_view("fragmentation_curve", {"secret_pages": [1, 2], "per-page": [1, 2],
                                                  "pmd-pool": [0, 0]})
    assert columns.table is not None and columns.table.rows == (("1", "1", "0"), ("2", "2", "0"))
    nested = metric_view("trace", [{"interval": 0, "dirty_pages": [1, 6], "guess": None}])
    assert nested.table is not None and nested.table.rows == (("0", "1, 6", "—"),)


def test_plain_values_and_series_are_apart_in_their_order() -> None:
    plain, series = metric_views({"a": 1, "curve": [{"x": 1}], "b": "text"})
    assert [m.key for m in plain] == ["a", "b"]
    assert [m.key for m in series] == ["curve"]


def test_a_long_object_opens_one_field_a_line() -> None:
    view = metric_view("first_torn", {"schedule": "P1" * 90, "cpu": 1,
                                      "timeline": ["0 patcher writes e8", "1 cpu1 fetches e8"]})
    assert view.text.startswith("schedule: P1P1") and view.text.endswith("…")
    assert view.more.splitlines()[1:] == ["cpu: 1", "timeline:", "  0 patcher writes e8",
                                          "  1 cpu1 fetches e8"]
