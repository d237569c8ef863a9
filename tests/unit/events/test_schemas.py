"""flowops.events.schemas: alerts, reference profiles, health events and dead letters."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
import pytest

from flowops.drift.profile import Column, Profile
from flowops.errors import EventError
from flowops.events.headers import EventTypes
from flowops.events.schemas import (
    DeadLetter,
    DriftAlert,
    Event,
    HealthEvent,
    ReferenceProfile,
    WindowVerdictBody,
)
from flowops.events.topics import Topics


@dataclass(frozen=True)
class FakeFinding:
    """Has what flowops.drift's Finding has, as DriftAlert.from_finding reads it."""

    model: str = "credit"
    version: str = "3"
    feature: str = "age"
    test: str = "ks"
    statistic: float = 0.31
    pvalue: float | None = 0.0004
    threshold: float = 0.05
    window_index: int = 4
    window_start: float = 240.0
    window_end: float = 300.0
    n_reference: int = 1000
    n_current: int = 500
    severity: Literal["warning", "critical"] = "critical"
    reference: Literal["profile", "first_window"] = "profile"
    partition: int | None = 2
    window_verdict: Any = None

    @property
    def alert_id(self) -> str:
        return f"{self.model}-{self.feature}-{self.window_index}"


def alert(**changes: Any) -> DriftAlert:
    return DriftAlert.from_finding(FakeFinding(**changes), detected_at=301.5)


def profile() -> Profile:
    columns: dict[str, Column] = {
        "age": np.array([31.0, 45.0, np.nan, 27.0, 0.1]),
        "city": ["Oslo", None, "Lima"],
    }
    return Profile.from_columns(columns, bins=2, model="credit")


def health() -> HealthEvent:
    return HealthEvent(target="mlflow", check="http", status="up", latency_ms=3.5, checked_at=9.0)


def letter() -> DeadLetter:
    error = EventError("not JSON", event="traffic", code="bad_json")
    return DeadLetter.for_message(
        topic=Topics.TRAFFIC,
        partition=2,
        offset=41,
        key=b"credit",
        value=b"\xff{",
        error=error,
        consumer="flowops-streams",
        failed_at=10.0,
    )


def reference() -> ReferenceProfile:
    return ReferenceProfile.from_profile(profile(), version="3", created_at=5.0)


EVENTS = [alert, reference, health, letter]


def test_alert_from_finding_copies_every_field() -> None:
    made = alert()
    assert made.alert_id == "credit-age-4"
    assert (made.model, made.version, made.feature, made.test) == ("credit", "3", "age", "ks")
    assert (made.statistic, made.pvalue, made.threshold) == (0.31, 0.0004, 0.05)
    assert (made.window_index, made.window_start, made.window_end) == (4, 240.0, 300.0)
    assert (made.n_reference, made.n_current) == (1000, 500)
    assert (made.severity, made.reference, made.detected_at) == ("critical", "profile", 301.5)
    assert made.partition == 2
    assert alert(partition=None).partition is None


def test_alert_from_finding_is_detected_now_by_default() -> None:
    assert DriftAlert.from_finding(FakeFinding()).detected_at > 1.7e9


def test_alert_from_a_finding_with_an_infinite_statistic_is_an_event_error() -> None:
    with pytest.raises(EventError) as caught:
        alert(statistic=float("inf"))
    assert caught.value.field == "statistic"


def test_adwin_alert_has_no_pvalue() -> None:
    made = alert(test="adwin", pvalue=None, threshold=0.002)
    assert DriftAlert.from_json(made.to_json()).pvalue is None


@dataclass(frozen=True)
class FakeVerdict:
    """What flowops.drift's WindowVerdict has."""

    drift: bool = False
    verdict: str = "share:0.5"
    drifted_features: int = 2
    compared_features: int = 5
    drifted_share: float = 0.4
    drifted_names: tuple[str, ...] = ("age", "income")


def test_an_alert_carries_its_windows_verdict() -> None:
    made = alert(window_verdict=FakeVerdict())
    assert made.window_verdict == WindowVerdictBody(
        drift=False,
        verdict="share:0.5",
        drifted_features=2,
        compared_features=5,
        drifted_share=0.4,
        drifted_names=["age", "income"],
    )
    assert DriftAlert.from_json(made.to_json()) == made
    assert orjson.loads(made.to_json())["window_verdict"]["drifted_names"] == ["age", "income"]


def test_an_alert_without_a_verdict_is_written_as_before() -> None:
    """ADWIN and error-rate alerts (and a finding kind without the field) leave it out of
    the JSON, so what they write is what a reader of the schema before it accepts."""
    before = {
        "schema_version", "alert_id", "model", "version", "feature", "test", "statistic",
        "pvalue", "threshold", "window_start", "window_end", "window_index", "n_reference",
        "n_current", "severity", "reference", "detected_at", "partition",
    }  # fmt: skip
    assert set(orjson.loads(alert().to_json())) == before
    assert set(orjson.loads(alert(window_verdict=None).to_json())) == before
    old = orjson.loads(alert().to_json())
    assert DriftAlert.from_json(orjson.dumps(old)).window_verdict is None


@pytest.mark.parametrize(
    ("verdict", "field"),
    [
        ({"drifted_share": 1.5}, "window_verdict.drifted_share"),
        ({"drifted_features": -1}, "window_verdict.drifted_features"),
        ({"extra": 1}, "window_verdict.extra"),
        ({"drift": "yes"}, "window_verdict.drift"),
    ],
)
def test_a_bad_verdict_is_named(verdict: dict[str, Any], field: str) -> None:
    body = orjson.loads(alert(window_verdict=FakeVerdict()).to_json())
    body["window_verdict"].update(verdict)
    with pytest.raises(EventError) as caught:
        DriftAlert.from_json(orjson.dumps(body))
    assert caught.value.field == field


@pytest.mark.parametrize("make", EVENTS)
def test_every_event_round_trips_through_json(make: Any) -> None:
    event = make()
    assert type(event).from_json(event.to_json()) == event
    assert orjson.loads(event.to_json())["schema_version"] == 1


@pytest.mark.parametrize(
    ("make", "topic", "key", "event_type", "event_id"),
    [
        (alert, Topics.ALERTS, b"credit", EventTypes.ALERT, "credit-age-4"),
        (reference, Topics.REFERENCES, b"credit", EventTypes.REFERENCE, "credit/3/5.0"),
        (health, Topics.HEALTH, b"mlflow", EventTypes.HEALTH, "mlflow/http/9.0"),
        (letter, Topics.DEADLETTER, b"flowops.traffic", EventTypes.DEADLETTER, None),
    ],
)
def test_topic_key_type_and_id(
    make: Any, topic: str, key: bytes, event_type: str, event_id: str | None
) -> None:
    event: Event = make()
    assert (event.TOPIC, event.kafka_key(), event.EVENT_TYPE) == (topic, key, event_type)
    assert event.event_id() == make().event_id()  # deterministic
    if event_id is not None:
        assert event.event_id() == event_id


def test_reference_profile_gives_back_the_profile() -> None:
    event = ReferenceProfile.from_json(reference().to_json())
    assert event.to_profile() == profile()
    assert (event.model, event.version) == ("credit", "3")


def test_reference_profile_needs_a_model() -> None:
    nameless = Profile.from_columns({"x": np.array([1.0, 2.0])}, bins=2)
    with pytest.raises(EventError, match="model"):
        ReferenceProfile.from_profile(nameless)
    assert ReferenceProfile.from_profile(nameless, model="m").model == "m"


def test_inconsistent_profile_is_refused() -> None:
    data = orjson.loads(reference().to_json())
    data["profile"]["features"]["age"]["n"] = 99
    with pytest.raises(EventError, match="inconsistent profile"):
        ReferenceProfile.from_json(orjson.dumps(data))


def test_dead_letter_keeps_the_original_bytes_and_the_code() -> None:
    made = letter()
    assert (made.error, made.reason) == ("bad_json", "traffic event: not JSON")
    assert made.value_bytes() == b"\xff{"
    assert made.key_bytes() == b"credit"
    assert made.original_value == base64.b64encode(b"\xff{").decode()


def test_dead_letter_of_any_exception_and_no_key() -> None:
    made = DeadLetter.for_message(
        topic="t", partition=None, offset=None, key=None, value=None, error=KeyError("x")
    )
    assert (made.error, made.key_bytes(), made.value_bytes()) == ("exception", None, None)
    assert made.failed_at > 1.7e9


def alert_json(**changes: Any) -> bytes:
    data = orjson.loads(alert().to_json())
    for key, value in changes.items():
        if value is REMOVE:
            del data[key]
        else:
            data[key] = value
    return orjson.dumps(data)


REMOVE = object()


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        (b"{", "bad_json", None),
        (b"[1]", "bad_json", None),
        (alert_json(schema_version=REMOVE), "missing_field", None),
        (alert_json(schema_version=2), "schema_version", "schema_version"),
        (alert_json(schema_version=True), "schema_version", "schema_version"),
        (alert_json(schema_version=2, model=5), "schema_version", "schema_version"),
        (alert_json(model=REMOVE), "missing_field", "model"),
        (alert_json(colour="red"), "unknown_field", "colour"),
        (alert_json(model=5), "wrong_type", "model"),
        (alert_json(model=""), "wrong_type", "model"),
        (alert_json(n_current="5"), "wrong_type", "n_current"),
        (alert_json(n_current=-1), "wrong_type", "n_current"),
        (alert_json(pvalue=1.5), "wrong_type", "pvalue"),
        (alert_json(test=""), "wrong_type", "test"),
        (alert_json(statistic=True), "wrong_type", "statistic"),
        (
            alert_json().replace(b'"statistic":0.31', b'"statistic":1e999'),
            "wrong_type",
            "statistic",
        ),
    ],
)
def test_bad_alerts_are_named(payload: bytes, code: str, field: str | None) -> None:
    with pytest.raises(EventError) as caught:
        DriftAlert.from_json(payload)
    assert (caught.value.code, caught.value.field, caught.value.event) == (
        code,
        field,
        "drift alert",
    )


def test_missing_schema_version_is_fine_in_python_only() -> None:
    assert health().schema_version == 1
    with pytest.raises(EventError, match="schema_version"):
        HealthEvent.from_json(b'{"target":"t","check":"c","status":"up","checked_at":1}')


def test_events_are_frozen() -> None:
    made = health()
    with pytest.raises(ValueError, match="frozen"):
        made.status = "down"  # type: ignore[misc]


@pytest.mark.parametrize("status", ["up", "degraded", "down"])
def test_health_statuses(status: str) -> None:
    payload = health().to_json().replace(b'"up"', f'"{status}"'.encode())
    assert HealthEvent.from_json(payload).status == status


def test_health_refuses_other_statuses() -> None:
    with pytest.raises(EventError) as caught:
        HealthEvent.from_json(health().to_json().replace(b'"up"', b'"ok"'))
    assert caught.value.field == "status"


# --- the optional report (issue 16): additive --------------------------------------------


def test_alert_carries_its_report_through_json() -> None:
    made = DriftAlert.from_finding(
        FakeFinding(), detected_at=1.0, report="https://reports.example/drift-a.html"
    )
    read = DriftAlert.from_json(made.to_json())
    assert read.report == "https://reports.example/drift-a.html"
    assert orjson.loads(made.to_json())["report"] == read.report


def test_alert_without_a_report_is_written_as_before() -> None:
    """No ``report`` key at all: a reader of the schema before it (additionalProperties
    false) accepts every alert that has no report."""
    payload = orjson.loads(alert().to_json())
    assert "report" not in payload
    assert DriftAlert.from_json(alert().to_json()).report is None


def test_schema_file_has_report_optional_and_nothing_else_new() -> None:
    from pathlib import Path

    schema = orjson.loads(
        (Path(__file__).resolve().parents[3] / "docs/events/drift-alert.v1.json").read_bytes()
    )
    assert "report" in schema["properties"]
    assert "report" not in schema["required"]
    written = set(orjson.loads(alert().to_json()))
    assert written <= set(schema["properties"]) - {"report"}  # what an old reader knows


@pytest.mark.parametrize("bad", ["", "x" * 4097])
def test_alert_report_must_be_a_usable_address(bad: str) -> None:
    with pytest.raises(EventError) as caught:
        DriftAlert.from_finding(FakeFinding(), detected_at=1.0, report=bad)
    assert caught.value.field == "report"
