"""``flowops monitor`` as a process against real targets: the demo model server (MLflow's
scoring protocol) as a process, the real broker, and a webhook receiver in the test.

``--once`` exits 0 when everything is healthy and 1 when not, printing the issue's JSON
shape; the agent serves /metrics and /status, puts health events on ``flowops.health``,
sends a firing then a resolved alert when the model server goes away and comes back, and
stops cleanly on SIGTERM. Every process is stopped by its pid.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from helpers import until, until_sync
from test_infra_prometheus import Api, process, tool, write_prometheus_config

from flowops.broker import free_port
from flowops.events import HealthEvent, Topics, ensure_topics
from flowops.process import Child

pytestmark = pytest.mark.integration

WAIT = 60.0  # seconds a condition may take at most (a few expected)
FLOWOPS = [sys.executable, "-m", "flowops"]


class ModelProcess:
    """The demo model server as a process on a fixed free port (so it can come back)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "flowops.demo_model", "--port", str(self.port)]
        self.child = Child("model", command, log=tmp_path / "model.log")

    def start(self) -> None:
        self.child.start()
        until_sync(lambda: get(f"{self.url}/ping")[0] == 200, "the model server", timeout=WAIT)

    def stop(self) -> None:
        self.child.stop()


@pytest.fixture
def model(tmp_path: Path) -> Iterator[ModelProcess]:
    server = ModelProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def write_config(path: Path, monitor: dict[str, Any], broker: str | None = None) -> Path:
    config: dict[str, Any] = {"monitor": monitor}
    if broker is not None:
        config["kafka"] = {"bootstrap": broker}
    path.write_text(yaml.safe_dump(config))
    return path


def canary() -> dict[str, Any]:
    row = {"age": 41, "income": 52_000, "debt_ratio": 0.3, "region": "north", "channel": "web"}
    return {"payload": {"dataframe_records": [row, row]}, "expect_shape": [2]}


def test_once_prints_the_checks_and_exits_by_their_health(
    model: ModelProcess, tmp_path: Path
) -> None:
    servers = [{"name": "credit", "url": model.url, "protocol": "mlflow"}]
    config = write_config(tmp_path / "ok.yaml", {"model_servers": servers})
    done = subprocess.run(
        [*FLOWOPS, "monitor", "--once", "-o", "json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["healthy"] is True
    assert found["checks"]
    assert {c["check"] for c in found["checks"]} == {"model_server.ready"}
    for check in found["checks"]:
        assert set(check) >= {"check", "target", "success", "duration_seconds", "detail"}
        assert check["success"] is True

    model.stop()
    done = subprocess.run(
        [*FLOWOPS, "monitor", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "connection refused" in done.stdout
    assert "checks failed" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_bad_monitor_section_names_its_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.yaml", {"model_servers": [{"url": "x"}]})
    done = subprocess.run(
        [*FLOWOPS, "monitor", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "monitor.model_servers.0" in done.stderr
    assert "Traceback" not in done.stderr


class Webhook:
    """A generic webhook receiver (Alertmanager's webhook JSON) on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def receive(request: web.Request) -> web.Response:
            self.received.append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def statuses(self) -> list[str]:
        return [payload["status"] for payload in self.received]


@pytest.mark.asyncio
async def test_the_agent_serves_metrics_sends_events_and_alerts(
    model: ModelProcess, tmp_path: Path, broker: str
) -> None:
    await ensure_topics(broker)
    hook = Webhook()
    await hook.start()
    listen = f"127.0.0.1:{free_port()}"
    name = f"credit-{free_port()}"
    monitor = {
        "listen": listen,
        "interval": 1,
        "model_servers": [
            {"name": name, "url": model.url, "protocol": "mlflow", "timeout": 2, "canary": canary()}
        ],
        "kafka": {"timeout": 5},
        "alerts": {
            "rules": [{"name": "ModelDown", "checks": ["model_server.*"], "for_probes": 2}],
            "webhooks": [{"url": f"http://127.0.0.1:{hook.port}/hook"}],
        },
        "health_events": {"heartbeat": 2},
    }
    config = write_config(tmp_path / "agent.yaml", monitor, broker)
    agent = Child("monitor", [*FLOWOPS, "monitor", "--config", str(config)], log=tmp_path / "m.log")
    agent.start()
    try:
        base = f"http://{listen}"

        def status() -> tuple[int, dict[str, Any]]:
            code, body = get(f"{base}/status")
            return code, json.loads(body) if body else {}

        await until_agent(lambda: status()[0] == 200, "a healthy round", agent)
        text = get(f"{base}/metrics")[1].decode()
        assert f'flowops_probe_success{{check="model_server.canary",target="{name}"}} 1.0' in text
        assert 'flowops_probe_success{check="kafka.metadata"' in text
        assert "flowops_build_info{" in text

        model.stop()  # the model server goes away: 503, a firing alert
        await until_agent(lambda: status()[0] == 503, "a failed round", agent)
        await until_agent(lambda: "firing" in hook.statuses(), "the firing alert", agent)
        model.start()  # and comes back: resolved
        await until_agent(lambda: "resolved" in hook.statuses(), "the resolved alert", agent)
        alert = hook.received[0]["alerts"][0]
        assert alert["labels"]["alertname"] == "ModelDown"
        assert alert["labels"]["target"] == name

        events = await health_events(broker, name)
        assert {event.status for event in events} >= {"up", "down"}
        assert agent.stop() == 0  # SIGTERM: a clean stop
    finally:
        agent.stop()
        await hook.stop()
    assert "Traceback" not in agent.log_tail(200)


async def until_agent(condition: Callable[[], bool], what: str, agent: Child) -> None:
    """Poll in a thread, not blocking the loop (the webhook receiver runs in it); a
    stopped agent fails at once, with its log's tail."""

    async def held() -> bool:
        if await asyncio.to_thread(condition):
            return True
        assert agent.running, f"the agent stopped before {what}:\n{agent.log_tail(40)}"
        return False

    await until(held, what, timeout=WAIT, interval=0.2, detail=lambda: agent.log_tail(40))


async def health_events(broker: str, target: str) -> list[HealthEvent]:
    """The health events of ``target`` on the topic so far."""
    consumer = AIOKafkaConsumer(
        Topics.HEALTH, bootstrap_servers=broker, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[HealthEvent] = []
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and {e.status for e in found} < {"up", "down"}:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    if record.key == target.encode():
                        found.append(HealthEvent.from_json(record.value))
    finally:
        await consumer.stop()
    return found


@pytest.mark.asyncio
async def test_prometheus_scrapes_the_agent(model: ModelProcess, tmp_path: Path) -> None:
    """Debian's prometheus, with infra/prometheus/prometheus.yml, scraping the real agent."""
    listen = f"127.0.0.1:{free_port()}"
    servers = [{"name": "credit", "url": model.url, "protocol": "mlflow"}]
    monitor = {"listen": listen, "interval": 1, "model_servers": servers}
    monitor |= {"health_events": {"enabled": False}, "alerts": {"enabled": False}}
    config = write_config(tmp_path / "agent.yaml", monitor)
    agent = Child("monitor", [*FLOWOPS, "monitor", "--config", str(config)], log=tmp_path / "m.log")
    agent.start()
    prometheus_port = free_port()
    absent = f"127.0.0.1:{free_port()}"  # this test scrapes the agent alone
    scrape = {"flowops-monitor": listen, "flowops-gateway": absent, "flowops-streams": absent}
    prometheus_config = write_prometheus_config(tmp_path, scrape, absent)
    try:
        with process(
            tmp_path / "prometheus.log",
            tool("prometheus"),
            f"--config.file={prometheus_config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ) as log:
            async with aiohttp.ClientSession() as session:
                api = Api(session, f"http://127.0.0.1:{prometheus_port}", [log])
                query = 'flowops_probe_success{job="flowops-monitor",check="model_server.ready"}'

                async def scraped(api: Api) -> list[dict[str, Any]]:
                    return [r for r in await api.query(query) if r["value"][1] == "1"]

                (found,) = await api.until("the agent's probe scraped", scraped)
                assert found["metric"]["target"] == "credit"
                assert found["metric"]["service"] == "monitor"
                assert await api.query('flowops_build_info{job="flowops-monitor"}')
    finally:
        assert agent.stop() == 0
