"""FlowOps events on Kafka: schemas, the traffic codec, topics, headers and producers.

* traffic (:class:`TrafficRow`, :class:`TrafficBatch`), written and read by
  :func:`encode_traffic`, :func:`decode_traffic` and :func:`decode_traffic_many`;
* the other events, pydantic models with ``to_json`` / ``from_json``:
  :class:`DriftAlert`, :class:`ReferenceProfile`, :class:`HealthEvent`,
  :class:`DeadLetter`, and the gateway's :class:`VariantWeightEvent`;
* :class:`Topics` and :func:`ensure_topics`; CloudEvents headers
  (:func:`cloudevent_headers`); :class:`TrafficProducer` and :class:`EventProducer`;
* labels (:class:`LabelRow`, :class:`LabelBatch`), written and read by
  :func:`encode_labels`, :func:`decode_labels` and :func:`decode_labels_many`, and
  sent by :class:`LabelProducer`.

Every decoding error is an :class:`~flowops.errors.EventError` with a ``code``.
JSON Schemas of all events are in ``docs/events/``; ``docs/streaming.md`` tells the story.
"""

import importlib
from typing import TYPE_CHECKING, Any

from flowops.events.headers import (
    CloudEvent,
    EventTypes,
    cloudevent_headers,
    read_cloudevent_headers,
)
from flowops.events.schemas import DeadLetter, DriftAlert, Event, HealthEvent, ReferenceProfile
from flowops.events.topics import (
    TOPICS,
    TopicInfo,
    Topics,
    TopicSpec,
    describe_topics,
    ensure_topics,
)

if TYPE_CHECKING:
    from flowops.events.codec import (
        SCHEMA_VERSION,
        DecodedTraffic,
        decode_traffic,
        decode_traffic_many,
        encode_traffic,
    )
    from flowops.events.gateway import VariantWeightEvent
    from flowops.events.labels import (
        LabelBatch,
        LabelRow,
        decode_labels,
        decode_labels_many,
        encode_labels,
    )
    from flowops.events.producer import EventProducer, LabelProducer, TrafficProducer
    from flowops.events.traffic import FeatureValue, TrafficBatch, TrafficRow

# Imported on first use: the traffic codec and rows need numpy, the producers aiokafka;
# the monitor, which needs only topic names and health events, is smaller without them.
_LAZY: dict[str, str] = {
    "SCHEMA_VERSION": "codec",
    "DecodedTraffic": "codec",
    "decode_traffic": "codec",
    "decode_traffic_many": "codec",
    "encode_traffic": "codec",
    "EventProducer": "producer",
    "LabelProducer": "producer",
    "LabelBatch": "labels",
    "LabelRow": "labels",
    "decode_labels": "labels",
    "decode_labels_many": "labels",
    "encode_labels": "labels",
    "TrafficProducer": "producer",
    "FeatureValue": "traffic",
    "TrafficBatch": "traffic",
    "TrafficRow": "traffic",
    "VariantWeightEvent": "gateway",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "SCHEMA_VERSION",
    "TOPICS",
    "CloudEvent",
    "DeadLetter",
    "DecodedTraffic",
    "DriftAlert",
    "Event",
    "EventProducer",
    "EventTypes",
    "FeatureValue",
    "HealthEvent",
    "LabelBatch",
    "LabelProducer",
    "LabelRow",
    "ReferenceProfile",
    "TopicInfo",
    "TopicSpec",
    "Topics",
    "TrafficBatch",
    "TrafficProducer",
    "TrafficRow",
    "VariantWeightEvent",
    "cloudevent_headers",
    "decode_labels",
    "decode_labels_many",
    "decode_traffic",
    "decode_traffic_many",
    "describe_topics",
    "encode_labels",
    "encode_traffic",
    "ensure_topics",
    "read_cloudevent_headers",
]
