"""flowops.predictions and the drift commands' --prediction-column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from flowops.cli import cli
from flowops.data import build_profile
from flowops.drift import Profile
from flowops.errors import InputError
from flowops.predictions import is_prediction, prediction_columns


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), prog_name="flowops")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def rows(seed: int, n: int, *, score_shift: float = 0.0, yes: float = 0.3) -> list[dict[str, Any]]:
    """Inputs that never move; a score, a label and class probabilities that may."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p = float(np.clip(rng.normal(yes, 0.1), 0, 1))
        out.append(
            {
                "age": float(rng.normal(40, 10)),
                "score": float(rng.normal(score_shift, 1)),
                "label": "yes" if rng.random() < yes else "no",
                "proba": {"no": 1 - p, "yes": p},
            }
        )
    return out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.5, None, "2"], {"prediction": [1.5, None, 2.0]}),
        ([True, None, "no"], {"prediction": ["true", None, "no"]}),
        ([[0.2, 0.8], None], {"prediction[0]": [0.2, None], "prediction[1]": [0.8, None]}),
        (['{"a": 1}', '{"b": 2}'], {"prediction[a]": [1.0, None], "prediction[b]": [None, 2.0]}),
    ],
)
def test_prediction_columns(values: list[Any], expected: dict[str, list[Any]]) -> None:
    columns = prediction_columns(values)
    plain = {
        name: [None if isinstance(v, float) and np.isnan(v) else v for v in list(column)]
        for name, column in columns.items()
    }
    assert plain == expected


@pytest.mark.parametrize("values", [[1.0, "yes"], ["yes", 2], [[0.1], 3.0], [1.0, [2.0]]])
def test_mixed_predictions_name_the_row(values: list[Any]) -> None:
    with pytest.raises(InputError, match="like the rows before") as caught:
        prediction_columns(values)
    assert caught.value.row == 2


def test_is_prediction() -> None:
    assert [is_prediction(n) for n in ("prediction", "prediction[x]", "predictions")] == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("column", "features"),
    [
        ("score", ["prediction"]),
        ("label", ["prediction"]),
        ("proba", ["prediction[no]", "prediction[yes]"]),
    ],
)
def test_baseline_learns_the_predictions(tmp_path: Path, column: str, features: list[str]) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", rows(0, 500))
    profile = build_profile(data, features=["age"], prediction_column=column)
    assert sorted(profile.features) == sorted(["age", *features])
    kind = "categorical" if column == "label" else "numeric"
    assert {profile.features[name].kind for name in features} == {kind}


@pytest.mark.parametrize(
    ("column", "moved"),
    [("score", {"score_shift": 1.0}), ("label", {"yes": 0.6}), ("proba", {"yes": 0.6})],
)
def test_compare_reports_prediction_drift_with_the_inputs_fixed(
    tmp_path: Path, column: str, moved: dict[str, float]
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", rows(0, 3_000))
    today = write_jsonl(tmp_path / "today.jsonl", rows(1, 2_000, **moved))
    profile = tmp_path / "profile.json"
    made = run("drift", "baseline", "--data", str(train), "--prediction-column", column,
               "--features", "age", "-o", str(profile))  # fmt: skip
    assert made.exit_code == 0, made.output
    result = run("drift", "compare", "--reference", str(profile), "--current", str(today),
                 "--prediction-column", column, "-o", "json")  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    verdicts = {f["feature"]: f["drift"] for f in report["features"]}
    assert verdicts.pop("age") is False
    assert verdicts
    assert all(is_prediction(name) for name in verdicts)
    assert any(verdicts.values())


def test_a_profile_without_predictions_still_compares(tmp_path: Path) -> None:
    """Profiles written before --prediction-column: same format, same result."""
    train = write_jsonl(tmp_path / "train.jsonl", rows(0, 500))
    old = Profile.from_columns({"age": np.array([r["age"] for r in rows(0, 500)])})
    (tmp_path / "old.json").write_text(old.to_json())
    same = run("drift", "compare", "--reference", str(tmp_path / "old.json"),
               "--current", str(train), "-o", "json")  # fmt: skip
    assert same.exit_code == 0, same.output
    asked = run("drift", "compare", "--reference", str(tmp_path / "old.json"),
                "--current", str(train), "--prediction-column", "score")  # fmt: skip
    assert asked.exit_code == 2
    assert "holds no predictions" in asked.output


def test_an_input_named_like_the_predictions_is_refused(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "t.jsonl", [{"prediction": 1.0, "score": 2.0}] * 3)
    with pytest.raises(InputError, match="kept for the predictions") as caught:
        build_profile(data, prediction_column="score")
    assert caught.value.column == "prediction"


def test_every_other_column_is_an_input_of_a_csv(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text('age,score,proba\n30,0.5,"[0.1, 0.9]"\n40,0.7,"[0.6, 0.4]"\n')
    profile = build_profile(data, prediction_column="proba")
    assert sorted(profile.features) == ["age", "prediction[0]", "prediction[1]", "score"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2.5, None], {"prediction": [1.0, 2.5, None]}),
        (["yes", 3, None], {"prediction": ["yes", None, None]}),
        ([{"a": 0.2}, "oops", {"a": "x"}], {"prediction[a]": [0.2, None, None]}),
    ],
)
def test_traffic_predictions_of_another_shape_are_missing_not_errors(
    values: list[Any], expected: dict[str, list[Any]]
) -> None:
    columns = prediction_columns(values, strict=False)
    plain = {
        name: [None if isinstance(v, float) and np.isnan(v) else v for v in list(column)]
        for name, column in columns.items()
    }
    assert plain == expected


def _scores_csv(path: Path, seed: int, shift: float = 0.0) -> Path:
    rng = np.random.default_rng(seed)
    scores = np.clip(rng.normal(0.3 + shift, 0.1, 800), 0, 1)
    classes = (scores > 0.5).astype(int)
    lines = [
        "age,score,label",
        *(
            f"{30 + i % 40},{s!r},{c}"
            for i, (s, c) in enumerate(zip(scores.tolist(), classes.tolist(), strict=True))
        ),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("column", ["score", "label"])
def test_a_csv_column_of_numbers_is_numbers_not_categories(tmp_path: Path, column: str) -> None:
    """A CSV's cells are text: a score (or a 0/1 label) is profiled as a number, as the
    same column in JSON Lines is, and a shift in it is found by KS."""
    train, today = _scores_csv(tmp_path / "t.csv", 1), _scores_csv(tmp_path / "c.csv", 2, 0.2)
    profile = build_profile(train, prediction_column=column)
    assert profile.features["prediction"].kind == "numeric"
    saved = tmp_path / "p.json"
    saved.write_text(profile.to_json())
    result = run("drift", "compare", "--reference", str(saved), "--current", str(today),
                 "--prediction-column", column, "-o", "json")  # fmt: skip
    assert result.exit_code == 1, result.output
    [prediction] = [
        f for f in json.loads(result.stdout)["features"] if f["feature"] == "prediction"
    ]
    assert prediction["kind"] == "numeric"
    assert prediction["drift"] is True


def test_a_profile_that_holds_csv_predictions_as_categories_still_compares(tmp_path: Path) -> None:
    """Profiles made before CSV numbers were numbers hold them as text categories: the
    current file's column is read as text for them."""
    train = _scores_csv(tmp_path / "t.csv", 1)
    old = Profile.from_columns(
        {"age": np.arange(800.0), "prediction": ["1" if i % 3 else "0" for i in range(800)]}
    )
    saved = tmp_path / "old.json"
    saved.write_text(old.to_json())
    result = run("drift", "compare", "--reference", str(saved), "--current", str(train),
                 "--prediction-column", "label", "-o", "json")  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    [prediction] = [
        f for f in json.loads(result.stdout)["features"] if f["feature"] == "prediction"
    ]
    assert prediction["kind"] == "categorical"
    assert prediction["n_current"] == 800
