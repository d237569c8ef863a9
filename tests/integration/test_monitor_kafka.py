"""The Kafka probe against the real broker (Tansu), and the service probe against the real
gateway and a real stream worker.

Kafka: metadata and topics pass; a missing topic is named (and not created by asking);
a consumer group with known committed offsets reports the exact lag, counted from the
high watermark (Tansu's ListOffsets(latest) falls short inside the last batch); a stopped
broker fails every check within the probe's timeout. Services: the gateway's ``/readyz``
passes, then fails with the routes it names once its only upstream fails its health
checks; a stream worker is ready once it has partitions, and the watched group counts it
as a member. Waits are bounded polls; nothing here measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from gateway_servers import ModelServer, running_gateway
from helpers import until
from stream_worker_process import Stack

from flowops.broker import EmbeddedBroker, free_port
from flowops.config import Settings
from flowops.events import TOPICS, Topics, TopicSpec, ensure_topics
from flowops.monitor.checks import TIMEOUT_GRACE, CheckResult
from flowops.monitor.probes.kafka import KafkaProbe, KafkaProbeSettings
from flowops.monitor.probes.service import ServiceProbe, ServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def by_check(results: Any) -> dict[str, CheckResult]:
    return {result.check: result for result in results}


async def run_kafka(bootstrap: str, **settings: Any) -> dict[str, CheckResult]:
    probe = KafkaProbe(KafkaProbeSettings(bootstrap=bootstrap, **settings), Settings())
    async with asyncio.timeout(probe.timeout + TIMEOUT_GRACE):  # the agent's bound on a run
        return by_check(await probe.run())


async def topic_names(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


# -- Kafka -------------------------------------------------------------------------------


async def test_a_healthy_cluster_passes_metadata_and_topics(broker: str) -> None:
    await ensure_topics(broker)

    found = await run_kafka(broker, groups={})

    assert list(found) == ["kafka.metadata", "kafka.topics", "kafka.lag"]
    assert all(result.success for result in found.values()), found
    assert found["kafka.metadata"].values == {"brokers": 1}
    assert found["kafka.topics"].detail == f"all {len(TOPICS)} topic(s) present"
    assert found["kafka.topics"].values == {"missing": 0}


async def test_a_missing_topic_is_named_and_not_created(broker: str) -> None:
    await ensure_topics(broker)
    missing = f"flowops.test-missing-{uuid.uuid4().hex[:8]}"

    found = await run_kafka(broker, topics=[Topics.TRAFFIC, missing], groups={})

    topics = found["kafka.topics"]
    assert not topics.success
    assert topics.detail.startswith(f"missing topic(s): {missing}; ")
    assert topics.values == {"missing": 1}
    assert found["kafka.metadata"].success
    assert missing not in await topic_names(broker)


@pytest_asyncio.fixture
async def lagging_group(broker: str) -> AsyncIterator[tuple[str, str]]:
    """A topic of two partitions and a group 20 behind on it: partition 0 holds 25
    messages (sent as one batch) of which the group committed 10, partition 1 holds 5 and
    the group committed none there."""
    topic, group = f"test-lag-{uuid.uuid4().hex[:8]}", f"test-group-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker, enable_idempotence=False, linger_ms=50)
    await producer.start()
    try:
        sent = [producer.send(topic, b"x", partition=0) for _ in range(25)]
        sent += [producer.send(topic, b"y", partition=1) for _ in range(5)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): 10})
    finally:
        await consumer.stop()
    yield topic, group


async def test_a_group_reports_its_exact_lag(broker: str, lagging_group: tuple[str, str]) -> None:
    topic, group = lagging_group

    found = await run_kafka(broker, topics=[topic], groups={group: [topic]}, lag_threshold=20)

    lag = found["kafka.lag"]
    assert lag.success, lag
    assert lag.values == {"lag_total": 20, f"lag.{group}": 20, f"members.{group}": 0}
    assert lag.detail == f"{group}: 20 behind, 0 member(s)"


async def test_a_group_over_the_threshold_fails_with_advice(
    broker: str, lagging_group: tuple[str, str]
) -> None:
    topic, group = lagging_group

    found = await run_kafka(broker, topics=[topic], groups={group: [topic]}, lag_threshold=19)

    lag = found["kafka.lag"]
    assert not lag.success
    assert lag.detail.startswith(f"{group}: 20 behind, 0 member(s) > 19: no consumer is in")
    assert "`flowops streams worker`" in lag.detail


async def test_a_group_that_never_committed_counts_from_the_log_start(broker: str) -> None:
    topic, group = f"test-fresh-{uuid.uuid4().hex[:8]}", f"test-never-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker, 1, topics=[TopicSpec(topic)])
    producer = AIOKafkaProducer(bootstrap_servers=broker, enable_idempotence=False)
    await producer.start()
    try:
        await asyncio.gather(*[producer.send(topic, b"z") for _ in range(3)])
    finally:
        await producer.stop()

    found = await run_kafka(broker, topics=[topic], groups={group: [topic]}, lag_threshold=2)

    lag = found["kafka.lag"]
    assert not lag.success
    assert lag.values[f"lag.{group}"] == 3
    assert lag.detail.startswith(f"{group}: 3 behind, 0 member(s), no offset committed > 2: ")


async def test_a_group_on_a_missing_topic_fails_the_lag_check(broker: str) -> None:
    missing = f"test-absent-{uuid.uuid4().hex[:8]}"

    found = await run_kafka(broker, topics=[], groups={"g": [missing]})

    assert not found["kafka.lag"].success
    assert missing in found["kafka.lag"].detail
    assert missing not in await topic_names(broker)


async def test_a_stopped_broker_fails_every_check_within_the_timeout() -> None:
    stopped = EmbeddedBroker(port=free_port())
    stopped.start()
    stopped.stop()

    found = await run_kafka(stopped.bootstrap, timeout=3.0)

    assert [result.success for result in found.values()] == [False, False, False]
    assert found["kafka.metadata"].detail.startswith(
        f"cannot reach the Kafka broker at {stopped.bootstrap} ("
    )
    assert found["kafka.topics"].detail == "not checked: kafka.metadata failed"
    assert found["kafka.lag"].detail == "not checked: kafka.metadata failed"


async def test_a_broker_that_never_answers_fails_at_the_timeout() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # accepts the connection, never answers

    port = free_port()
    server = await asyncio.start_server(silent, "127.0.0.1", port)
    try:
        found = await run_kafka(f"127.0.0.1:{port}", timeout=0.5)
    finally:
        server.close()
        for writer in connections:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()

    assert [result.success for result in found.values()] == [False, False, False]
    assert found["kafka.metadata"].detail.startswith(
        f"no answer from Kafka at 127.0.0.1:{port} within 0.5 s: "
    )
    assert found["kafka.lag"].detail == "not checked: kafka.metadata failed"


# -- services ----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_the_gateway_readyz_names_routes_without_upstream(
    session: aiohttp.ClientSession,
) -> None:
    server = ModelServer("m0")
    await server.start()
    checks = {"path": "/health", "interval": 0.1, "timeout": 0.1}
    checks |= {"healthy_threshold": 1, "unhealthy_threshold": 1}
    route = {"name": "iris", "prefix": "/models/iris", "upstreams": [server.url]}
    try:
        gateway = {"routes": [route | {"health_check": checks}], "publish": {"enabled": False}}
        async with running_gateway(gateway) as base:
            probe = ServiceProbe(ServiceSettings(name="gateway", url=f"{base}/readyz"), session)

            async def ready() -> CheckResult | None:
                (result,) = await probe.run()
                return result if result.success else None

            passed = await until(ready, "the probe passes")
            assert (passed.check, passed.target, passed.detail) == (
                "service.ready",
                "gateway",
                "ready (200)",
            )

            server.status = 503  # its /health fails: the route has no upstream left

            async def unready() -> CheckResult | None:
                (result,) = await probe.run()
                return result if not result.success else None

            failed = await until(unready, "the probe fails")
            assert failed.detail == (
                f"not ready: routes_without_upstream: iris (GET {base}/readyz answered 503); "
                "see its log"
            )
    finally:
        await server.stop()


@pytest.fixture
def stack(broker: str, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(broker, tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()


async def test_a_stream_worker_is_ready_with_partitions_and_counts_as_a_member(
    broker: str, stack: Stack, session: aiohttp.ClientSession
) -> None:
    await ensure_topics(broker)
    worker = stack.start(stack.config({}))
    await worker.assigned()
    url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
    probe = ServiceProbe(ServiceSettings(name="worker", url=url, protocol="stream_worker"), session)

    (ready,) = await probe.run()
    kafka = await run_kafka(broker, groups={stack.group: [Topics.TRAFFIC]}, lag_threshold=10**9)

    assert ready.success, ready
    assert ready.values["partitions"] >= 1
    assert ready.detail.startswith("ready: ")
    assert kafka["kafka.lag"].success, kafka["kafka.lag"]
    assert kafka["kafka.lag"].values[f"members.{stack.group}"] == 1

    worker.stop()
    (stopped,) = await probe.run()

    assert not stopped.success
    assert stopped.detail == (
        f"cannot connect to 127.0.0.1:{worker.metrics_port}: connection refused; "
        "is the server running there?"
    )
