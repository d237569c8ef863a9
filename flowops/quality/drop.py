"""A performance drop: a window's metric worse than the reference's, beyond doubt.

A metric has dropped when both hold:

* it is worse than the reference's figure by more than ``min_drop`` (in the metric's own
  units: 0.05 accuracy, 2.0 of RMSE), so that a significant but harmless change (a big
  window makes every difference significant) is not an alert;
* its confidence interval (:mod:`flowops.quality.metrics`) lies wholly on the worse side
  of the reference, so that a small window's noise is not an alert either.

Higher is better for accuracy, precision, recall, F1 and ROC AUC (and the estimated
ones); lower for log loss, MAE, RMSE and MAPE. Each drop is a :class:`PerformanceFinding`
with ``feature`` ``"performance"`` and ``test`` the metric's name: the shape of a drift
:class:`~flowops.drift.finding.Finding`, with the same ``alert_id`` recipe, so that it
can travel as a drift alert once the alert's ``test`` admits these names.

>>> from flowops.quality.metrics import Interval
>>> window = {"accuracy": Interval(0.81, 0.79, 0.83, 1500), "rmse": Interval(4.0, 3.5, 4.5, 90)}
>>> [f.test for f in performance_drops(window, {"accuracy": 0.9, "rmse": 3.8},
...     min_drop=0.05, model="credit", version="3", window_index=4,
...     window_start=0.0, window_end=3600.0, n_reference=10_000)]
['accuracy']
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from flowops.quality.metrics import Interval

__all__ = ["HIGHER_IS_BETTER", "LOWER_IS_BETTER", "PerformanceFinding", "performance_drops"]

HIGHER_IS_BETTER: Final = frozenset(
    {"accuracy", "precision", "recall", "f1", "roc_auc", "estimated_accuracy", "estimated_roc_auc"}
)
LOWER_IS_BETTER: Final = frozenset({"log_loss", "mae", "rmse", "mape"})


@dataclass(frozen=True)
class PerformanceFinding:
    """A metric that dropped in one window; the fields of a drift finding, and more."""

    model: str
    version: str
    test: str
    statistic: float  # the window's figure
    pvalue: None
    threshold: float  # min_drop
    window_index: int
    window_start: float
    window_end: float
    n_reference: int
    n_current: int
    severity: Literal["warning", "critical"]
    reference_value: float
    low: float
    high: float
    feature: str = "performance"
    reference: Literal["profile"] = "profile"
    partition: None = None  # a model's windows of label time, never a partition's
    window_verdict: None = None  # no dataset verdict: a metric, not the features

    @property
    def alert_id(self) -> str:
        """sha256 of the JSON array [model, version, "performance", test, window_index]."""
        key = [self.model, self.version, self.feature, self.test, self.window_index]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The fields and ``alert_id`` as JSON-ready builtins."""
        return {"alert_id": self.alert_id, **asdict(self)}


def performance_drops(
    window: Mapping[str, Interval],
    reference: Mapping[str, float],
    *,
    min_drop: float | Mapping[str, float],
    model: str,
    version: str,
    window_index: int,
    window_start: float,
    window_end: float,
    n_reference: int,
) -> list[PerformanceFinding]:
    """The window's metrics that dropped against the reference's (see the module's text).

    A metric the reference lacks, or a NaN figure (an empty window, one class only), is
    not judged. ``severity`` is ``"critical"`` for a drop of twice ``min_drop`` or more.
    """
    found = []
    for name, interval in window.items():
        if name not in reference or math.isnan(interval.value):
            continue
        floor = min_drop if isinstance(min_drop, int | float) else min_drop.get(name)
        if floor is None:
            continue
        drop = _drop(name, interval, reference[name], floor)
        if drop is not None:
            found.append(
                PerformanceFinding(
                    model,
                    version,
                    name,
                    interval.value,
                    None,
                    floor,
                    window_index,
                    window_start,
                    window_end,
                    n_reference,
                    interval.n,
                    "critical" if drop >= 2 * floor else "warning",
                    reference[name],
                    interval.low,
                    interval.high,
                )
            )
    return found


def _drop(name: str, interval: Interval, reference: float, floor: float) -> float | None:
    """How much worse the window is, if beyond ``floor`` and its interval; else None."""
    if name in HIGHER_IS_BETTER:
        drop, excluded = reference - interval.value, interval.high < reference
    elif name in LOWER_IS_BETTER:
        drop, excluded = interval.value - reference, interval.low > reference
    else:
        raise ValueError(f"unknown metric {name!r}: is higher or lower better?")
    return drop if drop > floor and excluded else None
