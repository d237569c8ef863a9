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


# --- variant and parse_error ----------------------------------------------------------------


def test_optional_columns_are_none_when_no_row_has_a_value() -> None:
    batch = TrafficBatch.from_rows([row("a"), row("b")])
    assert (batch.variants, batch.parse_errors, batch.unparsable) == (None, None, 0)
    assert batch.parsed() is batch


def test_optional_columns_hold_one_value_per_row() -> None:
    rows = [
        TrafficRow("m", "1", "a", 1.0, {"x": 1.0}, 0, 2.0, 200, variant="a"),
        TrafficRow("m", "1", "b", 2.0, {}, None, 3.0, 200, parse_error="not JSON"),
        TrafficRow("m", "1", "c", 3.0, {"x": 3.0}, 1, 4.0, 503, variant="b"),
    ]
    batch = TrafficBatch.from_rows(rows)
    assert batch.variants == ["a", None, "b"]
    assert batch.parse_errors == [None, "not JSON", None]
    assert batch.unparsable == 1
    assert batch.slice(1, 3).variants == [None, "b"]
    assert batch.slice(0, 1).parse_errors is None  # nothing but None: left out


def test_parsed_keeps_the_rows_without_a_parse_error_aligned() -> None:
    rows = [
        TrafficRow("m", "1", str(i), float(i), {"x": float(i)}, i, float(i), 200 + i, str(i))
        for i in range(5)
    ]
    rows[1] = TrafficRow("m", "1", "1", 1.0, {}, None, 1.0, 400, "1", parse_error="bad")
    rows[3] = TrafficRow("m", "1", "3", 3.0, {}, None, 3.0, 400, "3", parse_error="bad")
    parsed = TrafficBatch.from_rows(rows).parsed()
    assert parsed == TrafficBatch.from_rows([rows[0], rows[2], rows[4]])
    assert parsed.timestamps.tolist() == [0.0, 2.0, 4.0]
    assert parsed.status.tolist() == [200, 202, 204]
    assert parsed.features == {"x": [0.0, 2.0, 4.0]}
    assert parsed.variants == ["0", "2", "4"]
    assert parsed.parse_errors is None


def test_a_batch_of_unparsable_rows_parses_to_no_rows() -> None:
    bad = TrafficRow("m", "1", "a", 1.0, {}, None, 1.0, 400, parse_error="not JSON")
    parsed = TrafficBatch.from_rows([bad, bad]).parsed()
    assert (parsed.rows, parsed.timestamps.shape) == (0, (0,))


@pytest.mark.parametrize(
    ("attribute", "field"), [("variants", "variant"), ("parse_errors", "parse_error")]
)
def test_an_optional_column_of_another_length_is_refused(attribute: str, field: str) -> None:
    with pytest.raises(EventError) as caught:
        TrafficBatch(
            "m",
            "1",
            ["a"],
            np.ones(1),
            {},
            [0],
            np.ones(1),
            np.ones(1, np.int64),
            **{attribute: ["x", "y"]},
        )
    assert (caught.value.field, caught.value.code) == (f"batch.{field}", "bad_batch")


def test_equality_sees_the_optional_columns() -> None:
    plain = TrafficBatch.from_rows([row("a")])
    arm = TrafficBatch.from_rows([TrafficRow("m", "1", "a", 1.0, {}, 0.5, 2.0, 200, "b")])
    assert plain != arm
    assert plain == TrafficBatch(
        "m", "1", ["a"], np.ones(1), {}, [0.5], np.full(1, 2.0), np.full(1, 200), [None]
    )
