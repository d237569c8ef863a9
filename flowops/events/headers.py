"""CloudEvents attributes as Kafka headers (the Kafka protocol binding, binary mode).

In binary mode the message value is the event's data (FlowOps' JSON) and the event's
attributes travel as headers named ``ce_<attribute>``, plus ``content-type``:

>>> from datetime import datetime, timezone
>>> when = datetime(2025, 11, 28, 1, 0, 0, 250000, tzinfo=timezone.utc)
>>> headers = cloudevent_headers(EventTypes.TRAFFIC, "/flowops/sdk", "e-1", when)
>>> headers
[('ce_specversion', b'1.0'), ('ce_id', b'e-1'), ('ce_source', b'/flowops/sdk'), \
('ce_type', b'dev.flowops.traffic.v1'), ('ce_time', b'2025-11-28T01:00:00.250Z'), \
('content-type', b'application/json')]
>>> read_cloudevent_headers(headers).type
'dev.flowops.traffic.v1'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from flowops.errors import EventError

__all__ = [
    "CONTENT_TYPE",
    "SPEC_VERSION",
    "CloudEvent",
    "EventTypes",
    "cloudevent_headers",
    "read_cloudevent_headers",
    "rfc3339",
]

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"
_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type")


class EventTypes:
    """The ``ce_type`` of each FlowOps event: reverse-DNS name, then the schema version."""

    TRAFFIC: Final = "dev.flowops.traffic.v1"
    LABEL: Final = "dev.flowops.label.v1"
    REFERENCE: Final = "dev.flowops.reference.v1"
    ALERT: Final = "dev.flowops.drift.alert.v1"
    HEALTH: Final = "dev.flowops.health.v1"
    DEADLETTER: Final = "dev.flowops.deadletter.v1"
    VARIANT_WEIGHT: Final = "dev.flowops.gateway.variant_weight.v1"


@dataclass(frozen=True)
class CloudEvent:
    """The CloudEvents attributes read from a message's headers."""

    id: str
    source: str
    type: str
    time: datetime | None
    content_type: str | None
    specversion: str = SPEC_VERSION


def cloudevent_headers(
    event_type: str, source: str, event_id: str, time: datetime
) -> list[tuple[str, bytes]]:
    """Kafka headers for one event; ``time`` must be timezone-aware (written as UTC).

    ``source`` is a URI reference naming the producer (``/flowops/gateway``); ``event_id``
    is unique per source, and the same for a re-sent duplicate.
    """
    if time.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", event_type.encode()),
        ("ce_time", rfc3339(time).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def read_cloudevent_headers(headers: Iterable[tuple[str, bytes]]) -> CloudEvent:
    """The attributes in ``headers``; raises EventError (code ``bad_header``) when a
    required one is missing, not UTF-8, or ``ce_specversion`` is not 1.0.
    """
    values = {name: _text(name, value) for name, value in headers}
    for name in _REQUIRED:
        if name not in values:
            raise _error(f"missing header {name!r}")
    if values["ce_specversion"] != SPEC_VERSION:
        raise _error(f"ce_specversion {values['ce_specversion']!r} is not {SPEC_VERSION}")
    time = values.get("ce_time")
    return CloudEvent(
        id=values["ce_id"],
        source=values["ce_source"],
        type=values["ce_type"],
        time=_parse_time(time) if time is not None else None,
        content_type=values.get("content-type"),
    )


def rfc3339(time: datetime) -> str:
    """``time`` in UTC as RFC 3339 with milliseconds and ``Z``.

    >>> rfc3339(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    '2025-01-02T03:04:05.000Z'
    """
    return time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    try:
        time = datetime.fromisoformat(text)
    except ValueError:
        raise _error(f"ce_time {text!r} is not an RFC 3339 time") from None
    if time.tzinfo is None:
        raise _error(f"ce_time {text!r} has no time zone")
    return time


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise _error(f"header {name!r} is not UTF-8") from None


def _error(reason: str) -> EventError:
    return EventError(reason, event="cloudevent", field="headers", code="bad_header")
