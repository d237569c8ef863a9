"""``flowops up`` as a process: the embedded broker, a worker, the gateway, the demo
model server, the demo's traffic through the gateway, Ctrl-C.

Each run gets free ports and a workdir of its own; every ``flowops up`` started is
stopped by its pid (SIGINT, then SIGKILL), and its children's pids, read from its
progress lines, must be gone afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from stream_worker_process import read_topic

from flowops.broker import free_port
from flowops.events import Topics
from flowops.up import DEMO_PREFIX

pytestmark = pytest.mark.integration

START_TIMEOUT = 120.0  # broker, topics, a worker joining its group
STOP_TIMEOUT = 90.0  # gateway (20 s), worker (20 s) and broker (5 s) bounded stops, with room
_PID = re.compile(
    r"(broker: ready|worker: started|gateway: started|demo model: started|monitor: started)"
    r" \(pid (\d+)\)"
)
_GATEWAY = re.compile(r"gateway: ready on (http://[0-9.]+:\d+) ")
_MONITOR = re.compile(r"monitor: ready, (http://[0-9.]+:\d+)/status ")


@dataclass
class Up:
    """A running ``flowops up`` with its stdout lines (alerts) and stderr (progress)."""

    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            reader = threading.Thread(target=_collect, args=(stream, lines), daemon=True)
            reader.start()
            self.readers.append(reader)

    def close(self) -> None:
        """Stop it if it runs; read its output to the end and close the pipes."""
        if self.proc.poll() is None:
            self.stop()
        for reader in self.readers:
            reader.join(STOP_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.stdout)]

    def progress(self) -> str:
        return "".join(self.stderr)

    def children(self) -> dict[str, int]:
        """The pids ``flowops up`` said it started: broker, worker, gateway, demo model."""
        return {m.group(1).split(":")[0]: int(m.group(2)) for m in _PID.finditer(self.progress())}

    def gateway(self) -> str:
        """The gateway's URL, from its progress line."""
        found = _GATEWAY.search(self.progress())
        assert found, self.log()
        return found.group(1)

    def monitor(self) -> str:
        """The monitoring agent's URL, from its progress line."""
        found = _MONITOR.search(self.progress())
        assert found, self.log()
        return found.group(1)

    def wait_for(self, what: str, probe: Any, timeout: float = START_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"flowops up exited while waiting for {what}:\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def stop(self) -> int:
        """SIGINT, as Ctrl-C; SIGKILL if it has not stopped in time."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
            raise AssertionError(f"flowops up did not stop on SIGINT:\n{self.log()}") from None

    def log(self) -> str:
        stdout = "".join(self.stdout)[-2000:]
        return f"--- stderr:\n{self.progress()[-4000:]}\n--- stdout:\n{stdout}"


def _collect(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@pytest.fixture
def run_up(tmp_path: Path) -> Iterator[Any]:
    """Start ``flowops up`` with arguments; every one started is stopped at teardown."""
    started: list[Up] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Up:
        command = [sys.executable, "-m", "flowops", "up", "-o", "json"]
        command += ["--metrics-port", str(free_port()), "--monitor-port", str(free_port())]
        command += ["--workdir", str(tmp_path / "up")]
        up = Up(
            subprocess.Popen(
                [*command, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        )
        started.append(up)
        return up

    yield start
    for up in started:
        up.close()


def income_alerts(up: Up) -> list[dict[str, Any]]:
    return [a for a in up.alerts() if a["feature"] == "income" and a["test"] in ("ks", "psi")]


def assert_gone(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"the {name} (pid {pid}) is still running"


def metrics(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A /metrics page's samples by name and labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def predict(gateway: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{gateway}{DEMO_PREFIX}/invocations",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def traffic_sources(bootstrap: str, enough: int = 50) -> list[str]:
    """The ``ce_source`` of the first ``enough`` messages of flowops.traffic."""
    import asyncio

    def source(message: Any) -> str:
        return dict(message.headers)["ce_source"].decode()  # type: ignore[no-any-return]

    return asyncio.run(
        read_topic(bootstrap, Topics.TRAFFIC, source, lambda found: len(found) >= enough, settle=0)
    )


def test_demo_traffic_goes_through_the_gateway_to_alerts_and_ctrl_c_stops_all(
    run_up: Any,
) -> None:
    broker = free_port()
    up = run_up("--demo", "--broker-port", str(broker), "--gateway-port", str(free_port()))
    up.wait_for("the demo's traffic", lambda: "demo: sending" in up.progress())
    pids = up.children()
    assert set(pids) == {"broker", "worker", "demo model", "gateway", "monitor"}
    gateway = up.gateway()
    row = {"age": 35, "income": 48_000, "debt_ratio": 0.3, "region": "north", "channel": "web"}
    answer = predict(gateway, {"dataframe_records": [row, row]})
    assert len(answer["predictions"]) == 2  # client -> gateway -> model server
    # ... -> worker -> alert. Wait for the detection after the shift (ADWIN is often first)
    # and a KS alert, not just the first income alert: a window before the shift may alert
    # by chance, as a test at level alpha does.
    found = up.wait_for(
        "drift in income after the shift and a KS alert",
        lambda: (
            "drift in income detected" in up.progress()
            and "ks" in {a["test"] for a in income_alerts(up)}
            and income_alerts(up)
        ),
    )

    seen = metrics(gateway)
    answered = {
        dict(labels)["upstream"]: value
        for (name, labels), value in seen.items()
        if name == "flowops_gateway_requests_total" and ("route", "credit-demo") in labels
    }
    (model, requests), *others = answered.items()
    assert not others  # one upstream: the demo model server
    assert requests > 10
    assert model.startswith("http://127.0.0.1:")
    assert seen["flowops_gateway_published_total", frozenset()] > 1_000  # gateway -> Kafka
    assert set(traffic_sources(f"127.0.0.1:{broker}")) == {"/flowops/gateway"}
    status = up.wait_for("a healthy round of the monitor", lambda: healthy_status(up.monitor()))
    probed = {(check["check"], check["target"]) for check in status["checks"]}
    assert {
        ("kafka.metadata", f"127.0.0.1:{broker}"),
        ("service.ready", "worker"),
        ("service.ready", "gateway"),
        ("model_server.ready", "credit-demo"),
    } <= probed

    assert up.stop() == 0
    assert_gone(pids)
    assert {a["test"] for a in income_alerts(up)} >= {"ks"}
    assert all(a["model"] == "credit-demo" and a["reference"] == "profile" for a in found)
    progress = up.progress()
    assert "demo: drift in income detected" in progress
    assert "traffic events published" in progress
    assert f"demo: try it: curl -s {gateway}{DEMO_PREFIX}/invocations" in progress
    for child in ("gateway", "demo model", "stream worker"):
        assert f"{child}: stopped\n" in progress  # on SIGTERM, not killed
    assert progress.index("gateway: stopped") < progress.index("stream worker: stopped")
    assert progress.rstrip().splitlines()[-1].startswith("flowops up: ")
    assert " demo rows sent through the gateway; " in progress
    assert "Traceback" not in progress


def test_up_on_an_existing_kafka_stops_after_its_duration(run_up: Any, broker: str) -> None:
    app = f"up-{uuid.uuid4().hex[:8]}"  # a group of its own on the shared broker
    up = run_up(
        "--demo",
        "--bootstrap",
        broker,
        "--gateway-port",
        str(free_port()),
        "--duration",
        "25",
        "--shift-after",
        "3",
        env={"FLOWOPS_STREAMS__APP_ID": app},
    )
    assert up.proc.wait(START_TIMEOUT) == 0, up.log()
    progress = up.progress()
    assert f"kafka: using {broker} (broker.embedded is false)" in progress
    assert "broker: ready" not in progress
    assert income_alerts(up), up.log()
    assert set(up.children()) == {"worker", "demo model", "gateway", "monitor"}
    assert_gone(up.children())


def test_children_that_die_are_restarted_and_the_brokers_death_ends_up(
    run_up: Any, tmp_path: Path
) -> None:
    config = tmp_path / "flowops.yaml"
    route = {
        "name": "iris",
        "prefix": "/models/iris",
        "upstreams": [f"http://127.0.0.1:{free_port()}"],
    }
    config.write_text(orjson.dumps({"gateway": {"routes": [route]}}).decode())  # JSON is YAML
    gateway_port = free_port()
    up = run_up(
        "--config",
        str(config),
        "--broker-port",
        str(free_port()),
        "--gateway-port",
        str(gateway_port),
    )
    up.wait_for("the monitor", lambda: "monitor: ready" in up.progress())
    assert f"gateway: ready on http://127.0.0.1:{gateway_port} (routes: iris /models/iris)" in (
        up.progress()
    )
    pids = up.children()
    assert set(pids) == {"broker", "worker", "gateway", "monitor"}  # no demo model

    os.kill(pids["worker"], signal.SIGKILL)
    os.kill(pids["gateway"], signal.SIGKILL)
    worker = up.wait_for("the worker's restart", lambda: _restarted(up, "stream worker"))
    gateway = up.wait_for("the gateway's restart", lambda: _restarted(up, "gateway"))
    assert "stream worker: died (killed by SIGKILL); restarting in 1 s" in up.progress()
    assert "gateway: died (killed by SIGKILL); restarting in 1 s" in up.progress()
    assert worker != pids["worker"]
    assert gateway != pids["gateway"]
    up.wait_for("the new gateway", lambda: _healthy(f"http://127.0.0.1:{gateway_port}/healthz"))
    assert up.proc.poll() is None, "up goes on while its children are restarted"

    os.kill(pids["broker"], signal.SIGKILL)
    assert up.proc.wait(STOP_TIMEOUT) == 3
    assert_gone({**pids, "new worker": worker, "new gateway": gateway})
    progress = up.progress()
    assert "flowops: error: broker: the embedded broker exited" in progress
    # a child that needs the broker may end on its own once the broker is gone, before
    # `up` stops it, or hang in its shutdown without it: each ending is said as what it was
    ended = r"(stopped|stopped \(killed: it did not stop in .*\)|was not running \(.*\))"
    for name in ("stream worker", "gateway"):
        assert re.search(rf"{name}: {ended}$", progress, re.M), name
    assert "Traceback" not in progress


def _restarted(up: Up, name: str) -> int | None:
    found = re.search(rf"{name}: restarted \(pid (\d+)\)", up.progress())
    return int(found.group(1)) if found else None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_a_taken_broker_port_is_a_clear_error(run_up: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = run_up("--broker-port", str(port))
        assert up.proc.wait(STOP_TIMEOUT) == 2  # checked with the other ports, before any start
    assert f"already in use (an earlier `flowops up` still running?): {port} (broker.port" in (
        up.progress()
    )
    assert "--broker-port" in up.progress()
    assert up.children() == {}


def healthy_status(monitor: str) -> dict[str, Any] | None:
    """The agent's /status when its last round was healthy (200), else None."""
    try:
        with urllib.request.urlopen(f"{monitor}/status", timeout=5) as response:
            return dict(json.loads(response.read()))
    except OSError:  # 503 (a check failed, or no round yet) or not serving yet
        return None
