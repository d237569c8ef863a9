"""Features and predictions read out of inference payloads: pure functions, no I/O.

The gateway hands :func:`extract` a request body and its response body; it answers with
one row of features per request row and one prediction per row, whatever the model
server speaks:

=====================  ==============================================  =======================
format                 request                                         response
=====================  ==============================================  =======================
``instances``          ``{"instances": [row, ...]}``, as KServe v1,    ``{"predictions": [...]}``
                       MLflow and TF Serving send it; a row is an
                       object, an array or one value
``kserve_v2``          ``{"inputs": [{"name", "shape", "datatype",     ``{"outputs": [...]}``
                       "data"}, ...]}`` (Open Inference Protocol)
``inputs``             MLflow's ``{"inputs": {"a": [...], ...}}``      ``{"predictions": ...}``
                       (an array per input) or ``{"inputs": [row]}``   or a bare array
``dataframe_split``    ``{"dataframe_split": {"columns", "data"}}``    the same
``dataframe_records``  ``{"dataframe_records": [{...}, ...]}``         the same
``object``             any other JSON object: one row of features      any JSON: the prediction
``csv``                ``text/csv`` with a header row, as MLflow       the same as JSON's
                       takes it (:mod:`flowops.gateway.csv_rows`)
=====================  ==============================================  =======================

**Names.** A payload's own names win (object keys, ``columns``, tensor names). Where it
has none (rows that are arrays, a single 2-D tensor), the route's ``features`` name the
values in order, and ``f0, f1, ...`` any value beyond them.

**Values.** Numbers and strings are kept, ``null`` is a missing value (so are ``NaN``
and ``Infinity``, which Python's ``json.dumps`` writes and MLflow reads), booleans become
``"true"`` / ``"false"`` (a category, as ``flowops drift baseline`` reads them from data
files). Arrays and objects are not one feature value: they are left out of the row.

**KServe v2.** The first dimension of each tensor is the batch: one row per element.
An input of shape ``[N]`` is one feature; a single input of shape ``[N, k]`` holds
``k`` features, named as arrays are; with several inputs, ``[N, k]`` gives
``name[0] ... name[k-1]``. Inputs of rank 3 or more (images) are left out, with a note.

**What goes wrong.** A request that is not JSON, or no inference payload, gives no rows
and an ``error`` (it is *unparsable*; the gateway still proxies it untouched). A response
that cannot be read, or holds another number of predictions than the request has rows,
gives ``None`` predictions and a ``note``. Nothing raises; reasons never quote values
from the bodies.

>>> found = extract(b'{"instances": [[5.1, 3.5], [6.2, 2.9]]}', "application/json",
...                 b'{"predictions": [0, 2]}', "application/json", ["sepal", "width"])
>>> found.format, found.rows, found.predictions
('instances', [{'sepal': 5.1, 'width': 3.5}, {'sepal': 6.2, 'width': 2.9}], [0, 2])
>>> extract(b"a,b\\n1,x\\n", "text/csv", b'{"predictions": [1]}', None).rows
[{'a': 1, 'b': 'x'}]
>>> extract(b"\\x89PNG", "image/png", b"[1]", None).error
"the request's content type is 'image/png', not JSON"
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final, Literal, TypeAlias

import orjson

from flowops.events import FeatureValue, TrafficRow
from flowops.events.non_finite import loads_non_finite
from flowops.gateway.csv_rows import is_csv, read_csv_rows

__all__ = ["Extracted", "PayloadFormat", "extract"]

PayloadFormat: TypeAlias = Literal[
    "instances",
    "kserve_v2",
    "inputs",
    "dataframe_split",
    "dataframe_records",
    "object",
    "csv",
    "unknown",
]
"""Which payload a request was; ``unknown`` when it was none that :func:`extract` reads."""

_SCALAR: Final[frozenset[type]] = frozenset({int, float, str, type(None)})
_NESTED: Final[frozenset[type]] = frozenset({list, dict})
_JSON_NAMES: Final = {list: "an array", str: "a string", int: "a number", float: "a number"}
_MAX_RANK: Final = 2
_CATCH_ALL_TYPES: Final = frozenset(
    {"application/x-www-form-urlencoded", "application/octet-stream", "text/plain"}
)


@dataclass(frozen=True, slots=True)
class Extracted:
    """The rows of features a request held, and the prediction for each row.

    ``rows`` and ``predictions`` have the same length. ``error`` is set when the request
    could not be read at all (then ``rows`` is empty: the request is *unparsable*);
    ``note`` says what else was off (predictions that could not be matched to rows,
    values left out, route feature names that do not fit).
    """

    rows: list[dict[str, FeatureValue]]
    predictions: list[Any]
    format: PayloadFormat
    error: str | None = None
    note: str | None = None

    @property
    def unparsable(self) -> bool:
        """Whether the request's features could not be read."""
        return self.error is not None

    def traffic_rows(
        self,
        *,
        model: str,
        version: str,
        request_id: str,
        timestamp: float,
        latency_ms: float,
        status: int,
        variant: str | None = None,
    ) -> list[TrafficRow]:
        """The traffic events of this request: one per row, sharing ``request_id``.

        An unparsable request is one event with no features and its ``parse_error``,
        so it is counted downstream though drift cannot use it.

        >>> extract(b"{", None, None, None).traffic_rows(model="m", version="1",
        ...     request_id="r", timestamp=0.0, latency_ms=1.0, status=200)[0].parse_error
        'the request body is not JSON (unexpected end of data: line 1 column 2 (char 1))'
        """

        def event(features: dict[str, FeatureValue], prediction: Any) -> TrafficRow:
            return TrafficRow(
                model,
                version,
                request_id,
                timestamp,
                features,
                prediction,
                latency_ms,
                status,
                variant,
                self.error,
            )

        if self.error is not None:
            return [event({}, None)]
        return [event(row, pred) for row, pred in zip(self.rows, self.predictions, strict=True)]


def extract(
    request: bytes | bytearray | memoryview,
    request_type: str | None,
    response: bytes | bytearray | memoryview | None,
    response_type: str | None,
    features: Sequence[str] = (),
) -> Extracted:
    """The rows and predictions of one request/response pair; never raises.

    ``request_type`` and ``response_type`` are the ``Content-Type`` headers (``None``
    when absent: the body is tried as JSON). ``response`` is ``None`` when there is no
    response to read (the predictions are then ``None``). ``features`` are the route's
    names for values that come without names.
    """
    try:
        return _extract(request, request_type, response, response_type, features)
    except Exception as exc:  # a bug here must never reach the proxy: say so instead
        return Extracted([], [], "unknown", f"the payload reader failed ({type(exc).__name__})")


# --- the request ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Read:
    """What a request reader found: rows, or an error; and a note."""

    format: PayloadFormat
    rows: list[dict[str, FeatureValue]]
    error: str | None = None
    note: str | None = None


def _extract(
    request: bytes | bytearray | memoryview,
    request_type: str | None,
    response: bytes | bytearray | memoryview | None,
    response_type: str | None,
    features: Sequence[str],
) -> Extracted:
    if is_csv(request_type):
        rows, error = read_csv_rows(request)
        read = _Read("csv", rows, error)
    else:
        body, error = _load(request, request_type, "request")
        if error is not None:
            return Extracted([], [], "unknown", error)
        read = _read_request(body, list(features))
    if read.error is not None:
        return Extracted([], [], read.format, read.error)
    predictions, note = _read_response(response, response_type, read)
    return Extracted(read.rows, predictions, read.format, None, read.note or note)


def _load(
    body: bytes | bytearray | memoryview, content_type: str | None, what: str
) -> tuple[Any, str | None]:
    """The parsed body, or the reason it is not JSON.

    A body labelled with a catch-all type (``curl -d`` sends JSON as a form) is read
    when it looks like a JSON object or array; any other non-JSON type is not read.
    """
    if content_type and not _is_json(content_type) and not _generic_json(content_type, body):
        media = content_type.partition(";")[0].strip()[:60]
        return None, f"the {what}'s content type is {media!r}, not JSON"
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError as exc:
        tolerant = loads_non_finite(body)  # NaN from json.dumps: a missing value
        if tolerant is None:
            return None, f"the {what} body is not JSON ({exc})"
        return tolerant[0], None


def _generic_json(content_type: str, body: bytes | bytearray | memoryview) -> bool:
    """A catch-all content type on a body that starts like a JSON object or array."""
    media = content_type.partition(";")[0].strip().lower()
    return media in _CATCH_ALL_TYPES and bytes(body[:64]).lstrip()[:1] in (b"{", b"[")


def _is_json(content_type: str) -> bool:
    """``application/json``, ``text/json`` or any ``+json`` type (parameters aside)."""
    media = content_type.partition(";")[0].strip().lower()
    return media.endswith(("/json", "+json"))


def _read_request(body: Any, names: list[str]) -> _Read:
    if type(body) is not dict:
        return _Read("unknown", [], f"{_json_name(body)} is not an inference request")
    if "dataframe_split" in body:
        return _dataframe_split(body["dataframe_split"], names)
    if "dataframe_records" in body:
        return _records("dataframe_records", body["dataframe_records"], names)
    if "instances" in body:
        return _records("instances", body["instances"], names)
    if "inputs" in body:
        return _inputs(body["inputs"], names)
    return _object(body)


def _object(body: dict[str, Any]) -> _Read:
    row, left_out = _named(body)
    if not row:
        reason = "a JSON object without a single feature value is not an inference request"
        return _Read("unknown", [], reason)
    return _Read("object", [row], note=_LEFT_OUT if left_out else None)


def _records(kind: PayloadFormat, items: Any, names: list[str]) -> _Read:
    if type(items) is not list:
        return _Read(kind, [], f"'{kind}' must be an array, not {_json_name(items)}")
    rows, note = _rows(items, names)
    return _Read(kind, rows, note=note)


def _dataframe_split(split: Any, names: list[str]) -> _Read:
    kind: PayloadFormat = "dataframe_split"
    if type(split) is not dict or type(split.get("data")) is not list:
        return _Read(kind, [], "'dataframe_split' must be an object with a 'data' array")
    columns = split.get("columns")
    if columns is None:
        columns = names
    elif type(columns) is not list or not _SCALAR.issuperset(map(type, columns)):
        return _Read(kind, [], "'dataframe_split.columns' must be an array of names")
    rows, note = _rows(split["data"], [str(name) for name in columns])
    return _Read(kind, rows, note=note)


def _inputs(inputs: Any, names: list[str]) -> _Read:
    if _is_v2(inputs):
        return _v2_inputs(inputs, names)
    if type(inputs) is list:
        return _records("inputs", inputs, names)
    if type(inputs) is dict:
        return _input_columns(inputs, names)
    return _Read("inputs", [], f"'inputs' must be an array or an object, not {_json_name(inputs)}")


def _input_columns(inputs: dict[str, Any], names: list[str]) -> _Read:
    """MLflow's columnar ``inputs``: one array per input, an element per row."""
    columns = {name: v if type(v) is list else [v] for name, v in inputs.items()}
    lengths = sorted({len(values) for values in columns.values()})
    if len(lengths) > 1:
        reason = f"the arrays of 'inputs' differ in length ({lengths[0]} and {lengths[-1]})"
        return _Read("inputs", [], reason)
    rows, note = _tensor_rows(columns, names, lengths[0] if lengths else 0)
    return _Read("inputs", rows, note=note)


# --- rows -----------------------------------------------------------------------------

_LEFT_OUT: Final = "arrays and objects are not feature values: left out"


def _rows(items: list[Any], names: list[str]) -> tuple[list[dict[str, FeatureValue]], str | None]:
    """One row per item: an object by its keys, an array by ``names``, a value alone."""
    namer = _Namer(names)
    fast = _plain_rows(items, namer)
    if fast is not None:
        return fast, namer.note
    rows: list[dict[str, FeatureValue]] = []
    left_out = False
    for item in items:
        kind = type(item)
        if kind is dict:
            row, nested = _named(item)
        elif kind is list:
            row, nested = _positional(item, namer.names(len(item)))
        else:
            row, nested = _positional([item], namer.names(1))
        rows.append(row)
        left_out = left_out or nested
    return rows, namer.note or (_LEFT_OUT if left_out else None)


def _plain_rows(items: list[Any], namer: _Namer) -> list[dict[str, FeatureValue]] | None:
    """The rows when every item is an object, or an array of one length, of plain values
    (numbers, strings, null): the common case, checked in C, in one pass; else ``None``.
    """
    kinds = set(map(type, items))
    if kinds == {dict}:
        values = chain.from_iterable(map(dict.values, items))
        return items if _SCALAR.issuperset(map(type, values)) else None
    if kinds == {list}:
        lengths = set(map(len, items))
        if len(lengths) != 1 or not _SCALAR.issuperset(map(type, chain.from_iterable(items))):
            return None
        names = namer.names(lengths.pop())
        return [dict(zip(names, item, strict=False)) for item in items]
    return None


def _named(values: dict[str, Any]) -> tuple[dict[str, FeatureValue], bool]:
    """The object's feature values (no copy when all are plain); whether any was left out."""
    if _SCALAR.issuperset(map(type, values.values())):
        return values, False
    row = {name: _cell(value) for name, value in values.items() if type(value) not in _NESTED}
    return row, len(row) != len(values)


def _positional(values: list[Any], names: list[str]) -> tuple[dict[str, FeatureValue], bool]:
    if _SCALAR.issuperset(map(type, values)):
        return dict(zip(names, values, strict=False)), False
    row = {
        name: _cell(value)
        for name, value in zip(names, values, strict=False)
        if type(value) not in _NESTED
    }
    return row, len(row) != len(values)


def _cell(value: Any) -> FeatureValue:
    """A JSON scalar as a feature value: booleans as the categories "true" and "false"."""
    if type(value) is bool:
        return "true" if value else "false"
    return value  # type: ignore[no-any-return]  # a number, a string or None here


class _Namer:
    """Names for values in order: the route's, then ``f<i>``; notes a count that differs."""

    def __init__(self, route: list[str]) -> None:
        self.route = route
        self.note: str | None = None
        self._cache: dict[int, list[str]] = {}

    def names(self, count: int) -> list[str]:
        found = self._cache.get(count)
        if found is None:
            route = self.route
            found = route[:count] + [f"f{i}" for i in range(len(route), count)]
            self._cache[count] = found
            if route and count != len(route) and self.note is None:
                self.note = f"the route names {len(route)} features, a row has {count} values"
        return found


# --- KServe v2 (Open Inference Protocol) tensors -----------------------------------------


def _is_v2(value: Any) -> bool:
    """Whether ``value`` is a non-empty array of v2 tensors (name, shape, datatype)."""
    return (
        type(value) is list
        and bool(value)
        and all(type(t) is dict and "name" in t and "shape" in t and "datatype" in t for t in value)
    )


@dataclass(frozen=True, slots=True)
class _Tensor:
    """A v2 tensor's elements along its first dimension, or why it cannot be read."""

    name: str
    batch: int
    rank: int
    elements: list[Any]
    error: str | None = None


def _tensor(spec: dict[str, Any], what: str) -> _Tensor:
    name = str(spec["name"])
    shape = spec["shape"]
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        return _Tensor(name, 0, 0, [], f"{what} {name!r}: 'shape' must be non-negative integers")
    if "data" not in spec:
        return _Tensor(name, 0, 0, [], f"{what} {name!r} has no 'data' (binary data is not read)")
    flat = _flatten(spec["data"])
    size = math.prod(shape)
    if len(flat) != size:
        reason = f"{what} {name!r} has {len(flat)} values for shape {shape}"
        return _Tensor(name, 0, 0, [], reason)
    if len(shape) <= 1:
        return _Tensor(name, shape[0] if shape else 1, len(shape), flat)
    batch = shape[0]
    width = size // batch if batch else 0
    elements = [flat[i * width : (i + 1) * width] for i in range(batch)]
    return _Tensor(name, batch, len(shape), elements)


def _flatten(data: Any) -> list[Any]:
    """Nested arrays in row-major order as one flat list (a flat list as it is)."""
    if type(data) is not list:
        return [data]
    if list not in set(map(type, data)):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _v2_inputs(specs: list[dict[str, Any]], names: list[str]) -> _Read:
    kind: PayloadFormat = "kserve_v2"
    tensors = [_tensor(spec, "input") for spec in specs]
    for tensor in tensors:
        if tensor.error is not None:
            return _Read(kind, [], tensor.error)
    batches = sorted({tensor.batch for tensor in tensors})
    if len(batches) > 1:
        return _Read(kind, [], f"inputs of different batch sizes ({batches[0]}, {batches[-1]})")
    kept = [tensor for tensor in tensors if tensor.rank <= _MAX_RANK]
    rows, note = _tensor_rows({t.name: t.elements for t in kept}, names, batches[0])
    if len(kept) != len(tensors):
        dropped = next(t for t in tensors if t.rank > _MAX_RANK)
        note = f"input {dropped.name!r} of rank {dropped.rank} left out (rank 1 or 2 only)"
    return _Read(kind, rows, note=note)


def _tensor_rows(
    columns: dict[str, list[Any]], names: list[str], batch: int
) -> tuple[list[dict[str, FeatureValue]], str | None]:
    """Rows from named columns of per-row elements (a value, or an array of values).

    One column of arrays is the features, named as arrays are; otherwise each column is
    a feature, or ``name[j]`` for the values of its arrays.
    """
    if len(columns) == 1:
        [elements] = columns.values()
        if any(type(element) is list for element in elements):
            return _rows(elements, names)
    rows: list[dict[str, FeatureValue]] = [{} for _ in range(batch)]
    left_out = False
    for name, elements in columns.items():
        for row, element in zip(rows, elements, strict=False):
            if type(element) is list:
                for j, value in enumerate(element):
                    if type(value) in _NESTED:
                        left_out = True
                    else:
                        row[f"{name}[{j}]"] = _cell(value)
            elif type(element) is dict:
                left_out = True
            else:
                row[name] = _cell(element)
    return rows, _LEFT_OUT if left_out else None


# --- the response --------------------------------------------------------------------


def _read_response(
    response: bytes | bytearray | memoryview | None, response_type: str | None, read: _Read
) -> tuple[list[Any], str | None]:
    """One prediction per row, or ``None`` for each and a note saying why."""
    count = len(read.rows)
    if response is None:
        return [None] * count, None
    body, error = _load(response, response_type, "response")
    if error is not None:
        return [None] * count, error
    if read.format == "object":
        return [body], None
    predictions, note = _predictions(body, count)
    if predictions is None:
        return [None] * count, note
    return predictions, note


def _predictions(body: Any, count: int) -> tuple[list[Any] | None, str | None]:
    if type(body) is dict:
        if "predictions" in body:
            return _per_row(body["predictions"], count)
        if _is_v2(body.get("outputs")):
            return _v2_outputs(body["outputs"], count)
    if type(body) is list:
        return _per_row(body, count)
    if count == 1:
        return [body], None
    return None, f"the response holds no predictions this gateway reads for {count} rows"


def _per_row(predictions: Any, count: int) -> tuple[list[Any] | None, str | None]:
    """An array of one prediction per row; columns of them; or one for a single row."""
    if type(predictions) is list:
        if len(predictions) == count:
            return predictions, None
        return None, _mismatch(len(predictions), count)
    if (
        type(predictions) is dict
        and predictions
        and all(type(column) is list and len(column) == count for column in predictions.values())
    ):
        return [
            {name: column[i] for name, column in predictions.items()} for i in range(count)
        ], None
    if count == 1:
        return [predictions], None
    return None, _mismatch(1, count)


def _v2_outputs(specs: list[dict[str, Any]], count: int) -> tuple[list[Any] | None, str | None]:
    """One element per row of each output; a dict of them when there are several."""
    tensors = [_tensor(spec, "output") for spec in specs]
    for tensor in tensors:
        if tensor.error is not None:
            return None, tensor.error
        if tensor.batch != count:
            return None, _mismatch(tensor.batch, count)
    if len(tensors) == 1:
        return tensors[0].elements, None
    return [{t.name: t.elements[i] for t in tensors} for i in range(count)], None


def _mismatch(found: int, count: int) -> str:
    return f"the response has {found} predictions for {count} rows"


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is dict:
        return "an object"
    return _JSON_NAMES.get(type(value), "a value")
