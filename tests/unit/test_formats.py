"""flowops.formats: the model-server formats the gateway, the monitor and the CI gate read.

The request reader and the response's predictions are tested through the gateway's
``extract`` (tests/unit/gateway/test_payloads.py); here, what the monitor's canary and the
CI gate's contract suite read: a request's rows and a response's predictions' shape.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowops.formats import input_rows, predictions_shape, shape_matches


@pytest.mark.parametrize(
    ("protocol", "payload", "rows"),
    [
        ("mlflow", {"dataframe_records": [{}, {}]}, 2),
        ("mlflow", {"dataframe_split": {"columns": ["a"], "data": [[1], [2], [3]]}}, 3),
        ("mlflow", {"instances": [[1], [2]]}, 2),
        ("mlflow", {"inputs": [[1, 2]]}, 1),
        ("mlflow", {"inputs": {"a": [1, 2, 3, 4], "b": [0, 0, 0, 0]}}, 4),
        ("mlflow", {"inputs": {"a": 1}}, 1),
        ("mlflow", {"something": []}, None),
        ("mlflow", [1, 2], None),
        ("kserve_v2", {"inputs": [{"name": "x", "shape": [5, 2], "datatype": "FP32"}]}, 5),
        ("kserve_v2", {"inputs": []}, None),
        ("http", {"text": "hi"}, None),
    ],
)
def test_input_rows(protocol: Any, payload: Any, rows: int | None) -> None:
    assert input_rows(protocol, payload) == rows


@pytest.mark.parametrize(
    ("protocol", "body", "expected"),
    [
        ("mlflow", {"predictions": [0.1, 0.2]}, [2]),
        ("mlflow", [0.1, 0.2, 0.3], [3]),  # MLflow 1.x answers a bare array
        ("mlflow", {"predictions": [[0.1, 0.9]]}, [1, 2]),
        ("http", {"predictions": []}, [0]),
        ("mlflow", {"outputs": []}, None),
        ("mlflow", "text", None),
        ("kserve_v2", {"outputs": [{"shape": [2, 1], "data": [1, 2]}]}, [2, 1]),
        ("kserve_v2", {"outputs": []}, None),
        ("kserve_v2", {"outputs": [{"shape": "2x1"}]}, None),
        ("kserve_v2", {"predictions": [1]}, None),
    ],
)
def test_predictions_shape(protocol: Any, body: Any, expected: list[int] | None) -> None:
    assert predictions_shape(protocol, body) == expected


@pytest.mark.parametrize(
    ("shape", "expected", "matches"),
    [
        ([2, 1], [2, 1], True),
        ([2, 1], [-1, 1], True),
        ([2, 1], [2], False),
        ([2], [3], False),
        ([], [], True),
    ],
)
def test_shape_matches(shape: list[int], expected: list[int], matches: bool) -> None:
    assert shape_matches(shape, expected) is matches
