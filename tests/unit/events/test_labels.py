"""flowops.events.labels: rows and batches, the codec's round trips and rejections (each a
one-line reason and a dead-letter code), the JSON Schema agreeing with the decoder, and
LabelProducer against a fake Kafka client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from flowops.errors import EventError
from flowops.events import DeadLetter, LabelProducer, Topics
from flowops.events.headers import read_cloudevent_headers
from flowops.events.labels import (
    LabelBatch,
    LabelRow,
    decode_labels,
    decode_labels_many,
    encode_labels,
)
from flowops.events.schema_files import LabelBatchMessage, LabelRowMessage


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class FakeClient:
    """Records what is sent; every delivery succeeds."""

    sent: list[Sent] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        self.sent.append(Sent(topic, value, key, headers))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


ROW = {"schema_version": 1, "model": "credit", "request_id": "r-1", "label": 1, "timestamp": 5.0}
COLUMNS = {"request_id": ["r-1", "r-2"], "label": [1, "no"], "timestamp": [5.0, 6]}
BATCH = {"schema_version": 1, "model": "credit", "version": "3", "batch": COLUMNS}
DROP = object()


def with_(message: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {key: value for key, value in (message | changes).items() if value is not DROP}


def with_columns(**changes: Any) -> dict[str, Any]:
    return with_(BATCH, batch=with_(COLUMNS, **changes))


@pytest.mark.parametrize(
    "labels",
    [
        LabelRow("credit", "r-1", 1, 5.0),
        LabelRow("credit", "r-1", "fraud", 5.5, version="3"),
        LabelRow("credit", "r-1", 2.75, 5.5),
        LabelRow("credit", "r-1", True, 5.5),
        LabelBatch("m", "1", ["a", "b", "c"], [0, 1.5, "x"], np.array([1.0, 2.0, 3.0])),
    ],
)
def test_what_is_encoded_decodes_to_the_same(labels: LabelRow | LabelBatch) -> None:
    expected = LabelBatch.from_rows([labels]) if isinstance(labels, LabelRow) else labels
    assert decode_labels(encode_labels(labels)) == expected


def test_a_one_row_message_has_no_batch_and_no_null_version() -> None:
    message = orjson.loads(encode_labels(LabelRow("credit", "r-1", 1, 5.0)))
    assert message == ROW


@pytest.mark.parametrize(
    ("message", "code", "field"),
    [
        (b"{", "bad_json", None),
        (b"[]", "bad_json", None),
        (with_(ROW, schema_version=2), "schema_version", "schema_version"),
        (with_(ROW, schema_version=DROP), "missing_field", None),
        (with_(ROW, label=DROP), "missing_field", None),
        (with_(ROW, label=None), "wrong_type", "label"),
        (with_(ROW, label=[1]), "wrong_type", "label"),
        (with_(ROW, model=""), "wrong_type", "model"),
        (with_(ROW, request_id=7), "wrong_type", "request_id"),
        (with_(ROW, timestamp="now"), "wrong_type", "timestamp"),
        (with_(ROW, version=3), "wrong_type", "version"),
        (with_(ROW, prediction=1), "unknown_field", None),
        (with_columns(request_id=[]), "bad_batch", "batch.request_id"),
        (with_columns(label=[1]), "bad_batch", "batch.label"),
        (with_columns(label=[1, None]), "wrong_type", "batch.label[1]"),
        (with_columns(timestamp=[1, True]), "wrong_type", "batch.timestamp[1]"),
        (with_columns(extra=[]), "unknown_field", "batch"),
        (with_(BATCH, batch=[]), "wrong_type", "batch"),
    ],
)
def test_bad_events_name_the_field_and_a_code(message: Any, code: str, field: str | None) -> None:
    payload = message if isinstance(message, bytes) else orjson.dumps(message)
    with pytest.raises(EventError) as caught:
        decode_labels(payload)
    assert (caught.value.code, caught.value.field) == (code, field)
    assert str(caught.value).startswith("label event: ")
    assert "\n" not in str(caught.value)


def test_a_bad_label_becomes_a_dead_letter_with_its_reason() -> None:
    payload = orjson.dumps(with_(ROW, label=None))
    with pytest.raises(EventError) as caught:
        decode_labels(payload)
    letter = DeadLetter.for_message(
        topic=Topics.LABELS, partition=0, offset=3, key=b"credit", value=payload, error=caught.value
    )
    assert letter.error == "wrong_type"
    assert "field 'label'" in letter.reason
    assert letter.value_bytes() == payload


def test_many_messages_group_by_model_and_version_and_set_bad_ones_aside() -> None:
    decoded = decode_labels_many(
        [
            encode_labels(LabelRow("a", "1", 1, 1.0)),
            b"nope",
            encode_labels(LabelRow("b", "2", 0, 2.0)),
            encode_labels(LabelRow("a", "3", 0, 3.0)),
            encode_labels(LabelRow("a", "4", 0, 4.0, version="7")),
        ]
    )
    found = [(b.model, b.version, b.request_ids, b.timestamps.tolist()) for b in decoded.batches]
    assert found == [
        ("a", None, ["1", "3"], [1.0, 3.0]),
        ("b", None, ["2"], [2.0]),
        ("a", "7", ["4"], [4.0]),
    ]
    assert [(index, error.code) for index, error in decoded.errors] == [(1, "bad_json")]


@pytest.mark.parametrize(
    "labels",
    [
        LabelRow("m", "r", float("nan"), 1.0),
        LabelRow("m", "r", 1, float("inf")),
        LabelRow("", "r", 1, 1.0),
        LabelRow("m", "r", None, 1.0),  # type: ignore[arg-type]  # what the check is for
    ],
)
def test_the_encoder_refuses_what_the_decoder_would(labels: LabelRow) -> None:
    with pytest.raises(EventError):
        encode_labels(labels)


def test_batch_columns_of_unequal_length_are_refused() -> None:
    with pytest.raises(EventError, match="has 1 values, expected 2"):
        LabelBatch("m", None, ["a", "b"], [1], np.array([1.0, 2.0]))
    with pytest.raises(EventError, match="several models"):
        LabelBatch.from_rows([LabelRow("a", "1", 1, 1.0), LabelRow("b", "2", 1, 1.0)])


# --- the schema and the decoder agree ----------------------------------------------------

MESSAGES = [
    ROW,
    BATCH,
    with_(ROW, version=None),
    with_(ROW, version="3"),
    with_(ROW, version=3),
    with_(ROW, label="yes"),
    with_(ROW, label=False),
    with_(ROW, label=None),
    with_(ROW, label={}),
    with_(ROW, label=DROP),
    with_(ROW, model=""),
    with_(ROW, timestamp="1"),
    with_(ROW, timestamp=True),
    with_(ROW, schema_version=True),
    with_(ROW, schema_version=2),
    with_(ROW, extra=1),
    with_columns(request_id=[]),
    with_columns(label=[True, 0.5]),
    with_columns(label=[None, 1]),
    with_columns(timestamp=["1", 2]),
    with_columns(extra=[1]),
    with_(BATCH, batch="x"),
    [ROW],
]


def schema_accepts(message: Any) -> bool:
    adapter: TypeAdapter[BaseModel] = TypeAdapter(LabelRowMessage | LabelBatchMessage)
    try:
        adapter.validate_json(orjson.dumps(message))
    except ValidationError:
        return False
    return True


def decoder_accepts(message: Any) -> bool:
    try:
        decode_labels(orjson.dumps(message))
    except EventError:
        return False
    return True


@pytest.mark.parametrize("message", MESSAGES)
def test_schema_and_decoder_agree(message: Any) -> None:
    assert schema_accepts(message) == decoder_accepts(message)


# --- LabelProducer ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_label_producer_keys_by_model_and_batches_rows() -> None:
    client = FakeClient()
    rows = [LabelRow("a", str(i), i % 2, float(i)) for i in range(5)] + [LabelRow("b", "x", 1, 9.0)]
    async with LabelProducer(client=client, source="/test") as producer:
        await producer.send(rows)
        await producer.send(LabelRow("c", "y", "late", 10.0))
    assert [(m.topic, m.key) for m in client.sent] == [
        ("flowops.labels", b"a"),
        ("flowops.labels", b"b"),
        ("flowops.labels", b"c"),
    ]
    assert decode_labels(client.sent[0].value).request_ids == ["0", "1", "2", "3", "4"]
    assert read_cloudevent_headers(client.sent[2].headers).type == "dev.flowops.label.v1"


@pytest.mark.asyncio
async def test_label_producer_splits_a_batch_too_big_for_one_message() -> None:
    client = FakeClient()
    batch = LabelBatch("a", None, [f"r-{i}" for i in range(64)], [1] * 64, np.arange(64.0))
    async with LabelProducer(client=client, max_message_bytes=500) as producer:
        await producer.send(batch)
    assert len(client.sent) > 1
    assert all(len(m.value) <= 500 for m in client.sent)
    decoded = decode_labels_many(m.value for m in client.sent)
    assert decoded.batches == [batch]
