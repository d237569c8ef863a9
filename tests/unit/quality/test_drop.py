"""flowops.quality.drop: a drop needs both the size (min_drop) and the interval; the
finding has the drift finding's shape with feature "performance"."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowops.drift.finding import Finding
from flowops.quality.drop import PerformanceFinding, performance_drops
from flowops.quality.metrics import ClassificationWindow, Interval, RegressionWindow

WINDOW = {"window_index": 2, "window_start": 100.0, "window_end": 200.0, "n_reference": 5000}


def drops(
    window: dict[str, Interval], reference: dict[str, float], min_drop: float | dict[str, float]
) -> list[PerformanceFinding]:
    return performance_drops(window, reference, min_drop=min_drop, model="m", version="1", **WINDOW)


@pytest.mark.parametrize(
    ("interval", "reference", "expected"),
    [
        (Interval(0.78, 0.76, 0.80, 2000), 0.90, ["critical"]),  # big and sure
        (Interval(0.86, 0.84, 0.88, 2000), 0.90, []),  # sure, but within min_drop
        (Interval(0.80, 0.60, 0.95, 20), 0.90, []),  # big, but the interval holds 0.90
        (Interval(0.83, 0.81, 0.85, 2000), 0.90, ["warning"]),
        (Interval(0.95, 0.94, 0.96, 2000), 0.90, []),  # better is never a drop
        (Interval(math.nan, math.nan, math.nan, 0), 0.90, []),
    ],
)
def test_higher_is_better_metrics(
    interval: Interval, reference: float, expected: list[str]
) -> None:
    found = drops({"accuracy": interval}, {"accuracy": reference}, 0.05)
    assert [f.severity for f in found] == expected


def test_lower_is_better_metrics_drop_when_they_rise() -> None:
    window = {"rmse": Interval(5.0, 4.6, 5.4, 900), "mae": Interval(3.0, 2.9, 3.1, 900)}
    found = drops(window, {"rmse": 4.0, "mae": 3.0}, {"rmse": 0.5, "mae": 0.5})
    assert [(f.test, f.statistic, f.reference_value, f.severity) for f in found] == [
        ("rmse", 5.0, 4.0, "critical")
    ]


def test_metrics_without_a_reference_or_a_floor_are_not_judged() -> None:
    window = {"f1": Interval(0.1, 0.05, 0.15, 900), "recall": Interval(0.1, 0.05, 0.15, 900)}
    assert drops(window, {"f1": 0.9}, {"recall": 0.1}) == []


def test_an_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric 'speed'"):
        drops({"speed": Interval(1, 0, 2, 3)}, {"speed": 5.0}, 0.1)


def test_the_finding_has_the_drift_findings_fields_and_alert_id_recipe() -> None:
    [finding] = drops({"accuracy": Interval(0.7, 0.68, 0.72, 3000)}, {"accuracy": 0.9}, 0.05)
    assert (finding.feature, finding.test, finding.n_current) == ("performance", "accuracy", 3000)
    assert set(Finding.__dataclass_fields__) <= set(finding.to_dict())
    drift = Finding("m", "1", "performance", "psi", 0.7, None, 0.05, 2, 100.0, 200.0, 5000,
                    3000, "critical", "profile")  # fmt: skip
    assert finding.alert_id != drift.alert_id  # the test's name is part of the id
    assert len(finding.alert_id) == 64


def test_a_real_window_of_a_worse_model_drops_and_one_of_the_same_does_not() -> None:
    rng = np.random.default_rng(3)

    def window(noise: float) -> dict[str, Interval]:
        truth = rng.random(4000) < 0.5
        scores = np.clip(rng.normal(np.where(truth, 0.7, 0.3), noise), 0, 1)
        found = ClassificationWindow()
        found.add(truth.astype(int), scores=scores)
        return found.metrics()

    reference = {name: interval.value for name, interval in window(0.2).items()}
    assert drops(window(0.2), reference, 0.02) == []
    worse = drops(window(0.45), reference, 0.02)
    assert {f.test for f in worse} >= {"accuracy", "roc_auc", "log_loss"}
    regression = RegressionWindow()
    regression.add(rng.normal(0, 1, 500), rng.normal(0, 1, 500))
    assert drops(regression.metrics(), {"rmse": 0.5}, 0.1)[0].test == "rmse"
