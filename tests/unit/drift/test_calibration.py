"""Calibration: what the default rules call drift, on data that ships with the tests.

The data: sklearn's bundled datasets (no download) split at random, and normal samples
generated here. The issue's four claims, each a test: random splits raise no drift, a
0.02 SD shift at a million rows is not drift, a 0.3 SD shift at 10,000 rows is, and each
test's p-value falsely alarms at most at rate alpha.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from flowops.drift import Profile, compare
from flowops.drift.registry import WINDOW_TESTS
from flowops.drift.window_test import Baseline, Current

ALPHA = 0.05
SPLITS = 40


def _split_alarms(data: np.ndarray[Any, Any], splits: int) -> int:
    """How many of ``splits`` random halvings of ``data`` the default rules call drift."""
    alarms = 0
    for seed in range(splits):
        order = np.random.default_rng(seed).permutation(len(data))
        half = len(data) // 2
        first, second = data[order[:half]], data[order[half:]]
        profile = Profile.from_columns({f"f{j}": first[:, j] for j in range(data.shape[1])})
        report = compare(profile, {f"f{j}": second[:, j] for j in range(data.shape[1])})
        alarms += report.drift
    return alarms


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine, load_diabetes])
def test_random_splits_of_bundled_datasets_alarm_at_most_at_rate_alpha(
    loader: Callable[..., Any],
) -> None:
    """A few hundred rows: the p-values decide, and their correction keeps the rate."""
    assert _split_alarms(loader().data, SPLITS) <= ALPHA * SPLITS


def test_random_splits_of_large_data_raise_no_drift() -> None:
    """At 20,000 rows the effect floors lie far above the noise: no split drifts."""
    rng = np.random.default_rng(8)
    data = np.column_stack([rng.normal(size=20_000), rng.gamma(2, size=20_000)])
    assert _split_alarms(data, 10) == 0


def test_a_002_sd_shift_at_a_million_rows_is_significant_but_not_drift() -> None:
    rng = np.random.default_rng(9)
    profile = Profile.from_columns({"x": rng.normal(size=1_000_000)})
    report = compare(profile, {"x": rng.normal(0.02, size=1_000_000)})
    feature = report.features[0]
    assert feature.adjusted_pvalue < 1e-6, "the p-value alone would call it drift"
    assert (feature.drift, report.drift) == (False, False)


def test_a_03_sd_shift_at_10k_rows_is_drift() -> None:
    rng = np.random.default_rng(10)
    profile = Profile.from_columns({"x": rng.normal(size=10_000)})
    report = compare(profile, {"x": rng.normal(0.3, size=10_000)})
    feature = report.features[0]
    assert (feature.drift, feature.severity, report.drift) == (True, "warning", True)
    ks = feature.test("ks")
    assert ks is not None
    assert ks.drift


@pytest.mark.parametrize("name", ["psi", "ks", "js", "wasserstein"])
def test_each_numeric_tests_p_value_alarms_at_most_at_rate_alpha(name: str) -> None:
    """200 draws with no drift: the count of p < alpha is what a rate of alpha allows
    (a one-sided binomial test at 1% does not reject it)."""
    rng = np.random.default_rng(12)
    trials, alarms = 200, 0
    for _ in range(trials):
        baseline = Baseline(Profile.from_columns({"x": rng.normal(size=2_000)}).features["x"])
        result = WINDOW_TESTS[name].run(
            baseline, Current(values=rng.normal(size=1_000)), fast=False
        )
        alarms += result.pvalue < ALPHA
    assert stats.binomtest(alarms, trials, ALPHA, alternative="greater").pvalue > 0.01


@pytest.mark.parametrize("name", ["psi", "chi2", "js"])
def test_each_categorical_tests_p_value_alarms_at_most_at_rate_alpha(name: str) -> None:
    rng = np.random.default_rng(13)
    shares, labels = [0.5, 0.3, 0.15, 0.05], ["a", "b", "c", "d"]
    trials, alarms = 200, 0
    for _ in range(trials):
        reference = rng.choice(labels, 2_000, p=shares).tolist()
        baseline = Baseline(Profile.from_columns({"c": reference}).features["c"])
        current = dict(zip(labels, rng.multinomial(1_000, shares).tolist(), strict=True))
        result = WINDOW_TESTS[name].run(baseline, Current(categories=current), fast=False)
        alarms += result.pvalue < ALPHA
    assert stats.binomtest(alarms, trials, ALPHA, alternative="greater").pvalue > 0.01
