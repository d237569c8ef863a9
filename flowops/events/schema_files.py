"""JSON Schema files for every event, generated from the models; kept in ``docs/events/``.

Regenerate them after changing an event, and commit the result (a unit test checks that
the committed files are what this module writes)::

    python -m flowops.events.schema_files docs/events

The traffic decoder (:mod:`flowops.events.codec`) is hand-written for speed; the
pydantic models below describe the same wire format for the schema, and the unit tests
check that both accept and reject the same messages. Two rules are beyond JSON Schema: in
a batch, every column holds one value per ``request_id``; and the decoder also reads the
non-JSON tokens ``NaN``, ``Infinity`` and ``-Infinity`` (as null, counted), which some
clients write. The traffic event's ``variant``
and ``parse_error`` are optional, so version 1 readers and writers of messages without
them are unaffected.

The label event (:mod:`flowops.events.labels`) is described the same way, beside its
hand-written decoder.

>>> sorted(event_schemas())
['dead-letter.v1.json', 'drift-alert.v1.json', 'health.v1.json', 'label.v1.json', \
'reference-profile.v1.json', 'traffic.v1.json', 'variant-weight.v1.json']
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from flowops.events.gateway import VariantWeightEvent
from flowops.events.headers import EventTypes
from flowops.events.schemas import DeadLetter, DriftAlert, Event, HealthEvent, ReferenceProfile
from flowops.events.topics import Topics

__all__ = [
    "DRAFT",
    "LabelBatchMessage",
    "LabelColumns",
    "LabelRowMessage",
    "TrafficBatchMessage",
    "TrafficColumns",
    "TrafficRowMessage",
    "event_schemas",
    "main",
    "render",
    "write_schemas",
]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_INT64 = Field(ge=-(2**63), le=2**63 - 1)
_FeatureValue = float | str | None
_VARIANT = "the A/B arm, or shadow, that answered; null or absent when the route has no split"
_COLUMN = "optional, one value per request (left out when every one is null): "
_PARSE_ERROR = (
    "why the request's features could not be read (its body was not JSON, or not an "
    "inference payload); the features are then empty and drift leaves the request out. "
    "null or absent when they could be read"
)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @field_validator("schema_version", mode="before", check_fields=False)
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON true == 1 to Literal[1]; not to the decoder
            raise ValueError("must be the integer 1")
        return value


class TrafficRowMessage(_Wire):
    """One request to a model and its answer."""

    schema_version: Literal[1]
    model: Annotated[str, Field(min_length=1)]
    version: str
    request_id: str
    timestamp: float = Field(description="Unix seconds")
    features: dict[str, _FeatureValue] = Field(description="null for a missing value")
    prediction: Any = Field(description="any JSON value the model returned")
    latency_ms: float
    status: Annotated[int, _INT64]
    variant: str | None = Field(None, description=_VARIANT)
    parse_error: str | None = Field(None, description=_PARSE_ERROR)


class TrafficColumns(_Wire):
    """A batch's columns; every column holds one value per request id."""

    request_id: Annotated[list[str], Field(min_length=1)]
    timestamp: list[float] = Field(description="Unix seconds")
    features: dict[str, list[_FeatureValue]] = Field(description="one array per feature")
    prediction: list[Any]
    latency_ms: list[float]
    status: list[Annotated[int, _INT64]]
    variant: list[str | None] = Field(default_factory=list, description=_COLUMN + _VARIANT)
    parse_error: list[str | None] = Field(default_factory=list, description=_COLUMN + _PARSE_ERROR)


class TrafficBatchMessage(_Wire):
    """Requests to one model version, column by column."""

    schema_version: Literal[1]
    model: Annotated[str, Field(min_length=1)]
    version: str
    batch: TrafficColumns


_LabelValue = Annotated[float | str | bool, Field(union_mode="left_to_right")]
_LABEL = "the request's true outcome: a class (number, string or boolean) or a target"
_LABEL_VERSION = "the model version the label is for; null or absent: whichever answered"
_LABEL_TIME = "Unix seconds when the outcome became known (the clock of quality windows)"


class LabelRowMessage(_Wire):
    """The known outcome of one request, named by the request_id of its traffic row."""

    schema_version: Literal[1]
    model: Annotated[str, Field(min_length=1)]
    version: str | None = Field(None, description=_LABEL_VERSION)
    request_id: str
    label: _LabelValue = Field(description=_LABEL)
    timestamp: float = Field(description=_LABEL_TIME)


class LabelColumns(_Wire):
    """A label batch's columns; every column holds one value per request id."""

    request_id: Annotated[list[str], Field(min_length=1)]
    label: list[_LabelValue] = Field(description=_LABEL)
    timestamp: list[float] = Field(description=_LABEL_TIME)


class LabelBatchMessage(_Wire):
    """Labels of one model (and version, or none), column by column."""

    schema_version: Literal[1]
    model: Annotated[str, Field(min_length=1)]
    version: str | None = Field(None, description=_LABEL_VERSION)
    batch: LabelColumns


def event_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every event."""
    schemas = {"traffic.v1.json": _traffic_schema(), "label.v1.json": _label_schema()}
    for name, event in (
        ("reference-profile.v1.json", ReferenceProfile),
        ("drift-alert.v1.json", DriftAlert),
        ("health.v1.json", HealthEvent),
        ("dead-letter.v1.json", DeadLetter),
        ("variant-weight.v1.json", VariantWeightEvent),
    ):
        schemas[name] = _event_schema(event)
    return schemas


def write_schemas(directory: str | Path) -> list[Path]:
    """Write every schema into ``directory``; return the paths written."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in event_schemas().items():
        path = folder / name
        path.write_text(render(schema), encoding="utf-8")
        paths.append(path)
    return paths


def render(schema: dict[str, Any]) -> str:
    """The schema as the file holds it: two-space indents and a final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flowops.events.schema_files [DIRECTORY]`` (default ``docs/events``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    for path in write_schemas(args[0] if args else "docs/events"):
        print(path)
    return 0


def _traffic_schema() -> dict[str, Any]:
    adapter: TypeAdapter[TrafficRowMessage | TrafficBatchMessage] = TypeAdapter(
        TrafficRowMessage | TrafficBatchMessage
    )
    body = adapter.json_schema()
    body["oneOf"] = body.pop("anyOf")
    header = _header(
        "FlowOps traffic event",
        "One request to a model (a row) or many requests to one model version "
        "(a columnar batch). In a batch every column holds one value per request_id.",
        EventTypes.TRAFFIC,
        Topics.TRAFFIC,
        "model",
    )
    return _merge(header, body)


def _label_schema() -> dict[str, Any]:
    adapter: TypeAdapter[LabelRowMessage | LabelBatchMessage] = TypeAdapter(
        LabelRowMessage | LabelBatchMessage
    )
    body = adapter.json_schema()
    body["oneOf"] = body.pop("anyOf")
    header = _header(
        "FlowOps label event",
        "The true outcome of one request (a row) or of many requests to one model (a "
        "columnar batch), joined to the traffic's prediction by request_id. In a batch "
        "every column holds one value per request_id.",
        EventTypes.LABEL,
        Topics.LABELS,
        "model",
    )
    return _merge(header, body)


def _event_schema(event: type[Event]) -> dict[str, Any]:
    body = event.model_json_schema()
    body["properties"]["schema_version"]["const"] = 1
    if event is DriftAlert:
        from flowops.drift.registry import ALERT_TESTS  # the tests FlowOps knows today

        body["properties"]["test"]["examples"] = list(ALERT_TESTS)
    title = f"FlowOps {event.NAME} event"
    keys: dict[type[Event], str] = {
        DeadLetter: "source_topic",
        HealthEvent: "target",
        VariantWeightEvent: "route",
    }
    key = keys.get(event, "model")
    header = _header(title, body.pop("description", ""), event.EVENT_TYPE, event.TOPIC, key)
    return _merge(header, body)


def _header(title: str, description: str, ce_type: str, topic: str, key: str) -> dict[str, Any]:
    return {
        "$schema": DRAFT,
        "title": title,
        "description": " ".join(description.replace("``", "").split()),
        "x-cloudevents-type": ce_type,
        "x-kafka-topic": topic,
        "x-kafka-key": key,
    }


def _merge(header: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The header's keys first and winning, then the rest of the generated schema."""
    return header | {key: value for key, value in body.items() if key not in header}


if __name__ == "__main__":
    raise SystemExit(main())
