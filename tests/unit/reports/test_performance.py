"""``drift compare --label-column``: the performance section, equal to scikit-learn's
figures, the task read from the data, a drop judged only against reference data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn import metrics as sk

from flowops.cli import cli
from flowops.errors import InputError
from flowops.reports.page import render_html
from flowops.reports.performance import file_performance, infer_spec, performance


def _binary(seed: int, n: int, calibrated: bool) -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(seed)
    scores = rng.beta(2, 3, n)
    truth = rng.uniform(size=n) < (scores if calibrated else 1 - scores)
    return truth.astype(int).tolist(), scores.tolist()


def test_binary_scores_give_scikit_learns_figures() -> None:
    labels, scores = _binary(1, 3_000, calibrated=True)
    section = performance(labels, scores)
    figures = {name: m["current"] for name, m in section["metrics"].items()}
    predicted = [int(s >= 0.5) for s in scores]
    assert (section["task"], section["scores"], section["positive"]) == ("classification", True, 1)
    assert figures["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert figures["precision"] == pytest.approx(sk.precision_score(labels, predicted))
    assert figures["recall"] == pytest.approx(sk.recall_score(labels, predicted))
    assert figures["f1"] == pytest.approx(sk.f1_score(labels, predicted))
    assert figures["log_loss"] == pytest.approx(sk.log_loss(labels, scores))
    assert figures["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, scores), abs=2e-3)
    for name, m in section["metrics"].items():
        assert m["low"] <= m["current"] <= m["high"], name
        assert m["reference"] is None
        assert m["dropped"] is None


def test_against_reference_data_a_lost_calibration_is_a_drop() -> None:
    before, after = _binary(2, 3_000, calibrated=True), _binary(3, 3_000, calibrated=False)
    section = performance(*after, reference=before)
    metrics = section["metrics"]
    assert metrics["accuracy"]["reference"] > metrics["accuracy"]["current"] + 0.05
    assert metrics["accuracy"]["dropped"] is True
    assert metrics["roc_auc"]["dropped"] is True
    assert metrics["log_loss"]["dropped"] is None  # its own units: shown, not judged
    same = performance(*_binary(4, 3_000, calibrated=True), reference=before)
    assert not any(m["dropped"] for m in same["metrics"].values())


def test_class_labels_as_text_are_a_classifier_of_classes() -> None:
    labels = ["no", "yes", "yes", "no", "maybe", "yes"]
    predicted = ["no", "yes", "no", "no", "maybe", "maybe"]
    section = performance(labels, predicted)
    assert (section["task"], section["scores"], section["positive"]) == (
        "classification",
        False,
        "yes",
    )
    assert section["metrics"]["accuracy"]["current"] == pytest.approx(
        sk.accuracy_score(labels, predicted)
    )
    assert section["metrics"]["recall"]["current"] == pytest.approx(
        sk.recall_score(labels, predicted, labels=["yes"], average="micro")
    )


def test_numbers_that_are_not_classes_are_a_regressor() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(100, 10, 500)
    guess = truth + rng.normal(0, 3, 500)
    section = performance(truth.tolist(), guess.tolist())
    figures = {name: m["current"] for name, m in section["metrics"].items()}
    assert section["task"] == "regression"
    assert figures["mae"] == pytest.approx(sk.mean_absolute_error(truth, guess))
    assert figures["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(truth, guess)))
    assert figures["mape"] == pytest.approx(sk.mean_absolute_percentage_error(truth, guess))


@pytest.mark.parametrize(
    ("labels", "predictions", "kind", "scores"),
    [
        ([0, 1, 1], [0.2, 0.9, 0.6], "classification", True),
        ([0, 1, 1], [0, 1, 0], "classification", False),
        ([True, False], [True, True], "classification", False),
        ([1, 2, 3], [1, 3, 3], "classification", False),
        ([0.5, 1.5, 2.5], [0.4, 1.6, 2.5], "regression", False),
        ([0, 1, 1], [0.2, 1.7, 0.6], "regression", False),  # a "score" above 1
    ],
)
def test_the_task_is_read_from_the_data(
    labels: list[Any], predictions: list[Any], kind: str, scores: bool
) -> None:
    spec = infer_spec(labels, predictions)
    assert (spec.kind, spec.scores) == (kind, scores)


def test_rows_without_a_label_or_a_prediction_are_left_out_and_counted() -> None:
    section = performance([1, None, 0, 1], [0.9, 0.3, None, 0.8])
    assert (section["rows"], section["unusable"]) == (2, 2)
    with pytest.raises(InputError, match="no row has both"):
        performance([None, None], [0.1, 0.2])


def _csv(path: Path, rows: list[tuple[float, str, float, int]]) -> Path:
    lines = ["x,city,score,label", *(f"{x},{c},{s},{y}" for x, c, s, y in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(6)
    made = []
    for name, calibrated in (("reference", True), ("current", False)):
        labels, scores = _binary(7 if calibrated else 8, 2_000, calibrated)
        xs = rng.normal(size=2_000)
        cities = rng.choice(["a", "b"], 2_000)
        rows = list(zip(xs.tolist(), cities.tolist(), scores, labels, strict=True))
        made.append(_csv(tmp_path / f"{name}.csv", rows))
    return made[0], made[1]


def test_csv_files_read_as_numbers(tmp_path: Path) -> None:
    reference, current = _files(tmp_path)
    section = file_performance(reference, current, label_column="label", prediction_column="score")
    assert section["scores"] is True
    assert section["metrics"]["accuracy"]["dropped"] is True
    alone = file_performance(None, current, label_column="label", prediction_column="score")
    assert alone["metrics"]["accuracy"]["reference"] is None


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_compare_with_a_label_column_reports_performance_and_keeps_the_label_out(
    tmp_path: Path,
) -> None:
    reference, current = _files(tmp_path)
    page = tmp_path / "r.html"
    args = ["drift", "compare", "--reference", str(reference), "--current", str(current)]
    args += ["--prediction-column", "score", "--label-column", "label"]
    done = _run(*args, "-o", "json", "--html", str(page))
    report = json.loads(done.stdout)
    assert {f["feature"] for f in report["features"]} == {"x", "city", "prediction"}
    assert report["performance"]["metrics"]["roc_auc"]["dropped"] is True
    text = page.read_text()
    assert 'data-k="performance.metrics.accuracy.current"' in text
    assert '<h2 id="performance-h">Performance</h2>' in text
    table = _run(*args)
    assert "accuracy" in table.stdout
    assert "labelled rows" in table.stdout


def test_a_label_column_needs_the_predictions(tmp_path: Path) -> None:
    reference, current = _files(tmp_path)
    done = _run("drift", "compare", "--reference", str(reference), "--current", str(current),
                "--label-column", "label")  # fmt: skip
    assert done.exit_code == 2
    assert "--label-column needs --prediction-column" in done.output


def test_the_page_shows_the_section_beside_the_summary() -> None:
    section = performance(*_binary(9, 500, calibrated=True))
    page = render_html({"features": [], "drift": False, "performance": section}, {})
    assert page.count('id="performance"') == 1
    assert "performance.metrics" not in page.split('id="performance"')[0]  # not in the summary
