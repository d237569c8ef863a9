"""Features and predictions read out of inference payloads: pure functions, no I/O.

The gateway hands :func:`extract` a request body and its response body; it answers with
one row of features per request row and one prediction per row, whatever the model
server speaks. The formats, how their values are named and which are kept are
:mod:`flowops.formats`'s, shared with the monitor and the CI gate; this module adds the
bodies' content types and MLflow's ``text/csv`` (:mod:`flowops.gateway.csv_rows`).

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from flowops.events import FeatureValue, TrafficRow
from flowops.events.non_finite import loads_non_finite
from flowops.formats import PayloadFormat, RequestRows, read_predictions, read_request
from flowops.gateway.csv_rows import is_csv, read_csv_rows

__all__ = ["Extracted", "extract"]

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


def _extract(
    request: bytes | bytearray | memoryview,
    request_type: str | None,
    response: bytes | bytearray | memoryview | None,
    response_type: str | None,
    features: Sequence[str],
) -> Extracted:
    if is_csv(request_type):
        rows, error = read_csv_rows(request)
        read = RequestRows("csv", rows, error)
    else:
        body, error = _load(request, request_type, "request")
        if error is not None:
            return Extracted([], [], "unknown", error)
        read = read_request(body, features)
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


# --- the response --------------------------------------------------------------------


def _read_response(
    response: bytes | bytearray | memoryview | None, response_type: str | None, read: RequestRows
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
    predictions, note = read_predictions(body, count)
    if predictions is None:
        return [None] * count, note
    return predictions, note
