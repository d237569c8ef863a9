"""Sketches from a stream window's counts: equal to the raw rows' where counts hold it,
within a grid cell where they do not, and drawn by the same page."""

from __future__ import annotations

import re

import numpy as np
import pytest

from flowops.drift import Profile, compare
from flowops.drift.grid import GRID_CELLS as K
from flowops.drift.partial import Prepared, WindowPartial, reduce_rows
from flowops.reports.counts import column_counts, window_sketches
from flowops.reports.page import render_html
from flowops.reports.sketch import CategoricalSketch, NumericSketch, sketch_columns

ROWS = 6_000


def _setup(seed: int = 3) -> tuple[Prepared, dict[str, np.ndarray | list[str | None]]]:
    rng = np.random.default_rng(seed)
    profile = Profile.from_columns(
        {
            "income": rng.lognormal(10, 0.5, 20_000),
            "age": rng.integers(18, 70, 20_000).astype(float),  # ties: a discrete feature
            "city": list(rng.choice(["Oslo", "Lima", "Pune"], 20_000)),
        }
    )
    income = rng.lognormal(10.2, 0.6, ROWS)
    income[:25] = np.nan
    cities: list[str | None] = list(rng.choice(["Oslo", "Lima", "Kyiv"], ROWS))
    cities[:7] = [None] * 7
    columns = {
        "income": income,
        "age": rng.integers(18, 80, ROWS).astype(float),
        "city": cities,
    }
    return Prepared.from_profile(profile), columns


def _merged(prepared: Prepared, columns: dict[str, np.ndarray | list[str | None]]) -> WindowPartial:
    """The window's rows reduced in three partials (three partitions) and merged."""
    parts = [slice(0, 1_000), slice(1_000, 4_500), slice(4_500, ROWS)]
    partials = [
        reduce_rows(
            prepared,
            "m",
            "1",
            0,
            np.zeros(part.stop - part.start),
            {name: column[part] for name, column in columns.items()},
        )
        for part in parts
    ]
    merged = partials[0]
    for partial in partials[1:]:
        merged = merged.merge(partial)
    return merged


def test_numbers_from_counts_equal_the_raw_rows_where_counts_hold_them() -> None:
    prepared, columns = _setup()
    merged = _merged(prepared, columns)
    counted = window_sketches(prepared.baselines, merged.numeric, merged.categorical)
    raw = sketch_columns(prepared.profile.features, columns)
    for name in ("income", "age"):
        mine, theirs = counted[name], raw[name]
        assert isinstance(mine, NumericSketch)
        assert isinstance(theirs, NumericSketch)
        a, b = mine.current, theirs.current
        assert (a.n, a.excluded, a.minimum, a.maximum) == (b.n, b.excluded, b.minimum, b.maximum)
        assert a.mean == pytest.approx(b.mean, rel=1e-12)
        assert a.std == pytest.approx(b.std, rel=1e-9)
        assert a.bin_shares == b.bin_shares  # every PSI edge is a cut: exact
        ref, their_ref = mine.reference, theirs.reference
        assert (ref.n, ref.mean, ref.bin_shares) == (
            their_ref.n,
            their_ref.mean,
            their_ref.bin_shares,
        )
        assert sum(a.grid_shares) == pytest.approx(1.0)
        assert len(mine.grid) == len(a.grid_shares) + 1


def test_the_ks_place_is_where_the_window_was_judged() -> None:
    """The marked distance is the grid's KS statistic, which the report (and so the alert)
    carries, and within 1/K of the raw rows' one."""
    prepared, columns = _setup()
    merged = _merged(prepared, columns)
    counted = window_sketches(prepared.baselines, merged.numeric, merged.categorical)
    raw = sketch_columns(prepared.profile.features, columns)
    for name in ("income", "age"):
        sketch, exact = counted[name], raw[name]
        assert isinstance(sketch, NumericSketch)
        assert isinstance(exact, NumericSketch)
        grid = prepared.baselines[name].grid
        distance = abs(sketch.ks_current - sketch.ks_reference)
        assert distance == pytest.approx(grid.ks_statistic(merged.numeric[name].cells), abs=1e-12)
        assert sketch.ks_at in set(grid.cuts.tolist())
        exact_distance = abs(exact.ks_current - exact.ks_reference)
        assert exact_distance - 1 / K - 1e-12 <= distance <= exact_distance + 1e-12


def test_quantiles_from_counts_are_within_their_grid_cell() -> None:
    """A quantile read from counts and the raw one lie in the same reference cell: the
    reference's ECDF differs by at most one cell's share between them."""
    prepared, columns = _setup()
    merged = _merged(prepared, columns)
    counted = window_sketches(prepared.baselines, merged.numeric, merged.categorical)
    raw = sketch_columns(prepared.profile.features, columns)
    for name in ("income", "age"):
        sample = prepared.baselines[name].reference.sorted
        mine, theirs = counted[name], raw[name]
        assert isinstance(mine, NumericSketch)
        assert isinstance(theirs, NumericSketch)
        for a, b in zip(mine.current.quantiles, theirs.current.quantiles, strict=True):
            low, high = sorted((a, b))
            inside = np.count_nonzero((sample > low) & (sample < high)) / sample.size
            assert inside <= 1 / K + 1e-12, (name, a, b)


def test_categories_from_counts_are_exact() -> None:
    prepared, columns = _setup()
    merged = _merged(prepared, columns)
    counted = window_sketches(prepared.baselines, merged.numeric, merged.categorical)["city"]
    raw = sketch_columns(prepared.profile.features, columns)["city"]
    assert isinstance(counted, CategoricalSketch)
    assert isinstance(raw, CategoricalSketch)
    assert counted.current.counts == {str(k): v for k, v in raw.current.counts.items()}
    assert list(counted.current.counts) == sorted(
        counted.current.counts, key=lambda k: -counted.current.counts[k]
    )
    assert (counted.current.n, counted.current.excluded) == (raw.current.n, raw.current.excluded)
    assert counted.unseen == {"Kyiv": raw.unseen[np.str_("Kyiv")]}


def test_a_single_workers_window_counts_as_a_merged_one() -> None:
    """column_counts (a window's usable values and its row count) gives the counts
    reduce_rows gives of the raw rows: the two kinds of stream window draw alike."""
    prepared, columns = _setup()
    merged = _merged(prepared, columns)
    usable = {
        "income": np.asarray(columns["income"])[np.isfinite(np.asarray(columns["income"]))],
        "age": np.asarray(columns["age"]),
        "city": [c for c in columns["city"] if c is not None],
    }
    numeric, categorical = column_counts(prepared.baselines, usable, ROWS)
    for name, counts in numeric.items():
        other = merged.numeric[name]
        assert np.array_equal(counts.cells, other.cells)
        assert (counts.missing, counts.low, counts.high) == (other.missing, other.low, other.high)
        assert counts.total == pytest.approx(other.total, rel=1e-12)
    assert categorical == merged.categorical


def test_a_feature_without_usable_values_has_no_sketch() -> None:
    prepared, columns = _setup()
    numeric, categorical = column_counts(prepared.baselines, {"age": columns["age"]}, ROWS)
    sketches = window_sketches(prepared.baselines, numeric, categorical)
    assert "income" not in sketches
    assert numeric["income"].missing == ROWS
    assert sketches["city"].current.n == 0  # type: ignore[union-attr]


def test_the_page_of_a_window_draws_every_feature_from_counts() -> None:
    prepared, columns = _setup()
    merged = _merged(prepared, columns)
    from flowops.drift.partial import compare_partial

    report = compare_partial(prepared, merged).to_dict()
    sketches = window_sketches(prepared.baselines, merged.numeric, merged.categorical)
    page = render_html(report, sketches, {"model": "m"})
    for name, plots in (("income", 3), ("age", 3), ("city", 1)):
        article = re.search(rf'<article[^>]*data-feature="{name}".*?</article>', page, re.S)
        assert article is not None
        assert article.group(0).count("<svg") == plots
    assert "http" not in page  # nothing to fetch
    # the page's statistics are the report's, which is what the alerts carry
    for index, feature in enumerate(report["features"]):
        for number, test in enumerate(feature["tests"]):
            assert f'data-k="features.{index}.tests.{number}.statistic"' in page
            assert test["statistic"] is not None
    assert compare(prepared.profile, columns).to_dict()["drift"] == report["drift"]
