"""Kafka stopped in the middle of a load through the real gateway: no request fails, and
every traffic event that was queued arrives once a broker is back.

The gateway publishes to a Tansu broker on a fixed free port. Sixteen clients send
requests all along (each with its own ``X-Request-ID``); the broker is stopped
(``EmbeddedBroker.stop()``: its pid, SIGTERM) while they do, and a new, empty one is
started on the same port a few seconds later: the publisher creates
``flowops.traffic`` again when it reconnects. Rows the first broker acknowledged went
with it (memory storage); every other row must reach the second one, each at least
once, and not one be dropped. The load's pace keeps the queue far below its bound.

The publisher's counters come from ``/admin/upstreams`` (``publisher``), read by an
admin API key. Nothing here measures time: waits are bounded polls.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from gateway_load import Answer, Load, request
from gateway_servers import model_servers, running_gateway
from helpers import until

from flowops.broker import EmbeddedBroker, free_port
from flowops.events import Topics, decode_traffic_many, describe_topics
from flowops.gateway.auth import hash_api_key

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ADMIN_KEY = "admin-key-for-tests-only"
QUEUE = 20_000  # rows; the load sends at most ~300 a second, for about 15 s
PUBLISH = {
    "batch_size": 50,
    "linger_ms": 5,
    "queue_size": QUEUE,
    "request_timeout": 2.0,  # a send to the stopped broker fails after this
    "retry_backoff": 0.05,
    "retry_backoff_max": 0.5,
}
READ_WAIT = 60.0  # seconds the second broker's rows may take to read (a few expected)


class Admin:
    """The publisher's counters, as ``/admin/upstreams`` gives them."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def publisher(self) -> dict[str, Any]:
        headers = {"X-API-Key": ADMIN_KEY}
        async with self.session.get(f"{self.base}/admin/upstreams", headers=headers) as response:
            assert response.status == 200
            stats: dict[str, Any] = orjson.loads(await response.read())["publisher"]
            return stats

    async def holds(self, **wanted: Any) -> bool:
        stats = await self.publisher()
        return all(stats[name] == value for name, value in wanted.items())

    async def sent_more_than(self, count: int) -> bool:
        return int((await self.publisher())["sent"]) > count


async def test_kafka_stopped_under_load_fails_no_request_and_loses_no_queued_event() -> None:
    port = free_port()
    model = f"outage-{uuid.uuid4().hex[:8]}"
    first, second = EmbeddedBroker(port=port), EmbeddedBroker(port=port)
    auth = {"api_keys": [{"name": "ops", "sha256": hash_api_key(ADMIN_KEY)}]}
    gateway = {
        "routes": [
            {
                "name": "iris",
                "prefix": "/models/iris",
                "model": model,
                "features": ["a", "b"],
                "upstreams": [],
            }
        ],
        "publish": PUBLISH,
        "auth": auth,
        "admin_identities": ["key:ops"],
    }
    try:
        await asyncio.to_thread(first.start)
        async with model_servers(2) as servers:
            gateway["routes"][0]["upstreams"] = [server.url for server in servers]
            async with (
                running_gateway(gateway, kafka={"bootstrap": first.bootstrap}) as base,
                aiohttp.ClientSession() as session,
            ):
                admin = Admin(session, base)

                async def send(client: aiohttp.ClientSession, i: int) -> Answer:
                    body = {"instances": [[i, 0.5]]}
                    headers = {"X-Request-ID": f"{model}-{i}"}
                    return await request(client, "POST", f"{base}/models/iris/x", body, headers)

                async with Load(send, workers=16, pause=0.05) as load:
                    await load.answered(200, "a load with the broker up")
                    await until(lambda: admin.sent_more_than(0), "rows acknowledged")

                    await asyncio.to_thread(first.stop)  # its rows go with it
                    await until(lambda: admin.holds(connected=False), "the outage noticed")
                    outage = await admin.publisher()
                    await load.answered(len(load.answers) + 300, "300 requests, Kafka down")
                    during = await admin.publisher()

                    await asyncio.to_thread(second.start)  # the same port, empty
                    await until(lambda: admin.sent_more_than(during["sent"]), "sending again")
                    await load.answered(len(load.answers) + 200, "200 more, Kafka back")
                answers = load.answers
                total = len(answers)
                await until(lambda: admin.holds(sent=total, queued=0, in_flight=0), "all sent")
                final = await admin.publisher()
        ids = await request_ids(second.bootstrap, model, total - outage["sent"])
        partitions = (await describe_topics(second.bootstrap, [Topics.TRAFFIC]))[Topics.TRAFFIC]
    finally:
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(second.stop)

    assert Counter(answer.status for answer in answers) == Counter({200: total})
    assert {answer.request_id for answer in answers} == {f"{model}-{i}" for i in range(total)}
    assert during["sent"] == outage["sent"]  # nothing reached Kafka meanwhile...
    assert during["queued"] + during["in_flight"] >= 300  # ...it waited in the queue
    assert (final["dropped"], final["invalid"]) == (0, 0)
    assert final["send_errors"] >= 1
    # every row the first broker did not acknowledge is on the second one
    unacknowledged = total - outage["sent"]
    assert len(set(ids)) == unacknowledged
    assert set(ids) <= {f"{model}-{i}" for i in range(total)}
    assert partitions.partitions == 3  # created again by the publisher, as configured


async def request_ids(bootstrap: str, model: str, expected: int) -> list[str]:
    """The request ids of ``model``'s rows on flowops.traffic, once ``expected`` distinct
    ones have arrived (read from the beginning: no end offsets asked for)."""
    consumer = AIOKafkaConsumer(
        Topics.TRAFFIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[str] = []
    try:
        for _ in range(int(READ_WAIT / 0.5)):
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            values = [m.value for part in batches.values() for m in part if m.key == model.encode()]
            decoded = decode_traffic_many(values)
            assert decoded.errors == []
            found += [rid for batch in decoded.batches for rid in batch.request_ids]
            if len(set(found)) >= expected:
                break
    finally:
        await consumer.stop()
    return found
