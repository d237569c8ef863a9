"""flowops.quality.cbpe on generated data: under a covariate shift that keeps the model
calibrated (P(label | x) unchanged), the realised accuracy and ROC AUC of each window fall
within the estimate's band about as often as the band says; where the window's scores
leave the reference's range the estimate is flagged, and its band is wide."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from flowops.quality.cbpe import Calibration, CBPEWindow


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


class World:
    """x ~ N(mean, sd); the label's true chance is sigmoid(2x - 0.5); the model's score is
    sigmoid(4x - 1): overconfident, but a monotone function of the true chance, so a
    calibration learnt on the reference maps it back whatever x's distribution."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def rows(self, n: int, mean: float, sd: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        x = self.rng.normal(mean, sd, n)
        labels = self.rng.random(n) < sigmoid(2 * x - 0.5)
        return sigmoid(4 * x - 1), labels


@pytest.fixture(scope="module")
def world() -> World:
    return World(11)


@pytest.fixture(scope="module")
def calibration(world: World) -> Calibration:
    return Calibration.fit(*world.rows(20_000, 0.0))


@pytest.mark.parametrize("mean", [0.0, 0.8, -0.8])
def test_the_band_holds_the_realised_figure_under_a_calibrated_covariate_shift(
    world: World, calibration: Calibration, mean: float
) -> None:
    covered = {"accuracy": 0, "roc_auc": 0}
    windows = 40
    for _ in range(windows):
        scores, labels = world.rows(2000, mean)
        window = CBPEWindow(calibration)
        window.add(scores)
        found = window.estimate()
        assert found.reliable, found.reasons
        accuracy = float(np.mean((scores >= 0.5) == labels))
        auc = float(roc_auc_score(labels, scores))
        covered["accuracy"] += found.accuracy.low <= accuracy <= found.accuracy.high
        covered["roc_auc"] += found.roc_auc.low <= auc <= found.roc_auc.high
        assert found.accuracy.high - found.accuracy.low < 0.06  # informative, not vacuous
        assert found.roc_auc.high - found.roc_auc.low < 0.08
    assert covered["accuracy"] >= 35, covered  # nominal 95 %: 38 of 40
    assert covered["roc_auc"] >= 35, covered


def test_calibration_is_what_makes_the_estimate_right(
    world: World, calibration: Calibration
) -> None:
    """The raw scores taken as probabilities (no calibration) miss the realised accuracy
    by far more than the band; the calibrated estimate does not."""
    scores, labels = world.rows(50_000, 0.8)
    realised = float(np.mean((scores >= 0.5) == labels))
    naive = float(np.mean(np.where(scores >= 0.5, scores, 1 - scores)))
    window = CBPEWindow(calibration)
    window.add(scores)
    found = window.estimate()
    assert found.accuracy.low <= realised <= found.accuracy.high
    assert abs(naive - realised) > 3 * (found.accuracy.high - found.accuracy.low)


def test_scores_beyond_the_reference_are_flagged_and_the_band_says_so(
    world: World, calibration: Calibration
) -> None:
    scores, _ = world.rows(2000, 3.5, 0.7)
    window = CBPEWindow(calibration)
    window.add(scores)
    found = window.estimate()
    assert not found.reliable
    assert found.outside_reference > 0.05
    assert "outside the reference's range" in found.reasons[0]
    assert found.roc_auc.high - found.roc_auc.low > 0.3


def test_a_small_window_has_a_wide_band(world: World, calibration: Calibration) -> None:
    widths = []
    for rows in (50, 5000):
        window = CBPEWindow(calibration)
        window.add(world.rows(rows, 0.0)[0])
        found = window.estimate()
        widths.append(found.accuracy.high - found.accuracy.low)
    assert widths[0] > 4 * widths[1]


def test_windows_merge_to_the_estimate_of_their_rows(
    world: World, calibration: Calibration
) -> None:
    scores, _ = world.rows(3000, 0.3)
    whole, first, second = (CBPEWindow(calibration) for _ in range(3))
    whole.add(scores)
    first.add(scores[:1000])
    second.add(scores[1000:])
    first.merge(second)
    assert first.estimate() == whole.estimate()
    assert first.estimate().metrics().keys() == {"estimated_accuracy", "estimated_roc_auc"}


def test_the_threshold_is_a_cell_edge_so_each_cell_predicts_one_class() -> None:
    calibration = Calibration.fit([0.1, 0.3, 0.45, 0.55, 0.7, 0.9], [0, 0, 1, 0, 1, 1], bins=2)
    assert 0.5 in calibration.edges.tolist()
    cells = calibration.cells(np.array([0.49, 0.5]))
    assert calibration.predicts_positive[cells].tolist() == [False, True]


def test_bad_reference_data_is_refused() -> None:
    with pytest.raises(ValueError, match="one score and one label"):
        Calibration.fit([0.5], [1])
    with pytest.raises(ValueError, match="finite"):
        Calibration.fit([0.5, float("nan")], [1, 0])


def test_a_calibration_round_trips_through_json_and_still_estimates(
    world: World, calibration: Calibration
) -> None:
    import json

    again = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again == calibration
    scores, _ = world.rows(500, 0.2)
    first, second = CBPEWindow(calibration), CBPEWindow(again)
    first.add(scores)
    second.add(scores)
    assert first.estimate() == second.estimate()
    first.merge(second)  # equal calibrations merge, wherever they were read
    assert first.rows == 1000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"edges": [0.5, 0.2]}, "edges must ascend"),
        ({"totals": [1]}, "one count per cell"),
        ({"threshold": None}, "not a calibration"),
    ],
)
def test_a_bad_calibration_is_refused(
    calibration: Calibration, change: dict[str, object], message: str
) -> None:
    data = calibration.to_dict() | change
    if "edges" in change:
        data |= {"positives": [0, 0, 0], "totals": [1, 1, 1]}
    with pytest.raises(ValueError, match=message):
        Calibration.from_dict(data)
