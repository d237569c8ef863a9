"""flowops.events.codec: traffic JSON to TrafficBatch and back, and every rejection."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowops.errors import EventError
from flowops.events.codec import (
    SCHEMA_VERSION,
    decode_traffic,
    decode_traffic_many,
    encode_traffic,
    encode_traffic_rows,
)
from flowops.events.traffic import TrafficBatch, TrafficRow

ROW: dict[str, Any] = {
    "schema_version": 1,
    "model": "credit",
    "version": "3",
    "request_id": "r-1",
    "timestamp": 1764291600.25,
    "features": {"age": 41, "income": 52000.0, "region": "north"},
    "prediction": 0.12,
    "latency_ms": 8.5,
    "status": 200,
}
BATCH: dict[str, Any] = {
    "schema_version": 1,
    "model": "credit",
    "version": "3",
    "batch": {
        "request_id": ["r-1", "r-2"],
        "timestamp": [1764291600.25, 1764291600.31],
        "features": {"age": [41, 37], "income": [52000.0, None], "region": ["north", "south"]},
        "prediction": [0.12, 0.4],
        "latency_ms": [8.5, 9.1],
        "status": [200, 200],
    },
}


def dumps(message: Any) -> bytes:
    return orjson.dumps(message)


def changed(message: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``message`` with the value at dotted ``path`` replaced (or removed)."""
    copy: dict[str, Any] = orjson.loads(orjson.dumps(message))
    *parents, last = path.split(".")
    target = copy
    for part in parents:
        target = target[part]
    if value is REMOVE:
        del target[last]
    else:
        target[last] = value
    return copy


REMOVE = object()


def test_schema_version_is_one() -> None:
    assert SCHEMA_VERSION == 1


def test_row_decodes_to_a_batch_of_one() -> None:
    batch = decode_traffic(dumps(ROW))
    assert (batch.model, batch.version, batch.rows) == ("credit", "3", 1)
    assert batch.request_ids == ["r-1"]
    assert batch.features == {"age": [41], "income": [52000.0], "region": ["north"]}
    assert batch.predictions == [0.12]
    assert batch.timestamps.dtype == np.float64
    assert batch.timestamps.tolist() == [1764291600.25]
    assert batch.latency_ms.tolist() == [8.5]
    assert batch.status.dtype == np.int64
    assert batch.status.tolist() == [200]


def test_batch_decodes_column_by_column() -> None:
    batch = decode_traffic(dumps(BATCH))
    assert batch.rows == 2
    assert batch.request_ids == ["r-1", "r-2"]
    assert batch.features["income"] == [52000.0, None]
    assert batch.timestamps.tolist() == [1764291600.25, 1764291600.31]
    assert batch.status.tolist() == [200, 200]


@pytest.mark.parametrize("payload", [dumps(BATCH), dumps(BATCH).decode(), bytearray(dumps(BATCH))])
def test_bytes_str_and_bytearray_are_accepted(payload: Any) -> None:
    assert decode_traffic(payload).rows == 2


def test_prediction_may_be_any_json_value() -> None:
    message = changed(ROW, "prediction", {"label": "yes", "scores": [0.1, 0.9]})
    assert decode_traffic(dumps(message)).predictions == [{"label": "yes", "scores": [0.1, 0.9]}]


def test_a_row_without_features_is_fine() -> None:
    assert decode_traffic(dumps(changed(ROW, "features", {}))).features == {}


# --- what is rejected, with which code and field ----------------------------------------

BAD_ROWS = [
    (b"{", "bad_json", None, "not JSON"),
    (b"[1, 2]", "bad_json", None, "expected a JSON object, got an array"),
    (b"", "bad_json", None, "not JSON"),
    (dumps(changed(ROW, "schema_version", REMOVE)), "missing_field", None, "schema_version"),
    (dumps(changed(ROW, "schema_version", 2)), "schema_version", "schema_version", "reads 1"),
    (dumps(changed(ROW, "schema_version", True)), "schema_version", "schema_version", "True"),
    (dumps(changed(ROW, "schema_version", "1")), "schema_version", "schema_version", "'1'"),
    (dumps(changed(ROW, "request_id", REMOVE)), "missing_field", None, "'request_id'"),
    (dumps(changed(ROW, "features", REMOVE)), "missing_field", None, "'features'"),
    (dumps(changed(ROW, "extra", 1)), "unknown_field", None, "'extra'"),
    (dumps(changed(ROW, "model", 7)), "wrong_type", "model", "expected a string, got a number"),
    (dumps(changed(ROW, "model", "")), "wrong_type", "model", "empty"),
    (dumps(changed(ROW, "version", None)), "wrong_type", "version", "got null"),
    (dumps(changed(ROW, "request_id", 5)), "wrong_type", "request_id", "expected a string"),
    (dumps(changed(ROW, "timestamp", "now")), "wrong_type", "timestamp", "expected a number"),
    (dumps(changed(ROW, "timestamp", True)), "wrong_type", "timestamp", "got a boolean"),
    (dumps(changed(ROW, "latency_ms", None)), "wrong_type", "latency_ms", "expected a number"),
    (dumps(changed(ROW, "status", 200.0)), "wrong_type", "status", "expected an integer"),
    (dumps(changed(ROW, "status", 2**64 - 1)), "wrong_type", "status", "64-bit"),
    (dumps(changed(ROW, "features", [1])), "wrong_type", "features", "expected an object"),
    (dumps(changed(ROW, "features.age", True)), "wrong_type", "features.age", "got a boolean"),
    (dumps(changed(ROW, "features.age", [1])), "wrong_type", "features.age", "got an array"),
    (dumps(changed(ROW, "features.age", {})), "wrong_type", "features.age", "got an object"),
]

BAD_BATCHES = [
    (changed(BATCH, "batch", []), "wrong_type", "batch", "expected an object"),
    (changed(BATCH, "request_id", "r-1"), "unknown_field", None, "'request_id'"),
    (changed(BATCH, "batch.status", REMOVE), "missing_field", "batch", "'status'"),
    (changed(BATCH, "batch.label", []), "unknown_field", "batch", "'label'"),
    (changed(BATCH, "batch.request_id", []), "bad_batch", "batch.request_id", "at least one"),
    (changed(BATCH, "batch.request_id", "r-1"), "wrong_type", "batch.request_id", "an array"),
    (changed(BATCH, "batch.request_id", ["r-1", 2]), "wrong_type", "batch.request_id[1]", ""),
    (changed(BATCH, "batch.timestamp", [1.0]), "bad_batch", "batch.timestamp", "has 1 values"),
    (changed(BATCH, "batch.timestamp", [1.0, "x"]), "wrong_type", "batch.timestamp[1]", ""),
    (changed(BATCH, "batch.latency_ms", [1.0, None]), "wrong_type", "batch.latency_ms[1]", ""),
    (changed(BATCH, "batch.status", [200, 1.5]), "wrong_type", "batch.status[1]", "integer"),
    (changed(BATCH, "batch.status", [200, 2**63]), "wrong_type", "batch.status", "64-bit"),
    (changed(BATCH, "batch.prediction", [1]), "bad_batch", "batch.prediction", "expected 2"),
    (changed(BATCH, "batch.features.age", [1]), "bad_batch", "batch.features.age", "has 1"),
    (changed(BATCH, "batch.features.age", 1), "wrong_type", "batch.features.age", "an array"),
    (
        changed(BATCH, "batch.features.age", [1, False]),
        "wrong_type",
        "batch.features.age[1]",
        "expected a number, a string or null, got a boolean",
    ),
    (changed(BATCH, "batch.features", {"x": [1, [2]]}), "wrong_type", "batch.features.x[1]", ""),
    (changed(BATCH, "batch.features", None), "wrong_type", "batch.features", "an object"),
]


@pytest.mark.parametrize(("payload", "code", "field", "words"), BAD_ROWS)
def test_bad_rows_are_named(payload: bytes, code: str, field: str | None, words: str) -> None:
    with pytest.raises(EventError) as caught:
        decode_traffic(payload)
    assert (caught.value.code, caught.value.field, caught.value.event) == (code, field, "traffic")
    assert words in caught.value.reason


@pytest.mark.parametrize(("message", "code", "field", "words"), BAD_BATCHES)
def test_bad_batches_are_named(
    message: dict[str, Any], code: str, field: str | None, words: str
) -> None:
    with pytest.raises(EventError) as caught:
        decode_traffic(dumps(message))
    assert (caught.value.code, caught.value.field) == (code, field)
    assert words in caught.value.reason


def test_the_message_names_event_and_field() -> None:
    with pytest.raises(EventError, match=r"^traffic event: field 'features.age': expected"):
        decode_traffic(dumps(changed(ROW, "features.age", True)))


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_missing_values_and_counted(token: bytes) -> None:
    batch = decode_traffic(dumps(ROW).replace(b"41", token))
    assert batch.features["age"] == [None]
    assert batch.non_finite == 1
    assert batch.rows == 1


def test_nan_in_a_batch_costs_only_its_values() -> None:
    message = dumps(BATCH).replace(b"[41,", b"[NaN,", 1)
    assert message != dumps(BATCH), "the batch must hold the value replaced"
    batch = decode_traffic(message)
    assert batch.rows == decode_traffic(dumps(BATCH)).rows
    assert (batch.features["age"][0], batch.non_finite) == (None, 1)


def test_a_nan_where_a_number_is_required_is_still_an_error() -> None:
    with pytest.raises(EventError) as caught:
        decode_traffic(dumps(ROW).replace(b'"timestamp":1764291600.25', b'"timestamp":NaN'))
    assert (caught.value.code, caught.value.field) == ("wrong_type", "timestamp")


def test_overflowing_numbers_and_other_bad_json_stay_bad_json() -> None:
    with pytest.raises(EventError) as caught:
        decode_traffic(dumps(ROW).replace(b"41", b"1e400"))
    assert caught.value.code == "bad_json"
    with pytest.raises(EventError) as caught:
        decode_traffic(dumps(ROW).replace(b"41", b"NaN").replace(b"}", b"", 1))
    assert caught.value.code == "bad_json"


def test_valid_messages_never_take_the_tolerant_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowops.events import non_finite

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tolerant parse ran")

    monkeypatch.setattr(non_finite.json, "loads", refuse)
    assert decode_traffic(dumps(ROW)).non_finite == 0


# --- encoding -----------------------------------------------------------------------------


def test_row_round_trip() -> None:
    row = TrafficRow("credit", "3", "r-1", 1764291600.25, {"age": 41, "x": None}, [1, 2], 8.5, 200)
    batch = decode_traffic(encode_traffic(row))
    assert batch == TrafficBatch.from_rows([row])


def test_encoded_row_is_the_documented_message() -> None:
    row = TrafficRow(
        "credit", "3", "r-1", 1764291600.25, ROW["features"], ROW["prediction"], 8.5, 200
    )
    assert orjson.loads(encode_traffic(row)) == ROW


def test_encoded_batch_is_the_documented_message() -> None:
    batch = decode_traffic(dumps(BATCH))
    assert orjson.loads(encode_traffic(batch)) == BATCH


def test_nan_features_are_written_as_null() -> None:
    features: dict[str, Any] = {"x": math.nan, "y": np.float32(1.5)}
    row = TrafficRow("m", "1", "r", 1.0, features, None, 1.0, 200)
    assert decode_traffic(encode_traffic(row)).features == {"x": [None], "y": [1.5]}


def test_numpy_feature_columns_are_written_as_lists() -> None:
    features: dict[str, Any] = {"x": np.array([1.0, np.nan])}
    batch = TrafficBatch(
        "m",
        "1",
        ["a", "b"],
        np.array([1.0, 2.0]),
        features,
        [0, 1],
        np.ones(2),
        np.ones(2, np.int64),
    )
    assert decode_traffic(encode_traffic(batch)).features == {"x": [1.0, None]}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (TrafficRow("m", "1", "r", 1.0, {"x": True}, None, 1.0, 200), "features.x[0]"),
        (TrafficRow("m", "1", "r", 1.0, {"x": [1]}, None, 1.0, 200), "features.x[0]"),  # type: ignore[dict-item]
        (TrafficRow("m", "1", "r", math.nan, {}, None, 1.0, 200), "timestamp"),
        (TrafficRow("m", "1", "r", 1.0, {}, None, math.inf, 200), "latency_ms"),
        (TrafficRow("m", "1", "r", 1.0, {}, None, 1.0, True), "status"),
        (TrafficRow("m", "1", 5, 1.0, {}, None, 1.0, 200), "request_id"),  # type: ignore[arg-type]
        (TrafficRow("", "1", "r", 1.0, {}, None, 1.0, 200), "model"),
        (TrafficRow("m", 1, "r", 1.0, {}, None, 1.0, 200), "version"),  # type: ignore[arg-type]
        (TrafficRow("m", "1", "r", 1.0, {}, object(), 1.0, 200), None),
    ],
)
def test_encoding_refuses_what_decoding_would_reject(row: TrafficRow, field: str | None) -> None:
    with pytest.raises(EventError) as caught:
        encode_traffic(row)
    assert caught.value.field == field


def test_encoding_refuses_a_batch_with_nan_timestamps() -> None:
    batch = decode_traffic(dumps(BATCH))
    batch.timestamps[1] = np.nan
    with pytest.raises(EventError, match="finite"):
        encode_traffic(batch)


def test_encoding_refuses_an_empty_batch() -> None:
    empty = decode_traffic(dumps(BATCH)).slice(0, 0)
    with pytest.raises(EventError) as caught:
        encode_traffic(empty)
    assert caught.value.code == "bad_batch"


feature_values = st.one_of(
    st.none(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)


@st.composite
def batches(draw: st.DrawFn) -> TrafficBatch:
    rows = draw(st.integers(1, 6))
    names = draw(st.lists(st.text(min_size=1, max_size=4), max_size=4, unique=True))
    numbers = st.floats(-1e12, 1e12, allow_nan=False)
    column = st.lists(numbers, min_size=rows, max_size=rows)
    return TrafficBatch(
        model=draw(st.text(min_size=1, max_size=6)),
        version=draw(st.text(max_size=3)),
        request_ids=draw(st.lists(st.text(max_size=5), min_size=rows, max_size=rows)),
        timestamps=np.array(draw(column)),
        features={
            name: draw(st.lists(feature_values, min_size=rows, max_size=rows)) for name in names
        },
        predictions=draw(st.lists(feature_values, min_size=rows, max_size=rows)),
        latency_ms=np.array(draw(column)),
        status=np.array(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows))
        ),
    )


@given(batches())
def test_any_batch_round_trips(batch: TrafficBatch) -> None:
    assert decode_traffic(encode_traffic(batch)) == batch


# --- rows encoded without numpy (the gateway) ----------------------------------------------


@st.composite
def row_lists(draw: st.DrawFn) -> list[TrafficRow]:
    """Rows of one model version; features, variants and parse errors vary by row."""
    names = st.sampled_from(["a", "b", "income", "région"])
    optional = st.one_of(st.none(), st.text(max_size=3))
    numbers = st.one_of(st.floats(-1e12, 1e12, allow_nan=False), st.integers(-(2**40), 2**40))
    row = st.builds(
        TrafficRow,
        model=st.just("m"),
        version=st.just("1"),
        request_id=st.text(max_size=5),
        timestamp=numbers,
        features=st.dictionaries(names, feature_values, max_size=3),
        prediction=feature_values,
        latency_ms=numbers,
        status=st.integers(-(2**63), 2**63 - 1),
        variant=optional,
        parse_error=optional,
    )
    return draw(st.lists(row, min_size=1, max_size=6))


@given(row_lists())
def test_rows_encode_to_the_bytes_of_their_batch(rows: list[TrafficRow]) -> None:
    assert encode_traffic_rows(rows) == encode_traffic(TrafficBatch.from_rows(rows))


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (TrafficRow("m", "1", "r", 1.0, {"x": True}, None, 1.0, 200), "batch.features.x[1]"),
        (TrafficRow("m", "1", "r", math.nan, {}, None, 1.0, 200), "batch.timestamp"),
        (TrafficRow("m", "1", "r", 1.0, {}, None, "slow", 200), "batch.latency_ms"),  # type: ignore[arg-type]
        (TrafficRow("m", "1", "r", 1.0, {}, None, 1.0, True), "batch.status"),
        (TrafficRow("m", "1", 5, 1.0, {}, None, 1.0, 200), "batch.request_id"),  # type: ignore[arg-type]
        (TrafficRow("m", "1", "r", 1.0, {}, None, 1.0, 200, variant=3), "batch.variant[1]"),  # type: ignore[arg-type]
    ],
)
def test_rows_refuse_what_decoding_would_reject(row: TrafficRow, field: str) -> None:
    good = TrafficRow("m", "1", "g", 1.0, {"x": 1.0}, None, 1.0, 200)
    with pytest.raises(EventError) as caught:
        encode_traffic_rows([good, row])
    assert caught.value.field == field


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [
            TrafficRow("m", "1", "a", 1.0, {}, 0, 1.0, 200),
            TrafficRow("m", "2", "b", 1.0, {}, 0, 1.0, 200),
        ],
    ],
)
def test_rows_must_be_some_of_one_model_version(rows: list[TrafficRow]) -> None:
    with pytest.raises(EventError) as caught:
        encode_traffic_rows(rows)
    assert caught.value.code == "bad_batch"


def test_encoding_rows_and_rows_alone_loads_no_numpy() -> None:
    """The gateway's path: TrafficRow, encode_traffic and encode_traffic_rows in a process
    where numpy is not installed."""
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "from flowops.events import TrafficRow\n"
        "from flowops.events.codec import encode_traffic, encode_traffic_rows\n"
        "row = TrafficRow('m', '1', 'r', 1.0, {'x': 1.5}, 0.3, 2.0, 200)\n"
        "encode_traffic(row); print(encode_traffic_rows([row, row]).decode())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert orjson.loads(done.stdout)["batch"]["features"] == {"x": [1.5, 1.5]}


# --- many messages at once ----------------------------------------------------------------


def row_message(model: str, request_id: str, **features: Any) -> bytes:
    return dumps(ROW | {"model": model, "request_id": request_id, "features": features})


def test_many_rows_of_one_model_become_one_batch_in_order() -> None:
    payloads = [row_message("a", f"r-{i}", x=float(i)) for i in range(5)]
    decoded = decode_traffic_many(payloads)
    assert decoded.errors == []
    [batch] = decoded.batches
    assert batch.request_ids == ["r-0", "r-1", "r-2", "r-3", "r-4"]
    assert batch.features == {"x": [0.0, 1.0, 2.0, 3.0, 4.0]}
    assert batch.status.tolist() == [200] * 5


def test_models_and_versions_get_a_batch_each() -> None:
    other_version = dumps(ROW | {"version": "4", "request_id": "v4"})
    payloads = [row_message("a", "1"), row_message("b", "2"), other_version, row_message("a", "3")]
    decoded = decode_traffic_many(payloads)
    assert [(b.model, b.version, b.request_ids) for b in decoded.batches] == [
        ("a", "3", ["1", "3"]),
        ("b", "3", ["2"]),
        ("credit", "4", ["v4"]),
    ]


def test_rows_and_batches_merge_with_missing_features_as_none() -> None:
    payloads = [row_message("credit", "first", age=1), dumps(BATCH), row_message("credit", "x")]
    [batch] = decode_traffic_many(payloads).batches
    assert batch.request_ids == ["first", "r-1", "r-2", "x"]
    assert batch.features == {
        "age": [1, 41, 37, None],
        "income": [None, 52000.0, None, None],
        "region": [None, "north", "south", None],
    }
    assert batch.timestamps.shape == (4,)


def test_bad_messages_are_set_aside_with_their_index() -> None:
    payloads = [b"{", row_message("a", "1"), dumps(changed(ROW, "status", "ok")), b"[]"]
    decoded = decode_traffic_many(payloads)
    assert [batch.request_ids for batch in decoded.batches] == [["1"]]
    assert [(index, error.code) for index, error in decoded.errors] == [
        (0, "bad_json"),
        (2, "wrong_type"),
        (3, "bad_json"),
    ]


def test_many_of_nothing_is_nothing() -> None:
    decoded = decode_traffic_many([])
    assert (decoded.batches, decoded.errors) == ([], [])


@given(st.lists(batches(), min_size=1, max_size=4))
def test_many_equals_one_by_one_for_one_model(parts: list[TrafficBatch]) -> None:
    same = [
        TrafficBatch(
            "m", "1", p.request_ids, p.timestamps, p.features, p.predictions, p.latency_ms, p.status
        )
        for p in parts
    ]
    [merged] = decode_traffic_many([encode_traffic(part) for part in same]).batches
    assert merged.request_ids == [rid for part in same for rid in part.request_ids]
    assert merged.status.tolist() == [s for part in same for s in part.status.tolist()]
    for name, column in merged.features.items():
        expected = [v for p in same for v in p.features.get(name, [None] * p.rows)]
        assert column == expected


# --- the optional fields: variant and parse_error -----------------------------------------


def test_a_message_without_the_optional_fields_decodes_as_before() -> None:
    for message in (ROW, BATCH):
        batch = decode_traffic(dumps(message))
        assert (batch.variants, batch.parse_errors, batch.unparsable) == (None, None, 0)


def test_a_row_with_a_variant_and_a_parse_error_decodes_them() -> None:
    message = ROW | {"variant": "b", "parse_error": "the body is not JSON", "features": {}}
    batch = decode_traffic(dumps(message))
    assert (batch.variants, batch.parse_errors, batch.unparsable) == (
        ["b"],
        ["the body is not JSON"],
        1,
    )


def test_explicit_nulls_in_a_row_are_the_same_as_leaving_them_out() -> None:
    batch = decode_traffic(dumps(ROW | {"variant": None, "parse_error": None}))
    assert batch == decode_traffic(dumps(ROW))


def test_batch_columns_for_the_optional_fields() -> None:
    columns = BATCH["batch"] | {"variant": ["a", None], "parse_error": [None, "no JSON"]}
    batch = decode_traffic(dumps(BATCH | {"batch": columns}))
    assert (batch.variants, batch.parse_errors) == (["a", None], [None, "no JSON"])
    assert batch.parsed().request_ids == ["r-1"]


@pytest.mark.parametrize(
    ("message", "field", "code"),
    [
        (ROW | {"variant": 1}, "variant", "wrong_type"),
        (ROW | {"parse_error": ["x"]}, "parse_error", "wrong_type"),
        (ROW | {"parse_error": True}, "parse_error", "wrong_type"),
        (ROW | {"variants": "a"}, None, "unknown_field"),
        (changed(BATCH, "batch.variant", ["a"]), "batch.variant", "bad_batch"),
        (changed(BATCH, "batch.variant", None), "batch.variant", "wrong_type"),
        (changed(BATCH, "batch.parse_error", [None, 2]), "batch.parse_error[1]", "wrong_type"),
        (changed(BATCH, "variant", ["a", "b"]), None, "unknown_field"),
    ],
)
def test_bad_optional_fields_are_named(
    message: dict[str, Any], field: str | None, code: str
) -> None:
    with pytest.raises(EventError) as caught:
        decode_traffic(dumps(message))
    assert (caught.value.field, caught.value.code) == (field, code)


def test_the_encoder_leaves_out_null_optional_fields() -> None:
    row = TrafficRow("credit", "3", "r-1", 1.5, {}, None, 2.0, 200)
    assert "variant" not in orjson.loads(encode_traffic(row))
    batch = TrafficBatch.from_rows([row, row])
    assert set(orjson.loads(encode_traffic(batch))["batch"]) == {
        "request_id",
        "timestamp",
        "features",
        "prediction",
        "latency_ms",
        "status",
    }


def test_the_optional_fields_round_trip_in_rows_and_batches() -> None:
    rows = [
        TrafficRow("m", "1", "a", 1.0, {"x": 1.0}, 0, 2.0, 200, variant="shadow"),
        TrafficRow("m", "1", "b", 1.0, {}, None, 2.0, 200, parse_error="not JSON"),
        TrafficRow("m", "1", "c", 1.0, {"x": 2.0}, 1, 2.0, 200),
    ]
    assert orjson.loads(encode_traffic(rows[0]))["variant"] == "shadow"
    one_by_one = decode_traffic_many([encode_traffic(row) for row in rows]).batches
    assert one_by_one == [TrafficBatch.from_rows(rows)]
    assert decode_traffic(encode_traffic(TrafficBatch.from_rows(rows))) == one_by_one[0]
    assert one_by_one[0].variants == ["shadow", None, None]
    assert one_by_one[0].parse_errors == [None, "not JSON", None]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (TrafficRow("m", "1", "r", 1.0, {}, None, 1.0, 200, variant=1), "variant"),  # type: ignore[arg-type]
        (TrafficRow("m", "1", "r", 1.0, {}, None, 1.0, 200, parse_error=b"x"), "parse_error"),  # type: ignore[arg-type]
    ],
)
def test_encoding_refuses_optional_fields_that_are_not_strings(row: TrafficRow, field: str) -> None:
    with pytest.raises(EventError) as caught:
        encode_traffic(row)
    assert caught.value.field == field


def test_encoding_refuses_a_bad_variant_column() -> None:
    batch = TrafficBatch.from_rows([TrafficRow("m", "1", "r", 1.0, {}, None, 1.0, 200, "a")])
    object.__setattr__(batch, "variants", [3])
    with pytest.raises(EventError) as caught:
        encode_traffic(batch)
    assert caught.value.field == "batch.variant[0]"


@given(st.lists(st.tuples(st.none() | st.text(max_size=3), st.none() | st.text(max_size=3))))
def test_optional_columns_merge_with_none_where_a_message_lacks_them(
    values: list[tuple[str | None, str | None]],
) -> None:
    rows = [
        TrafficRow("m", "1", str(i), 1.0, {}, None, 1.0, 200, variant, error)
        for i, (variant, error) in enumerate([*values, (None, None)])
    ]
    [batch] = decode_traffic_many([encode_traffic(row) for row in rows]).batches
    assert batch == TrafficBatch.from_rows(rows)
    assert batch.unparsable == sum(error is not None for _, error in values)
