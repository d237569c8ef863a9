"""Every kind of Kafka client FlowOps makes, against a broker reached over TLS, and
against one that requires SASL: topic creation (admin), the event producer
(``drift baseline --publish``), the consumer of ``drift watch``, the gateway's traffic
sink, the monitor's Kafka probe, the stream worker's producer and state reader, and all
of them at once under ``flowops up --demo --bootstrap`` (the worker's Faust app and
traffic consumer included).

What was used, and why: Tansu 0.6 (the embedded broker) does not complete a TLS
handshake with ``--cert`` (it reads the ClientHello as a Kafka frame), so TLS is a
TLS-terminating proxy in front of Tansu (tests/integration/tls_proxy.py), Tansu
advertising the proxy's port. Tansu's ``--authentication`` requires SCRAM of every
client, but its users live in the storage engine and ``tansu user create`` must itself
authenticate, so a memory-storage Tansu can have no user: SASL is tested for what it
can show, a refused login (SCRAM and PLAIN), which must be one line naming
``kafka.sasl_password_file`` and exit 3.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import uuid
from asyncio import sslproto
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from helpers import until

from flowops.broker import EmbeddedBroker, free_port
from flowops.config import KafkaSettings, load_settings
from flowops.errors import BrokerError
from flowops.events import (
    DriftAlert,
    EventProducer,
    TopicSpec,
    TrafficRow,
    describe_topics,
    ensure_topics,
)
from flowops.gateway.publisher import KafkaTrafficSink, PublishSettings
from flowops.kafka_security import client_options
from flowops.monitor.probes.kafka import KafkaProbe, KafkaProbeSettings
from streams.publish import Publisher
from streams.state import StateReader, ensure_state_topic
from tests.integration.tls_proxy import Pki, TlsProxy, make_pki

pytestmark = pytest.mark.integration

CLI_TIMEOUT = 120.0
READY_TIMEOUT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _behind_proxy(pki: Pki, *, authentication: bool) -> Iterator[str]:
    proxy_port, broker_port = free_port(), free_port()
    broker = EmbeddedBroker(broker_port, advertised_port=proxy_port, authentication=authentication)
    broker.start()
    try:
        with TlsProxy(proxy_port, broker_port, pki).running() as proxy:
            yield proxy.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[str]:
    """Tansu behind a TLS proxy: the bootstrap address speaks TLS only."""
    yield from _behind_proxy(pki, authentication=False)


@pytest.fixture(scope="module")
def sasl_broker(pki: Pki) -> Iterator[str]:
    """Tansu requiring SASL (SCRAM), behind a TLS proxy: SASL_SSL."""
    yield from _behind_proxy(pki, authentication=True)


def tls(bootstrap: str, pki: Pki, **more: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, security_protocol="SSL", ssl_cafile=pki.ca, **more)


def sasl(bootstrap: str, pki: Pki, tmp_path: Path, mechanism: str) -> KafkaSettings:
    password = tmp_path / "kafka-password"
    password.write_text("not-the-password\n")
    return KafkaSettings(
        bootstrap=bootstrap,
        security_protocol="SASL_SSL",
        ssl_cafile=pki.ca,
        sasl_mechanism=mechanism,  # type: ignore[arg-type]
        sasl_username="flowops",
        sasl_password_file=password,
    )


def env_of(kafka: KafkaSettings) -> dict[str, str]:
    """The FLOWOPS_KAFKA__* variables of ``kafka``, over an environment without FLOWOPS_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWOPS_")}
    for name, value in kafka.model_dump(exclude_none=True).items():
        env[f"FLOWOPS_KAFKA__{name.upper()}"] = str(value)
    return env


def flowops(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowops", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT,
    )  # fmt: skip


def the_error(stderr: str) -> str:
    """The one error line of a command's stderr; the lines before it are its progress
    (``flowops: profiled ...``), never a traceback or a Kafka client's log line."""
    *progress, last = stderr.strip().splitlines()
    assert last.startswith("flowops: error: "), stderr
    assert all(line.startswith("flowops: ") and "error" not in line for line in progress), stderr
    return last


def training_data(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    path.write_text("age,region\n" + "".join(f"{20 + i % 40},r{i % 3}\n" for i in range(300)))
    return path


# -- TLS: each client kind works --------------------------------------------------------


@pytest_asyncio.fixture(autouse=True)
async def _tls_shutdowns_finish() -> AsyncIterator[None]:
    """aiokafka closes a TLS connection without awaiting its TLS shutdown (the peer's
    close_notify): a test's loop closed before that arrives leaves the socket to the
    collector, and pytest fails whichever later test the collector runs in on the
    ResourceWarning. So every TLS connection the test's loop began to close finishes
    closing before the loop does. A connection never closed still fails the run."""
    yield
    loop = asyncio.get_running_loop()
    await until(lambda: not _tls_closing(loop), "the test's TLS connections to finish closing")


def _tls_closing(loop: asyncio.AbstractEventLoop) -> list[sslproto.SSLProtocol]:
    return [
        found
        for found in gc.get_objects()
        if isinstance(found, sslproto.SSLProtocol)
        and found._loop is loop
        and found._transport is not None  # the TCP connection under it is still open
        and found._app_transport is not None
        and found._app_transport.is_closing()
    ]


@pytest.mark.asyncio
async def test_topics_are_created_and_described_over_tls(tls_broker: str, pki: Pki) -> None:
    topic = unique("tls-admin")
    kafka = tls(tls_broker, pki)
    assert await ensure_topics(kafka, 2, topics=[TopicSpec(topic)]) == [topic]
    assert (await describe_topics(kafka, [topic]))[topic].partitions == 2


@pytest.mark.asyncio
async def test_event_producer_publishes_over_tls_and_with_mutual_tls(
    tls_broker: str, pki: Pki
) -> None:
    kafka = tls(tls_broker, pki, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key)
    topic, event_id = unique("tls-events"), unique("id")
    await ensure_topics(kafka, 1, topics=[TopicSpec(topic)])
    async with EventProducer.from_settings(kafka, source="/tests/tls") as producer:
        await producer.send_message(topic, b"k", b"{}", "test", event_id)
        await producer.flush()
    assert [value for _, value in await read_back(kafka, topic, 1)] == [b"{}"]


async def read_back(kafka: KafkaSettings, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    """The first ``count`` messages of ``topic`` (key, value), read over ``kafka``'s
    security settings: what the broker holds, not what a producer said it sent."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, auto_offset_reset="earliest", enable_auto_commit=False, **client_options(kafka)
    )
    await consumer.start()
    try:
        found: list[tuple[bytes, bytes]] = []
        async with asyncio.timeout(READY_TIMEOUT):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend((r.key, r.value) for r in records)
        return found
    finally:
        await consumer.stop()


def test_baseline_publish_and_watch_over_tls(tls_broker: str, pki: Pki, tmp_path: Path) -> None:
    """`drift watch` (a consumer) sees the profile's model's alert; `drift baseline
    --publish` (admin + producer) exits 0: both configured by FLOWOPS_KAFKA__* alone."""
    env = env_of(tls(tls_broker, pki))
    model = unique("tls-model")
    done = flowops(
        "drift", "baseline", "--data", str(training_data(tmp_path)), "--model", model,
        "--publish", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    watched = asyncio.run(_watch_one_alert(env, tls(tls_broker, pki), model, tmp_path))
    assert f'"model":"{model}"' in watched.replace(" ", "")


async def _watch_one_alert(env: dict[str, str], kafka: KafkaSettings, model: str, cwd: Path) -> str:
    err = cwd / "watch.err"
    with err.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flowops", "drift", "watch", "-o", "json", "--model", model,
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env, cwd=cwd,
        )  # fmt: skip
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while "watching flowops.drift.alerts" not in err.read_text():
            assert proc.returncode is None, err.read_text()
            assert loop.time() < deadline, err.read_text()
            await asyncio.sleep(0.1)
        async with EventProducer.from_settings(kafka, source="/tests/tls") as producer:
            await producer.publish(_alert(model))
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
        return line.decode()
    finally:
        proc.terminate()
        await proc.wait()


def _alert(model: str) -> DriftAlert:
    return DriftAlert(
        alert_id=unique("alert"),
        model=model,
        version="1",
        feature="age",
        test="psi",
        statistic=0.5,
        pvalue=None,
        reference="profile",
        threshold=0.2,
        severity="critical",
        window_start=1_000.0,
        window_end=1_060.0,
        window_index=0,
        n_reference=300,
        n_current=100,
        detected_at=1_061.0,
    )


@pytest.mark.asyncio
async def test_gateway_traffic_sink_opens_over_tls(tls_broker: str, pki: Pki) -> None:
    kafka, topic = tls(tls_broker, pki), unique("tls-traffic")
    sink = KafkaTrafficSink(kafka, PublishSettings(), topic=topic)
    await sink.open()  # creates the topic: the admin client over TLS
    try:
        await sink.send([TrafficRow("iris", "1", "r-tls", 1.0, {"x": 1.0}, 0, 2.0, 200)])
    finally:
        await sink.close()
    [(key, value)] = await read_back(kafka, topic, 1)
    assert key.startswith(b"iris"), key
    assert b"r-tls" in value, value


@pytest.mark.asyncio
async def test_monitor_kafka_probe_passes_over_tls(tls_broker: str, pki: Pki) -> None:
    config = load_settings(overrides={"kafka": tls(tls_broker, pki).model_dump()})
    await ensure_topics(config.kafka)
    probe = KafkaProbe(KafkaProbeSettings(groups={}), config)
    results = await probe.run()
    assert [r.success for r in results] == [True] * len(results), results


@pytest.mark.asyncio
async def test_stream_worker_clients_connect_over_tls(tls_broker: str, pki: Pki) -> None:
    kafka, state = tls(tls_broker, pki), unique("state")
    await ensure_state_topic(kafka, state, 1)
    publisher = Publisher(kafka, source="/tests/tls", consumer=unique("group"))
    reader = StateReader(kafka, state, client_id="tests-tls")
    await publisher.start()
    await reader.start()
    try:
        restored = await reader.read([0], timeout=READY_TIMEOUT)
    finally:
        await reader.stop()
        await publisher.stop()
    assert list(restored) == [0]


# -- wrong credentials: one line naming the setting, exit 3 ----------------------------


@pytest.mark.asyncio
async def test_an_untrusted_certificate_names_kafka_ssl_cafile(tls_broker: str, pki: Pki) -> None:
    kafka = KafkaSettings(bootstrap=tls_broker, security_protocol="SSL", ssl_cafile=pki.other_ca)
    with pytest.raises(BrokerError, match=r"kafka\.ssl_cafile: .*not trusted") as caught:
        await ensure_topics(kafka)
    assert caught.value.exit_code == 3


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_a_refused_password_is_one_line_naming_the_password_file(
    sasl_broker: str, pki: Pki, tmp_path: Path, mechanism: str
) -> None:
    env = env_of(sasl(sasl_broker, pki, tmp_path, mechanism))
    done = flowops(
        "drift", "baseline", "--data", str(training_data(tmp_path)), "--model", "m",
        "--publish", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    line = the_error(done.stderr)
    assert "kafka.sasl_password_file" in line
    assert "refused user 'flowops'" in line


def test_an_untrusted_certificate_from_the_cli_is_one_line_exit_3(
    tls_broker: str, pki: Pki, tmp_path: Path
) -> None:
    env = env_of(KafkaSettings(bootstrap=tls_broker, security_protocol="SSL"))
    env["FLOWOPS_KAFKA__SSL_CAFILE"] = str(pki.other_ca)
    done = flowops(
        "drift", "baseline", "--data", str(training_data(tmp_path)), "--model", "m",
        "--publish", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "kafka.ssl_cafile" in the_error(done.stderr)


@pytest.mark.asyncio
async def test_sasl_refusals_reach_every_client_kind(
    sasl_broker: str, pki: Pki, tmp_path: Path
) -> None:
    kafka = sasl(sasl_broker, pki, tmp_path, "SCRAM-SHA-512")
    refused = r"kafka\.sasl_password_file: the broker refused"
    with pytest.raises(BrokerError, match=refused):
        await ensure_topics(kafka)
    with pytest.raises(BrokerError, match=refused):
        async with EventProducer.from_settings(kafka):
            pass
    sink = KafkaTrafficSink(kafka, PublishSettings(create_topic=False))
    with pytest.raises(BrokerError, match=refused):
        await sink.open()
    config = load_settings(overrides={"kafka": kafka.model_dump()})
    results = await KafkaProbe(KafkaProbeSettings(groups={}), config).run()
    assert not results[0].success
    assert "kafka.sasl_password_file" in results[0].detail


@pytest.mark.asyncio
async def test_plaintext_client_to_a_sasl_broker_names_security_protocol(
    sasl_broker: str, pki: Pki
) -> None:
    with pytest.raises(BrokerError, match=r"kafka\.security_protocol: .*require SASL"):
        await ensure_topics(tls(sasl_broker, pki))


def test_up_runs_the_whole_demo_on_a_tls_cluster(tls_broker: str, pki: Pki, tmp_path: Path) -> None:
    """`flowops up --bootstrap` on a cluster reached over TLS, configured by
    FLOWOPS_KAFKA__* alone: the gateway publishes the demo's traffic, the stream worker
    (its consumer, its state, its Faust app) turns it into alerts, `up` reads them, the
    monitor probes Kafka: every client kind at once."""
    env = env_of(tls(tls_broker, pki))
    done = flowops(
        "up", "--demo", "--duration", "30", "--shift-after", "8", "--bootstrap", tls_broker,
        "--gateway-port", str(free_port()), "--metrics-port", str(free_port()),
        "--monitor-port", str(free_port()), "--workdir", str(tmp_path / "up"),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "traffic events published" in done.stderr
    assert "demo: drift in income detected" in done.stderr
    assert "monitor: ready" in done.stderr
