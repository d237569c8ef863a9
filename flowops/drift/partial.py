"""Mergeable window partials: a window's rows reduced to counts that add up exactly.

A model's traffic may arrive on any partition and be read by any worker, so a window's
rows are reduced where they are read, to a :class:`WindowPartial`, and the partials of
one window are merged (:meth:`WindowPartial.merge`, associative and commutative: integer
counts add, minima and maxima compare) before the window tests run on the merged counts
(:func:`compare_counts`). Per feature a partial holds:

* numeric: counts on the cells of the feature's :class:`Grid`, the values left out
  (NaN, inf, missing, wrongly typed), and the sum, sum of squares, minimum and maximum
  of the usable values (the sums are floats: merged in another order they may differ in
  the last bits; no test reads them);
* categorical: the count of every category and the values left out.

**The grid.** Numeric values are counted on the cells of the feature's
:attr:`~flowops.drift.window_test.Baseline.grid`, the one grid the window-test registry
reads counts on (:mod:`flowops.drift.grid`: ``K`` = 1024 quantiles of the reference's KS
sample plus the PSI edges, a cell of its own at each cut). The merged window is judged
by :func:`~flowops.drift.report.compare_counts` with the same rules as ``flowops drift
compare`` and a single worker's windows (:func:`compare_partial`): PSI, chi-square and
Jensen-Shannon exactly as on the raw rows, KS within ``1/K`` below the exact statistic
(ties included), Wasserstein within the grid's cell widths.

>>> import numpy as np
>>> rng = np.random.default_rng(2)
>>> profile = Profile.from_columns({"x": rng.normal(size=5_000), "c": ["a", "b"] * 100})
>>> prepared = Prepared.from_profile(profile)
>>> left = reduce_rows(prepared, "m", "1", 7, np.arange(3.0), {"x": [0.1, None, 2.0]})
>>> right = reduce_rows(prepared, "m", "1", 7, np.array([5.0]), {"x": [0.3], "c": ["a"]})
>>> merged = left.merge(right)
>>> merged.rows, merged.numeric["x"].n, merged.numeric["x"].missing, merged.categorical["c"]
(4, 3, 1, CategoryCounts(counts={'a': 1}, missing=3))
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flowops.drift import grid as _grid
from flowops.drift.finding import Finding
from flowops.drift.grid import Grid
from flowops.drift.profile import CategoricalProfile, Profile
from flowops.drift.report import DriftReport, compare_counts, prepare
from flowops.drift.rules import Rules
from flowops.drift.window import to_floats
from flowops.drift.window_test import Baseline, Current
from flowops.drift.window_tests import report_findings
from flowops.errors import EmptyInputError, InputError

__all__ = [
    "CategoryCounts",
    "NumericCounts",
    "Prepared",
    "WindowPartial",
    "compare_partial",
    "reduce_rows",
    "window_findings",
]


@dataclass(frozen=True)
class Prepared:
    """A reference made ready for reducing rows and judging windows: its profile, its
    features prepared once (:func:`~flowops.drift.report.prepare`: their grids among
    them), and ``token``, a digest of the profile and ``K`` that partials carry (only
    partials made on the same reference and grid merge)."""

    profile: Profile
    baselines: Mapping[str, Baseline]
    token: str

    @classmethod
    def from_profile(cls, profile: Profile) -> Prepared:
        """Prepare the profile's features (grids are fitted when first used)."""
        digest = hashlib.sha256(f"{_grid.GRID_CELLS}:{profile.to_json()}".encode()).hexdigest()[:16]
        return cls(profile, prepare(profile), digest)

    def grid(self, name: str) -> Grid:
        """The grid of the numeric feature ``name``."""
        return self.baselines[name].grid


@dataclass(frozen=True)
class NumericCounts:
    """One numeric feature in a partial: cell counts, values left out, moments."""

    cells: NDArray[np.int64]
    missing: int
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    @property
    def n(self) -> int:
        """The usable values counted."""
        return int(self.cells.sum())

    def merge(self, other: NumericCounts) -> NumericCounts:
        """Both counts together."""
        if self.cells.size != other.cells.size:
            raise InputError(f"grids of {self.cells.size} and {other.cells.size} cells")
        return NumericCounts(
            self.cells + other.cells,
            self.missing + other.missing,
            self.total + other.total,
            self.squares + other.squares,
            min(self.low, other.low),
            max(self.high, other.high),
        )


@dataclass(frozen=True)
class CategoryCounts:
    """One categorical feature in a partial: the count of each category, values left out."""

    counts: dict[str, int]
    missing: int

    @property
    def n(self) -> int:
        """The usable values counted."""
        return sum(self.counts.values())

    def merge(self, other: CategoryCounts) -> CategoryCounts:
        """Both counts together (categories in sorted order, whatever the merge order)."""
        counts = dict(self.counts)
        for name, count in other.counts.items():
            counts[name] = counts.get(name, 0) + count
        return CategoryCounts(dict(sorted(counts.items())), self.missing + other.missing)


@dataclass(frozen=True)
class WindowPartial:
    """Some rows of one window of one model version, reduced to counts.

    ``first`` and ``last`` are the earliest and latest finite event times of its rows
    (``inf`` and ``-inf`` when none); ``ignored`` counts the values of features the
    reference does not know. ``rows`` are answered requests (drift data); ``requests``
    and ``failed`` count every request and the failed ones, for the window's error rate.
    """

    model: str
    version: str
    window: int
    reference: str
    rows: int
    first: float
    last: float
    numeric: dict[str, NumericCounts] = field(default_factory=dict)
    categorical: dict[str, CategoryCounts] = field(default_factory=dict)
    ignored: int = 0
    requests: int = 0  # every request of the window, answered or not (the error rate's)
    failed: int = 0  # of those, the ones not answered 2xx or not readable

    @property
    def key(self) -> tuple[str, str, int, str]:
        """What partials of one window share: model, version, window, reference."""
        return (self.model, self.version, self.window, self.reference)

    def merge(self, other: WindowPartial) -> WindowPartial:
        """Both partials as one; InputError for partials of different windows."""
        if self.key != other.key:
            raise InputError(f"cannot merge partials of {self.key} and {other.key}")
        return replace(
            self,
            rows=self.rows + other.rows,
            first=min(self.first, other.first),
            last=max(self.last, other.last),
            numeric=_merge_maps(self.numeric, other.numeric),
            categorical=_merge_maps(self.categorical, other.categorical),
            ignored=self.ignored + other.ignored,
            requests=self.requests + other.requests,
            failed=self.failed + other.failed,
        )


def _merge_maps(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(left)
    for name, counts in right.items():
        merged[name] = counts if name not in merged else merged[name].merge(counts)
    return dict(sorted(merged.items()))


def reduce_rows(
    prepared: Prepared,
    model: str,
    version: str,
    window: int,
    timestamps: NDArray[np.float64],
    columns: Mapping[str, Sequence[object] | NDArray[Any]],
) -> WindowPartial:
    """The partial of some rows of one window: a column per feature, as ``ModelMonitor.add``
    takes them (numbers, text or ``None``); a reference feature a batch lacks is missing."""
    n = timestamps.size
    finite = timestamps[np.isfinite(timestamps)]
    numeric, categorical, ignored = {}, {}, 0
    for name, given in columns.items():
        if len(given) != n:
            raise InputError(f"{len(given)} values for {n} timestamps", column=name)
        if name not in prepared.profile.features:
            ignored += n
    for name, feature in prepared.profile.features.items():
        column = columns.get(name)
        if isinstance(feature, CategoricalProfile):
            categorical[name] = _categories(column, n)
        else:
            numeric[name] = _numbers(prepared.grid(name), column, n)
    return WindowPartial(
        model,
        version,
        window,
        prepared.token,
        n,
        float(finite.min()) if finite.size else math.inf,
        float(finite.max()) if finite.size else -math.inf,
        dict(sorted(numeric.items())),
        dict(sorted(categorical.items())),
        ignored,
    )


def _numbers(grid: Grid, column: Sequence[object] | NDArray[Any] | None, n: int) -> NumericCounts:
    if column is None:
        return NumericCounts(np.zeros(grid.size, dtype=np.int64), n)
    if isinstance(column, np.ndarray) and column.dtype.kind in "iuf":
        values = column.astype(np.float64, copy=False)
    else:
        values = to_floats(list(column))
    usable = values[np.isfinite(values)]
    if not usable.size:
        return NumericCounts(grid.counts(usable), n)
    with np.errstate(over="ignore"):  # sums of huge values are inf: true, and unused by tests
        return NumericCounts(
            grid.counts(usable),
            n - usable.size,
            float(usable.sum()),
            float(np.dot(usable, usable)),
            float(usable.min()),
            float(usable.max()),
        )


def _categories(column: Sequence[object] | NDArray[Any] | None, n: int) -> CategoryCounts:
    if column is None:
        return CategoryCounts({}, n)
    counts: dict[str, int] = {}
    for value in column:
        if isinstance(value, str):
            name = value if type(value) is str else str(value)  # numpy's str_ as a str
            counts[name] = counts.get(name, 0) + 1
    return CategoryCounts(dict(sorted(counts.items())), n - sum(counts.values()))


def compare_partial(
    prepared: Prepared,
    partial: WindowPartial,
    *,
    alpha: float = 0.05,
    correction: str = "bh",
    rules: Rules | None = None,
) -> DriftReport:
    """The registered window tests on a (merged) partial, by ``rules``: what
    :func:`~flowops.drift.report.compare` says of the raw rows, PSI and chi-square equal,
    KS within ``1/K`` (see module).

    Features without usable values are left out; a partial made on another reference is
    an InputError, one without any usable value an EmptyInputError.
    """
    if partial.reference != prepared.token:
        raise InputError("the partial was made on another reference")
    current: dict[str, Current] = {}
    excluded: dict[str, int] = {}
    for name in prepared.profile.features:  # the profile's order, as compare has it
        if name in partial.numeric:
            counts = partial.numeric[name]
            current[name], excluded[name] = Current(grid_counts=counts.cells), counts.missing
        elif name in partial.categorical:
            found = partial.categorical[name]
            current[name], excluded[name] = Current(categories=found.counts), found.missing
    return compare_counts(
        prepared.profile,
        current,
        excluded=excluded,
        alpha=alpha,
        correction=correction,
        rules=rules,
        baselines=prepared.baselines,
    )


def window_findings(
    prepared: Prepared,
    partial: WindowPartial,
    *,
    start: float,
    end: float,
    alpha: float = 0.05,
    correction: str = "bh",
    rules: Rules | None = None,
) -> list[Finding]:
    """The drifted window tests of a merged window, as
    :class:`~flowops.drift.window_tests.WindowTests` reports a window of raw rows (one
    :func:`~flowops.drift.window_tests.report_findings` for both); findings carry no
    partition (the window is the model's). A window without usable values has none.
    """
    try:
        report = compare_partial(prepared, partial, alpha=alpha, correction=correction, rules=rules)
    except EmptyInputError:
        return []
    return report_findings(
        report,
        model=partial.model,
        version=partial.version,
        window=(partial.window, start, end),
        reference="profile",
    )
