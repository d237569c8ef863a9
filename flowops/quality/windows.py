"""Realised performance per model, version, variant and tumbling window of label time.

Joined rows (:class:`~flowops.quality.join.Joined`) go into the window of their label's
timestamp: the clock of quality is when outcomes became known, so a window closes when
its labels are in, whatever the age of the predictions. :meth:`PerformanceWindows.close`
hands back the windows that ended before a time (the caller's watermark, less any grace),
each with its metrics (:mod:`flowops.quality.metrics`), ready for
:func:`~flowops.quality.drop.performance_drops`.

How a prediction is read is the model's :class:`QualitySpec`: for a classifier, the
predicted class (``scores=False``) or the positive class's probability (``scores=True``,
a number in [0, 1]; the class is then ``positive`` at or above ``threshold``); for a
regressor, a number. A row that does not fit (a dict where a number was expected, a
score outside [0, 1], a NaN) is counted in ``unusable``, not raised: one bad prediction
must not stop a model's monitoring.

>>> from flowops.quality.join import Joined
>>> windows = PerformanceWindows(QualitySpec("classification", window=60.0, scores=True))
>>> windows.add([Joined("m", "r1", "3", None, 0.8, 1, 1.0, 61.0),
...              Joined("m", "r2", "3", None, 0.3, 1, 2.0, 62.0),
...              Joined("m", "r3", "3", None, "?", 0, 2.0, 63.0)])
>>> [(w.index, w.rows, w.unusable, w.metrics["recall"].value) for w in windows.close(120.0)]
[(1, 2, 1, 0.5)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from flowops.quality.join import Joined
from flowops.quality.metrics import ClassificationWindow, Interval, RegressionWindow

__all__ = ["ClosedPerformance", "PerformanceWindows", "QualitySpec", "reference_figures"]


@dataclass(frozen=True)
class QualitySpec:
    """How a model's predictions and labels are read, and its windows' length."""

    kind: Literal["classification", "regression"]
    window: float = 3600.0
    """Seconds of label time a window spans."""
    scores: bool = False
    """Classification: predictions are the positive class's probabilities, not classes."""
    positive: Any = 1
    negative: Any = 0
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "regression"):
            raise ValueError(f"kind must be classification or regression, got {self.kind!r}")
        if not self.window > 0:
            raise ValueError(f"window must be positive seconds, got {self.window}")


@dataclass(frozen=True)
class ClosedPerformance:
    """A closed window of one model version and variant, with its metrics."""

    model: str
    version: str | None
    variant: str | None
    index: int
    start: float
    end: float
    rows: int
    unusable: int
    metrics: dict[str, Interval]


_Key = tuple[str, str | None, str | None, int]


@dataclass
class _Open:
    """An open window: the metrics' sums (constant size), and the rows left out."""

    sums: ClassificationWindow | RegressionWindow
    unusable: int = 0


class PerformanceWindows:
    """Open windows of joined rows, by model, version, variant and window index."""

    def __init__(self, spec: QualitySpec, *, confidence: float = 0.95) -> None:
        self.spec = spec
        self.confidence = confidence
        self._open: dict[_Key, _Open] = {}

    def add(self, joined: Iterable[Joined]) -> None:
        """Put each joined row into the window of its label's time (summed per window
        once per call, so a batch of joins costs one numpy pass a window)."""
        rows: dict[_Key, tuple[list[Any], list[Any]]] = {}
        for row in joined:
            index = math.floor(row.labelled_at / self.spec.window)
            key = (row.model, row.version, row.variant, index)
            labels, predictions = rows.setdefault(key, ([], []))
            if _usable(self.spec, row.label, row.prediction):
                labels.append(row.label)
                predictions.append(row.prediction)
            else:
                self._window(key).unusable += 1
        for key, (labels, predictions) in rows.items():
            if labels:
                _sum(self.spec, self._window(key).sums, labels, predictions)

    def close(self, before: float) -> list[ClosedPerformance]:
        """The windows that end at or before ``before``, in order of key; forgotten here."""
        span = self.spec.window
        done = sorted((key for key in self._open if (key[3] + 1) * span <= before), key=_order)
        return [self._closed(key, self._open.pop(key)) for key in done]

    def to_state(self) -> dict[str, Any]:
        """The open windows as JSON-safe data, for the worker's checkpoint;
        :meth:`from_state` restores them exactly (the spec is the caller's)."""
        return {
            "windows": [
                [list(key), window.unusable, window.sums.to_state()]
                for key, window in self._open.items()
            ]
        }

    @classmethod
    def from_state(
        cls, spec: QualitySpec, state: Mapping[str, Any], *, confidence: float = 0.95
    ) -> PerformanceWindows:
        """The windows :meth:`to_state` described, read as ``spec`` says."""
        windows = cls(spec, confidence=confidence)
        kind = RegressionWindow if spec.kind == "regression" else ClassificationWindow
        for (model, version, variant, index), unusable, sums in state["windows"]:
            windows._open[model, version, variant, int(index)] = _Open(
                kind.from_state(sums), int(unusable)
            )
        return windows

    def open_windows(self) -> int:
        """How many windows are open."""
        return len(self._open)

    def _window(self, key: _Key) -> _Open:
        window = self._open.get(key)
        if window is None:
            window = self._open[key] = _Open(_new_sums(self.spec))
        return window

    def _closed(self, key: _Key, window: _Open) -> ClosedPerformance:
        model, version, variant, index = key
        span = self.spec.window
        rows = window.sums.rows
        return ClosedPerformance(
            model,
            version,
            variant,
            index,
            index * span,
            (index + 1) * span,
            rows,
            window.unusable,
            window.sums.metrics(self.confidence) if rows else {},
        )


def reference_figures(
    spec: QualitySpec,
    labels: Sequence[Any],
    predictions: Sequence[Any],
    *,
    confidence: float = 0.95,
) -> tuple[dict[str, Interval], int]:
    """The metrics of labelled reference rows (what a window is judged against), read as
    ``spec`` says, and how many rows were unusable.

    >>> figures, unusable = reference_figures(QualitySpec("regression"), [1.0, 2.0], [1.5, 2.5])
    >>> figures["mae"].value, unusable
    (0.5, 0)
    """
    if len(labels) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    keep = [_usable(spec, label, guess) for label, guess in zip(labels, predictions, strict=True)]
    sums = _new_sums(spec)
    kept_labels = [label for label, ok in zip(labels, keep, strict=True) if ok]
    kept = [guess for guess, ok in zip(predictions, keep, strict=True) if ok]
    if kept_labels:
        _sum(spec, sums, kept_labels, kept)
    return (sums.metrics(confidence) if kept_labels else {}), keep.count(False)


def _new_sums(spec: QualitySpec) -> ClassificationWindow | RegressionWindow:
    if spec.kind == "regression":
        return RegressionWindow()
    return ClassificationWindow(spec.positive, spec.negative, spec.threshold)


def _sum(
    spec: QualitySpec,
    sums: ClassificationWindow | RegressionWindow,
    labels: list[Any],
    predictions: list[Any],
) -> None:
    if isinstance(sums, RegressionWindow):
        sums.add(labels, predictions)
    elif spec.scores:
        sums.add(np.array(labels, dtype=object), scores=np.array(predictions, np.float64))
    else:
        sums.add(np.array(labels, dtype=object), np.array(predictions, dtype=object))


def _usable(spec: QualitySpec, label: Any, prediction: Any) -> bool:
    if spec.kind == "regression":
        return _finite_number(label) and _finite_number(prediction)
    if spec.scores:
        return _finite_number(prediction) and 0 <= prediction <= 1
    return prediction is not None and not isinstance(prediction, dict | list)


def _order(key: _Key) -> tuple[Any, ...]:
    """Keys in order, no version or variant (None) before any."""
    model, version, variant, index = key
    return (model, version is not None, version or "", variant is not None, variant or "", index)


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
