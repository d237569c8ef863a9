"""flowops.quality.ab: two arms compared on one metric. Equal arms are called different
about as often as alpha says; an arm better by a real margin wins; the direction of
each metric is respected."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowops.quality.ab import compare_arms
from flowops.quality.metrics import ClassificationWindow, Interval, RegressionWindow, wilson


def arm(rng: np.random.Generator, noise: float, rows: int = 800) -> ClassificationWindow:
    truth = rng.random(rows) < 0.5
    scores = np.clip(rng.normal(np.where(truth, 0.65, 0.35), noise), 0, 1)
    window = ClassificationWindow()
    window.add(truth.astype(int), scores=scores)
    return window


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "log_loss"])
def test_equal_arms_are_called_different_about_alpha_of_the_time(metric: str) -> None:
    rng = np.random.default_rng(5)
    called = 0
    for _ in range(300):
        a, b = arm(rng, 0.25).metrics(), arm(rng, 0.25).metrics()
        called += compare_arms(metric, a[metric], b[metric]).winner is not None
    assert 3 <= called <= 27, called  # alpha 0.05: 15 of 300 expected


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "log_loss"])
def test_the_better_arm_wins_whichever_side_it_is_on(metric: str) -> None:
    rng = np.random.default_rng(6)
    good, bad = arm(rng, 0.2, 3000).metrics(), arm(rng, 0.35, 3000).metrics()
    assert compare_arms(metric, good[metric], bad[metric]).winner == "a"
    assert compare_arms(metric, bad[metric], good[metric]).winner == "b"


def test_lower_is_better_for_errors() -> None:
    rng = np.random.default_rng(7)
    truth = rng.normal(0, 1, 2000)
    a, b = RegressionWindow(), RegressionWindow()
    a.add(truth, truth + rng.normal(0, 0.5, 2000))
    b.add(truth, truth + rng.normal(0, 1.0, 2000))
    found = compare_arms("rmse", a.metrics()["rmse"], b.metrics()["rmse"])
    assert found.difference > 0
    assert found.winner == "a"


def test_a_tiny_difference_does_not_win_however_sure() -> None:
    a, b = wilson(900_000, 1_000_000), wilson(903_000, 1_000_000)
    assert compare_arms("accuracy", a, b).winner == "b"
    assert compare_arms("accuracy", a, b, min_difference=0.01).winner is None


def test_the_interval_of_the_difference_and_empty_arms() -> None:
    found = compare_arms("accuracy", wilson(450, 500), wilson(400, 500))
    assert found.low < found.difference < found.high < 0
    empty = Interval(math.nan, math.nan, math.nan, 0)
    assert compare_arms("accuracy", empty, wilson(1, 2)).winner is None
    with pytest.raises(ValueError, match="unknown metric"):
        compare_arms("speed", wilson(1, 2), wilson(1, 2))
