"""flowops.events.traffic: rows, columnar batches and their invariants."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from flowops.errors import EventError
from flowops.events.traffic import TrafficBatch, TrafficRow


def row(
    request_id: str, model: str = "m", version: str = "1", **features: float | str | None
) -> TrafficRow:
    return TrafficRow(model, version, request_id, 1.0, features, 0.5, 2.0, 200)


def test_from_rows_gathers_columns() -> None:
    batch = TrafficBatch.from_rows([row("a", x=1.0), row("b", x=2.0)])
    assert batch.rows == 2
    assert batch.request_ids == ["a", "b"]
    assert batch.features == {"x": [1.0, 2.0]}
    assert batch.predictions == [0.5, 0.5]
    assert batch.timestamps.dtype == np.float64
    assert batch.status.dtype == np.int64


def test_from_rows_fills_missing_features_with_none_in_first_seen_order() -> None:
    batch = TrafficBatch.from_rows([row("a", y="u"), row("b", x=1.0), row("c")])
    assert batch.features == {"y": ["u", None, None], "x": [None, 1.0, None]}


@pytest.mark.parametrize(
    "rows",
    [[], [row("a"), row("b", model="other")], [row("a"), row("b", version="2")]],
    ids=["no rows", "two models", "two versions"],
)
def test_from_rows_needs_rows_of_one_model_version(rows: list[TrafficRow]) -> None:
    with pytest.raises(EventError) as caught:
        TrafficBatch.from_rows(rows)
    assert caught.value.code == "bad_batch"


def test_columns_are_converted_to_arrays() -> None:
    batch = TrafficBatch("m", "1", ["a"], [1], {}, [None], [2], [200])  # type: ignore[arg-type]
    assert batch.timestamps.dtype == np.float64
    assert batch.latency_ms.dtype == np.float64
    assert batch.status.dtype == np.int64


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ("timestamps", "batch.timestamp"),
        ("predictions", "batch.prediction"),
        ("latency_ms", "batch.latency_ms"),
        ("status", "batch.status"),
    ],
)
def test_a_column_of_another_length_is_refused(column: str, field: str) -> None:
    columns: dict[str, Any] = {
        "timestamps": [1.0],
        "predictions": [0],
        "latency_ms": [1.0],
        "status": [200],
    }
    columns[column] = [*columns[column], columns[column][0]]
    with pytest.raises(EventError) as caught:
        TrafficBatch("m", "1", ["a"], features={}, **columns)
    assert (caught.value.field, caught.value.code) == (field, "bad_batch")


def test_a_feature_of_another_length_is_refused() -> None:
    with pytest.raises(EventError, match=r"field 'batch.features.x': has 2 values, expected 1"):
        TrafficBatch(
            "m", "1", ["a"], np.ones(1), {"x": [1, 2]}, [0], np.ones(1), np.ones(1, np.int64)
        )


def test_slice_keeps_every_column_aligned() -> None:
    batch = TrafficBatch.from_rows([row(str(i), x=float(i)) for i in range(5)])
    part = batch.slice(1, 3)
    assert part.request_ids == ["1", "2"]
    assert part.features == {"x": [1.0, 2.0]}
    assert part.timestamps.shape == part.status.shape == (2,)


def test_equality_compares_arrays_by_value() -> None:
    first = TrafficBatch.from_rows([row("a", x=1.0)])
    assert first == TrafficBatch.from_rows([row("a", x=1.0)])
    assert first != TrafficBatch.from_rows([row("a", x=2.0)])
    assert first != "a batch"


def test_batches_are_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(TrafficBatch.from_rows([row("a")]))
