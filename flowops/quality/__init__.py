"""Model quality: labels joined to predictions, realised and estimated performance.

Pure pieces, with no I/O but the join's own store, for the stream worker to drive when it
joins labels (``docs/quality.md`` says what is wired and what is not yet):

* :class:`LabelJoin` (:mod:`~flowops.quality.join`): labels to predictions by request id,
  in either order, within ``max_delay``; memory-bounded, with a crash-safe spill store;
* :class:`ClassificationWindow`, :class:`RegressionWindow`
  (:mod:`~flowops.quality.metrics`): realised metrics as window sums that merge, each an
  :class:`Interval` with its confidence interval;
* :class:`PerformanceWindows` (:mod:`~flowops.quality.windows`): joined rows summed per
  model, version, variant and window of label time, read as its :class:`QualitySpec` says;
* :func:`performance_drops` (:mod:`~flowops.quality.drop`): a drop against the reference,
  as a :class:`PerformanceFinding` with ``feature`` ``"performance"``;
* :class:`Calibration`, :class:`CBPEWindow` (:mod:`~flowops.quality.cbpe`): performance
  estimated before the labels come, for binary classifiers with scores;
* :func:`compare_arms` (:mod:`~flowops.quality.ab`): two arms of an A/B split on one
  metric, the difference, its interval and a p-value, and the winner if there is one;
* :mod:`~flowops.quality.upload`: what ``flowops labels send`` reads and sends.

Names are bound on first use (PEP 562), so ``flowops labels send`` does not pay for
scipy, which the metrics need.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowops.quality.ab import ArmComparison, compare_arms
    from flowops.quality.cbpe import Calibration, CBPEEstimate, CBPEWindow
    from flowops.quality.drop import PerformanceFinding, performance_drops
    from flowops.quality.join import JoinCounts, Joined, LabelJoin
    from flowops.quality.metrics import ClassificationWindow, Interval, RegressionWindow
    from flowops.quality.windows import (
        ClosedPerformance,
        PerformanceWindows,
        QualitySpec,
        reference_figures,
    )

_LAZY: dict[str, str] = {
    "ArmComparison": "ab",
    "compare_arms": "ab",
    "CBPEEstimate": "cbpe",
    "CBPEWindow": "cbpe",
    "Calibration": "cbpe",
    "ClassificationWindow": "metrics",
    "ClosedPerformance": "windows",
    "Interval": "metrics",
    "JoinCounts": "join",
    "Joined": "join",
    "LabelJoin": "join",
    "PerformanceFinding": "drop",
    "PerformanceWindows": "windows",
    "reference_figures": "windows",
    "QualitySpec": "windows",
    "RegressionWindow": "metrics",
    "performance_drops": "drop",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ArmComparison",
    "CBPEEstimate",
    "CBPEWindow",
    "Calibration",
    "ClassificationWindow",
    "ClosedPerformance",
    "Interval",
    "JoinCounts",
    "Joined",
    "LabelJoin",
    "PerformanceFinding",
    "PerformanceWindows",
    "QualitySpec",
    "RegressionWindow",
    "compare_arms",
    "performance_drops",
    "reference_figures",
]
