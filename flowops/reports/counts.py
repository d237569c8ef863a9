"""Sketches from a stream window's counts: what an alert's report draws.

A stream window keeps no rows: a merged window holds, per numeric feature, counts on
the cells of the feature's :class:`~flowops.drift.grid.Grid` (``K`` = 1024 quantiles
of the reference's KS sample plus the PSI edges, a cell of its own at each cut), the
values left out, and the sum, sum of squares, minimum and maximum of the usable ones;
per categorical feature, the count of every category
(:class:`~flowops.drift.partial.NumericCounts`,
:class:`~flowops.drift.partial.CategoryCounts`). :func:`window_sketches` turns them
into the sketches the batch report draws (:mod:`flowops.reports.sketch`), so one page
serves ``drift compare --html`` and the stream's alerts. What differs from a sketch of
raw rows:

* **exact**: the PSI bin shares (every PSI edge is a cut), the category counts, the
  values and missing share, the minimum and maximum; mean and standard deviation up to
  floating-point rounding (from the sums);
* **the fine grid** is made of the grid's cuts nearest to the reference's
  ``j / GRID_CELLS`` quantiles, where the batch sketch uses the quantiles themselves:
  the same shape, cells a little apart;
* **the KS place** is the cut where :meth:`~flowops.drift.grid.Grid.ks_statistic`
  finds its distance, which is the KS statistic the window was judged by (within
  ``1/K`` below the raw rows' one);
* **the current quantiles** are read from the counts: a quantile that falls on a cut
  is that cut's value, exactly; one inside an open cell is interpolated between the
  cell's cuts (within a cell that holds at most ``1/K`` of the reference).

>>> import numpy as np
>>> from flowops.drift import Profile
>>> from flowops.drift.partial import Prepared, reduce_rows
>>> rng = np.random.default_rng(3)
>>> prepared = Prepared.from_profile(Profile.from_columns({"x": rng.normal(size=4_000)}))
>>> values = rng.normal(0.5, size=1_000)
>>> partial = reduce_rows(prepared, "m", "1", 0, np.zeros(1_000), {"x": values})
>>> sketch = window_sketches(prepared.baselines, partial.numeric, partial.categorical)["x"]
>>> sketch.current.n, round(sketch.current.mean, 9) == round(float(values.mean()), 9)
(1000, True)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from flowops.drift.grid import Grid
from flowops.drift.partial import CategoryCounts, NumericCounts
from flowops.drift.profile import CategoricalProfile, Column, NumericProfile
from flowops.drift.window_test import Baseline
from flowops.reports import sketch as _sketch
from flowops.reports.sketch import (
    CategoricalSide,
    CategoricalSketch,
    FeatureSketch,
    NumericSide,
    NumericSketch,
    reference_numeric_side,
)

__all__ = ["column_counts", "counted_categories", "counted_numbers", "window_sketches"]


def window_sketches(
    baselines: Mapping[str, Baseline],
    numeric: Mapping[str, NumericCounts],
    categorical: Mapping[str, CategoryCounts],
) -> dict[str, FeatureSketch]:
    """The sketch of every reference feature the counts hold a usable value of."""
    sketches: dict[str, FeatureSketch] = {}
    for name, baseline in baselines.items():
        profile = baseline.profile
        if isinstance(profile, NumericProfile) and name in numeric and numeric[name].n:
            sketches[name] = counted_numbers(baseline, numeric[name])
        elif isinstance(profile, CategoricalProfile) and name in categorical:
            sketches[name] = counted_categories(profile, categorical[name])
    return sketches


def counted_categories(profile: CategoricalProfile, counts: CategoryCounts) -> CategoricalSketch:
    """Both sides' category counts, most frequent first (all exact)."""
    ordered = dict(sorted(counts.counts.items(), key=lambda item: (-item[1], item[0])))
    return CategoricalSketch(
        reference=CategoricalSide(profile.n, profile.excluded, dict(profile.frequencies)),
        current=CategoricalSide(counts.n, counts.missing, ordered),
    )


def counted_numbers(baseline: Baseline, counts: NumericCounts) -> NumericSketch:
    """A numeric feature's sketch from its counts on ``baseline``'s grid (see module)."""
    grid, sample = baseline.grid, baseline.reference.sorted
    cells = counts.cells
    if cells.shape != (grid.size,):
        raise ValueError(f"counts on {cells.size} cells, the grid has {grid.size}")
    profile = baseline.numeric
    low, high = min(profile.min, counts.low), max(profile.max, counts.high)
    chosen = _display_cuts(grid, sample, low, high)
    display = np.concatenate(([low], grid.cuts[chosen], [high]))
    cumulative = np.concatenate(([0], np.cumsum(cells)))
    n = int(cumulative[-1])
    below = cumulative[2 * chosen + 1]  # values under each chosen cut
    current = NumericSide(
        n=n,
        excluded=counts.missing,
        mean=counts.total / n,
        std=math.sqrt(max(counts.squares / n - (counts.total / n) ** 2, 0.0)),
        minimum=counts.low,
        maximum=counts.high,
        quantiles=tuple(_quantile(grid, cells, cumulative, q, counts) for q in _sketch.QUANTILES),
        bin_shares=_shares(grid.psi_counts(cells)),
        grid_shares=_shares(np.diff(np.concatenate(([0], below, [n])))),
    )
    at, ref_f, cur_f = grid.ks_place(cells)
    return NumericSketch(
        bin_edges=tuple(baseline.reference.edges.tolist()),
        grid=tuple(display.tolist()),
        reference=reference_numeric_side(profile, sample, display),
        current=current,
        ks_at=at,
        ks_reference=ref_f,
        ks_current=cur_f,
    )


def _display_cuts(
    grid: Grid, sample: NDArray[np.float64], low: float, high: float
) -> NDArray[np.intp]:
    """Indices of the cuts nearest above the sample's ``j / GRID_CELLS`` quantiles,
    inside ``(low, high)`` and above the sample's least value (as the batch grid)."""
    targets = np.quantile(sample, np.arange(1, _sketch.GRID_CELLS) / _sketch.GRID_CELLS)
    chosen = np.unique(np.searchsorted(grid.cuts, targets, side="left"))
    chosen = chosen[chosen < grid.cuts.size]
    cuts = grid.cuts[chosen]
    keep = (cuts > sample[0]) & (cuts > low) & (cuts < high)
    found: NDArray[np.intp] = chosen[keep].astype(np.intp)
    return found


def _quantile(
    grid: Grid,
    cells: NDArray[np.int64],
    cumulative: NDArray[np.int64],
    q: float,
    counts: NumericCounts,
) -> float:
    """The ``q`` quantile from counts: a cut's value when it falls on one, else
    interpolated in its open cell, whose outer bounds are the window's extremes."""
    rank = q * float(cumulative[-1])
    cell = int(np.searchsorted(cumulative[1:], rank, side="left"))
    if cell % 2:  # the cell of cut (cell - 1) / 2 itself
        return float(grid.cuts[(cell - 1) // 2])
    lower = counts.low if cell == 0 else max(float(grid.cuts[cell // 2 - 1]), counts.low)
    upper = counts.high if cell == cells.size - 1 else min(float(grid.cuts[cell // 2]), counts.high)
    inside = float(cells[cell])
    share = (rank - float(cumulative[cell])) / inside if inside else 0.0
    return lower + min(max(share, 0.0), 1.0) * (upper - lower)


def _shares(counts: NDArray[np.int64]) -> tuple[float, ...]:
    total = float(counts.sum())
    return tuple((counts / total).tolist()) if total else tuple(0.0 for _ in counts)


def column_counts(
    baselines: Mapping[str, Baseline], columns: Mapping[str, Column], rows: int
) -> tuple[dict[str, NumericCounts], dict[str, CategoryCounts]]:
    """A window's usable values (as :class:`~flowops.drift.finding.ClosedWindow` holds
    them: finite numbers, category names) reduced to the counts a merged window keeps,
    so that a single worker's window is drawn by the same code; ``rows`` is the
    window's row count, the rest of which were left out."""
    numeric: dict[str, NumericCounts] = {}
    categorical: dict[str, CategoryCounts] = {}
    for name, baseline in baselines.items():
        column = columns.get(name, [])
        if isinstance(baseline.profile, CategoricalProfile):
            found = Counter(str(value) for value in column)
            categorical[name] = CategoryCounts(dict(sorted(found.items())), rows - len(column))
            continue
        values = np.asarray(column, dtype=np.float64)
        if not values.size:
            numeric[name] = NumericCounts(baseline.grid.counts(values), rows)
            continue
        numeric[name] = NumericCounts(
            baseline.grid.counts(values),
            rows - int(values.size),
            float(values.sum()),
            float(np.dot(values, values)),
            float(values.min()),
            float(values.max()),
        )
    return numeric, categorical
