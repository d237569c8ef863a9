"""The Wasserstein (earth mover's) distance, scaled by the reference's spread.

``W1 = integral |F_ref(x) - F_cur(x)| dx`` is how far, on average, the current values
must move to look like the reference; divided by the reference's standard deviation it
reads in standard deviations and no longer depends on the feature's unit. For a shift of
the mean it is exactly the shift in standard deviations, Cohen's d.

**Why the standard deviation, not the IQR.** W1 weighs every value by how far it moves,
so it is as sensitive to outliers as the mean is; a robust scale would not make the
ratio robust, and the standard deviation makes the ratio Cohen's d, whose conventions
(0.2 small, 0.5 medium) give the floor and the critical level. Every profile, old ones
too, stores it. A constant reference (standard deviation 0) is not scaled.

**Significance.** W1 has no distribution-free p-value; its p-value is the two-sample KS
test's on the same data (the same hypothesis: one distribution), so drift by
Wasserstein means a significant difference whose size, in W1, passes the floor.

>>> import numpy as np
>>> from flowops.drift.profile import NumericProfile
>>> rng = np.random.default_rng(2)
>>> base = Baseline(NumericProfile.from_values(rng.normal(size=20_000)))
>>> shifted = rng.normal(0.5, size=20_000)
>>> abs(WASSERSTEIN_TEST.run(base, Current(values=shifted), fast=True).effect - 0.5) < 0.03
True
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from flowops.drift.ks import grid_ks, ks_2samp
from flowops.drift.window_test import Baseline, Current, FeatureKind, Measurement

__all__ = ["WASSERSTEIN_TEST", "WassersteinTest", "grid_wasserstein", "wasserstein"]


def wasserstein(reference: NDArray[np.float64], current: NDArray[np.float64]) -> float:
    """W1 between two samples, as ``scipy.stats.wasserstein_distance``.

    >>> wasserstein(np.array([0.0, 1.0]), np.array([2.0, 3.0]))
    2.0
    """
    from scipy import stats  # scipy only where the distance is computed

    return float(stats.wasserstein_distance(reference, current))


def grid_wasserstein(baseline: Baseline, counts: NDArray[np.int64]) -> float:
    """W1 from counts on the baseline's grid (:meth:`~flowops.drift.grid.Grid.wasserstein`).

    Exact up to how the values lie inside each cell; what lies beyond the outer cuts
    (the reference's least value and its ``(K-1)/K`` quantile) is not seen.

    >>> from flowops.drift.profile import NumericProfile
    >>> base = Baseline(NumericProfile.from_values(np.arange(1000.0)))
    >>> grid_wasserstein(base, base.grid_counts(np.arange(1000.0)))
    0.0
    """
    return baseline.grid.wasserstein(counts)


class WassersteinTest:
    """W1 over the reference's standard deviation as a registered window test.

    Floor 0.2 and critical 0.5: Cohen's "small" and "medium" d (see the module).
    """

    name = "wasserstein"
    kinds: frozenset[FeatureKind] = frozenset({"numeric"})
    effect_name = "W1 / reference SD"
    min_effect = 0.2
    critical_effect = 0.5
    exact_from_counts = False

    def run(self, baseline: Baseline, current: Current, *, fast: bool) -> Measurement:
        """The scaled distance (statistic and effect) with the KS p-value."""
        std = baseline.numeric.std
        scale = std if std > 0 else 1.0
        if current.values is not None:
            distance = wasserstein(baseline.reference.sorted, current.values)
            pvalue = ks_2samp(baseline.reference, current.values, method="fast").pvalue
        else:
            counts = current.counts_on(baseline)
            distance, pvalue = grid_wasserstein(baseline, counts), grid_ks(baseline, counts).pvalue
        effect = distance / scale
        return Measurement(effect, pvalue, effect)


WASSERSTEIN_TEST = WassersteinTest()
"""The registered Wasserstein test."""
