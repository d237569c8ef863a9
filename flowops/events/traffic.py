"""Traffic: what a model was asked and what it answered, one row or a columnar batch.

A :class:`TrafficRow` is one request; a :class:`TrafficBatch` holds many requests of one
model version column by column, which is also how a batch travels on Kafka (see
:mod:`flowops.events.codec`). Numeric columns that every consumer needs (timestamps,
latencies, status codes) are numpy arrays; feature columns stay lists because a value may
be a number, a string or ``None``. numpy is imported when a batch is first made, so a
process that only writes rows (the gateway, whose install has no numpy) never loads it.

>>> batch = TrafficBatch.from_rows([
...     TrafficRow("credit", "3", "r-1", 1764291600.25, {"age": 41}, 0.12, 8.5, 200),
...     TrafficRow("credit", "3", "r-2", 1764291600.31, {"region": "south"}, 0.4, 9.1, 200),
... ])
>>> batch.rows, batch.features
(2, {'age': [41, None], 'region': [None, 'south']})
>>> batch.slice(1, 2).request_ids
['r-2']

Two optional fields say more about a request when a gateway recorded it: ``variant``,
the A/B arm (or ``"shadow"``) that answered, and ``parse_error``, why the request's
features could not be read. A row with a ``parse_error`` carries no features; drift
leaves it out (:meth:`TrafficBatch.parsed`) and counts it:

>>> batch = TrafficBatch.from_rows([
...     TrafficRow("credit", "3", "r-1", 1764291600.25, {"age": 41}, 0.12, 8.5, 200, "a"),
...     TrafficRow("credit", "3", "r-2", 1764291600.31, {}, None, 9.1, 200, "b",
...                parse_error="the body is not JSON"),
... ])
>>> batch.variants, batch.unparsable, batch.parsed().request_ids
(['a', 'b'], 1, ['r-1'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from flowops.errors import EventError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["FeatureValue", "TrafficBatch", "TrafficRow"]

FeatureValue: TypeAlias = float | str | None
"""A feature's value: a number (int or float), a string, or ``None`` when missing."""

# attribute -> its column's name on the wire (see flowops.events.codec)
_COLUMNS = {
    "timestamps": "timestamp",
    "predictions": "prediction",
    "latency_ms": "latency_ms",
    "status": "status",
}
_OPTIONAL_COLUMNS = {"variants": "variant", "parse_errors": "parse_error"}


@dataclass(frozen=True)
class TrafficRow:
    """One request to a model and its answer.

    ``timestamp`` is Unix seconds; ``prediction`` is any JSON value the model returned.
    ``variant`` names the A/B arm or shadow that answered (``None``: no split);
    ``parse_error`` says why the request's features could not be read (``None``: they
    could), and such a row has no features.
    """

    model: str
    version: str
    request_id: str
    timestamp: float
    features: Mapping[str, FeatureValue]
    prediction: Any
    latency_ms: float
    status: int
    variant: str | None = None
    parse_error: str | None = None


@dataclass(frozen=True, eq=False)
class TrafficBatch:
    """Requests to one model version, column by column; every column has ``rows`` values.

    Array columns are converted to their dtype on construction (no copy when they
    already have it). A column of another length raises :class:`EventError`.
    ``variants`` and ``parse_errors`` are ``None`` when no row has one (a column of
    nothing but ``None`` is stored as ``None``). ``non_finite`` counts the ``NaN`` and
    ``Infinity`` tokens the decoder read as missing values in the messages this batch
    was decoded from (a slice of it does not carry the count; equality ignores it).
    """

    model: str
    version: str
    request_ids: list[str]
    timestamps: NDArray[np.float64]
    features: dict[str, list[FeatureValue]]
    predictions: list[Any]
    latency_ms: NDArray[np.float64]
    status: NDArray[np.int64]
    variants: list[str | None] | None = None
    parse_errors: list[str | None] | None = None
    non_finite: int = 0

    def __post_init__(self) -> None:
        import numpy as np  # here, not above: the gateway needs TrafficRow, not numpy

        set_ = object.__setattr__
        set_(self, "timestamps", np.ascontiguousarray(self.timestamps, dtype=np.float64))
        set_(self, "latency_ms", np.ascontiguousarray(self.latency_ms, dtype=np.float64))
        set_(self, "status", np.ascontiguousarray(self.status, dtype=np.int64))
        rows = len(self.request_ids)
        for attribute, name in _COLUMNS.items():
            _check_length(name, len(getattr(self, attribute)), rows)
        for name, values in self.features.items():
            _check_length(f"features.{name}", len(values), rows)
        for attribute, name in _OPTIONAL_COLUMNS.items():
            values = getattr(self, attribute)
            if values is not None:
                _check_length(name, len(values), rows)
                set_(self, attribute, _none_if_empty(values))

    @property
    def rows(self) -> int:
        """How many requests the batch holds."""
        return len(self.request_ids)

    @property
    def unparsable(self) -> int:
        """How many rows have a ``parse_error`` (and so no features)."""
        errors = self.parse_errors
        return 0 if errors is None else sum(error is not None for error in errors)

    def parsed(self) -> TrafficBatch:
        """The rows without a ``parse_error``: what drift can use (``self`` if all)."""
        errors = self.parse_errors
        if errors is None:
            return self
        keep = [index for index, error in enumerate(errors) if error is None]
        return self._take(keep)

    def answered(self) -> TrafficBatch:
        """The rows a model answered (a 2xx status) and whose features could be read:
        what drift may use (``self`` if all). A rejected request's "prediction" is the
        server's error object, and its features are what the model refused.

        >>> batch = TrafficBatch.from_rows([
        ...     TrafficRow("m", "1", "a", 1.0, {"x": 1.0}, 0.2, 2.0, 200),
        ...     TrafficRow("m", "1", "b", 1.0, {"x": "?"}, {"error": "bad"}, 2.0, 400),
        ... ])
        >>> batch.answered().request_ids
        ['a']
        """
        import numpy as np

        ok = (self.status >= 200) & (self.status < 300)
        if self.parse_errors is not None:
            ok &= np.array([error is None for error in self.parse_errors], dtype=bool)
        if ok.all():
            return self
        return self._take(np.flatnonzero(ok).tolist())

    @classmethod
    def from_rows(cls, rows: Sequence[TrafficRow]) -> TrafficBatch:
        """The rows of one model version as a batch; a feature a row lacks is ``None``.

        Raises :class:`EventError` for no rows or rows of several model versions.
        """
        if not rows:
            raise EventError("no rows", event="traffic", code="bad_batch")
        model, version = rows[0].model, rows[0].version
        if any(row.model != model or row.version != version for row in rows):
            raise EventError(
                "rows of several models or versions", event="traffic", code="bad_batch"
            )
        import numpy as np

        names = dict.fromkeys(name for row in rows for name in row.features)
        return cls(
            model=model,
            version=version,
            request_ids=[row.request_id for row in rows],
            timestamps=np.array([row.timestamp for row in rows], dtype=np.float64),
            features={name: [row.features.get(name) for row in rows] for name in names},
            predictions=[row.prediction for row in rows],
            latency_ms=np.array([row.latency_ms for row in rows], dtype=np.float64),
            status=np.array([row.status for row in rows], dtype=np.int64),
            variants=[row.variant for row in rows],
            parse_errors=[row.parse_error for row in rows],
        )

    def to_rows(self) -> list[TrafficRow]:
        """The batch row by row (the inverse of :meth:`from_rows`).

        >>> row = TrafficRow("m", "1", "r", 1.0, {"x": 2.0}, 1, 3.0, 200, variant="b")
        >>> TrafficBatch.from_rows([row]).to_rows() == [row]
        True
        """
        variants = self.variants or [None] * self.rows
        errors = self.parse_errors or [None] * self.rows
        return [
            TrafficRow(
                self.model,
                self.version,
                self.request_ids[i],
                float(self.timestamps[i]),
                {name: values[i] for name, values in self.features.items()},
                self.predictions[i],
                float(self.latency_ms[i]),
                int(self.status[i]),
                variants[i],
                errors[i],
            )
            for i in range(self.rows)
        ]

    def slice(self, start: int, stop: int) -> TrafficBatch:
        """Rows ``start`` to ``stop - 1`` as a batch of their own."""
        return TrafficBatch(
            model=self.model,
            version=self.version,
            request_ids=self.request_ids[start:stop],
            timestamps=self.timestamps[start:stop],
            features={name: values[start:stop] for name, values in self.features.items()},
            predictions=self.predictions[start:stop],
            latency_ms=self.latency_ms[start:stop],
            status=self.status[start:stop],
            variants=None if self.variants is None else self.variants[start:stop],
            parse_errors=None if self.parse_errors is None else self.parse_errors[start:stop],
        )

    def _take(self, rows: list[int]) -> TrafficBatch:
        """The rows at these indexes, in this order, as a batch of their own."""

        def pick(values: Sequence[Any]) -> list[Any]:
            return [values[index] for index in rows]

        return TrafficBatch(
            model=self.model,
            version=self.version,
            request_ids=pick(self.request_ids),
            timestamps=self.timestamps[rows],
            features={name: pick(values) for name, values in self.features.items()},
            predictions=pick(self.predictions),
            latency_ms=self.latency_ms[rows],
            status=self.status[rows],
            variants=None if self.variants is None else pick(self.variants),
            parse_errors=None if self.parse_errors is None else pick(self.parse_errors),
        )

    def __eq__(self, other: object) -> bool:
        import numpy as np

        if not isinstance(other, TrafficBatch):
            return NotImplemented
        return (
            (self.model, self.version, self.request_ids, self.features, self.predictions)
            == (other.model, other.version, other.request_ids, other.features, other.predictions)
            and (self.variants, self.parse_errors) == (other.variants, other.parse_errors)
            and np.array_equal(self.timestamps, other.timestamps)
            and np.array_equal(self.latency_ms, other.latency_ms)
            and np.array_equal(self.status, other.status)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside: not hashable


def _none_if_empty(values: list[str | None]) -> list[str | None] | None:
    """``values``, or ``None`` when every one is ``None`` (the column is left out)."""
    return values if any(value is not None for value in values) else None


def _check_length(name: str, length: int, rows: int) -> None:
    if length != rows:
        raise EventError(
            f"has {length} values, expected {rows} (one per request id)",
            event="traffic",
            field=f"batch.{name}",
            code="bad_batch",
        )
