"""The window-test protocol: what a drift test of one feature needs, and what it returns.

A window test compares one feature's current data with its reference profile. The
current side comes in one of two shapes, and every registered test runs from both:

* **values**: the window's finite numbers (numeric) or its category counts
  (categorical), as ``flowops drift compare`` and a single stream worker have them;
* **counts**: how many current values fell in each cell of :attr:`Baseline.grid` (a
  fine grid of the reference's quantiles that holds the PSI edges too, with a cell of
  its own at each cut: :mod:`flowops.drift.grid`), as a merge stage has them after
  adding up the counts of many partitions. Categorical features always arrive as
  counts: they need nothing else.

A test says whether its counts result is exact (:attr:`WindowTest.exact_from_counts`):
PSI, chi-square and Jensen-Shannon work on bins the grid holds exactly; KS from the grid
is within ``1 / GRID_CELLS`` of the statistic on the raw values (ties included), and
Wasserstein within the grid's cell widths.

Every test reports a statistic, a p-value (the probability of an effect at least this
large with no drift) and an **effect size** on a scale that does not grow with the
sample: drift needs both a significant p-value and an effect of at least the test's
``min_effect`` (see :mod:`flowops.drift.registry` for the defaults and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple, Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray

from flowops.drift.grid import Grid
from flowops.drift.profile import CategoricalProfile, NumericProfile
from flowops.drift.reference import Reference
from flowops.errors import InputError

__all__ = [
    "Baseline",
    "Current",
    "FeatureKind",
    "Measurement",
    "WindowTest",
]

FeatureKind: TypeAlias = Literal["numeric", "categorical"]


class Measurement(NamedTuple):
    """One test of one feature: statistic, p-value under no drift, effect size."""

    statistic: float
    pvalue: float
    effect: float


class Baseline:
    """A feature's reference, with what the tests derive from it computed once.

    >>> profile = NumericProfile.from_values(np.arange(100.0), bins=4)
    >>> base = Baseline(profile)
    >>> base.grid.size > 3, set(profile.edges) <= set(base.grid.cuts.tolist())
    (True, True)
    """

    def __init__(self, profile: NumericProfile | CategoricalProfile) -> None:
        self.profile = profile

    @property
    def kind(self) -> FeatureKind:
        """``"numeric"`` or ``"categorical"``."""
        return self.profile.kind

    @property
    def numeric(self) -> NumericProfile:
        """The numeric profile; a categorical one here is a programming error."""
        assert isinstance(self.profile, NumericProfile)
        return self.profile

    @property
    def frequencies(self) -> dict[str, int]:
        """The categorical profile's counts; a numeric one here is a programming error."""
        assert isinstance(self.profile, CategoricalProfile)
        return self.profile.frequencies

    @cached_property
    def reference(self) -> Reference:
        """The prepared reference KS and PSI compare with."""
        return self.numeric.reference()

    @cached_property
    def grid(self) -> Grid:
        """The fine grid counts are kept on: the KS sample's quantiles and the PSI edges."""
        return Grid(self.reference.sorted, edges=self.reference.edges)

    def psi_counts(self, current: Current) -> NDArray[np.int64]:
        """The numeric current data's counts in the PSI bins, from values or grid counts."""
        if current.values is not None:
            return self.reference.bin_counts(current.values)
        return self.grid.psi_counts(current.counts_on(self))

    def grid_counts(self, values: NDArray[np.float64]) -> NDArray[np.int64]:
        """How many of ``values`` fall in each grid cell: what a merge stage holds."""
        return self.grid.counts(values)


@dataclass(frozen=True)
class Current:
    """A feature's current data: raw values, or counts on the baseline's grid.

    Exactly one of ``values`` (finite numbers), ``grid_counts`` (numeric) and
    ``categories`` (categorical counts) is set.
    """

    values: NDArray[np.float64] | None = None
    grid_counts: NDArray[np.int64] | None = None
    categories: Mapping[str, int] | None = None

    @property
    def n(self) -> int:
        """How many current values there are."""
        if self.values is not None:
            return int(self.values.size)
        if self.grid_counts is not None:
            return int(self.grid_counts.sum())
        return sum(self.categories.values()) if self.categories is not None else 0

    @property
    def counts(self) -> Mapping[str, int]:
        """The categorical current data's counts."""
        assert self.categories is not None
        return self.categories

    def counts_on(self, baseline: Baseline) -> NDArray[np.int64]:
        """The numeric current data as counts on the baseline's grid.

        Raises InputError for counts made on another grid (another number of cells).
        """
        if self.grid_counts is not None:
            cells = baseline.grid.size
            if self.grid_counts.shape != (cells,):
                found = self.grid_counts.size
                raise InputError(f"counts on another grid: {found} cells, this one has {cells}")
            return self.grid_counts
        assert self.values is not None
        return baseline.grid_counts(self.values)


class WindowTest(Protocol):
    """A registered drift test (one module; listed in :mod:`flowops.drift.registry`).

    What it needs: a :class:`Baseline` (the profile, and what derives from it) and a
    :class:`Current` with either raw values or counts on the baseline's grid
    (categorical features: category counts). ``run`` must accept both; it may be
    approximate from counts, and says so in ``exact_from_counts``.
    """

    name: str  # the test's name in reports, alerts and config ("psi", "ks", ...)
    kinds: frozenset[FeatureKind]  # the feature kinds it applies to
    effect_name: str  # what its effect size is, for people ("KS D", "Cohen's w", ...)
    min_effect: float  # default floor: no drift below this effect, however small p
    critical_effect: float  # default: "critical" from this effect on, else "warning"
    exact_from_counts: bool  # whether counts on the grid give the same result as values

    def run(self, baseline: Baseline, current: Current, *, fast: bool) -> Measurement:
        """The test of ``current`` against ``baseline``; ``fast`` skips costly exact
        p-values where an asymptotic one already decides (the stream workers')."""
        ...
