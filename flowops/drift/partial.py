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

**The grid.** It is fitted once per reference feature (:meth:`Grid.from_profile`). Its
cut points are the reference's PSI bin edges and the order statistics
``sorted[floor(j s / K)]``, ``j = 0 .. K-1``, of the reference's KS sample (``s`` values,
all of them or the profile's sketch), with ``K`` = :data:`GRID_CELLS`. A value falls in
the open cell between two neighbouring cuts or in the cell of a cut it equals, so the
current sample's distribution function is known exactly at every cut and just below it.

* **PSI is exact**: every PSI edge is a cut, so the PSI bin counts are sums of cells.
* **Chi-square is exact**: it reads category counts.
* **KS is within 1/K**: between two neighbouring cuts lie at most ``s / K`` reference
  values, so with ``D_grid`` the largest distance of the two distribution functions at
  and just below the cuts, ``D_grid <= D <= D_grid + 1/K`` for the exact statistic
  ``D`` (proof in :meth:`Grid.ks_statistic`). :func:`compare_counts` reports
  ``D_grid`` and its p-value from the Kolmogorov distribution of ``round(n m / (n + m))``
  (scipy's asymptotic one; raw rows up to 10,000 values get scipy's exact p-value).

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

from flowops.drift.chisq import chi2_test
from flowops.drift.finding import Finding, TestName
from flowops.drift.ks import kolmogorov_sf
from flowops.drift.profile import CategoricalProfile, NumericProfile, Profile
from flowops.drift.psi import categorical_psi
from flowops.drift.report import DriftReport, FeatureDrift, combined_pvalue, corrector
from flowops.drift.window import to_floats
from flowops.drift.window_tests import CRITICAL_FACTOR as _CRITICAL_FACTOR
from flowops.errors import InputError

__all__ = [
    "GRID_CELLS",
    "CategoryCounts",
    "Grid",
    "NumericCounts",
    "Prepared",
    "WindowPartial",
    "compare_counts",
    "reduce_rows",
    "window_findings",
]

GRID_CELLS = 1024
"""``K``: the reference's KS sample is cut into K parts, so KS from counts is within 1/K."""


class Grid:
    """Cut points of one numeric feature and what the reference holds at each of them.

    Cell ``2 i`` is the open interval between cut ``i - 1`` and cut ``i`` (from -inf for
    ``i = 0``, to +inf for the last), cell ``2 i + 1`` the cut ``i`` itself.

    >>> grid = Grid(np.array([1.0, 2.0, 3.0, 4.0]), edges=np.array([2.5]), cells=2)
    >>> grid.cuts.tolist()
    [1.0, 2.5, 3.0]
    >>> grid.counts(np.array([0.5, 1.0, 2.7, 3.0, 9.0])).tolist()
    [1, 1, 0, 0, 1, 1, 1]
    """

    __slots__ = ("_below", "_psi_bins", "_up_to", "cuts")

    def __init__(
        self, reference: NDArray[np.float64], *, edges: NDArray[np.float64], cells: int
    ) -> None:
        if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
            raise InputError(f"grid cells must be a positive integer, got {cells!r}")
        s = reference.size
        quantiles = reference[(np.arange(cells, dtype=np.int64) * s) // cells]
        self.cuts: NDArray[np.float64] = np.unique(np.concatenate([quantiles, edges]))
        self._below = np.searchsorted(reference, self.cuts, side="left") / s
        self._up_to = np.searchsorted(reference, self.cuts, side="right") / s
        at_cut = np.searchsorted(edges, self.cuts, side="right")
        open_cell = np.concatenate([[0], at_cut])  # the cell above cut i-1 is in its bin
        self._psi_bins = np.empty(2 * self.cuts.size + 1, dtype=np.intp)
        self._psi_bins[0::2], self._psi_bins[1::2] = open_cell, at_cut

    @classmethod
    def from_profile(cls, profile: NumericProfile, cells: int = GRID_CELLS) -> Grid:
        """The grid of a profiled feature: its KS sample's K-quantiles and its PSI edges."""
        reference = np.array(profile.sample, dtype=np.float64)
        return cls(reference, edges=np.array(profile.edges, dtype=np.float64), cells=cells)

    @property
    def size(self) -> int:
        """How many cells: two a cut, and one more."""
        return 2 * self.cuts.size + 1

    def counts(self, values: NDArray[np.float64]) -> NDArray[np.int64]:
        """How many of the (finite) ``values`` fall in each cell."""
        low = np.searchsorted(self.cuts, values, side="left")
        high = np.searchsorted(self.cuts, values, side="right")
        return np.bincount(low + high, minlength=self.size).astype(np.int64)

    def psi_counts(self, cells: NDArray[np.int64]) -> NDArray[np.int64]:
        """The PSI bin counts the cell counts add up to."""
        bins = int(self._psi_bins[-1]) + 1
        return np.bincount(self._psi_bins, weights=cells, minlength=bins).astype(np.int64)

    def ks_statistic(self, cells: NDArray[np.int64]) -> float:
        """``D_grid``: the largest distance of the distribution functions at the cuts.

        With ``F`` the reference's distribution function and ``G`` the current one, both
        are known at every cut ``c`` and just below it (``F(c-)``, ``G(c-)``). For ``x``
        in an open cell ``(a, b)``, ``F(x) - G(x) <= F(b-) - G(a) <= D_grid + (F(b-) -
        F(a))`` and ``G(x) - F(x) <= G(b-) - F(a) <= D_grid + (F(b-) - F(a))``, and
        ``F(b-) - F(a)``, the reference's share strictly inside the cell, is at most
        ``1/K``. So ``D_grid <= D <= D_grid + 1/K``.
        """
        n = int(cells.sum())
        if n == 0:
            return 0.0
        cumulative = np.cumsum(cells)
        below = cumulative[0:-1:2] / n  # G(c-) at every cut
        up_to = cumulative[1::2] / n  # G(c)
        return float(max(np.abs(self._below - below).max(), np.abs(self._up_to - up_to).max()))


@dataclass(frozen=True)
class Prepared:
    """A reference made ready for reducing rows: its profile, a grid per numeric feature,
    and ``token``, a digest of the profile that partials carry (only partials made on
    the same reference merge)."""

    profile: Profile
    grids: Mapping[str, Grid]
    token: str

    @classmethod
    def from_profile(cls, profile: Profile, cells: int = GRID_CELLS) -> Prepared:
        """Fit the grids of the profile's numeric features."""
        grids = {
            name: Grid.from_profile(feature, cells)
            for name, feature in profile.features.items()
            if isinstance(feature, NumericProfile)
        }
        digest = hashlib.sha256(f"{cells}:{profile.to_json()}".encode()).hexdigest()[:16]
        return cls(profile, grids, digest)


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
    reference does not know.
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
            numeric[name] = _numbers(prepared.grids[name], column, n)
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


def compare_counts(
    prepared: Prepared,
    partial: WindowPartial,
    *,
    alpha: float = 0.05,
    correction: str = "bh",
) -> DriftReport:
    """The window tests on a (merged) partial, as :func:`~flowops.drift.report.compare`
    reports them on raw rows: PSI and chi-square equal, KS within ``1/K`` (see module).

    Features without usable values are left out; a partial made on another reference
    is an InputError.
    """
    if partial.reference != prepared.token:
        raise InputError("the partial was made on another reference")
    adjust = corrector(correction, alpha)
    tested = [
        _numeric_drift(name, prepared, counts)
        for name, counts in partial.numeric.items()
        if counts.n
    ]
    tested += [
        _categorical_drift(name, prepared, counts)
        for name, counts in partial.categorical.items()
        if counts.n
    ]
    order = list(prepared.profile.features)
    tested.sort(key=lambda feature: order.index(feature.feature))
    adjusted = adjust([feature.pvalue for feature in tested]).tolist() if tested else []
    results = [
        replace(feature, adjusted_pvalue=q, drift=q < alpha)
        for feature, q in zip(tested, adjusted, strict=True)
    ]
    return DriftReport(results, any(r.drift for r in results), float(alpha), correction)


def _numeric_drift(name: str, prepared: Prepared, counts: NumericCounts) -> FeatureDrift:
    grid, profile = prepared.grids[name], prepared.profile.features[name]
    assert isinstance(profile, NumericProfile)
    bins = grid.psi_counts(counts.cells)
    reference = {str(i): int(c) for i, c in enumerate(profile.counts)}
    psi = categorical_psi(reference, {str(i): int(c) for i, c in enumerate(bins.tolist())})
    d, n, m = grid.ks_statistic(counts.cells), profile.n, counts.n
    ks_pvalue = kolmogorov_sf(d, round(max(n, m) * min(n, m) / (n + m)))
    return FeatureDrift(
        feature=name,
        kind="numeric",
        psi=psi.statistic,
        psi_pvalue=psi.pvalue,
        ks_statistic=d,
        ks_pvalue=ks_pvalue,
        chi2_statistic=None,
        chi2_pvalue=None,
        pvalue=combined_pvalue(ks_pvalue, psi.pvalue),
        adjusted_pvalue=math.nan,
        drift=False,
        n_reference=n,
        n_current=m,
        excluded=counts.missing,
    )


def _categorical_drift(name: str, prepared: Prepared, counts: CategoryCounts) -> FeatureDrift:
    profile = prepared.profile.features[name]
    assert isinstance(profile, CategoricalProfile)
    chi2 = chi2_test(profile.frequencies, counts.counts)
    psi = categorical_psi(profile.frequencies, counts.counts)
    return FeatureDrift(
        feature=name,
        kind="categorical",
        psi=psi.statistic,
        psi_pvalue=psi.pvalue,
        ks_statistic=None,
        ks_pvalue=None,
        chi2_statistic=chi2.statistic,
        chi2_pvalue=chi2.pvalue,
        pvalue=combined_pvalue(chi2.pvalue, psi.pvalue),
        adjusted_pvalue=math.nan,
        drift=False,
        n_reference=profile.n,
        n_current=counts.n,
        excluded=counts.missing,
    )


def window_findings(
    prepared: Prepared,
    partial: WindowPartial,
    *,
    start: float,
    end: float,
    alpha: float = 0.05,
    correction: str = "bh",
) -> list[Finding]:
    """The significant window tests of a merged window, as
    :class:`~flowops.drift.window_tests.WindowTests` reports a window of raw rows: a
    test's p-value is the adjusted one its feature would have were it the feature's most
    significant test; findings carry no partition (the window is the model's).
    """
    report = compare_counts(prepared, partial, alpha=alpha, correction=correction)
    adjust = corrector(correction, alpha)
    pvalues = np.array([feature.pvalue for feature in report.features])
    findings = []
    for i, feature in enumerate(report.features):
        for test, statistic, pvalue in _tests(feature):
            alone = combined_pvalue(pvalue, 1.0)  # the feature's p-value were this its best
            if alone == feature.pvalue:
                adjusted = feature.adjusted_pvalue
            else:
                trial = pvalues.copy()
                trial[i] = alone
                adjusted = float(adjust(trial)[i])
            if adjusted < alpha:
                findings.append(_finding(partial, feature, test, statistic, adjusted, alpha))
    return [replace(f, window_start=start, window_end=end) for f in findings]


def _finding(
    partial: WindowPartial,
    feature: FeatureDrift,
    test: TestName,
    statistic: float,
    adjusted: float,
    alpha: float,
) -> Finding:
    return Finding(
        model=partial.model,
        version=partial.version,
        feature=feature.feature,
        test=test,
        statistic=statistic,
        pvalue=adjusted,
        threshold=float(alpha),
        window_index=partial.window,
        window_start=partial.first,
        window_end=partial.last,
        n_reference=feature.n_reference,
        n_current=feature.n_current,
        severity="critical" if adjusted < alpha / _CRITICAL_FACTOR else "warning",
        reference="profile",
    )


def _tests(feature: FeatureDrift) -> list[tuple[TestName, float, float]]:
    tests: list[tuple[TestName, float, float]] = [("psi", feature.psi, feature.psi_pvalue)]
    if feature.ks_statistic is not None and feature.ks_pvalue is not None:
        tests.append(("ks", feature.ks_statistic, feature.ks_pvalue))
    if feature.chi2_statistic is not None and feature.chi2_pvalue is not None:
        tests.append(("chi2", feature.chi2_statistic, feature.chi2_pvalue))
    return tests
