"""flowops.quality.metrics: every realised metric equals scikit-learn's on the same rows,
windows merge to the figures of their rows together, and the intervals cover."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from flowops.quality.metrics import ClassificationWindow, RegressionWindow, wilson


def classification_rows(seed: int, rows: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random(rows) < 0.3
    scores = np.clip(rng.normal(np.where(truth, 0.65, 0.35), 0.2), 0, 1)
    labels = truth.astype(np.int64)
    return labels, (scores >= 0.5).astype(np.int64), scores


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_classification_metrics_equal_sklearns(seed: int) -> None:
    labels, predicted, scores = classification_rows(seed)
    window = ClassificationWindow(positive=1)
    window.add(labels, predicted, scores=scores)
    found = window.metrics()
    assert found["accuracy"].value == pytest.approx(sk.accuracy_score(labels, predicted))
    assert found["precision"].value == pytest.approx(sk.precision_score(labels, predicted))
    assert found["recall"].value == pytest.approx(sk.recall_score(labels, predicted))
    assert found["f1"].value == pytest.approx(sk.f1_score(labels, predicted))
    assert found["log_loss"].value == pytest.approx(sk.log_loss(labels, scores), rel=1e-12)
    exact = sk.roc_auc_score(labels, scores)
    assert abs(found["roc_auc"].value - exact) <= window.roc_auc_error
    assert window.roc_auc_error < 1e-3


def test_roc_auc_is_exact_when_scores_are_constant_within_cells() -> None:
    labels, _, scores = classification_rows(4)
    window = ClassificationWindow(bins=64)
    on_grid = (np.floor(scores * 64).clip(max=63) + 0.5) / 64
    window.add(labels, scores=on_grid)
    assert window.metrics()["roc_auc"].value == pytest.approx(sk.roc_auc_score(labels, on_grid))


def test_string_classes_and_accuracy_over_several_classes() -> None:
    labels = np.array(["cat", "dog", "eel", "cat", "dog", "cat"], dtype=object)
    predicted = np.array(["cat", "eel", "eel", "dog", "dog", "cat"], dtype=object)
    window = ClassificationWindow(positive="cat")
    window.add(labels, predicted)
    found = window.metrics()
    assert found["accuracy"].value == pytest.approx(sk.accuracy_score(labels, predicted))
    assert found["recall"].value == pytest.approx(
        sk.recall_score(labels, predicted, labels=["cat"], average="macro")
    )
    assert "roc_auc" not in found


def test_scores_alone_predict_by_the_threshold() -> None:
    labels, _, scores = classification_rows(5)
    window = ClassificationWindow(threshold=0.6)
    window.add(labels, scores=scores)
    predicted = (scores >= 0.6).astype(np.int64)
    assert window.metrics()["accuracy"].value == pytest.approx(sk.accuracy_score(labels, predicted))


def test_windows_merge_to_the_figures_of_all_their_rows() -> None:
    labels, predicted, scores = classification_rows(6)
    whole, first, second = ClassificationWindow(), ClassificationWindow(), ClassificationWindow()
    whole.add(labels, predicted, scores=scores)
    first.add(labels[:1000], predicted[:1000], scores=scores[:1000])
    second.add(labels[1000:], predicted[1000:], scores=scores[1000:])
    first.merge(second)
    merged, together = first.metrics(), whole.metrics()
    assert merged.keys() == together.keys()
    for name, interval in together.items():
        assert merged[name].value == pytest.approx(interval.value), name
        assert merged[name].low == pytest.approx(interval.low), name
    with pytest.raises(ValueError, match="another positive class"):
        first.merge(ClassificationWindow(positive=0))


@pytest.mark.parametrize("seed", [1, 2])
def test_regression_metrics_equal_sklearns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.normal(100, 30, 2000)
    truth[:3] = 0.0  # MAPE's clip at machine epsilon, as scikit-learn's
    guess = truth + rng.normal(0, 5, 2000)
    window = RegressionWindow()
    window.add(truth[:700], guess[:700])
    rest = RegressionWindow()
    rest.add(truth[700:], guess[700:])
    window.merge(rest)
    found = window.metrics()
    assert found["mae"].value == pytest.approx(sk.mean_absolute_error(truth, guess))
    assert found["rmse"].value == pytest.approx(math.sqrt(sk.mean_squared_error(truth, guess)))
    assert found["mape"].value == pytest.approx(
        sk.mean_absolute_percentage_error(truth, guess), rel=1e-9
    )


@pytest.mark.parametrize(("successes", "trials"), [(95, 100), (3, 40), (500, 1000)])
def test_wilson_bounds_solve_the_score_equation(successes: int, trials: int) -> None:
    """Wilson's bounds are the p where the score test is on its edge:
    (share - p)^2 = z^2 p (1 - p) / n."""
    interval = wilson(successes, trials)
    z = 1.959963984540054
    for p in (interval.low, interval.high):
        assert (successes / trials - p) ** 2 == pytest.approx(z * z * p * (1 - p) / trials)
    assert interval.low < successes / trials < interval.high


def test_wilson_handles_the_edges() -> None:
    assert wilson(0, 10).low == pytest.approx(0.0, abs=1e-12)
    assert wilson(10, 10).high == pytest.approx(1.0)
    assert math.isnan(wilson(0, 0).value)


def test_intervals_cover_the_true_figure_about_as_often_as_they_say() -> None:
    """Accuracy, F1 and ROC AUC of 300-row windows of a model whose population figures
    are computed on a million rows: each 95 % interval covers in 88 % to 99 % of 200."""
    rng = np.random.default_rng(7)

    def window(rows: int) -> ClassificationWindow:
        truth = rng.random(rows) < 0.4
        scores = np.clip(rng.normal(np.where(truth, 0.62, 0.4), 0.18), 0, 1)
        found = ClassificationWindow()
        found.add(truth.astype(int), scores=scores)
        return found

    population = window(1_000_000).metrics()
    covered = dict.fromkeys(("accuracy", "f1", "roc_auc"), 0)
    for _ in range(200):
        found = window(300).metrics()
        for name in covered:
            truth = population[name].value
            covered[name] += found[name].low <= truth <= found[name].high
    assert all(176 <= count <= 198 for count in covered.values()), covered


def test_bad_input_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="probabilities in"):
        ClassificationWindow().add([1], scores=[1.5])
    with pytest.raises(ValueError, match="give predictions, scores or both"):
        ClassificationWindow().add([1])
    with pytest.raises(ValueError, match="must be finite"):
        RegressionWindow().add([1.0], [math.nan])
