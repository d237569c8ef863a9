"""Confidence-based performance estimation (CBPE) for binary classifiers with scores.

Labels come late; the scores come with every prediction. If a score, once calibrated,
is the probability that the row is positive, a window's expected confusion matrix, and
so its expected accuracy and ROC AUC, follow from the scores alone (NannyML's CBPE;
its documentation: the rows' probabilities of each outcome, summed over a chunk).

**Calibration** (:meth:`Calibration.fit`): histogram calibration on the reference's
labelled rows. The reference's scores are cut at their quantiles into ``bins`` cells
(the decision ``threshold`` is one more edge, so a cell predicts one class); a cell's
probability is its share of positives. NannyML uses isotonic regression instead; cells
were chosen here because each carries its own count, which gives the calibration's own
uncertainty (a Beta posterior per cell) to the band, and because a window then reduces
to counts per cell, which merge across partitions like the drift windows' counts.

**A window** (:class:`CBPEWindow`) counts its scores per cell. Its estimate:

* accuracy: the expected share of right predictions, sum of ``p`` over cells predicting
  positive and ``1 - p`` over the others;
* ROC AUC: expected positive-over-negative pairs over expected pairs, cells in score
  order (pairs within a cell count as ties, which is what a flat calibration says of
  them; the realised AUC of exact scores differs from that by at most half the share of
  pairs within cells, which the band adds);
* **the band**: the ``confidence`` range of the *realised* figure if the calibration
  holds, by simulation: a cell's probability drawn from its Beta posterior, then the
  window's positives per cell from the binomial. It is wide for a small window or a
  sparse cell, as it should be.

**What the band cannot know**: CBPE assumes that P(label | score) is the reference's. A
covariate shift that keeps the model calibrated keeps that true and the estimate holds
(the tests check it). Scores outside the reference's range get the nearest cell's
probability, an extrapolation: when more than ``max_outside`` of a window's rows are
there, or in cells with fewer than ``min_cell_rows`` reference rows, the estimate is
flagged unreliable with the reason. A concept shift (the same scores, other outcomes)
is invisible without labels: the realised metrics (:mod:`flowops.quality.metrics`)
catch it when the labels come.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> scores = rng.random(5000)
>>> labels = rng.random(5000) < scores  # calibrated by construction
>>> window = CBPEWindow(Calibration.fit(scores, labels))
>>> window.add(rng.random(2000))
>>> found = window.estimate()
>>> round(found.accuracy.value, 2), found.reliable
(0.75, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flowops.quality.metrics import Interval

__all__ = ["CBPEEstimate", "CBPEWindow", "Calibration"]

_DEFAULT_BINS: Final = 50
_MIN_ROWS_PER_BIN: Final = 100


@dataclass(frozen=True, eq=False)
class Calibration:
    """Histogram calibration fitted on labelled reference rows; see the module's text."""

    edges: NDArray[np.float64]
    """The cells' inner edges, ascending; cell ``c`` holds scores in [edges[c-1], edges[c])."""
    positives: NDArray[np.int64]
    totals: NDArray[np.int64]
    threshold: float
    low: float
    high: float

    @classmethod
    def fit(
        cls,
        scores: ArrayLike,
        labels: ArrayLike,
        *,
        threshold: float = 0.5,
        bins: int | None = None,
    ) -> Calibration:
        """Cells at the reference scores' quantiles; ``labels`` true for positive rows.

        ``bins`` defaults to 50, fewer when the reference has less than 100 rows a bin.
        """
        score = np.asarray(scores, dtype=np.float64)
        truth = np.asarray(labels, dtype=bool)
        if score.ndim != 1 or score.shape != truth.shape or score.size < 2:
            raise ValueError("give one score and one label for each of at least 2 rows")
        if not np.isfinite(score).all():
            raise ValueError("scores must be finite")
        count = bins or max(2, min(_DEFAULT_BINS, score.size // _MIN_ROWS_PER_BIN))
        quantiles = np.quantile(score, np.linspace(0, 1, count + 1)[1:-1])
        edges = np.unique(np.append(quantiles, threshold))
        cells = np.searchsorted(edges, score, side="right")
        return cls(
            edges,
            np.bincount(cells, weights=truth, minlength=edges.size + 1).astype(np.int64),
            np.bincount(cells, minlength=edges.size + 1).astype(np.int64),
            threshold,
            float(score.min()),
            float(score.max()),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready builtins; :meth:`from_dict` reads them back exactly (for a profile).

        >>> calibration = Calibration.fit([0.1, 0.4, 0.6, 0.9], [0, 1, 0, 1], bins=2)
        >>> Calibration.from_dict(calibration.to_dict()) == calibration
        True
        """
        return {
            "edges": self.edges.tolist(),
            "positives": self.positives.tolist(),
            "totals": self.totals.tolist(),
            "threshold": self.threshold,
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """The calibration :meth:`to_dict` wrote; ValueError naming what is wrong."""
        try:
            edges = np.asarray(data["edges"], dtype=np.float64)
            positives = np.asarray(data["positives"], dtype=np.int64)
            totals = np.asarray(data["totals"], dtype=np.int64)
            threshold, low, high = (float(data[key]) for key in ("threshold", "low", "high"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a calibration: {exc!r}") from None
        if not (positives.shape == totals.shape == (edges.size + 1,)):
            raise ValueError("not a calibration: one count per cell, edges + 1 cells")
        if np.any(np.diff(edges) <= 0) or np.any(positives > totals) or np.any(positives < 0):
            raise ValueError("not a calibration: edges must ascend, 0 <= positives <= totals")
        return cls(edges, positives, totals, threshold, low, high)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calibration):
            return NotImplemented
        return (
            np.array_equal(self.edges, other.edges)
            and np.array_equal(self.positives, other.positives)
            and np.array_equal(self.totals, other.totals)
            and (self.threshold, self.low, self.high) == (other.threshold, other.low, other.high)
        )

    __hash__ = None  # type: ignore[assignment]  # arrays inside: not hashable

    @property
    def probabilities(self) -> NDArray[np.float64]:
        """Each cell's share of positives (0.5 for a cell the reference left empty)."""
        return np.where(self.totals > 0, self.positives / np.maximum(self.totals, 1), 0.5)

    @property
    def predicts_positive(self) -> NDArray[np.bool_]:
        """Whether each cell's scores are at or above the threshold."""
        lower = np.concatenate(([-np.inf], self.edges))
        return lower >= self.threshold

    def cells(self, scores: NDArray[np.float64]) -> NDArray[np.intp]:
        """The cell of each score."""
        return np.searchsorted(self.edges, scores, side="right")


@dataclass(frozen=True)
class CBPEEstimate:
    """A window's estimated accuracy and ROC AUC, with bands, and whether to trust them."""

    accuracy: Interval
    roc_auc: Interval
    rows: int
    outside_reference: float
    """Share of the window's scores outside the reference's range."""
    sparse: float
    """Share of the window's rows in cells with few reference rows."""
    reasons: tuple[str, ...]
    """Why the estimate is not reliable; empty when it is."""

    @property
    def reliable(self) -> bool:
        """No reason to doubt the calibration on this window."""
        return not self.reasons

    def metrics(self) -> dict[str, Interval]:
        """As the drop detector reads them: ``estimated_accuracy``, ``estimated_roc_auc``."""
        return {"estimated_accuracy": self.accuracy, "estimated_roc_auc": self.roc_auc}


@dataclass
class CBPEWindow:
    """A window's scores as counts per calibration cell; merges by adding."""

    calibration: Calibration
    max_outside: float = 0.05
    min_cell_rows: int = 30
    counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    outside: int = 0

    def __post_init__(self) -> None:
        if not self.counts.size:
            self.counts = np.zeros(self.calibration.totals.size, np.int64)

    @property
    def rows(self) -> int:
        """Scores counted."""
        return int(self.counts.sum())

    def add(self, scores: ArrayLike) -> None:
        """Count new scores."""
        score = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(score).all():
            raise ValueError("scores must be finite")
        calibration = self.calibration
        self.counts += np.bincount(calibration.cells(score), minlength=self.counts.size)
        self.outside += int(
            np.count_nonzero((score < calibration.low) | (score > calibration.high))
        )

    def merge(self, other: CBPEWindow) -> None:
        """Add another window's counts (of the same calibration)."""
        if other.calibration != self.calibration:
            raise ValueError("windows of another calibration")
        self.counts += other.counts
        self.outside += other.outside

    def to_state(self) -> dict[str, Any]:
        """The counts as JSON-safe data (the calibration is the caller's to keep)."""
        return {"counts": self.counts.tolist(), "outside": self.outside}

    @classmethod
    def from_state(cls, calibration: Calibration, state: Mapping[str, Any]) -> CBPEWindow:
        """The window :meth:`to_state` described, over ``calibration``.

        >>> calibration = Calibration.fit([0.1, 0.4, 0.6, 0.9], [0, 1, 0, 1], bins=2)
        >>> window = CBPEWindow(calibration)
        >>> window.add([0.2, 0.7, 1.5])
        >>> CBPEWindow.from_state(calibration, window.to_state()).estimate() == window.estimate()
        True
        """
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.shape != calibration.totals.shape:
            raise ValueError("the state's cells are not the calibration's")
        return cls(calibration, counts=counts, outside=int(state["outside"]))

    def estimate(
        self, confidence: float = 0.95, *, draws: int = 2000, seed: int = 0
    ) -> CBPEEstimate:
        """The estimate and its band (``draws`` simulations, seeded: reproducible)."""
        rows = self.rows
        if rows == 0:
            nothing = Interval(np.nan, np.nan, np.nan, 0)
            return CBPEEstimate(nothing, nothing, 0, 0.0, 0.0, ("no rows",))
        calibration = self.calibration
        counts = self.counts.astype(np.float64)
        chances = calibration.probabilities
        predicts = calibration.predicts_positive
        own = float(np.sum(counts * chances * (1 - chances)))
        accuracy, auc, tie_share = _figures(counts * chances, counts, predicts, own)
        simulated = _simulate(self.counts, calibration, draws, seed)
        sim_accuracy, sim_auc, _ = _figures(simulated, counts, predicts)
        tail = (1 - confidence) / 2 * 100
        tie_bound = 0.5 * float(tie_share) if np.isfinite(tie_share) else 0.0
        return CBPEEstimate(
            _band(accuracy, sim_accuracy, tail, rows, 0.0),
            _band(auc, sim_auc, tail, rows, tie_bound),
            rows,
            self.outside / rows,
            float(counts[calibration.totals < self.min_cell_rows].sum()) / rows,
            self._reasons(),
        )

    def _reasons(self) -> tuple[str, ...]:
        rows = self.rows
        reasons = []
        outside = self.outside / rows
        if outside > self.max_outside:
            reasons.append(
                f"{outside:.0%} of the scores are outside the reference's range "
                f"[{self.calibration.low:.3g}, {self.calibration.high:.3g}]: "
                "the calibration extrapolates"
            )
        sparse_cells = self.calibration.totals < self.min_cell_rows
        sparse = float(self.counts[sparse_cells].sum()) / rows
        if sparse > self.max_outside:
            reasons.append(
                f"{sparse:.0%} of the rows fall in calibration cells with fewer than "
                f"{self.min_cell_rows} reference rows"
            )
        return tuple(reasons)


def _figures(
    positives: NDArray[np.float64],
    counts: NDArray[np.float64],
    predicts: NDArray[np.bool_],
    own: float | NDArray[np.float64] = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Accuracy, ROC AUC and the within-cell share of positive-negative pairs, from the
    positives per cell (the last axis; any leading axes are worlds of a simulation).

    Pairs within a cell count as ties. ``own`` is what expected counts pair a row with
    itself (``sum m p (1 - p)``), taken out of the pairs; realised counts have none.
    """
    negatives = counts - positives
    right = np.where(predicts, positives, negatives).sum(axis=-1)
    below = np.cumsum(negatives, axis=-1) - negatives
    ordered = (positives * below).sum(axis=-1)
    tied = (positives * negatives).sum(axis=-1) - own
    pairs = positives.sum(axis=-1) * negatives.sum(axis=-1) - own
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(pairs > 0, (ordered + 0.5 * tied) / pairs, np.nan)
        tie_share = np.where(pairs > 0, tied / pairs, np.nan)
    return right / counts.sum(), auc, tie_share


def _simulate(
    counts: NDArray[np.int64], calibration: Calibration, draws: int, seed: int
) -> NDArray[np.float64]:
    """Positives per cell in ``draws`` worlds where the calibration holds: each cell's
    probability from its Beta posterior (Jeffreys prior), then a binomial draw."""
    rng = np.random.default_rng(seed)
    positives = calibration.positives + 0.5
    negatives = calibration.totals - calibration.positives + 0.5
    chances = rng.beta(positives, negatives, size=(draws, counts.size))
    return rng.binomial(counts, chances).astype(np.float64)


def _band(
    value: NDArray[np.float64],
    simulated: NDArray[np.float64],
    tail: float,
    rows: int,
    widen: float,
) -> Interval:
    finite = simulated[np.isfinite(simulated)]
    if not np.isfinite(value) or finite.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), rows)
    low, high = np.percentile(finite, [tail, 100 - tail])
    estimate = float(value)
    return Interval(
        estimate,
        max(0.0, min(float(low), estimate) - widen),
        min(1.0, max(float(high), estimate) + widen),
        rows,
    )
