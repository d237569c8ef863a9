"""The performance section of a file comparison: ``drift compare --label-column``.

Where the current file holds the true outcomes beside the model's predictions
(``--prediction-column``), the report says how well the model did on it, with the
metrics of :mod:`flowops.quality.metrics` (each with its 95 % interval), and, when the
reference is data with the same two columns, how well it did on the reference and
whether a metric dropped (:func:`~flowops.quality.drop.performance_drops`). A profile
holds no reference performance yet (``drift baseline`` has no label column), so against
a profile the section gives the current figures alone.

**The task is read from the data**, as nobody has said it:

* predictions that are numbers in [0, 1] for labels of two numeric values (0 and 1):
  a binary classifier's scores, the positive class the larger label, a score at or
  above 0.5 predicting it;
* predictions that are all among the labels' values (classes, text, booleans): a
  classifier, the positive class the largest label in sorted order (1, ``True``,
  ``"yes"`` over ``"no"``) for precision, recall and F1;
* other numbers: a regressor (MAE, RMSE, MAPE).

A drop is judged for accuracy, precision, recall, F1 and ROC AUC: worse by more than
:data:`MIN_DROP` (0.05) with the interval wholly on the worse side. Log loss and the
regression errors are in units of their own and shown without a verdict.

>>> figures = performance([1, 0, 1, 1, 0, 0], [0.9, 0.2, 0.7, 0.4, 0.1, 0.6])
>>> figures["task"], figures["metrics"]["accuracy"]["current"]
('classification', 0.6666666666666666)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from flowops.errors import InputError
from flowops.quality import drop as _drop
from flowops.quality.metrics import Interval
from flowops.quality.windows import QualitySpec, reference_figures

__all__ = ["MIN_DROP", "file_performance", "infer_spec", "performance"]

MIN_DROP: Final = 0.05
"""How much worse than the reference a rate (accuracy, ...) must be to count as a drop."""


def file_performance(
    reference: str | os.PathLike[str] | None,
    current: str | os.PathLike[str],
    *,
    label_column: str,
    prediction_column: str,
) -> dict[str, Any]:
    """The section for two files: ``reference`` is data or None (a profile)."""
    labels, predictions = _pair(current, label_column, prediction_column)
    if reference is None:
        return performance(labels, predictions, label_column=label_column)
    ref_labels, ref_predictions = _pair(reference, label_column, prediction_column)
    return performance(
        labels,
        predictions,
        reference=(ref_labels, ref_predictions),
        label_column=label_column,
    )


def performance(
    labels: Sequence[Any],
    predictions: Sequence[Any],
    *,
    reference: tuple[Sequence[Any], Sequence[Any]] | None = None,
    label_column: str = "label",
) -> dict[str, Any]:
    """The section as JSON-ready builtins: the task, rows, and per metric the current
    figure with its interval, the reference's and whether it dropped (None: not judged)."""
    spec = infer_spec(
        [*labels, *(reference[0] if reference else [])],
        [*predictions, *(reference[1] if reference else [])],
    )
    kept_labels, kept_predictions, missing = _complete(labels, predictions)
    current, unusable = reference_figures(spec, kept_labels, kept_predictions)
    before: dict[str, Interval] = {}
    if reference is not None:
        before, _ = reference_figures(spec, *_complete(*reference)[:2])
    dropped = _drops(current, before)
    rows = max((interval.n for interval in current.values()), default=0)
    return {
        "task": spec.kind,
        "label_column": label_column,
        "scores": spec.scores,
        "positive": spec.positive if spec.kind == "classification" else None,
        "rows": rows,
        "unusable": unusable + missing,
        "metrics": {
            name: {
                "current": _number(interval.value),
                "low": _number(interval.low),
                "high": _number(interval.high),
                "reference": _number(before[name].value) if name in before else None,
                "dropped": (name in dropped)
                if name in before and name in _drop.HIGHER_IS_BETTER
                else None,
            }
            for name, interval in current.items()
        },
    }


def infer_spec(labels: Sequence[Any], predictions: Sequence[Any]) -> QualitySpec:
    """The task the labels and predictions show (see the module).

    >>> infer_spec([0, 1, 1], [0.2, 0.9, 0.6]).scores, infer_spec(["a", "b"], ["b", "b"]).kind
    (True, 'classification')
    >>> infer_spec([1.5, 2.0, 7.25], [1.0, 2.5, 7.0]).kind
    'regression'
    """
    known = [label for label in labels if label is not None]
    guesses = [guess for guess in predictions if guess is not None]
    if not known or not guesses:
        raise InputError("no row has both a label and a prediction")
    classes = sorted(set(known), key=_order)
    if all(_is_number(v) for v in known + guesses):
        if (
            len(classes) <= 2
            and all(0 <= g <= 1 for g in guesses)
            and not set(guesses) <= set(classes)
        ):
            return QualitySpec(
                "classification", scores=True, positive=classes[-1], negative=classes[0]
            )
        if not set(guesses) <= set(classes):
            return QualitySpec("regression")
    negative = classes[0] if len(classes) == 2 else None
    return QualitySpec("classification", positive=classes[-1], negative=negative)


def _pair(
    path: str | os.PathLike[str], label_column: str, prediction_column: str
) -> tuple[list[Any], list[Any]]:
    from flowops.predictions import read_predictions

    labels = _values(read_predictions(path, label_column), label_column, path)
    predictions = _values(read_predictions(path, prediction_column), prediction_column, path)
    return labels, predictions


def _values(columns: dict[str, Any], column: str, path: str | os.PathLike[str]) -> list[Any]:
    if list(columns) != ["prediction"]:
        raise InputError(
            "a label's performance needs one value a row (a label or a score), not a vector",
            path=os.fspath(path),
            column=column,
        )
    values = columns["prediction"]
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    found = [None if _is_missing(value) else value for value in items]
    return [None if value is None else _plain(value) for value in _numbers_if_all(found)]


def _numbers_if_all(values: list[Any]) -> list[Any]:
    """A CSV's cells are text: when every present one reads as a number, numbers."""
    try:
        return [value if value is None else float(value) for value in values]
    except (TypeError, ValueError):
        return values


def _complete(
    labels: Sequence[Any], predictions: Sequence[Any]
) -> tuple[list[Any], list[Any], int]:
    """The rows with both a label and a prediction, and how many lacked one."""
    if len(labels) != len(predictions):
        raise InputError(f"{len(predictions)} predictions for {len(labels)} labels")
    pairs = [
        (a, b) for a, b in zip(labels, predictions, strict=True) if a is not None and b is not None
    ]
    return [a for a, _ in pairs], [b for _, b in pairs], len(labels) - len(pairs)


def _drops(current: dict[str, Interval], before: dict[str, Interval]) -> set[str]:
    rates = {
        name: interval.value for name, interval in before.items() if name in _drop.HIGHER_IS_BETTER
    }
    found = _drop.performance_drops(
        current,
        rates,
        min_drop=MIN_DROP,
        model="",
        version="",
        window_index=0,
        window_start=0.0,
        window_end=0.0,
        n_reference=max((i.n for i in before.values()), default=0),
    )
    return {finding.test for finding in found}


def _plain(value: Any) -> Any:
    """Whole floats as ints, so a CSV's ``1`` and ``1.0`` are the class 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if _is_number(value) else (1, str(value))


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None
