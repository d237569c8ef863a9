"""flowops.watch.AlertFilter: which messages a watcher shows (no broker: the loop that
reads the topic is in tests/integration/test_drift_kafka.py)."""

from __future__ import annotations

from typing import Any

import pytest

from flowops.errors import EventError
from flowops.events import DriftAlert
from flowops.watch import AlertFilter, WatchStats


def alert(model: str = "credit", window: int = 0, **fields: Any) -> DriftAlert:
    values: dict[str, Any] = {
        "alert_id": f"{model}-{window}",
        "model": model,
        "version": "3",
        "feature": "income",
        "test": "ks",
        "statistic": 0.2,
        "pvalue": 0.001,
        "threshold": 0.05,
        "window_start": 0.0,
        "window_end": 60.0,
        "window_index": window,
        "n_reference": 1000,
        "n_current": 500,
        "severity": "critical",
        "reference": "profile",
        "detected_at": 61.0,
    }
    return DriftAlert(**(values | fields))


def message(event: DriftAlert) -> tuple[bytes, bytes]:
    return event.kafka_key(), event.to_json()


def test_every_alert_once_in_order() -> None:
    alerts = AlertFilter()
    sent = [alert("a", 0), alert("b", 0), alert("a", 0), alert("a", 1), alert("b", 0)]

    shown = [alerts.accept(*message(event)) for event in sent]

    assert shown == [sent[0], sent[1], None, sent[3], None]
    assert alerts.stats == WatchStats(alerts=3, duplicates=2)


def test_one_model_by_key_and_by_payload() -> None:
    alerts = AlertFilter("credit")
    other = alert("fraud")
    mislabelled = alert("fraud", 1)

    assert alerts.accept(*message(other)) is None
    assert alerts.accept(b"credit", mislabelled.to_json()) is None
    assert alerts.accept(None, alert("credit").to_json()) == alert("credit")
    assert alerts.stats == WatchStats(alerts=1, duplicates=0)


def test_another_models_copy_is_not_counted_as_a_duplicate() -> None:
    alerts = AlertFilter("credit")
    alerts.accept(*message(alert("fraud")))
    alerts.accept(*message(alert("fraud")))
    assert alerts.stats.duplicates == 0


def test_the_same_id_is_a_duplicate_whatever_else_changed() -> None:
    alerts = AlertFilter()
    first = alert(detected_at=61.0)
    again = alert(detected_at=99.0)  # published again after a worker restart
    assert alerts.accept(*message(first)) == first
    assert alerts.accept(*message(again)) is None


def test_memory_is_bounded_oldest_forgotten_first() -> None:
    alerts = AlertFilter(remember=2)
    a, b, c = alert(window=0), alert(window=1), alert(window=2)
    for event in (a, b, a, c):  # a seen again: now b is the oldest
        alerts.accept(*message(event))
    assert alerts.accept(*message(b)) == b  # forgotten, so shown again
    assert alerts.accept(*message(c)) is None


@pytest.mark.parametrize(
    ("value", "code"),
    [(b"not json", "bad_json"), (b'{"schema_version": 2}', "schema_version"), (None, "bad_json")],
)
def test_a_message_that_is_not_an_alert_raises_an_event_error(
    value: bytes | None, code: str
) -> None:
    with pytest.raises(EventError) as caught:
        AlertFilter().accept(b"credit", value)
    assert caught.value.code == code
