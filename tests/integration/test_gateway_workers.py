"""``flowops gateway`` with ``workers: 2`` as a real process: two workers share the port,
the rate limit holds across them (in Redis, and in memory the workers share), either
worker's ``/metrics`` counts the whole gateway, SIGTERM stops them all, and a
memory-store limit is refused at start-up; both workers terminate TLS."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer
from tls_certs import Authority

from flowops.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def _config(
    tmp_path: Path, upstream_port: int, kafka: str | None = None, **route: Any
) -> tuple[Path, int]:
    port = free_port()
    config = tmp_path / "flowops.yaml"
    settings = {
        "kafka": {"bootstrap": kafka or f"127.0.0.1:{free_port()}"},  # none: events queue
        "gateway": {
            "listen": f"127.0.0.1:{port}",
            "workers": 2,
            "routes": [
                {
                    "name": "iris",
                    "prefix": "/models/iris",
                    "upstreams": [f"http://127.0.0.1:{upstream_port}"],
                    **route,
                }
            ],
        },
    }
    config.write_text(yaml.safe_dump(settings))
    return config, port


@pytest.fixture
def upstream() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _ONE_SERVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield port
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(STOP_TIMEOUT)
        proc.communicate()


def _start(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowops", "gateway", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _request(port: int, method: str, path: str) -> tuple[int, bytes]:
    """One request on a connection of its own: the kernel picks the worker."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=b'{"instances": [[1]]}' if method == "POST" else None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_up(port: int, gateway: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert gateway.poll() is None, gateway.communicate()[1]
        try:
            if _request(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the gateway did not answer /readyz"
        time.sleep(0.2)


def _stop(gateway: subprocess.Popen[str]) -> tuple[int, str]:
    if gateway.poll() is None:
        os.kill(gateway.pid, signal.SIGTERM)
    code = gateway.wait(STOP_TIMEOUT)
    return code, gateway.communicate()[1]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def test_two_workers_serve_the_port_and_sigterm_stops_them_all(
    tmp_path: Path, upstream: int
) -> None:
    config, port = _config(tmp_path, upstream)
    gateway = _start(config)
    try:
        _wait_up(port, gateway)
        workers = _children(gateway.pid)
        pids = set()
        for _ in range(200):  # each on a new connection; all on one worker: p = 2**-199
            status, body = _request(port, "GET", "/healthz")
            assert status == 200
            pids.add(json.loads(body)["pid"])
            if len(pids) == 2:
                break
        statuses = {_request(port, "POST", "/models/iris/invocations")[0] for _ in range(10)}
    finally:
        code, err = _stop(gateway)
    assert len(workers) == 2
    assert pids == workers
    assert statuses == {200}
    assert code == 0, err
    assert "2 workers: pids" in err
    assert err.count("stopping: finishing requests in flight") == 3  # the parent and each
    assert "Traceback" not in err
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


@pytest.mark.parametrize("store", ["redis", "shared"])
def test_a_limit_holds_across_the_workers(tmp_path: Path, upstream: int, store: str) -> None:
    with contextlib.ExitStack() as stack:
        limit: dict[str, Any] = {"rate": 0.001, "burst": 5, "key": "client", "store": store}
        if store == "redis":
            limit["redis_url"] = stack.enter_context(RedisServer(tmp_path)).url
        config, port = _config(tmp_path, upstream, rate_limit=limit)
        gateway = _start(config)
        try:
            _wait_up(port, gateway)
            pids = set()
            statuses = []
            for _ in range(40):  # each on a new connection, so on both workers
                pids.add(json.loads(_request(port, "GET", "/healthz")[1])["pid"])
                statuses.append(_request(port, "POST", "/models/iris/invocations")[0])
        finally:
            code, err = _stop(gateway)
    assert len(pids) == 2
    assert statuses.count(200) == 5  # one bucket for both workers: not 5 each
    assert statuses.count(429) == 35
    assert code == 0, err


PUBLISHED = ("flowops_gateway_published_total", frozenset())


def _scrape(port: int) -> tuple[int, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """The pid that answered ``/metrics`` on a new connection, and its samples."""
    pid = json.loads(_request(port, "GET", "/healthz")[1])["pid"]  # most likely the same one
    status, body = _request(port, "GET", "/metrics")
    assert status == 200
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    return pid, samples


def test_every_worker_serves_the_whole_gateways_metrics(tmp_path: Path, upstream: int) -> None:
    """Requests land on both workers; each scrape, whichever worker answers, counts all."""
    answered, scrapes = set(), []
    with EmbeddedBroker(port=free_port(), log=tmp_path / "tansu.log") as broker:
        config, port = _config(tmp_path, upstream, kafka=broker.bootstrap)
        gateway = _start(config, env={**os.environ, "TMPDIR": str(tmp_path)})
        try:
            _wait_up(port, gateway)
            (directory,) = tmp_path.glob("flowops-gateway-metrics-*")
            for _ in range(60):  # each on a new connection, so on both workers
                answered.add(json.loads(_request(port, "GET", "/healthz")[1])["pid"])
                assert _request(port, "POST", "/models/iris/invocations")[0] == 200
            deadline = time.monotonic() + START_TIMEOUT  # each worker's publisher delivers,
            while _scrape(port)[1].get(PUBLISHED, 0) < 60:  # then writes it within a second
                assert time.monotonic() < deadline, "the traffic never reached Kafka"
                time.sleep(0.2)
            time.sleep(1.5)  # and once more, after its last delivery
            scrapes = [_scrape(port) for _ in range(20)]
        finally:
            code, err = _stop(gateway)
    assert code == 0, err
    assert len(answered) == 2
    assert len({pid for pid, _ in scrapes}) == 2, "one worker answered every scrape"
    upstream_url = f"http://127.0.0.1:{upstream}"
    ok = frozenset({("route", "iris"), ("status", "200"), ("upstream", upstream_url)})
    for _, samples in scrapes:
        assert samples["flowops_gateway_requests_total", ok] == 60
        route = frozenset({("route", "iris")})
        assert samples["flowops_gateway_request_duration_seconds_count", route] == 60
        assert samples[PUBLISHED] == 60
        assert samples["flowops_gateway_publish_queue_depth", frozenset()] == 0
        assert samples["flowops_gateway_publish_dropped_total", frozenset()] == 0
        where = frozenset({("route", "iris"), ("upstream", upstream_url)})
        assert samples["flowops_gateway_upstream_available", where] == 1
        assert samples["flowops_gateway_breaker_state", where | {("state", "closed")}] == 1
        assert samples["flowops_gateway_breaker_state", where | {("state", "open")}] == 0
    assert not directory.exists()


def test_a_memory_limit_with_two_workers_is_refused_at_start(tmp_path: Path, upstream: int) -> None:
    config, _ = _config(tmp_path, upstream, rate_limit={"rate": 10})
    gateway = _start(config)
    code = gateway.wait(STOP_TIMEOUT)
    err = gateway.communicate()[1]
    assert code == 2
    assert "gateway.routes[0].rate_limit.store" in err
    assert "gateway.workers is 2" in err
    assert "store: shared" in err
    assert "store: redis" in err
    assert "Traceback" not in err


def test_a_worker_that_dies_stops_the_gateway_with_an_error(tmp_path: Path, upstream: int) -> None:
    config, port = _config(tmp_path, upstream)
    gateway = _start(config)
    try:
        _wait_up(port, gateway)
        victim = min(_children(gateway.pid))
        os.kill(victim, signal.SIGKILL)
        code = gateway.wait(STOP_TIMEOUT)
    finally:
        _, err = _stop(gateway)
    assert code == 1
    assert f"(pid {victim}) was killed by SIGKILL; the others were stopped" in err
    assert "Traceback" not in err
    assert not _children(gateway.pid)


_ONE_SERVER = """
import asyncio, signal, sys
from aiohttp import web
async def predict(request):
    return web.json_response({"predictions": [1]})
async def main(port):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", predict)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()
asyncio.run(main(int(sys.argv[1])))
"""


def test_two_workers_terminate_tls_and_say_https(tmp_path: Path, upstream: int) -> None:
    """Each worker makes its own TLS context from ``gateway.tls``: both answer HTTPS,
    verified against the test's CA, and the start-up line names the scheme."""
    ca = Authority(tmp_path)
    server = ca.issue("gateway", hosts=["127.0.0.1"])
    config, port = _config(tmp_path, upstream)
    settings = yaml.safe_load(config.read_text())
    settings["gateway"]["tls"] = {"cert_file": str(server.cert), "key_file": str(server.key)}
    config.write_text(yaml.safe_dump(settings))
    context = ssl.create_default_context(cafile=ca.cert)
    gateway = _start(config)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        pids: set[int] = set()
        while len(pids) < 2 and time.monotonic() < deadline:  # new connections, either worker
            assert gateway.poll() is None
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
            try:
                connection.request("GET", "/healthz")
                pids.add(json.loads(connection.getresponse().read())["pid"])
            except OSError:
                time.sleep(0.2)  # not up yet
            finally:
                connection.close()
        workers = _children(gateway.pid)
    finally:
        code, err = _stop(gateway)
    assert pids == workers
    assert len(workers) == 2
    assert f"listening on https://127.0.0.1:{port}" in err
    assert code == 0, err
