"""``flowops gateway --config FILE`` as a process, with the issue's minimal file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from flowops.broker import free_port

pytestmark = pytest.mark.integration


def test_flowops_gateway_runs_the_minimal_config_as_written(tmp_path: Path, broker: str) -> None:
    upstream = subprocess.Popen(
        [sys.executable, "-c", _ONE_SERVER, str(free_port_pair := free_port())],
        stdout=subprocess.PIPE,
        text=True,
    )
    port = free_port()
    config = tmp_path / "flowops.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap": broker},
                "gateway": {
                    "listen": f"127.0.0.1:{port}",
                    "routes": [
                        {
                            "name": "iris",
                            "prefix": "/models/iris",
                            "upstreams": [f"http://127.0.0.1:{free_port_pair}"],
                            "balancing": "round_robin",
                            "retryable": True,
                        }
                    ],
                },
            }
        )
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "flowops", "gateway", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert upstream.stdout is not None
        assert upstream.stdout.readline().strip() == "ready"
        status = _get_when_up(f"http://127.0.0.1:{port}/models/iris/invocations")
        assert status == 200
    finally:
        for proc in (gateway, upstream):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT)
        codes = [proc.wait(30) for proc in (gateway, upstream)]
        out, err = gateway.communicate()
        upstream.communicate()
    assert codes[0] == 0, err
    assert '"route":"iris"' in out  # the access log line, on stdout
    assert "listening on http://127.0.0.1" in err
    assert "Traceback" not in err


def _get_when_up(url: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, data=b'{"instances": [[1]]}'), timeout=5
            ) as r:
                return int(r.status)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_ONE_SERVER = """
import asyncio, signal, sys
from aiohttp import web
async def predict(request):
    return web.json_response({"predictions": [1]})
async def main(port):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", predict)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()
asyncio.run(main(int(sys.argv[1])))
"""


def test_a_healthy_upstream_is_logged_at_info_not_warning(tmp_path: Path, broker: str) -> None:
    """`flowops gateway` with health checks on: the line saying an upstream is healthy is
    news, not a warning (it was logged at WARNING)."""
    upstream_port, port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-c", _ONE_SERVER, str(upstream_port)], stdout=subprocess.PIPE, text=True
    )
    route = {
        "name": "iris",
        "prefix": "/models/iris",
        "upstreams": [f"http://127.0.0.1:{upstream_port}"],
        "health_check": {"path": "/ping", "interval": 0.2, "healthy_threshold": 1},
    }
    config = tmp_path / "flowops.yaml"
    gateway_section = {"listen": f"127.0.0.1:{port}", "routes": [route]}
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap": broker}, "gateway": gateway_section}))
    log = tmp_path / "gateway.err"
    with log.open("w") as err:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "flowops", "gateway", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=err, text=True,
        )  # fmt: skip
    try:
        assert upstream.stdout is not None
        assert upstream.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while "healthy (HTTP 200)" not in log.read_text():
            assert gateway.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        for proc in (gateway, upstream):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT)
        for proc in (gateway, upstream):
            proc.wait(30)
        upstream.communicate()
    (line,) = [line for line in log.read_text().splitlines() if "healthy (HTTP 200)" in line]
    assert "[INFO]" in line, line
    assert "upstream http://127.0.0.1" in line
