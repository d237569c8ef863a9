"""The traffic codec: JSON bytes on Kafka to :class:`TrafficBatch` and back, with orjson.

A message holds one request, or a columnar batch of requests to one model version::

    {"schema_version": 1, "model": "credit", "version": "3",
     "request_id": "r-1", "timestamp": 1764291600.25,
     "features": {"age": 41, "income": 52000.0, "region": "north"},
     "prediction": 0.12, "latency_ms": 8.5, "status": 200}

    {"schema_version": 1, "model": "credit", "version": "3",
     "batch": {"request_id": ["r-1", "r-2"], "timestamp": [1764291600.25, 1764291600.31],
               "features": {"age": [41, 37], "income": [52000.0, null], ...},
               "prediction": [0.12, 0.4], "latency_ms": [8.5, 9.1], "status": [200, 200]}}

Both decode to a :class:`TrafficBatch`. Two fields are optional, in a row and as batch
columns: ``variant`` (the A/B arm or shadow that answered) and ``parse_error`` (why the
request's features could not be read), each a string or null; the encoder leaves them
out when they are null, so a message without them is what it was before they existed.
Decoding checks every value's type, but a batch is checked column by column in C
(``map(type, column)``) and never becomes per-row Python objects.

Anything wrong raises
:class:`~flowops.errors.EventError` naming the field and a ``code`` fit for a dead letter:

>>> batch = decode_traffic(encode_traffic(
...     TrafficRow("credit", "3", "r-1", 1764291600.25, {"age": 41}, 0.12, 8.5, 200)))
>>> batch.rows, batch.features, batch.status.tolist()
(1, {'age': [41]}, [200])
>>> decode_traffic(b'{"schema_version": 1, "model": "m", "version": "1", "batch": {}}')
Traceback (most recent call last):
...
flowops.errors.EventError: traffic event: field 'batch': missing field 'features'
>>> try:
...     decode_traffic(b'{"schema_version": 2}')
... except EventError as err:
...     print(err.code)
schema_version

**NaN and Infinity.** A client that writes its JSON with Python's ``json.dumps`` (or
JavaScript's ``JSON.stringify`` of a float array in some libraries) sends the tokens
``NaN``, ``Infinity`` and ``-Infinity``, which JSON does not have and orjson refuses.
Only a payload orjson refused and that holds one of them is parsed again
(:mod:`flowops.events.non_finite`), with each token read as ``null``: a missing value
where it stood (a feature, a prediction), still an error where a number is required (a
timestamp). The batch counts them in ``non_finite``; valid JSON never pays for the
second parse.

>>> batch = decode_traffic(b'{"schema_version": 1, "model": "m", "version": "1", '
...     b'"request_id": "r", "timestamp": 1.0, "features": {"x": NaN, "y": -Infinity}, '
...     b'"prediction": 0.5, "latency_ms": 2.0, "status": 200}')
>>> batch.features, batch.non_finite
({'x': [None], 'y': [None]}, 2)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson

from flowops.errors import EventError, EventErrorCode
from flowops.events.non_finite import loads_non_finite
from flowops.events.traffic import FeatureValue, TrafficBatch, TrafficRow

__all__ = [
    "SCHEMA_VERSION",
    "DecodedTraffic",
    "decode_traffic",
    "decode_traffic_many",
    "encode_traffic",
    "encode_traffic_rows",
]

SCHEMA_VERSION: Final = 1
"""The traffic schema this FlowOps writes and reads."""

_NUMBER: frozenset[type] = frozenset({int, float})
_INT: frozenset[type] = frozenset({int})
_FLOAT: frozenset[type] = frozenset({float})
_STR: frozenset[type] = frozenset({str})
_FEATURE: frozenset[type] = frozenset({int, float, str, type(None)})
_TEXT: frozenset[type] = frozenset({str, type(None)})
_HEAD = frozenset({"schema_version", "model", "version"})
_ROW_FIELDS = frozenset(
    {"request_id", "timestamp", "features", "prediction", "latency_ms", "status"}
)
_OPTIONAL = frozenset({"variant", "parse_error"})
_ROW_KEYS = _HEAD | _ROW_FIELDS
_BATCH_KEYS = _HEAD | {"batch"}
_NONE: frozenset[str] = frozenset()
_JSON_NAMES = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    type(None): "null",
    list: "an array",
    dict: "an object",
}
_EXPECTED = {_NUMBER: "a number", _INT: "an integer", _STR: "a string", _TEXT: "a string or null"}
_EXPECTED_FEATURE = "a number, a string or null"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_MISSING: Final = object()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def decode_traffic(payload: bytes | bytearray | memoryview | str) -> TrafficBatch:
    """The traffic message ``payload`` as a batch (of one row for a one-row message).

    Raises :class:`~flowops.errors.EventError` for bad JSON, another schema version, a
    missing or unknown field, a value of the wrong type, an empty batch or batch columns
    of unequal length.
    """
    group = _Group(_parse(payload))
    return group.batch()


@dataclass(frozen=True)
class DecodedTraffic:
    """Messages decoded together: one batch per model version, and the rejects."""

    batches: list[TrafficBatch]
    """One per (model, version), in order of first appearance, rows in message order."""
    errors: list[tuple[int, EventError]]
    """The index of each payload that did not decode, and why."""


def decode_traffic_many(payloads: Iterable[bytes | bytearray | memoryview | str]) -> DecodedTraffic:
    """Decode many messages into one batch per model version, setting bad ones aside.

    This is how a consumer should read one-row messages: their rows are gathered into
    columns and the arrays are built once, so the cost per message is little more than
    ``orjson.loads``. A feature missing from some messages is ``None`` in their rows.

    >>> row = {"schema_version": 1, "model": "m", "version": "1", "request_id": "a",
    ...        "timestamp": 1.0, "features": {"x": 1.5}, "prediction": 1,
    ...        "latency_ms": 2.0, "status": 200}
    >>> decoded = decode_traffic_many([orjson.dumps(row), b"{", orjson.dumps(row)])
    >>> [(b.model, b.rows, b.features) for b in decoded.batches]
    [('m', 2, {'x': [1.5, 1.5]})]
    >>> [(index, err.code) for index, err in decoded.errors]
    [(1, 'bad_json')]
    """
    groups: dict[tuple[str, str], _Group] = {}
    errors: list[tuple[int, EventError]] = []
    for index, payload in enumerate(payloads):
        try:
            columns = _parse(payload)
        except EventError as exc:
            errors.append((index, exc))
            continue
        group = groups.get((columns.model, columns.version))
        if group is None:
            groups[columns.model, columns.version] = _Group(columns)
        else:
            group.add(columns)
    return DecodedTraffic([group.batch() for group in groups.values()], errors)


def encode_traffic(traffic: TrafficRow | TrafficBatch) -> bytes:
    """The JSON message for a row or a batch; NaN becomes ``null``.

    Raises :class:`~flowops.errors.EventError` for a value the decoder would reject,
    so that nothing written by FlowOps is dead-lettered by FlowOps.

    >>> message = encode_traffic(TrafficRow("m", "1", "r", 1.5, {"x": float("nan")}, 1, 2.0, 200))
    >>> message[:60]
    b'{"schema_version":1,"model":"m","version":"1","request_id":"'
    >>> orjson.loads(message)["features"]
    {'x': None}
    """
    if isinstance(traffic, TrafficRow):
        return _dumps(_row_message(traffic))
    return _dumps(_batch_message(traffic))


def encode_traffic_rows(rows: Sequence[TrafficRow]) -> bytes:
    """Rows of one model version as one batch message, without numpy: the bytes that
    ``encode_traffic(TrafficBatch.from_rows(rows))`` writes, for the gateway's
    publisher, whose install has no numpy.

    >>> rows = [TrafficRow("m", "1", "a", 1, {"x": 1.5}, 0.2, 2.0, 200),
    ...         TrafficRow("m", "1", "b", 2.5, {"y": "s"}, 0.4, 3.0, 503, variant="b")]
    >>> encode_traffic_rows(rows) == encode_traffic(TrafficBatch.from_rows(rows))
    True
    """
    if not rows:
        raise _error("no rows", None, "bad_batch")
    model, version = rows[0].model, rows[0].version
    if any(row.model != model or row.version != version for row in rows):
        raise _error("rows of several models or versions", None, "bad_batch")
    _check_head(model, version)
    names = dict.fromkeys(name for row in rows for name in row.features)
    columns: dict[str, Any] = {
        "request_id": [row.request_id for row in rows],
        "timestamp": _finite_floats([row.timestamp for row in rows], "batch.timestamp"),
        "features": {name: [row.features.get(name) for row in rows] for name in names},
        "prediction": [row.prediction for row in rows],
        "latency_ms": _finite_floats([row.latency_ms for row in rows], "batch.latency_ms"),
        "status": _ints([row.status for row in rows], "batch.status"),
    }
    if not _STR.issuperset(map(type, columns["request_id"])):
        raise _error("must hold strings only", "batch.request_id", "wrong_type")
    for name, values in columns["features"].items():
        _check_feature_values(values, f"batch.features.{name}")
    for field in ("variant", "parse_error"):
        column = [getattr(row, field) for row in rows]
        if any(value is not None for value in column):
            columns[field] = _column(column, _TEXT, f"batch.{field}", None)
    message = {"schema_version": SCHEMA_VERSION, "model": model, "version": version}
    return _dumps({**message, "batch": columns})


def _finite_floats(values: list[Any], field: str) -> list[float]:
    """``values`` as floats, as a float64 array would hold them; each must be finite."""
    try:
        floats = values if _FLOAT.issuperset(map(type, values)) else list(map(float, values))
    except (TypeError, ValueError):
        floats = [math.nan]
    if not all(map(math.isfinite, floats)):
        raise _error("must hold finite numbers only", field, "wrong_type")
    return floats


def _ints(values: list[Any], field: str) -> list[int]:
    """``values`` as ints (numpy's converted); a bool or anything else is refused."""
    if _INT.issuperset(map(type, values)):
        return values
    if not all(map(_is_int, values)):
        raise _error("must hold integers only", field, "wrong_type")
    return list(map(int, values))


# --- decoding -------------------------------------------------------------------------


def _load(payload: bytes | bytearray | memoryview | str) -> tuple[dict[str, Any], int]:
    """The message as a dict, and how many NaN or Infinity tokens it held (read as null)."""
    non_finite = 0
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        tolerant = loads_non_finite(payload)
        if tolerant is None:
            raise _error(f"not JSON: {exc}", None, "bad_json") from None
        data, non_finite = tolerant
    if type(data) is not dict:
        raise _error(f"expected a JSON object, got {_json_name(data)}", None, "bad_json")
    version = data.get("schema_version", _MISSING)
    if version is _MISSING:
        raise _error("missing field 'schema_version'", None, "missing_field")
    if version != SCHEMA_VERSION or type(version) is not int:
        raise _error(
            f"unsupported schema_version {version!r}; this FlowOps reads {SCHEMA_VERSION}",
            "schema_version",
            "schema_version",
        )
    return data, non_finite


class _Columns(NamedTuple):
    """A validated message's columns as the lists orjson made (no copies).

    For a one-row message ``features`` maps names to values, not to lists of one value
    (``single`` is true): a dict of one-element lists would cost more than the parse.
    ``variants`` and ``parse_errors`` are ``None`` when the message leaves them out.
    """

    model: str
    version: str
    request_ids: list[str]
    timestamps: list[float]
    features: dict[str, Any]
    predictions: list[Any]
    latency_ms: list[float]
    status: list[int]
    single: bool
    variants: list[str | None] | None
    parse_errors: list[str | None] | None
    non_finite: int = 0


def _parse(payload: bytes | bytearray | memoryview | str) -> _Columns:
    data, non_finite = _load(payload)
    if "batch" in data:
        _check_keys(data, _BATCH_KEYS, None)
        columns = _parse_batch(data)
    else:
        _check_keys(data, _ROW_KEYS, None, _OPTIONAL)
        columns = _parse_row(data)
    return columns._replace(non_finite=non_finite) if non_finite else columns


def _parse_row(data: dict[str, Any]) -> _Columns:
    """The row's columns; every type is checked in one expression, explained if wrong."""
    model, version, features = data["model"], data["version"], data["features"]
    request_id, timestamp = data["request_id"], data["timestamp"]
    latency_ms, status = data["latency_ms"], data["status"]
    variant, parse_error = data.get("variant"), data.get("parse_error")
    if (
        type(model) is str
        and model
        and type(version) is str
        and type(request_id) is str
        and type(timestamp) in _NUMBER
        and type(latency_ms) in _NUMBER
        and type(status) is int
        and _INT64_MIN <= status <= _INT64_MAX
        and type(features) is dict
        and _FEATURE.issuperset(map(type, features.values()))
        and type(variant) in _TEXT
        and type(parse_error) in _TEXT
    ):
        return _Columns(
            model,
            version,
            [request_id],
            [timestamp],
            features,
            [data["prediction"]],
            [latency_ms],
            [status],
            True,
            None if variant is None else [variant],
            None if parse_error is None else [parse_error],
        )
    raise _row_error(data)


def _row_error(data: dict[str, Any]) -> EventError:
    """What is wrong with a row that failed the check in :func:`_parse_row`."""
    _head(data)
    for name, value in _mapping(data["features"], "features").items():
        if type(value) not in _FEATURE:
            return _type_error(value, _EXPECTED_FEATURE, f"features.{name}")
    _scalar(data["request_id"], _STR, "request_id")
    _scalar(data["timestamp"], _NUMBER, "timestamp")
    _scalar(data["latency_ms"], _NUMBER, "latency_ms")
    _scalar(data["status"], _INT, "status")
    for field in sorted(_OPTIONAL):
        _scalar(data.get(field), _TEXT, field)
    return _error("out of the 64-bit range", "status", "wrong_type")


def _parse_batch(data: dict[str, Any]) -> _Columns:
    model, version = _head(data)
    columns = _mapping(data["batch"], "batch")
    _check_keys(columns, _ROW_FIELDS, "batch", _OPTIONAL)
    request_ids = _column(columns["request_id"], _STR, "batch.request_id", None)
    rows = len(request_ids)
    if rows == 0:
        raise _error("a batch needs at least one row", "batch.request_id", "bad_batch")
    features = _mapping(columns["features"], "batch.features")
    for name, values in features.items():
        _column(values, _FEATURE, f"batch.features.{name}", rows)
    status = _column(columns["status"], _INT, "batch.status", rows)
    if not (min(status) >= _INT64_MIN and max(status) <= _INT64_MAX):
        raise _error("a value is out of the 64-bit range", "batch.status", "wrong_type")
    return _Columns(
        model,
        version,
        request_ids,
        _column(columns["timestamp"], _NUMBER, "batch.timestamp", rows),
        features,
        _column(columns["prediction"], None, "batch.prediction", rows),
        _column(columns["latency_ms"], _NUMBER, "batch.latency_ms", rows),
        status,
        False,
        _optional_column(columns, "variant", rows),
        _optional_column(columns, "parse_error", rows),
    )


def _optional_column(columns: dict[str, Any], name: str, rows: int) -> list[str | None] | None:
    """The column ``name`` if the batch has it (an array, never null), else ``None``."""
    values = columns.get(name, _MISSING)
    return None if values is _MISSING else _column(values, _TEXT, f"batch.{name}", rows)


class _Group:
    """Columns of one model version gathered from messages, then made one batch."""

    def __init__(self, first: _Columns) -> None:
        self.first = first
        self.parts: list[_Columns] = []

    def add(self, columns: _Columns) -> None:
        self.parts.append(columns)

    def batch(self) -> TrafficBatch:
        first = self.first
        if not self.parts:
            return _to_batch(first)
        parts = [first, *self.parts]
        return _to_batch(
            _Columns(
                first.model,
                first.version,
                [value for part in parts for value in part.request_ids],
                [value for part in parts for value in part.timestamps],
                _merge_features(parts),
                [value for part in parts for value in part.predictions],
                [value for part in parts for value in part.latency_ms],
                [value for part in parts for value in part.status],
                False,
                _merge_optional([(part.variants, len(part.request_ids)) for part in parts]),
                _merge_optional([(part.parse_errors, len(part.request_ids)) for part in parts]),
                sum(part.non_finite for part in parts),
            )
        )


def _merge_features(parts: list[_Columns]) -> dict[str, list[FeatureValue]]:
    """Feature columns of all parts end to end; ``None`` where a part lacks a feature."""
    names = dict.fromkeys(name for part in parts for name in part.features)
    merged: dict[str, list[FeatureValue]] = {name: [] for name in names}
    for part in parts:
        features = part.features
        if part.single:
            for name, column in merged.items():
                column.append(features.get(name))
            continue
        rows = len(part.request_ids)
        for name, column in merged.items():
            values = features.get(name)
            column.extend(values if values is not None else [None] * rows)
    return merged


def _merge_optional(
    parts: list[tuple[list[str | None] | None, int]],
) -> list[str | None] | None:
    """An optional column of all parts end to end; ``None`` if no part has it."""
    if all(values is None for values, _ in parts):
        return None
    merged: list[str | None] = []
    for values, rows in parts:
        merged.extend(values if values is not None else [None] * rows)
    return merged


def _to_batch(columns: _Columns) -> TrafficBatch:
    import numpy as np  # decoding makes arrays; encoding rows (the gateway) needs none

    features = columns.features
    if columns.single:
        features = {name: [value] for name, value in features.items()}
    return TrafficBatch(
        model=columns.model,
        version=columns.version,
        request_ids=columns.request_ids,
        timestamps=np.array(columns.timestamps, dtype=np.float64),
        features=features,
        predictions=columns.predictions,
        latency_ms=np.array(columns.latency_ms, dtype=np.float64),
        status=np.array(columns.status, dtype=np.int64),
        variants=columns.variants,
        parse_errors=columns.parse_errors,
        non_finite=columns.non_finite,
    )


def _head(data: dict[str, Any]) -> tuple[str, str]:
    model = _scalar(data["model"], _STR, "model")
    if not model:
        raise _error("must not be empty", "model", "wrong_type")
    return model, _scalar(data["version"], _STR, "version")


def _check_keys(
    data: Mapping[str, Any],
    keys: frozenset[str],
    where: str | None,
    optional: frozenset[str] = _NONE,
) -> None:
    """Every one of ``keys`` is in ``data``, and nothing else but ``optional`` keys."""
    if len(data) == len(keys) and keys.issuperset(data):
        return
    unknown = data.keys() - keys - optional
    if unknown:
        raise _error(f"unknown field {min(unknown)!r}", where, "unknown_field")
    missing = keys - data.keys()
    if missing:
        raise _error(f"missing field {min(missing)!r}", where, "missing_field")


def _scalar(value: Any, types: frozenset[type], field: str) -> Any:
    if type(value) not in types:
        raise _type_error(value, _EXPECTED[types], field)
    return value


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _type_error(value, "an object", field)
    return value


def _column(values: Any, types: frozenset[type] | None, field: str, rows: int | None) -> list[Any]:
    """``values`` if it is a list of ``rows`` values of ``types`` (any type for None)."""
    if type(values) is not list:
        raise _type_error(values, "an array", field)
    if rows is not None and len(values) != rows:
        raise _error(
            f"has {len(values)} values, expected {rows} (one per request id)", field, "bad_batch"
        )
    if types is not None and not types.issuperset(map(type, values)):
        index, value = next((i, v) for i, v in enumerate(values) if type(v) not in types)
        expected = _EXPECTED_FEATURE if types is _FEATURE else _EXPECTED[types]
        raise _type_error(value, expected, f"{field}[{index}]")
    return values


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _type_error(value: Any, expected: str, field: str) -> EventError:
    return _error(f"expected {expected}, got {_json_name(value)}", field, "wrong_type")


def _error(reason: str, field: str | None, code: EventErrorCode) -> EventError:
    return EventError(reason, event="traffic", field=field, code=code)


# --- encoding -------------------------------------------------------------------------


def _row_message(row: TrafficRow) -> dict[str, Any]:
    _check_head(row.model, row.version)
    if not isinstance(row.request_id, str):
        raise _type_error(row.request_id, "a string", "request_id")
    if not _is_int(row.status):
        raise _type_error(row.status, "an integer", "status")
    for field in ("timestamp", "latency_ms"):
        value = getattr(row, field)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _error(f"must be a finite number, got {value!r}", field, "wrong_type")
    if not _FEATURE.issuperset(map(type, row.features.values())):
        for name, value in row.features.items():
            _check_feature_values((value,), f"features.{name}")
    message: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": row.model,
        "version": row.version,
        "request_id": row.request_id,
        "timestamp": row.timestamp,
        "features": row.features,
        "prediction": row.prediction,
        "latency_ms": row.latency_ms,
        "status": row.status,
    }
    for field in ("variant", "parse_error"):
        value = getattr(row, field)
        if value is not None:
            message[field] = _scalar(value, _STR, field)
    return message


def _batch_message(batch: TrafficBatch) -> dict[str, Any]:
    _check_head(batch.model, batch.version)
    if batch.rows == 0:
        raise _error("a batch needs at least one row", "batch.request_id", "bad_batch")
    if not _STR.issuperset(map(type, batch.request_ids)):
        raise _error("must hold strings only", "batch.request_id", "wrong_type")
    import numpy as np  # a batch's columns are arrays: numpy is loaded

    for field, array in (("timestamp", batch.timestamps), ("latency_ms", batch.latency_ms)):
        if not np.isfinite(array).all():
            raise _error("must hold finite numbers only", f"batch.{field}", "wrong_type")
    for name, values in batch.features.items():
        _check_feature_values(values, f"batch.features.{name}")
    columns: dict[str, Any] = {
        "request_id": batch.request_ids,
        "timestamp": batch.timestamps,
        "features": batch.features,
        "prediction": batch.predictions,
        "latency_ms": batch.latency_ms,
        "status": batch.status,
    }
    for field, column in (("variant", batch.variants), ("parse_error", batch.parse_errors)):
        if column is not None:
            columns[field] = _column(column, _TEXT, f"batch.{field}", None)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": batch.model,
        "version": batch.version,
        "batch": columns,
    }


def _check_head(model: object, version: object) -> None:
    if not isinstance(model, str) or not model:
        raise _error(f"must be a non-empty string, got {model!r}", "model", "wrong_type")
    if not isinstance(version, str):
        raise _type_error(version, "a string", "version")


def _check_feature_values(values: Collection[FeatureValue], field: str) -> None:
    """Accept what decodes: numbers (numpy's too, NaN becomes null), strings, None."""
    if _FEATURE.issuperset(map(type, values)):
        return
    for index, value in enumerate(values):
        if not _is_feature_value(value):
            raise _type_error(value, _EXPECTED_FEATURE, f"{field}[{index}]")


def _is_feature_value(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if value is None or isinstance(value, int | float | str):
        return True
    np = _numpy()  # numpy's numbers too (not its bool_), if numpy is there to make them
    return np is not None and isinstance(value, np.integer | np.floating)


def _is_int(value: object) -> bool:
    """An int or numpy integer, not a bool."""
    if isinstance(value, bool):
        return False
    np = _numpy()
    return isinstance(value, int) or (np is not None and isinstance(value, np.integer))


def _numpy() -> Any:
    """numpy if it is loaded, else None: a value cannot be a numpy scalar before numpy
    is imported, so the checks need not import it (nor the gateway install it)."""
    return sys.modules.get("numpy")


def _dumps(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise _error(f"cannot encode: {exc}", None, "wrong_type") from None
