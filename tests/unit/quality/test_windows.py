"""flowops.quality.windows: joined rows into windows of label time per model, version and
variant; closed windows' metrics equal scikit-learn's on their rows; unusable rows are
counted, not raised."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from flowops.quality.join import Joined
from flowops.quality.windows import PerformanceWindows, QualitySpec


def joined(request_id: str, prediction: object, label: object, at: float, **kw: str) -> Joined:
    return Joined(
        kw.get("model", "m"), request_id, kw.get("version", "1"), kw.get("variant"),
        prediction, label, at - 30.0, at,
    )  # fmt: skip


def test_rows_go_to_the_window_of_their_label_time_and_variant() -> None:
    windows = PerformanceWindows(QualitySpec("classification", window=100.0))
    windows.add(
        [
            joined("a", 1, 1, 10.0, variant="blue"),
            joined("b", 0, 1, 20.0, variant="green"),
            joined("c", 1, 1, 150.0, variant="blue"),
            joined("d", 1, 0, 99.0, variant="blue"),
        ]
    )
    assert windows.close(99.0) == []
    closed = windows.close(100.0)
    assert [(w.variant, w.index, w.start, w.end, w.rows) for w in closed] == [
        ("blue", 0, 0.0, 100.0, 2),
        ("green", 0, 0.0, 100.0, 1),
    ]
    assert closed[0].metrics["accuracy"].value == 0.5
    assert windows.open_windows() == 1


def test_scores_give_every_classification_metric_as_sklearn_does() -> None:
    rng = np.random.default_rng(2)
    truth = (rng.random(2000) < 0.4).astype(int)
    scores = np.clip(rng.normal(np.where(truth, 0.6, 0.4), 0.2), 0, 1)
    windows = PerformanceWindows(QualitySpec("classification", window=1e9, scores=True))
    pairs = enumerate(zip(scores.tolist(), truth.tolist(), strict=True))
    windows.add(joined(str(i), score, label, 5.0) for i, (score, label) in pairs)
    [window] = windows.close(2e9)
    predicted = (scores >= 0.5).astype(int)
    assert window.metrics["f1"].value == pytest.approx(sk.f1_score(truth, predicted))
    assert window.metrics["log_loss"].value == pytest.approx(sk.log_loss(truth, scores))
    assert window.metrics["roc_auc"].value == pytest.approx(
        sk.roc_auc_score(truth, scores), abs=1e-3
    )


def test_regression_windows() -> None:
    windows = PerformanceWindows(QualitySpec("regression", window=60.0))
    windows.add([joined("a", 2.0, 3.0, 1.0), joined("b", 5, 4.0, 2.0)])
    [window] = windows.close(60.0)
    assert window.metrics["mae"].value == 1.0
    assert window.metrics["rmse"].value == 1.0


@pytest.mark.parametrize(
    ("spec", "prediction", "label"),
    [
        (QualitySpec("classification", scores=True), 1.5, 1),
        (QualitySpec("classification", scores=True), "high", 1),
        (QualitySpec("classification"), {"class": 1}, 1),
        (QualitySpec("classification"), None, 1),
        (QualitySpec("regression"), math.nan, 1.0),
        (QualitySpec("regression"), 1.0, "big"),
        (QualitySpec("regression"), True, 1.0),
    ],
)
def test_unusable_rows_are_counted_not_raised(
    spec: QualitySpec, prediction: object, label: object
) -> None:
    windows = PerformanceWindows(spec)
    windows.add([joined("a", prediction, label, 1.0)])
    [window] = windows.close(1e9)
    assert (window.rows, window.unusable, window.metrics) == (0, 1, {})


def test_a_bad_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="window must be positive"):
        QualitySpec("regression", window=0)
    with pytest.raises(ValueError, match="kind must be"):
        QualitySpec("ranking")  # type: ignore[arg-type]  # what the check is for


def test_rows_added_in_several_calls_sum_as_in_one() -> None:
    rows = [joined(str(i), i % 3 == 0, i % 2 == 0, float(i)) for i in range(90)]
    once, twice = (PerformanceWindows(QualitySpec("classification", window=50.0)) for _ in "ab")
    once.add(rows)
    twice.add(rows[:31])
    twice.add(rows[31:])
    assert once.close(100.0) == twice.close(100.0)


def test_reference_figures_are_sklearns_and_count_the_unusable() -> None:
    from flowops.quality.windows import reference_figures

    labels = [1, 0, 1, 1, 0, 0, 1]
    predictions = [1, 0, 0, 1, 1, None, 1]
    figures, unusable = reference_figures(QualitySpec("classification"), labels, predictions)
    kept = [
        (label, guess)
        for label, guess in zip(labels, predictions, strict=True)
        if guess is not None
    ]
    truth, guessed = zip(*kept, strict=True)
    assert figures["precision"].value == pytest.approx(sk.precision_score(truth, guessed))
    assert unusable == 1
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        reference_figures(QualitySpec("regression"), [1.0, 2.0, 3.0], [1.0, 2.0])


@pytest.mark.parametrize(
    "spec",
    [
        QualitySpec("classification", window=50.0, scores=True),
        QualitySpec("classification", window=50.0, positive="yes", negative="no"),
        QualitySpec("regression", window=50.0),
    ],
)
def test_open_windows_survive_json_exactly(spec: QualitySpec) -> None:
    import json

    rng = np.random.default_rng(9)
    rows = []
    for i in range(300):
        score = float(rng.random())
        if spec.kind == "regression":
            prediction, label = score * 10, float(rng.normal(5, 2))
        elif spec.scores:
            prediction, label = score, int(rng.random() < score)
        else:
            prediction, label = (
                ("yes" if score > 0.5 else "no"),
                ("yes" if rng.random() < score else "no"),
            )
        rows.append(joined(str(i), prediction, label, float(i), variant=["a", None][i % 2]))
    rows.append(joined("bad", None, 1, 7.0))
    windows = PerformanceWindows(spec)
    windows.add(rows)
    state = json.loads(json.dumps(windows.to_state()))
    again = PerformanceWindows.from_state(spec, state)
    assert again.open_windows() == windows.open_windows() == 12
    assert again.close(1e9) == windows.close(1e9)
