"""The fine grid numeric counts are kept on: the one grid of the registry and the stream.

A merge stage never sees raw values, only how many fell in each cell of a feature's
grid, so the grid decides what the window tests can say from counts. It is fitted once
per reference feature (:attr:`~flowops.drift.window_test.Baseline.grid`). Its cut points
are the reference's PSI bin edges and the order statistics ``sorted[floor(j s / K)]``,
``j = 0 .. K-1``, of the reference's KS sample (``s`` values, all of them or the
profile's sketch), with ``K`` = :data:`GRID_CELLS`. A value falls in the open cell
between two neighbouring cuts or in the cell of a cut it equals, so the current
sample's distribution function is known exactly at every cut and just below it.

* **PSI (and Jensen-Shannon) are exact**: every PSI edge is a cut, so the PSI bin counts
  are sums of cells (:meth:`Grid.psi_counts`).
* **KS is within 1/K**: between two neighbouring cuts lie at most ``s / K`` reference
  values, so ``D_grid <= D <= D_grid + 1/K`` for the exact statistic ``D``
  (:meth:`Grid.ks_statistic` has the proof). Ties cost nothing: a value equal to a cut
  has a cell of its own, so a discrete feature's steps are seen whole.
* **Wasserstein** is exact up to where values lie inside each open cell, and sees
  nothing beyond the outer cuts (the reference's least value and its ``(K-1)/K``
  quantile).

Why not the reference's interpolated quantiles with half-open cells ``[a, b)``: with
ties a reference value can carry a large share of the sample on its own, the cell
starting at it then holds more than ``1/K`` of the reference, and the bound fails (a
feature of small integers is the usual case).

>>> grid = Grid(np.array([1.0, 2.0, 3.0, 4.0]), edges=np.array([2.5]), cells=2)
>>> grid.cuts.tolist()
[1.0, 2.5, 3.0]
>>> grid.counts(np.array([0.5, 1.0, 2.7, 3.0, 9.0])).tolist()
[1, 1, 0, 0, 1, 1, 1]
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from flowops.errors import InputError

__all__ = ["GRID_CELLS", "Grid"]

GRID_CELLS = 1024
"""``K``: the reference's KS sample is cut into K parts, so KS from counts is within 1/K."""


class Grid:
    """Cut points of one numeric feature and what the reference holds at each of them.

    ``reference`` is the sorted KS sample, ``edges`` the PSI bins' interior edges. Cell
    ``2 i`` is the open interval between cut ``i - 1`` and cut ``i`` (from -inf for
    ``i = 0``, to +inf for the last), cell ``2 i + 1`` the cut ``i`` itself.
    """

    __slots__ = ("_below", "_psi_bins", "_up_to", "cuts")

    def __init__(
        self,
        reference: NDArray[np.float64],
        *,
        edges: NDArray[np.float64],
        cells: int = GRID_CELLS,
    ) -> None:
        if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
            raise InputError(f"grid cells must be a positive integer, got {cells!r}")
        s = reference.size
        quantiles = reference[(np.arange(cells, dtype=np.int64) * s) // cells]
        self.cuts: NDArray[np.float64] = np.unique(np.concatenate([quantiles, edges]))
        self.cuts.flags.writeable = False
        self._below = np.searchsorted(reference, self.cuts, side="left") / s  # F(c-)
        self._up_to = np.searchsorted(reference, self.cuts, side="right") / s  # F(c)
        at_cut = np.searchsorted(edges, self.cuts, side="right")
        open_cell = np.concatenate([[0], at_cut])  # the cell above cut i-1 is in its bin
        self._psi_bins = np.empty(2 * self.cuts.size + 1, dtype=np.intp)
        self._psi_bins[0::2], self._psi_bins[1::2] = open_cell, at_cut

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
        """The PSI bin counts the cell counts add up to (bins as
        :func:`~flowops.drift.reference.bin_counts` has them)."""
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

        >>> grid = Grid(np.array([1.0, 1.0, 1.0, 2.0]), edges=np.empty(0), cells=4)
        >>> grid.ks_statistic(grid.counts(np.array([2.0, 2.0])))
        0.75
        """
        below, up_to = self._current(cells)
        if below is None or up_to is None:
            return 0.0
        return float(max(np.abs(self._below - below).max(), np.abs(self._up_to - up_to).max()))

    def ks_place(self, cells: NDArray[np.int64]) -> tuple[float, float, float]:
        """Where :meth:`ks_statistic` finds its distance: the cut, and the reference's and
        the current distribution functions there (both at the cut, or both just below it),
        for a report to mark. ``(nan, nan, nan)`` for no values.

        >>> grid = Grid(np.array([1.0, 1.0, 1.0, 2.0]), edges=np.empty(0), cells=4)
        >>> grid.ks_place(grid.counts(np.array([2.0, 2.0])))
        (1.0, 0.75, 0.0)
        """
        below, up_to = self._current(cells)
        if below is None or up_to is None:
            return math.nan, math.nan, math.nan
        gap_below, gap_at = np.abs(self._below - below), np.abs(self._up_to - up_to)
        i, j = int(np.argmax(gap_at)), int(np.argmax(gap_below))
        if gap_at[i] >= gap_below[j]:
            return float(self.cuts[i]), float(self._up_to[i]), float(up_to[i])
        return float(self.cuts[j]), float(self._below[j]), float(below[j])

    def wasserstein(self, cells: NDArray[np.int64]) -> float:
        """W1 between the outer cuts: in each open cell the trapezoid of the gaps of the
        distribution functions just above its lower cut and just below its upper one.

        >>> grid = Grid(np.arange(5.0), edges=np.empty(0), cells=5)
        >>> grid.wasserstein(grid.counts(np.arange(5.0) + 1))
        0.8
        """
        below, up_to = self._current(cells)
        if below is None or up_to is None:
            return 0.0
        left = np.abs(self._up_to - up_to)[:-1]  # just above each cut but the last
        right = np.abs(self._below - below)[1:]  # just below each cut but the first
        return float(np.sum((left + right) / 2 * np.diff(self.cuts)))

    @staticmethod
    def _current(
        cells: NDArray[np.int64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]] | tuple[None, None]:
        """``G(c-)`` and ``G(c)`` at every cut, None for no values."""
        n = int(cells.sum())
        if n == 0:
            return None, None
        cumulative = np.cumsum(cells)
        return cumulative[0:-1:2] / n, cumulative[1::2] / n
