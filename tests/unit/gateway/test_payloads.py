"""flowops.gateway.payloads: every payload shape, names or none, mismatches, unparsable."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowops.events import TrafficBatch, decode_traffic, encode_traffic
from flowops.gateway.payloads import Extracted, extract

JSON = "application/json"


def read(
    request: Any, response: Any = None, features: list[str] | None = None, **kwargs: Any
) -> Extracted:
    """extract() of JSON values (a bytes value is passed as it is)."""
    body = request if isinstance(request, bytes) else orjson.dumps(request)
    answer = response if response is None or isinstance(response, bytes) else orjson.dumps(response)
    return extract(
        body,
        kwargs.get("request_type", JSON),
        answer,
        kwargs.get("response_type", JSON),
        features or (),
    )


# --- KServe v1 / MLflow / TF Serving instances ------------------------------------------


def test_instances_of_objects_keep_their_names() -> None:
    found = read(
        {"instances": [{"age": 41, "region": "n"}, {"age": 37, "region": "s"}]},
        {"predictions": [0.1, 0.7]},
        ["ignored", "names"],
    )
    assert (found.format, found.error, found.note) == ("instances", None, None)
    assert found.rows == [{"age": 41, "region": "n"}, {"age": 37, "region": "s"}]
    assert found.predictions == [0.1, 0.7]


def test_instances_of_arrays_take_the_route_names() -> None:
    found = read({"instances": [[5.1, 3.5], [6.2, 2.9]]}, {"predictions": [0, 2]}, ["a", "b"])
    assert found.rows == [{"a": 5.1, "b": 3.5}, {"a": 6.2, "b": 2.9}]


def test_instances_of_arrays_without_route_names_are_f0_f1() -> None:
    found = read({"instances": [[1, 2, 3]]}, {"predictions": [[0.2, 0.8]]})
    assert found.rows == [{"f0": 1, "f1": 2, "f2": 3}]
    assert found.predictions == [[0.2, 0.8]]


def test_values_beyond_the_route_names_are_numbered_and_noted() -> None:
    found = read({"instances": [[1, 2, 3], [4, 5]]}, {"predictions": [0, 1]}, ["a", "b"])
    assert found.rows == [{"a": 1, "b": 2, "f2": 3}, {"a": 4, "b": 5}]
    assert found.note == "the route names 2 features, a row has 3 values"


def test_instances_of_single_values_are_one_feature_each() -> None:
    found = read({"instances": [1.5, 2.5]}, {"predictions": [1, 0]}, ["x"])
    assert found.rows == [{"x": 1.5}, {"x": 2.5}]


def test_other_top_level_keys_are_ignored() -> None:
    request = {"signature_name": "serving", "params": {"k": 1}, "instances": [[1]]}
    assert read(request, {"predictions": [1]}).rows == [{"f0": 1}]


# --- KServe v2 ------------------------------------------------------------------------------


def v2(name: str, shape: list[int], data: Any, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_v2_named_inputs_are_features_one_row_per_batch_element() -> None:
    request = {
        "id": "r",
        "inputs": [v2("age", [3], [41, 37, 29], "INT32"), v2("region", [3], ["n", "s", "e"])],
    }
    response = {"model_name": "m", "outputs": [v2("score", [3], [0.1, 0.2, 0.3])]}
    found = read(request, response)
    assert found.format == "kserve_v2"
    assert found.rows == [
        {"age": 41, "region": "n"},
        {"age": 37, "region": "s"},
        {"age": 29, "region": "e"},
    ]
    assert found.predictions == [0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    "data", [[1, 2, 3, 4, 5, 6], [[1, 2, 3], [4, 5, 6]]], ids=["flat", "nested"]
)
def test_v2_one_2d_input_is_columns_named_by_the_route(data: list[Any]) -> None:
    request = {"inputs": [v2("input-0", [2, 3], data)]}
    response = {"outputs": [v2("output-0", [2], [1, 0], "INT64")]}
    found = read(request, response, ["a", "b", "c"])
    assert found.rows == [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}]
    assert found.predictions == [1, 0]
    assert read(request, response).rows[1] == {"f0": 4, "f1": 5, "f2": 6}


def test_v2_several_2d_inputs_name_their_columns_by_index() -> None:
    request = {"inputs": [v2("x", [2, 2], [1, 2, 3, 4]), v2("y", [2], [5, 6])]}
    found = read(request, None)
    assert found.rows == [{"x[0]": 1, "x[1]": 2, "y": 5}, {"x[0]": 3, "x[1]": 4, "y": 6}]
    assert found.predictions == [None, None]


def test_v2_several_outputs_give_a_dict_per_row() -> None:
    request = {"inputs": [v2("x", [2], [1, 2])]}
    response = {"outputs": [v2("label", [2], ["a", "b"], "BYTES"), v2("p", [2, 2], [1, 0, 0, 1])]}
    assert read(request, response).predictions == [
        {"label": "a", "p": [1, 0]},
        {"label": "b", "p": [0, 1]},
    ]


def test_v2_images_are_left_out_with_a_note() -> None:
    request = {"inputs": [v2("image", [1, 2, 2], [1, 2, 3, 4]), v2("id", [1], ["a"], "BYTES")]}
    found = read(request, {"outputs": [v2("cls", [1], [7])]})
    assert found.rows == [{"id": "a"}]
    assert found.note == "input 'image' of rank 3 left out (rank 1 or 2 only)"


def test_v2_booleans_are_categories() -> None:
    found = read({"inputs": [v2("flag", [2], [True, False], "BOOL")]})
    assert found.rows == [{"flag": "true"}, {"flag": "false"}]


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ([v2("x", [2, 2], [1, 2, 3])], "input 'x' has 3 values for shape [2, 2]"),
        ([v2("x", [2], [1, 2]), v2("y", [3], [1, 2, 3])], "inputs of different batch sizes (2, 3)"),
        ([v2("x", [-1], [1])], "input 'x': 'shape' must be non-negative integers"),
        ([{"name": "x", "shape": [1], "datatype": "FP32"}], "input 'x' has no 'data'"),
    ],
)
def test_v2_inputs_that_do_not_fit_their_shape_are_unparsable(
    inputs: list[Any], reason: str
) -> None:
    found = read({"inputs": inputs}, {"outputs": []})
    assert found.unparsable
    assert (found.format, found.rows, found.predictions) == ("kserve_v2", [], [])
    assert found.error is not None
    assert found.error.startswith(reason)


def test_v2_outputs_of_another_batch_size_are_a_mismatch() -> None:
    found = read({"inputs": [v2("x", [2], [1, 2])]}, {"outputs": [v2("y", [3], [1, 2, 3])]})
    assert found.predictions == [None, None]
    assert found.note == "the response has 3 predictions for 2 rows"


# --- MLflow ----------------------------------------------------------------------------------


def test_dataframe_split_names_columns() -> None:
    request = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}
    found = read(request, {"predictions": [0.5, 0.6]}, ["route", "names"])
    assert found.format == "dataframe_split"
    assert found.rows == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert found.predictions == [0.5, 0.6]


def test_dataframe_split_without_columns_uses_the_route_names() -> None:
    found = read({"dataframe_split": {"data": [[1, 2]], "index": [7]}}, [3], ["a"])
    assert found.rows == [{"a": 1, "f1": 2}]
    assert found.predictions == [3]


def test_dataframe_records_and_a_bare_list_response() -> None:
    found = read({"dataframe_records": [{"a": 1}, {"a": 2, "b": None}]}, [10, 20])
    assert (found.format, found.rows, found.predictions) == (
        "dataframe_records",
        [{"a": 1}, {"a": 2, "b": None}],
        [10, 20],
    )


def test_mlflow_inputs_as_columns() -> None:
    found = read({"inputs": {"a": [1, 2], "b": ["x", "y"]}}, {"predictions": [1, 0]})
    assert found.format == "inputs"
    assert found.rows == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_mlflow_inputs_as_one_2d_tensor_and_as_rows() -> None:
    assert read({"inputs": {"t": [[1, 2], [3, 4]]}}, [0, 1], ["p", "q"]).rows == [
        {"p": 1, "q": 2},
        {"p": 3, "q": 4},
    ]
    assert read({"inputs": [[1, 2]]}, [0]).rows == [{"f0": 1, "f1": 2}]
    assert read({"inputs": [{"a": 1}]}, [0]).rows == [{"a": 1}]


def test_mlflow_inputs_with_a_scalar_column_are_one_row() -> None:
    assert read({"inputs": {"a": 1, "b": "x"}}, {"predictions": 5}).rows == [{"a": 1, "b": "x"}]


def test_mlflow_columns_of_unequal_length_are_unparsable() -> None:
    found = read({"inputs": {"a": [1, 2], "b": [1]}})
    assert found.error == "the arrays of 'inputs' differ in length (1 and 2)"


def test_predictions_as_columns_become_one_dict_per_row() -> None:
    response = {"predictions": {"label": ["a", "b"], "score": [0.1, 0.9]}}
    found = read({"dataframe_records": [{"x": 1}, {"x": 2}]}, response)
    assert found.predictions == [{"label": "a", "score": 0.1}, {"label": "b", "score": 0.9}]


# --- a plain JSON object of features ------------------------------------------------------


def test_a_plain_object_is_one_row_and_the_whole_response_its_prediction() -> None:
    found = read({"age": 41, "member": True, "tags": ["a"]}, [0.1, 0.9])
    assert found.format == "object"
    assert found.rows == [{"age": 41, "member": "true"}]
    assert found.predictions == [[0.1, 0.9]]
    assert found.note == "arrays and objects are not feature values: left out"


def test_a_plain_object_answered_with_any_json() -> None:
    assert read({"x": 1}, {"label": "cat"}).predictions == [{"label": "cat"}]
    assert read({"x": 1}, 3).predictions == [3]


# --- mismatches and responses that cannot be read ------------------------------------------


@pytest.mark.parametrize(
    ("response", "note"),
    [
        ({"predictions": [1]}, "the response has 1 predictions for 2 rows"),
        ([1, 2, 3], "the response has 3 predictions for 2 rows"),
        ({"predictions": 1}, "the response has 1 predictions for 2 rows"),
        ({"error": "boom"}, "the response holds no predictions this gateway reads for 2 rows"),
        (b"Internal Server Error", "the response body is not JSON"),
    ],
)
def test_predictions_that_do_not_match_the_rows_are_none_with_a_note(
    response: Any, note: str
) -> None:
    found = read({"instances": [[1], [2]]}, response)
    assert found.rows == [{"f0": 1}, {"f0": 2}]
    assert found.predictions == [None, None]
    assert found.note is not None
    assert found.note.startswith(note)
    assert not found.unparsable


def test_a_single_row_takes_an_unrecognised_response_as_its_prediction() -> None:
    assert read({"instances": [[1]]}, {"label": "cat"}).predictions == [{"label": "cat"}]


def test_no_response_gives_none_predictions_without_a_note() -> None:
    found = read({"instances": [[1], [2]]}, None)
    assert (found.predictions, found.note) == ([None, None], None)


def test_a_response_of_another_content_type_is_not_read() -> None:
    found = read({"x": 1}, b"ok", response_type="text/plain")
    assert found.predictions == [None]
    assert found.note == "the response's content type is 'text/plain', not JSON"


def test_an_empty_batch_has_no_rows_and_no_error() -> None:
    found = read({"instances": []}, {"predictions": []})
    assert (found.rows, found.predictions, found.error) == ([], [], None)


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain; charset=utf-8", "application/octet-stream"],
)
def test_json_sent_under_a_catch_all_type_is_read(content_type: str) -> None:
    found = extract(b' {"instances": [[1, 2]]}', content_type, b"[0]", JSON, ["a", "b"])
    assert (found.format, found.rows, found.error) == ("instances", [{"a": 1, "b": 2}], None)


# --- unparsable requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "format", "error"),
    [
        (b"{", JSON, "unknown", "the request body is not JSON (unexpected end of data"),
        (b"", None, "unknown", "the request body is not JSON (Input is a zero-length"),
        (b"\xff\xfe", JSON, "unknown", "the request body is not JSON"),
        (b"<a>1</a>", "application/xml; charset=utf-8", "unknown", "the request's content type is"),
        (b"a,b\n1,2,3\n", "text/csv", "csv", "CSV record 1 has 3 cells"),
        (b"", "text/csv", "csv", "the CSV request body has no header row"),
        (b"a\n\xff\n", "text/csv", "csv", "the CSV request body is not UTF-8 text"),
        (b"a=1&b=2", "application/x-www-form-urlencoded", "unknown", "the request's content"),
        (b"[[1, 2]]", JSON, "unknown", "an array is not an inference request"),
        (b'"text"', JSON, "unknown", "a string is not an inference request"),
        (b"null", JSON, "unknown", "null is not an inference request"),
        (b"{}", JSON, "unknown", "a JSON object without a single feature value"),
        (b'{"a": [1], "b": {"c": 1}}', JSON, "unknown", "a JSON object without a single"),
        (b'{"instances": {"a": 1}}', JSON, "instances", "'instances' must be an array, not an"),
        (b'{"dataframe_records": 3}', JSON, "dataframe_records", "'dataframe_records' must be"),
        (b'{"dataframe_split": [1]}', JSON, "dataframe_split", "'dataframe_split' must be an"),
        (b'{"dataframe_split": {"columns": "a", "data": []}}', JSON, "dataframe_split", "'data"),
        (b'{"inputs": "text"}', JSON, "inputs", "'inputs' must be an array or an object, not a"),
    ],
)
def test_unparsable_requests_say_why(
    body: bytes, content_type: str | None, format: str, error: str
) -> None:
    found = extract(body, content_type, b'{"predictions": [1]}', JSON, ["a"])
    assert found.unparsable
    assert (found.rows, found.predictions, found.format) == ([], [], format)
    assert found.error is not None
    assert found.error.startswith(error)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "Application/JSON; charset=utf-8", "application/vnd.x+json"],
)
def test_json_content_types_and_none_are_read(content_type: str | None) -> None:
    assert extract(b'{"x": 1}', content_type, None, None).rows == [{"x": 1}]


def test_reasons_never_quote_the_body() -> None:
    secret = b'{"password": hunter2}'
    found = extract(secret, JSON, None, None)
    assert found.error is not None
    assert "hunter2" not in found.error


# --- traffic events -------------------------------------------------------------------------


def test_traffic_rows_are_one_event_per_row_sharing_the_request() -> None:
    found = read({"instances": [[1], [2]]}, {"predictions": [0, 1]})
    events = found.traffic_rows(
        model="m",
        version="2",
        request_id="r-1",
        timestamp=1.5,
        latency_ms=3.0,
        status=200,
        variant="b",
    )
    batch = TrafficBatch.from_rows(events)
    assert batch.request_ids == ["r-1", "r-1"]
    assert (batch.features, batch.predictions) == ({"f0": [1, 2]}, [0, 1])
    assert (batch.variants, batch.parse_errors) == (["b", "b"], None)


def test_an_unparsable_request_is_one_event_with_its_parse_error() -> None:
    found = extract(b"not json", "application/json", b"{}", JSON)
    [event] = found.traffic_rows(
        model="m", version="1", request_id="r", timestamp=1.0, latency_ms=1.0, status=200
    )
    assert (event.features, event.prediction, event.variant) == ({}, None, None)
    assert event.parse_error == found.error
    assert decode_traffic(encode_traffic(event)).unparsable == 1


# --- properties -----------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
shapes = st.sampled_from(["instances", "inputs", "dataframe_records", "dataframe_split"])


@st.composite
def requests(draw: st.DrawFn) -> Any:
    """Anything JSON, often with the keys of an inference payload."""
    value = draw(json_values)
    if draw(st.booleans()):
        key = draw(shapes)
        value = {key: value if key != "dataframe_split" else {"data": value}}
    return value


@settings(max_examples=300)
@given(requests(), json_values, st.lists(st.text(max_size=3), max_size=3))
def test_any_json_gives_rows_that_encode_or_an_error_and_never_raises(
    request: Any, response: Any, features: list[str]
) -> None:
    found = extract(orjson.dumps(request), JSON, orjson.dumps(response), JSON, features)
    assert len(found.rows) == len(found.predictions)
    assert found.error is None or not found.error.startswith("the payload reader failed")
    if found.unparsable:
        assert found.rows == []
    events = found.traffic_rows(
        model="m", version="1", request_id="r", timestamp=1.0, latency_ms=1.0, status=200
    )
    for event in events:
        encode_traffic(event)  # every value a row holds is one the codec takes


@given(st.binary(max_size=64), st.sampled_from([None, JSON, "text/plain"]))
def test_any_bytes_never_raise(body: bytes, content_type: str | None) -> None:
    found = extract(body, content_type, body, content_type, ["a"])
    assert len(found.rows) == len(found.predictions)


@given(
    st.lists(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3),
            min_size=2,
            max_size=2,
        ),
        max_size=5,
    )
)
def test_rows_of_arrays_are_the_same_in_every_format(rows: list[list[Any]]) -> None:
    names = ["a", "b"]
    expected = [dict(zip(names, row, strict=True)) for row in rows]
    predictions = list(range(len(rows)))
    for request in (
        {"instances": rows},
        {"inputs": rows},
        {"dataframe_split": {"columns": names, "data": rows}},
        {"dataframe_records": expected},
        {"inputs": {"a": [r[0] for r in rows], "b": [r[1] for r in rows]}},
    ):
        found = read(request, {"predictions": predictions}, names)
        assert (found.rows, found.predictions, found.error) == (expected, predictions, None)


# --- text/csv (MLflow's scoring server takes it) --------------------------------------------


def test_a_csv_request_with_a_header_becomes_rows() -> None:
    body = b"age,region,income,flag\r\n41,north,52000.5,\r\n\r\n37,south,,yes\r\n"
    found = extract(body, "text/csv; charset=utf-8", b'{"predictions": [0.1, 0.7]}', JSON)
    assert (found.format, found.error, found.note) == ("csv", None, None)
    assert found.rows == [
        {"age": 41, "region": "north", "income": 52000.5, "flag": None},
        {"age": 37, "region": "south", "income": None, "flag": "yes"},
    ]
    assert found.predictions == [0.1, 0.7]


def test_a_short_csv_record_leaves_the_rest_missing_and_quotes_are_read() -> None:
    found = extract(b'name,city\n"Doe, J",\nAnn\n', "application/csv", b"[1, 2]", JSON)
    assert found.rows == [{"name": "Doe, J", "city": None}, {"name": "Ann", "city": None}]


def test_nan_tokens_in_a_json_request_are_missing_values() -> None:
    found = extract(
        b'{"instances": [[NaN, 2.0], [1.0, -Infinity]]}', JSON, b"[1, 2]", JSON, ["a", "b"]
    )
    assert (found.error, found.rows) == (None, [{"a": None, "b": 2.0}, {"a": 1.0, "b": None}])
