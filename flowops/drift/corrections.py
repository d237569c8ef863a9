"""Multiple-testing corrections: adjusted p-values for a family of tests.

Testing many features at level ``alpha`` each raises false alarms with the number of
features. Both corrections return adjusted p-values in the order given, clipped to
[0, 1]; a test is significant at level ``alpha`` when its adjusted p-value is below it.

* Bonferroni controls the family-wise error rate (the chance of any false alarm):
  ``min(1, m * p)`` for ``m`` tests.
* Benjamini-Hochberg controls the false discovery rate (the expected share of false
  alarms among the alarms) for independent or positively dependent tests, and keeps
  more power: the ``i``-th smallest p-value becomes ``min_{j >= i} m * p_(j) / j``.

>>> bonferroni([0.01, 0.04, 0.5]).tolist()
[0.03, 0.12, 1.0]
>>> benjamini_hochberg([0.01, 0.04, 0.5]).tolist()
[0.03, 0.06, 0.5]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flowops.errors import InputError

__all__ = ["benjamini_hochberg", "bonferroni"]


def bonferroni(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Bonferroni-adjusted p-values ``min(1, m * p)``, in the order given.

    >>> bonferroni([0.2, 0.3]).tolist()
    [0.4, 0.6]
    """
    p = _pvalues(pvalues)
    return np.minimum(p * p.size, 1.0)


def benjamini_hochberg(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the order given.

    The same values as ``scipy.stats.false_discovery_control(pvalues, method="bh")``.

    >>> benjamini_hochberg([0.04, 0.01, 0.03]).tolist()
    [0.04, 0.03, 0.04]
    """
    p = _pvalues(pvalues)
    order = np.argsort(p)
    ranked = p[order] * (p.size / np.arange(1, p.size + 1))  # scipy's order of operations
    stepped = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def _pvalues(pvalues: ArrayLike) -> NDArray[np.float64]:
    """``pvalues`` as a 1-D float array, checked to lie in [0, 1]."""
    try:
        p = np.asarray(pvalues, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"p-values must be numbers: {exc}") from None
    if p.ndim != 1:
        raise InputError(f"expected a 1-D sequence of p-values, got shape {p.shape}")
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise InputError("p-values must lie in [0, 1]")
    return p
