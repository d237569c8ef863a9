"""flowops.events.headers: CloudEvents attributes as Kafka headers, binary mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flowops.errors import EventError
from flowops.events.headers import (
    EventTypes,
    cloudevent_headers,
    read_cloudevent_headers,
    rfc3339,
)

WHEN = datetime(2025, 11, 28, 1, 0, 0, 250000, tzinfo=UTC)


def test_headers_are_the_binding_s_names_in_order() -> None:
    headers = cloudevent_headers(EventTypes.ALERT, "/flowops/streams", "id-1", WHEN)
    assert headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"id-1"),
        ("ce_source", b"/flowops/streams"),
        ("ce_type", b"dev.flowops.drift.alert.v1"),
        ("ce_time", b"2025-11-28T01:00:00.250Z"),
        ("content-type", b"application/json"),
    ]


def test_time_is_written_in_utc() -> None:
    oslo = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2025, 1, 1, 12, 0, tzinfo=oslo)) == "2025-01-01T11:00:00.000Z"


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cloudevent_headers(EventTypes.TRAFFIC, "/s", "1", datetime(2025, 1, 1))


def test_headers_read_back() -> None:
    event = read_cloudevent_headers(cloudevent_headers(EventTypes.HEALTH, "/m", "7", WHEN))
    assert (event.id, event.source, event.type, event.time, event.content_type) == (
        "7",
        "/m",
        "dev.flowops.health.v1",
        WHEN,
        "application/json",
    )


def test_other_headers_and_missing_time_are_fine() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1"),
        ("ce_source", b"/s"),
        ("ce_type", b"t"),
        ("traceparent", b"00-abc"),
    ]
    event = read_cloudevent_headers(headers)
    assert (event.time, event.content_type) == (None, None)


def test_event_types_name_each_event_and_version() -> None:
    names = [
        EventTypes.TRAFFIC,
        EventTypes.REFERENCE,
        EventTypes.ALERT,
        EventTypes.HEALTH,
        EventTypes.DEADLETTER,
    ]
    assert len(set(names)) == 5
    assert all(name.startswith("dev.flowops.") and name.endswith(".v1") for name in names)


GOOD = dict(cloudevent_headers(EventTypes.TRAFFIC, "/s", "1", WHEN))


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({k: v for k, v in GOOD.items() if k != "ce_id"}, "missing header 'ce_id'"),
        ({k: v for k, v in GOOD.items() if k != "ce_type"}, "missing header 'ce_type'"),
        (GOOD | {"ce_specversion": b"0.3"}, "ce_specversion '0.3' is not 1.0"),
        (GOOD | {"ce_source": b"\xff"}, "not UTF-8"),
        (GOOD | {"ce_time": b"yesterday"}, "not an RFC 3339 time"),
        (GOOD | {"ce_time": b"2025-01-01T00:00:00"}, "no time zone"),
    ],
)
def test_bad_headers_are_named(headers: dict[str, bytes], words: str) -> None:
    with pytest.raises(EventError) as caught:
        read_cloudevent_headers(headers.items())
    assert caught.value.code == "bad_header"
    assert words in str(caught.value)
