"""The events other than traffic: drift alerts, reference profiles, health, dead letters.

Each is a frozen pydantic model that writes and reads its JSON (``to_json`` /
``from_json``), knows its topic, its Kafka key and its CloudEvents type, and has a
deterministic event id, so that a duplicate sent again carries the same ``ce_id``:

>>> alert = DriftAlert(alert_id="a1", model="credit", version="3", feature="age",
...     test="ks", statistic=0.31, pvalue=0.0004, threshold=0.05, window_start=0.0,
...     window_end=60.0, window_index=0, n_reference=1000, n_current=500,
...     severity="critical", reference="profile", detected_at=61.5)
>>> DriftAlert.from_json(alert.to_json()) == alert
True
>>> alert.TOPIC, alert.kafka_key(), alert.event_id()
('flowops.drift.alerts', b'credit', 'a1')
>>> DriftAlert.from_json(b'{"schema_version": 2}')
Traceback (most recent call last):
...
flowops.errors.EventError: drift alert event: field 'schema_version': Input should be 1
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from flowops.errors import EventError, EventErrorCode, InputError
from flowops.events.headers import EventTypes
from flowops.events.topics import Topics

if TYPE_CHECKING:  # numpy comes with it; the monitor's health events need none
    from flowops.drift.profile import Profile

__all__ = [
    "CategoricalFeatureBody",
    "DeadLetter",
    "DriftAlert",
    "Event",
    "FindingLike",
    "HealthEvent",
    "NumericFeatureBody",
    "ProfileBody",
    "ReferenceProfile",
    "WindowVerdictBody",
]

_WIRE = "wire"
_CODES: Mapping[str, EventErrorCode] = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "json_invalid": "bad_json",
    "json_type": "bad_json",
}
_REASONS = {"missing": "missing field", "extra_forbidden": "unknown field"}
_Name = Annotated[str, Field(min_length=1)]
_Count = Annotated[int, Field(ge=0)]


def _require_schema_version(schema: dict[str, Any]) -> None:
    schema["required"] = ["schema_version", *schema.get("required", [])]


class Event(BaseModel):
    """Base of the JSON events: strict types, no unknown fields, finite numbers."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        json_schema_extra=_require_schema_version,
    )

    TOPIC: ClassVar[str]
    EVENT_TYPE: ClassVar[str]
    NAME: ClassVar[str]

    schema_version: Literal[1] = Field(1, description="the event's schema version")

    @field_validator("schema_version", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be the integer 1")
        return value

    @model_validator(mode="before")
    @classmethod
    def _version_given(cls, data: Any, info: ValidationInfo) -> Any:
        """On the wire ``schema_version`` is required; in Python it defaults to 1."""
        context = info.context or {}
        if context.get(_WIRE) and isinstance(data, dict) and "schema_version" not in data:
            raise ValueError("missing field 'schema_version'")
        return data

    def to_json(self) -> bytes:
        """The event as compact JSON bytes."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, payload: bytes | bytearray | str) -> Self:
        """The event in ``payload``; raises EventError naming the first bad field."""
        try:
            return cls.model_validate_json(payload, context={_WIRE: True})
        except ValidationError as exc:
            raise _event_error(cls.NAME, exc) from None

    def kafka_key(self) -> bytes:
        """The message key: what the topic is partitioned by."""
        raise NotImplementedError

    def event_id(self) -> str:
        """The CloudEvents id: the same for the same event sent twice."""
        raise NotImplementedError


class FindingLike(Protocol):
    """What :meth:`DriftAlert.from_finding` reads: a ``flowops.drift`` finding."""

    @property
    def alert_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def feature(self) -> str: ...
    @property
    def test(self) -> str: ...
    @property
    def statistic(self) -> float: ...
    @property
    def pvalue(self) -> float | None: ...
    @property
    def threshold(self) -> float: ...
    @property
    def window_index(self) -> int: ...
    @property
    def window_start(self) -> float: ...
    @property
    def window_end(self) -> float: ...
    @property
    def n_reference(self) -> int: ...
    @property
    def n_current(self) -> int: ...
    @property
    def severity(self) -> Literal["warning", "critical"]: ...
    @property
    def reference(self) -> Literal["profile", "first_window"]: ...
    @property
    def partition(self) -> int | None: ...


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class WindowVerdictBody(_Strict):
    """The model's verdict in a window, as an alert of that window carries it."""

    drift: bool = Field(description="whether the model drifted in the window, by the rule")
    verdict: _Name = Field(description="the rule (drift.verdict): any, or share:<fraction>")
    drifted_features: _Count = Field(description="how many compared features drifted")
    compared_features: _Count = Field(description="how many features the window compared")
    drifted_share: Annotated[float, Field(ge=0, le=1)] = Field(
        description="drifted_features / compared_features"
    )
    drifted_names: list[str] = Field(description="the drifted features, in report order")


class DriftAlert(Event):
    """A feature of a model drifted: which test said so, how strongly, in which window.

    ``alert_id`` is deterministic (model, version, feature, test, window index, and the
    traffic partition of a window or ADWIN kept per partition), so a reader drops
    duplicates by it. Times are Unix seconds. The alerts of a window's tests carry the
    model's verdict in that window (``window_verdict``); when that is drift, one more
    alert (``feature: "dataset"``, ``test: "verdict"``) says so once. ``window_verdict``
    is optional and left out of the JSON when null, so an ADWIN or error-rate alert is
    what it always was.
    """

    TOPIC: ClassVar[str] = Topics.ALERTS
    EVENT_TYPE: ClassVar[str] = EventTypes.ALERT
    NAME: ClassVar[str] = "drift alert"

    alert_id: _Name
    model: _Name
    version: str
    feature: _Name
    test: _Name = Field(
        description="the test that found the drift: a registered window test "
        "(flowops.drift.registry) or adwin; readers should accept names they do not know"
    )
    statistic: float
    pvalue: Annotated[float, Field(ge=0, le=1)] | None = Field(
        description="the adjusted p-value; null for PSI and ADWIN"
    )
    threshold: float = Field(description="alpha, the PSI threshold, or ADWIN's delta")
    window_start: float
    window_end: float
    window_index: _Count = Field(description="the window's index; for ADWIN the change row")
    n_reference: _Count
    n_current: _Count
    severity: Literal["warning", "critical"]
    reference: Literal["profile", "first_window"] = Field(
        description="compared with the published profile, or with the model's first window"
    )
    detected_at: float
    partition: _Count | None = Field(
        default=None,
        description="the traffic partition whose rows the window or ADWIN stream holds;"
        " null for a window merged across partitions",
    )
    window_verdict: WindowVerdictBody | None = Field(
        default=None,
        description="the model's verdict in the window (drift.verdict), on the alerts of"
        " window tests and of the verdict itself; absent on ADWIN and error-rate alerts",
    )
    report: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="the HTML report of the alert's window: a URL (streams.reports.base_url"
        " joined with the file's name) or the file's path; absent when none was written",
    )

    @classmethod
    def from_finding(
        cls,
        finding: FindingLike,
        *,
        detected_at: float | None = None,
        report: str | None = None,
    ) -> Self:
        """The alert for a finding, detected now unless ``detected_at`` is given, with
        the address of its window's ``report`` if one was written.

        Raises EventError for a finding no alert can carry (an infinite statistic).
        """
        try:
            return cls._from_finding(finding, detected_at, report)
        except ValidationError as exc:
            raise _event_error(cls.NAME, exc) from None

    @classmethod
    def _from_finding(
        cls, finding: FindingLike, detected_at: float | None, report: str | None
    ) -> Self:
        return cls(
            alert_id=finding.alert_id,
            model=finding.model,
            version=finding.version,
            feature=finding.feature,
            test=finding.test,
            statistic=float(finding.statistic),
            pvalue=None if finding.pvalue is None else float(finding.pvalue),
            threshold=float(finding.threshold),
            window_start=float(finding.window_start),
            window_end=float(finding.window_end),
            window_index=int(finding.window_index),
            n_reference=int(finding.n_reference),
            n_current=int(finding.n_current),
            severity=finding.severity,
            reference=finding.reference,
            detected_at=time.time() if detected_at is None else detected_at,
            partition=finding.partition,
            window_verdict=_verdict_body(getattr(finding, "window_verdict", None)),
            report=report,
        )

    def to_json(self) -> bytes:
        """The alert as compact JSON bytes, without ``window_verdict`` or ``report`` when
        they are null: an alert without them reads as before for readers of the schema
        that lacks them."""
        empty = {name for name in ("window_verdict", "report") if getattr(self, name) is None}
        return self.model_dump_json(exclude=empty or None).encode()

    def kafka_key(self) -> bytes:
        return self.model.encode()

    def event_id(self) -> str:
        return self.alert_id


def _verdict_body(verdict: Any) -> WindowVerdictBody | None:
    """A finding's ``window_verdict`` (a :class:`flowops.drift.finding.WindowVerdict`:
    not every finding kind has one) as the alert's."""
    if verdict is None:
        return None
    return WindowVerdictBody(
        drift=bool(verdict.drift),
        verdict=str(verdict.verdict),
        drifted_features=int(verdict.drifted_features),
        compared_features=int(verdict.compared_features),
        drifted_share=float(verdict.drifted_share),
        drifted_names=[str(name) for name in verdict.drifted_names],
    )


class NumericFeatureBody(_Strict):
    """A numeric feature's profile, as :class:`flowops.drift.NumericProfile` writes it."""

    kind: Literal["numeric"]
    n: _Count
    excluded: _Count
    mean: float
    std: float
    min: float
    max: float
    edges: list[float]
    counts: list[_Count]
    sample: list[float]


class CategoricalFeatureBody(_Strict):
    """A categorical feature's profile: the count of every category."""

    kind: Literal["categorical"]
    n: _Count
    excluded: _Count
    frequencies: dict[str, _Count]


class ProfileBody(_Strict):
    """A :class:`flowops.drift.Profile` as JSON (``Profile.to_dict``)."""

    version: Literal[1]
    model: str | None
    bins: Annotated[int, Field(ge=2)]
    sample_size: Annotated[int, Field(ge=1)]
    features: dict[
        str, Annotated[NumericFeatureBody | CategoricalFeatureBody, Field(discriminator="kind")]
    ]


class ReferenceProfile(Event):
    """What a model's reference data looked like; the latest per model wins (compacted)."""

    TOPIC: ClassVar[str] = Topics.REFERENCES
    EVENT_TYPE: ClassVar[str] = EventTypes.REFERENCE
    NAME: ClassVar[str] = "reference profile"

    model: _Name
    version: str | None = Field(None, description="the model version the profile is for")
    created_at: float
    profile: ProfileBody
    _profile: Profile = PrivateAttr()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        from flowops.drift.profile import Profile

        try:
            self._profile = Profile.from_dict(self.profile.model_dump())
        except InputError as exc:
            raise ValueError(f"inconsistent profile: {exc}") from None
        return self

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        *,
        model: str | None = None,
        version: str | None = None,
        created_at: float | None = None,
    ) -> Self:
        """The event for ``profile``; ``model`` defaults to the profile's own."""
        name = model or profile.model
        if not name:
            raise EventError("a model name is needed", event=cls.NAME, field="model")
        body = ProfileBody.model_validate(profile.to_dict())
        stamp = time.time() if created_at is None else created_at
        return cls(model=name, version=version, created_at=stamp, profile=body)

    def to_profile(self) -> Profile:
        """The :class:`~flowops.drift.Profile` the drift tests compare against."""
        return self._profile

    def kafka_key(self) -> bytes:
        return self.model.encode()

    def event_id(self) -> str:
        return f"{self.model}/{self.version or ''}/{self.created_at!r}"


class HealthEvent(Event):
    """The result of one health check of one target (a model server, MLflow, Kafka)."""

    TOPIC: ClassVar[str] = Topics.HEALTH
    EVENT_TYPE: ClassVar[str] = EventTypes.HEALTH
    NAME: ClassVar[str] = "health"

    target: _Name
    check: _Name
    status: Literal["up", "degraded", "down"]
    latency_ms: Annotated[float, Field(ge=0)] | None = None
    detail: str = ""
    checked_at: float

    def kafka_key(self) -> bytes:
        return self.target.encode()

    def event_id(self) -> str:
        return f"{self.target}/{self.check}/{self.checked_at!r}"


class DeadLetter(Event):
    """A message a consumer could not use: where it came from, its bytes, and why.

    Key and value are base64 (standard alphabet, padded) so any bytes survive JSON.
    """

    TOPIC: ClassVar[str] = Topics.DEADLETTER
    EVENT_TYPE: ClassVar[str] = EventTypes.DEADLETTER
    NAME: ClassVar[str] = "dead letter"

    source_topic: _Name
    partition: _Count | None
    offset: _Count | None
    original_key: str | None = Field(description="the message key, base64")
    original_value: str | None = Field(description="the message value, base64")
    reason: str = Field(description="what was wrong, in words")
    error: str = Field(description="what was wrong, as a code: an EventError code or 'exception'")
    consumer: str | None = Field(None, description="who gave up: the consumer group or worker")
    failed_at: float

    @classmethod
    def for_message(
        cls,
        *,
        topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        value: bytes | None,
        error: Exception,
        consumer: str | None = None,
        failed_at: float | None = None,
    ) -> Self:
        """The dead letter for a message that raised ``error``.

        >>> letter = DeadLetter.for_message(topic="flowops.traffic", partition=0,
        ...     offset=7, key=b"m", value=b"{", error=ValueError("no"), failed_at=1.0)
        >>> letter.error, letter.value_bytes()
        ('exception', b'{')
        """
        return cls(
            source_topic=topic,
            partition=partition,
            offset=offset,
            original_key=_b64(key),
            original_value=_b64(value),
            reason=str(error),
            error=error.code if isinstance(error, EventError) else "exception",
            consumer=consumer,
            failed_at=time.time() if failed_at is None else failed_at,
        )

    def key_bytes(self) -> bytes | None:
        """The original message's key."""
        return None if self.original_key is None else base64.b64decode(self.original_key)

    def value_bytes(self) -> bytes | None:
        """The original message's value."""
        return None if self.original_value is None else base64.b64decode(self.original_value)

    def kafka_key(self) -> bytes:
        return self.source_topic.encode()

    def event_id(self) -> str:
        return f"{self.source_topic}/{self.partition}/{self.offset}/{self.failed_at!r}"


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _event_error(name: str, exc: ValidationError) -> EventError:
    """The first error, preferring one about ``schema_version``, as an EventError."""
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if e["loc"][:1] == ("schema_version",)), errors[0])
    field = ".".join(str(part) for part in first["loc"]) or None
    reason = _REASONS.get(first["type"], first["msg"])
    if first["type"] == "value_error" and "ctx" in first:
        reason = str(first["ctx"]["error"])  # without pydantic's "Value error, "
    return EventError(reason, event=name, field=field, code=_code(first))


def _code(error: ErrorDetails) -> EventErrorCode:
    if error["loc"][:1] == ("schema_version",):
        return "schema_version"
    if "missing field 'schema_version'" in error["msg"]:
        return "missing_field"
    if error["type"] == "model_type" and not error["loc"]:
        return "bad_json"
    return _CODES.get(error["type"], "wrong_type")
