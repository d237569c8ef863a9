"""Realised performance from joined labels: window counts that merge, and the metrics.

A window's figures are kept as sums, not rows, so that partial windows of several
partitions (or several batches) merge exactly by adding (:meth:`merge`), like the drift
windows' counts:

* :class:`ClassificationWindow`: how many rows were right (accuracy over any classes), the
  confusion counts of the ``positive`` class (precision, recall, F1), the log loss's sum
  and sum of squares, and two histograms of the scores (``bins`` cells on [0, 1], one
  for positive rows, one for negative). ROC AUC comes from the histograms: pairs in
  different cells are ordered exactly, pairs in one cell are counted as ties, so the
  figure is within ``roc_auc_error`` (half the share of positive-negative pairs sharing a
  cell; reported beside it) of the AUC of the exact scores, and equal to it when the
  scores are constant within cells. 1,024 cells cost 16 KiB a window, whatever the rows.
* :class:`RegressionWindow`: the sums of absolute, squared and fourth-power errors and
  of absolute percentage errors (MAE, RMSE, MAPE as scikit-learn defines them).

Every metric comes as an :class:`Interval` with a confidence interval:

* accuracy, precision, recall: Wilson's score interval. It needs only the counts (so a
  merged window has it), and unlike the normal (Wald) interval it keeps its coverage near
  0 and 1, where accuracies live; a bootstrap would need the rows.
* F1: the delta method over the multinomial of (TP, FP, FN, TN) shares.
* ROC AUC: Hanley and McNeil's (1982) standard error, widened by ``roc_auc_error``.
* log loss, MAE, MAPE (means of per-row losses): the normal approximation with the sample
  variance; RMSE: the delta method from the mean squared error's variance.

>>> window = ClassificationWindow(positive=1)
>>> window.add([1, 0, 1, 1], [1, 0, 0, 1], scores=[0.9, 0.2, 0.4, 0.8])
>>> metrics = window.metrics()
>>> metrics["accuracy"].value, metrics["recall"].value, metrics["roc_auc"].value
(0.75, 0.6666666666666666, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "ClassificationWindow",
    "Interval",
    "RegressionWindow",
    "wilson",
]

CLASSIFICATION_METRICS: Final = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS: Final = ("mae", "rmse", "mape")
_EPS: Final = float(np.finfo(np.float64).eps)  # scikit-learn's clip for log loss and MAPE
_CLASSIFICATION_SCALARS: Final = (
    "positive", "negative", "threshold", "bins", "rows", "correct",
    "tp", "fp", "fn", "tn", "scored", "log_loss_sum", "log_loss_squares",
)  # fmt: skip
_REGRESSION_SUMS: Final = (
    "rows", "absolute", "squared", "fourth", "percentage", "percentage_squares",
)  # fmt: skip


@dataclass(frozen=True)
class Interval:
    """A metric's value, its confidence interval ``[low, high]`` and the rows behind it."""

    value: float
    low: float
    high: float
    n: int


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """Wilson's score interval of a proportion.

    >>> interval = wilson(95, 100)
    >>> round(interval.low, 4), round(interval.high, 4)
    (0.8882, 0.9785)
    """
    if trials == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    z = _z(confidence)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    half /= 1 + z * z / trials
    return Interval(share, max(0.0, centre - half), min(1.0, centre + half), trials)


@dataclass
class ClassificationWindow:
    """Counts of a window of joined classification rows; see the module's text."""

    positive: Any = 1
    negative: Any = 0
    """The class a score below ``threshold`` predicts, when only scores are given."""
    threshold: float = 0.5
    """With scores but no predicted classes: a score at or above it predicts positive."""
    bins: int = 1024
    rows: int = 0
    correct: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    scored: int = 0
    log_loss_sum: float = 0.0
    log_loss_squares: float = 0.0
    positive_scores: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    negative_scores: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        if not self.positive_scores.size:
            self.positive_scores = np.zeros(self.bins, np.int64)
            self.negative_scores = np.zeros(self.bins, np.int64)

    def add(
        self,
        labels: Sequence[Any] | ArrayLike,
        predictions: Sequence[Any] | ArrayLike | None = None,
        *,
        scores: Sequence[float] | ArrayLike | None = None,
    ) -> None:
        """Add rows: true labels, predicted classes, and the positive class's scores
        (probabilities in [0, 1]); give predictions, scores or both."""
        truth = np.asarray(labels, dtype=object)
        score = None if scores is None else _probabilities(scores, len(truth))
        if predictions is None:
            if score is None:
                raise ValueError("give predictions, scores or both")
            is_positive_prediction = score >= self.threshold
            predicted = np.array([self.positive, self.negative], dtype=object)[
                np.where(is_positive_prediction, 0, 1)
            ]
        else:
            predicted = np.asarray(predictions, dtype=object)
            is_positive_prediction = predicted == self.positive
        if len(predicted) != len(truth):
            raise ValueError(f"{len(predicted)} predictions for {len(truth)} labels")
        actual = truth == self.positive
        self._count(truth, predicted, actual, is_positive_prediction)
        if score is not None:
            self._score(actual, score)

    def merge(self, other: ClassificationWindow) -> None:
        """Add another window's counts (same positive class, threshold and bins)."""
        if (other.positive, other.threshold, other.bins) != (
            self.positive,
            self.threshold,
            self.bins,
        ):
            raise ValueError("windows of another positive class, threshold or bins")
        for name in ("rows", "correct", "tp", "fp", "fn", "tn", "scored"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.log_loss_sum += other.log_loss_sum
        self.log_loss_squares += other.log_loss_squares
        self.positive_scores = self.positive_scores + other.positive_scores
        self.negative_scores = self.negative_scores + other.negative_scores

    def to_state(self) -> dict[str, Any]:
        """The counts as JSON-safe data; :meth:`from_state` restores them exactly.

        The classes must be JSON values (numbers, strings, booleans), as labels are.

        >>> window = ClassificationWindow(bins=4)
        >>> window.add([1, 0], scores=[0.9, 0.2])
        >>> ClassificationWindow.from_state(window.to_state()).metrics() == window.metrics()
        True
        """
        state = {name: getattr(self, name) for name in _CLASSIFICATION_SCALARS}
        state["positive_scores"] = _sparse(self.positive_scores)
        state["negative_scores"] = _sparse(self.negative_scores)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ClassificationWindow:
        """The window :meth:`to_state` described."""
        window = cls(**{name: state[name] for name in _CLASSIFICATION_SCALARS})
        window.positive_scores = _dense(state["positive_scores"], window.bins)
        window.negative_scores = _dense(state["negative_scores"], window.bins)
        return window

    def metrics(self, confidence: float = 0.95) -> dict[str, Interval]:
        """Every metric the window can give (ROC AUC and log loss need scores)."""
        found = {
            "accuracy": wilson(self.correct, self.rows, confidence),
            "precision": wilson(self.tp, self.tp + self.fp, confidence),
            "recall": wilson(self.tp, self.tp + self.fn, confidence),
            "f1": self._f1(confidence),
        }
        if self.scored:
            found["roc_auc"] = self._roc_auc(confidence)
            found["log_loss"] = _mean_interval(
                self.log_loss_sum, self.log_loss_squares, self.scored, confidence
            )
        return found

    @property
    def roc_auc_error(self) -> float:
        """The most the histogram AUC can differ from the exact scores' AUC."""
        pairs = float(self.positive_scores.sum()) * float(self.negative_scores.sum())
        if pairs == 0:
            return math.nan
        shared = float(np.dot(self.positive_scores, self.negative_scores.astype(np.float64)))
        return 0.5 * shared / pairs

    def _count(
        self,
        truth: NDArray[Any],
        predicted: NDArray[Any],
        actual: NDArray[np.bool_],
        guessed: NDArray[np.bool_],
    ) -> None:
        self.rows += len(truth)
        self.correct += int(np.count_nonzero(truth == predicted))
        self.tp += int(np.count_nonzero(actual & guessed))
        self.fp += int(np.count_nonzero(~actual & guessed))
        self.fn += int(np.count_nonzero(actual & ~guessed))
        self.tn += int(np.count_nonzero(~actual & ~guessed))

    def _score(self, actual: NDArray[np.bool_], score: NDArray[np.float64]) -> None:
        clipped = np.clip(score, _EPS, 1 - _EPS)
        losses = -np.where(actual, np.log(clipped), np.log1p(-clipped))
        self.scored += len(score)
        self.log_loss_sum += float(losses.sum())
        self.log_loss_squares += float(np.square(losses).sum())
        cells = np.minimum((score * self.bins).astype(np.int64), self.bins - 1)
        self.positive_scores += np.bincount(cells[actual], minlength=self.bins)
        self.negative_scores += np.bincount(cells[~actual], minlength=self.bins)

    def _f1(self, confidence: float) -> Interval:
        denominator = 2 * self.tp + self.fp + self.fn
        if denominator == 0 or self.rows == 0:
            return Interval(math.nan, math.nan, math.nan, self.rows)
        n = self.rows
        shares = np.array([self.tp, self.fp, self.fn, self.tn], dtype=np.float64) / n
        a, b, c, _ = shares
        scale = (2 * a + b + c) ** 2
        gradient = np.array([2 * (b + c) / scale, -2 * a / scale, -2 * a / scale, 0.0])
        covariance = (np.diag(shares) - np.outer(shares, shares)) / n
        spread = math.sqrt(max(float(gradient @ covariance @ gradient), 0.0))
        value = 2 * self.tp / denominator
        return _clipped(value, _z(confidence) * spread, n)

    def _roc_auc(self, confidence: float) -> Interval:
        positives = float(self.positive_scores.sum())
        negatives = float(self.negative_scores.sum())
        if positives == 0 or negatives == 0:
            return Interval(math.nan, math.nan, math.nan, self.scored)
        below = np.cumsum(self.negative_scores) - self.negative_scores
        ordered = float(np.dot(self.positive_scores, below.astype(np.float64)))
        tied = float(np.dot(self.positive_scores, self.negative_scores.astype(np.float64)))
        auc = (ordered + 0.5 * tied) / (positives * negatives)
        q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
        variance = (
            auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
        ) / (positives * negatives)
        half = _z(confidence) * math.sqrt(max(variance, 0.0)) + self.roc_auc_error
        return _clipped(auc, half, self.scored)


@dataclass
class RegressionWindow:
    """Sums of a window of joined regression rows; see the module's text.

    >>> window = RegressionWindow()
    >>> window.add([3.0, -0.5, 2.0], [2.5, 0.0, 2.0])
    >>> {name: round(m.value, 4) for name, m in window.metrics().items()}
    {'mae': 0.3333, 'rmse': 0.4082, 'mape': 0.3889}
    """

    rows: int = 0
    absolute: float = 0.0
    squared: float = 0.0
    fourth: float = 0.0
    percentage: float = 0.0
    percentage_squares: float = 0.0

    def add(
        self, labels: Sequence[float] | ArrayLike, predictions: Sequence[float] | ArrayLike
    ) -> None:
        """Add rows: true values and predicted values (finite numbers)."""
        truth = np.asarray(labels, dtype=np.float64)
        guess = np.asarray(predictions, dtype=np.float64)
        if truth.shape != guess.shape:
            raise ValueError(f"{guess.size} predictions for {truth.size} labels")
        if not (np.isfinite(truth).all() and np.isfinite(guess).all()):
            raise ValueError("labels and predictions must be finite numbers")
        error = np.abs(guess - truth)
        squares = np.square(error)
        share = error / np.maximum(np.abs(truth), _EPS)
        self.rows += truth.size
        self.absolute += float(error.sum())
        self.squared += float(squares.sum())
        self.fourth += float(np.square(squares).sum())
        self.percentage += float(share.sum())
        self.percentage_squares += float(np.square(share).sum())

    def merge(self, other: RegressionWindow) -> None:
        """Add another window's sums."""
        for name in _REGRESSION_SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_state(self) -> dict[str, Any]:
        """The sums as JSON-safe data; :meth:`from_state` restores them exactly."""
        return {name: getattr(self, name) for name in _REGRESSION_SUMS}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RegressionWindow:
        """The window :meth:`to_state` described."""
        return cls(**{name: state[name] for name in _REGRESSION_SUMS})

    def metrics(self, confidence: float = 0.95) -> dict[str, Interval]:
        """MAE, RMSE and MAPE with their intervals (NaN for an empty window)."""
        n = self.rows
        mse = _mean_interval(self.squared, self.fourth, n, confidence)
        rmse = math.sqrt(mse.value) if n else math.nan
        spread = (mse.high - mse.value) / (2 * rmse) if n and rmse > 0 else 0.0
        return {
            "mae": _mean_interval(self.absolute, self.squared, n, confidence),
            "rmse": Interval(rmse, max(0.0, rmse - spread), rmse + spread, n),
            "mape": _mean_interval(self.percentage, self.percentage_squares, n, confidence),
        }


def _sparse(counts: NDArray[np.int64]) -> list[list[int]]:
    """A histogram as [cell, count] pairs of its non-empty cells (most are empty)."""
    cells = np.flatnonzero(counts)
    return [[int(cell), int(counts[cell])] for cell in cells]


def _dense(pairs: Sequence[Sequence[int]], bins: int) -> NDArray[np.int64]:
    counts = np.zeros(bins, np.int64)
    for cell, count in pairs:
        counts[cell] = count
    return counts


def _probabilities(scores: Sequence[float] | ArrayLike, rows: int) -> NDArray[np.float64]:
    score = np.asarray(scores, dtype=np.float64)
    if score.shape != (rows,):
        raise ValueError(f"{score.size} scores for {rows} labels")
    if not ((score >= 0) & (score <= 1)).all():
        raise ValueError("scores must be probabilities in [0, 1]")
    return score


def _mean_interval(total: float, squares: float, n: int, confidence: float) -> Interval:
    """A mean's normal-approximation interval from its sum and sum of squares."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = total / n
    variance = max(squares / n - mean * mean, 0.0) * n / max(n - 1, 1)
    half = _z(confidence) * math.sqrt(variance / n)
    return Interval(mean, mean - half, mean + half, n)


def _clipped(value: float, half: float, n: int) -> Interval:
    return Interval(value, max(0.0, value - half), min(1.0, value + half), n)


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2))
