"""Labels on the real embedded broker: ``flowops labels send`` and LabelProducer write
flowops.labels keyed by model, with CloudEvents headers, and a consumer reads back the
labels that were sent."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from click.testing import CliRunner

from flowops.cli import cli
from flowops.events import LabelProducer, LabelRow, Topics, decode_labels_many
from flowops.events.headers import EventTypes, read_cloudevent_headers

pytestmark = pytest.mark.integration


async def read_model(broker: str, model: str, rows: int) -> list[Any]:
    """The messages of ``model`` on flowops.labels, once they hold ``rows`` labels."""
    consumer = AIOKafkaConsumer(
        Topics.LABELS, bootstrap_servers=broker, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[Any] = []
    try:
        for _ in range(100):
            batches = await consumer.getmany(timeout_ms=200)
            found += [m for part in batches.values() for m in part if m.key == model.encode()]
            if sum(decode_labels_many([m.value]).batches[0].rows for m in found) >= rows:
                return found
    finally:
        await consumer.stop()
    raise AssertionError(f"{rows} labels of {model} did not arrive")


def test_labels_send_puts_the_file_on_flowops_labels(broker: str, tmp_path: Path) -> None:
    model = f"labels-{uuid.uuid4().hex[:8]}"
    lines = ["request_id,label,timestamp"] + [f"r-{i},{i % 2},{1000 + i}" for i in range(50)]
    data = tmp_path / "labels.csv"
    data.write_text("\n".join(lines) + "\n")

    result = CliRunner().invoke(
        cli,
        ["labels", "send", "--data", str(data), "--model", model,
         "--bootstrap", broker, "-o", "json"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "rows": 50,
        "models": {model: 50},
        "topic": "flowops.labels",
        "bootstrap": broker,
    }
    messages = asyncio.run(read_model(broker, model, 50))
    [batch] = decode_labels_many(m.value for m in messages).batches
    assert batch.request_ids == [f"r-{i}" for i in range(50)]
    assert batch.labels == [i % 2 for i in range(50)]
    assert batch.timestamps.tolist() == [1000.0 + i for i in range(50)]
    event = read_cloudevent_headers(messages[0].headers)
    assert (event.type, event.source) == (EventTypes.LABEL, "/flowops/cli/labels-send")


@pytest.mark.asyncio
async def test_label_producer_rows_are_read_back(broker: str) -> None:
    model = f"producer-{uuid.uuid4().hex[:8]}"
    rows = [LabelRow(model, f"q-{i}", "fraud" if i % 3 else "ok", 5.0 + i) for i in range(7)]
    async with LabelProducer(broker) as producer:
        await producer.send(rows[0])
        await producer.send(rows[1:])
    messages = await read_model(broker, model, 7)
    decoded = decode_labels_many(m.value for m in messages)
    assert decoded.errors == []
    assert [row for batch in decoded.batches for row in batch.to_rows()] == rows
