"""Labels: the true outcome of a request, known later, one row or a columnar batch.

A label names the request it belongs to by ``request_id`` (the id its traffic row
carries), so that the stream join (:mod:`flowops.quality.join`) can put it beside the
model's prediction. On Kafka a label travels on ``flowops.labels``, keyed by model::

    {"schema_version": 1, "model": "credit", "version": "3",
     "request_id": "r-1", "label": 1, "timestamp": 1764378000.0}

    {"schema_version": 1, "model": "credit",
     "batch": {"request_id": ["r-1", "r-2"], "label": [1, 0],
               "timestamp": [1764378000.0, 1764378001.5]}}

``version`` is optional (absent or null: the label applies to whichever version
answered). ``label`` is a number, a string or a boolean, never null: a request whose
outcome is unknown has no label yet. ``timestamp`` is when the outcome became known
(Unix seconds), the clock of the realised-performance windows.

Decoding checks every value; anything wrong raises :class:`~flowops.errors.EventError`
with a ``code`` and a one-line reason, ready for
:meth:`~flowops.events.DeadLetter.for_message` as bad traffic is:

>>> batch = decode_labels(encode_labels(LabelRow("credit", "r-1", 1, 1764378000.0)))
>>> batch.model, batch.version, batch.request_ids, batch.labels
('credit', None, ['r-1'], [1])
>>> try:
...     decode_labels(b'{"schema_version": 1, "model": "m", "request_id": "r",'
...                   b' "label": null, "timestamp": 1}')
... except EventError as err:
...     print(err.code, "|", err)
wrong_type | label event: field 'label': expected a number, a string or a boolean, got null
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np
import orjson
from numpy.typing import NDArray

from flowops.errors import EventError, EventErrorCode

__all__ = [
    "LABEL_SCHEMA_VERSION",
    "DecodedLabels",
    "LabelBatch",
    "LabelRow",
    "LabelValue",
    "decode_labels",
    "decode_labels_many",
    "encode_labels",
]

LABEL_SCHEMA_VERSION: Final = 1
"""The label schema this FlowOps writes and reads."""

LabelValue: TypeAlias = float | str | bool
"""A label: a class (number, string or boolean) or a regression target (number)."""

_EVENT = "label"
_LABEL_TYPES: frozenset[type] = frozenset({int, float, str, bool})
_NUMBER: frozenset[type] = frozenset({int, float})
_HEAD = frozenset({"schema_version", "model"})
_ROW_KEYS = _HEAD | {"request_id", "label", "timestamp"}
_BATCH_KEYS = _HEAD | {"batch"}
_COLUMN_KEYS = frozenset({"request_id", "label", "timestamp"})
_OPTIONAL = frozenset({"version"})
_EXPECTED_LABEL = "a number, a string or a boolean"
_JSON_NAMES = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    type(None): "null",
    list: "an array",
    dict: "an object",
}
_MISSING: Final = object()


@dataclass(frozen=True)
class LabelRow:
    """The known outcome of one request; ``version`` ``None``: any version."""

    model: str
    request_id: str
    label: LabelValue
    timestamp: float
    version: str | None = None


@dataclass(frozen=True, eq=False)
class LabelBatch:
    """Labels of one model (and version, or none), column by column.

    >>> batch = LabelBatch.from_rows([LabelRow("m", "a", 1, 5.0), LabelRow("m", "b", 0, 6.0)])
    >>> batch.rows, batch.timestamps.tolist(), batch.to_rows()[1]
    (2, [5.0, 6.0], LabelRow(model='m', request_id='b', label=0, timestamp=6.0, version=None))
    """

    model: str
    version: str | None
    request_ids: list[str]
    labels: list[LabelValue]
    timestamps: NDArray[np.float64]

    def __post_init__(self) -> None:
        timestamps = np.ascontiguousarray(self.timestamps, dtype=np.float64)
        object.__setattr__(self, "timestamps", timestamps)
        rows = len(self.request_ids)
        for name, length in (("label", len(self.labels)), ("timestamp", len(timestamps))):
            if length != rows:
                raise _error(
                    f"has {length} values, expected {rows} (one per request id)",
                    f"batch.{name}",
                    "bad_batch",
                )

    @property
    def rows(self) -> int:
        """How many labels the batch holds."""
        return len(self.request_ids)

    @classmethod
    def from_rows(cls, rows: Sequence[LabelRow]) -> LabelBatch:
        """Rows of one model and version as a batch; EventError for none or a mix."""
        if not rows:
            raise _error("no rows", None, "bad_batch")
        model, version = rows[0].model, rows[0].version
        if any(row.model != model or row.version != version for row in rows):
            raise _error("rows of several models or versions", None, "bad_batch")
        return cls(
            model,
            version,
            [row.request_id for row in rows],
            [row.label for row in rows],
            np.array([row.timestamp for row in rows], dtype=np.float64),
        )

    def to_rows(self) -> list[LabelRow]:
        """The batch row by row (the inverse of :meth:`from_rows`)."""
        return [
            LabelRow(self.model, request_id, label, float(timestamp), self.version)
            for request_id, label, timestamp in zip(
                self.request_ids, self.labels, self.timestamps.tolist(), strict=True
            )
        ]

    def slice(self, start: int, stop: int) -> LabelBatch:
        """Rows ``start`` to ``stop - 1`` as a batch of their own."""
        return LabelBatch(
            self.model,
            self.version,
            self.request_ids[start:stop],
            self.labels[start:stop],
            self.timestamps[start:stop],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelBatch):
            return NotImplemented
        return (self.model, self.version, self.request_ids, self.labels) == (
            other.model,
            other.version,
            other.request_ids,
            other.labels,
        ) and np.array_equal(self.timestamps, other.timestamps)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside: not hashable


@dataclass(frozen=True)
class DecodedLabels:
    """Label messages decoded together: one batch per (model, version), and the rejects."""

    batches: list[LabelBatch]
    errors: list[tuple[int, EventError]]
    """The index of each payload that did not decode, and why (for its dead letter)."""


def decode_labels(payload: bytes | bytearray | memoryview | str) -> LabelBatch:
    """The label message ``payload`` as a batch (of one row for a one-row message).

    Raises :class:`~flowops.errors.EventError` for bad JSON, another schema version, a
    missing or unknown field, a value of the wrong type, an empty batch or columns of
    unequal length.
    """
    return _parse(payload)


def decode_labels_many(payloads: Iterable[bytes | bytearray | memoryview | str]) -> DecodedLabels:
    """Decode many messages into one batch per (model, version), setting bad ones aside.

    >>> good = encode_labels(LabelRow("m", "a", "yes", 1.0))
    >>> decoded = decode_labels_many([good, b"[]", good])
    >>> [(b.model, b.request_ids) for b in decoded.batches]
    [('m', ['a', 'a'])]
    >>> [(index, err.code) for index, err in decoded.errors]
    [(1, 'bad_json')]
    """
    groups: dict[tuple[str, str | None], list[LabelBatch]] = {}
    errors: list[tuple[int, EventError]] = []
    for index, payload in enumerate(payloads):
        try:
            batch = _parse(payload)
        except EventError as exc:
            errors.append((index, exc))
            continue
        groups.setdefault((batch.model, batch.version), []).append(batch)
    return DecodedLabels([_concat(parts) for parts in groups.values()], errors)


def encode_labels(labels: LabelRow | LabelBatch) -> bytes:
    """The JSON message for a row or a batch.

    Raises :class:`~flowops.errors.EventError` for what the decoder would reject (a
    NaN label or timestamp, an empty model), so FlowOps never dead-letters its own.
    """
    if isinstance(labels, LabelRow):
        labels = LabelBatch.from_rows([labels])
        single = True
    else:
        single = False
    _check_batch(labels)
    message: dict[str, Any] = {"schema_version": LABEL_SCHEMA_VERSION, "model": labels.model}
    if labels.version is not None:
        message["version"] = labels.version
    if single:
        message["request_id"] = labels.request_ids[0]
        message["label"] = labels.labels[0]
        message["timestamp"] = float(labels.timestamps[0])
    else:
        message["batch"] = {
            "request_id": labels.request_ids,
            "label": labels.labels,
            "timestamp": labels.timestamps,
        }
    return orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)


# --- decoding -------------------------------------------------------------------------


def _parse(payload: bytes | bytearray | memoryview | str) -> LabelBatch:
    data = _load(payload)
    model = data.get("model", _MISSING)
    version = data.get("version")
    if "batch" in data:
        _check_keys(data, _BATCH_KEYS, None)
        columns = _mapping(data["batch"], "batch")
        _check_keys(columns, _COLUMN_KEYS, "batch")
        request_ids = _column(columns["request_id"], frozenset({str}), "batch.request_id", None)
        if not request_ids:
            raise _error("a batch needs at least one row", "batch.request_id", "bad_batch")
        rows = len(request_ids)
        labels = _column(columns["label"], _LABEL_TYPES, "batch.label", rows)
        timestamps = _column(columns["timestamp"], _NUMBER, "batch.timestamp", rows)
    else:
        _check_keys(data, _ROW_KEYS, None)
        request_ids = [_scalar(data["request_id"], frozenset({str}), "a string", "request_id")]
        labels = [_scalar(data["label"], _LABEL_TYPES, _EXPECTED_LABEL, "label")]
        timestamps = [_scalar(data["timestamp"], _NUMBER, "a number", "timestamp")]
    return LabelBatch(
        _model(model), _version(version), request_ids, labels, np.array(timestamps, np.float64)
    )


def _load(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _error(f"not JSON: {exc}", None, "bad_json") from None
    if type(data) is not dict:
        raise _error(f"expected a JSON object, got {_json_name(data)}", None, "bad_json")
    version = data.get("schema_version", _MISSING)
    if version is _MISSING:
        raise _error("missing field 'schema_version'", None, "missing_field")
    if type(version) is not int or version != LABEL_SCHEMA_VERSION:
        raise _error(
            f"unsupported schema_version {version!r}; this FlowOps reads {LABEL_SCHEMA_VERSION}",
            "schema_version",
            "schema_version",
        )
    return data


def _check_keys(data: dict[str, Any], keys: frozenset[str], where: str | None) -> None:
    unknown = data.keys() - keys - _OPTIONAL if where is None else data.keys() - keys
    if unknown:
        raise _error(f"unknown field {min(unknown)!r}", where, "unknown_field")
    missing = keys - data.keys()
    if missing:
        raise _error(f"missing field {min(missing)!r}", where, "missing_field")


def _model(value: Any) -> str:
    if type(value) is not str or not value:
        raise _error(f"expected a non-empty string, got {_json_name(value)}", "model", "wrong_type")
    return value


def _version(value: Any) -> str | None:
    if value is not None and type(value) is not str:
        raise _type_error(value, "a string or null", "version")
    return value


def _scalar(value: Any, types: frozenset[type], expected: str, field: str) -> Any:
    if type(value) not in types:
        raise _type_error(value, expected, field)
    return value


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _type_error(value, "an object", field)
    return value


def _column(values: Any, types: frozenset[type], field: str, rows: int | None) -> list[Any]:
    if type(values) is not list:
        raise _type_error(values, "an array", field)
    if rows is not None and len(values) != rows:
        raise _error(
            f"has {len(values)} values, expected {rows} (one per request id)", field, "bad_batch"
        )
    if not types.issuperset(map(type, values)):
        index, value = next((i, v) for i, v in enumerate(values) if type(v) not in types)
        expected = {_LABEL_TYPES: _EXPECTED_LABEL, _NUMBER: "a number"}.get(types, "a string")
        raise _type_error(value, expected, f"{field}[{index}]")
    return values


def _concat(parts: list[LabelBatch]) -> LabelBatch:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return LabelBatch(
        first.model,
        first.version,
        [request_id for part in parts for request_id in part.request_ids],
        [label for part in parts for label in part.labels],
        np.concatenate([part.timestamps for part in parts]),
    )


# --- encoding -------------------------------------------------------------------------


def _check_batch(batch: LabelBatch) -> None:
    _model(batch.model)
    _version(batch.version)
    if batch.rows == 0:
        raise _error("a batch needs at least one row", "batch.request_id", "bad_batch")
    if not all(type(request_id) is str for request_id in batch.request_ids):
        raise _error("must hold strings only", "batch.request_id", "wrong_type")
    if not np.isfinite(batch.timestamps).all():
        raise _error("must hold finite numbers only", "timestamp", "wrong_type")
    for index, label in enumerate(batch.labels):
        if not _is_label(label):
            raise _error(
                f"expected {_EXPECTED_LABEL} (finite), got {label!r}",
                f"label[{index}]",
                "wrong_type",
            )


def _is_label(value: object) -> bool:
    if isinstance(value, str | bool):
        return True
    if isinstance(value, int | np.integer):
        return True
    return isinstance(value, float | np.floating) and math.isfinite(value)


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _type_error(value: Any, expected: str, field: str) -> EventError:
    return _error(f"expected {expected}, got {_json_name(value)}", field, "wrong_type")


def _error(reason: str, field: str | None, code: EventErrorCode) -> EventError:
    return EventError(reason, event=_EVENT, field=field, code=code)
