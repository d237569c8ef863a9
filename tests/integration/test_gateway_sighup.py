"""SIGHUP reloads the routes of a running ``flowops gateway`` (a real process, one
worker and two): the config file is read again, checked, and its routes served from
the next request on; a bad file keeps the routes as they were and says why in one line.
And :meth:`Gateway.reload_routes` in process, for the state it keeps."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import until_sync

from flowops.broker import free_port
from flowops.config import Settings, load_settings
from flowops.errors import ConfigError
from flowops.gateway.app import Gateway

pytestmark = pytest.mark.integration

WAIT = 60.0


@pytest.fixture
def upstream() -> Iterator[int]:
    """Python's own HTTP server: a directory listing (200) for any GET of ``/``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until_sync(lambda: _status(port, "/") == 200, "the upstream's start")
        yield port
    finally:
        proc.terminate()
        proc.wait(WAIT)


def write_config(path: Path, port: int, upstream: int, prefixes: list[str], workers: int) -> None:
    routes = [
        {
            "name": prefix.strip("/"),
            "prefix": prefix,
            "strip_prefix": True,
            "upstreams": [f"http://127.0.0.1:{upstream}"],
        }
        for prefix in prefixes
    ]
    settings = {
        "kafka": {"bootstrap": f"127.0.0.1:{free_port()}"},  # none: events queue
        "gateway": {"listen": f"127.0.0.1:{port}", "workers": workers, "routes": routes},
    }
    path.write_text(yaml.safe_dump(settings))


def _status(port: int, path: str) -> int | None:
    """One GET on a connection of its own (the kernel picks the worker); None when
    nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_the_routes_and_a_bad_file_keeps_them(
    tmp_path: Path, upstream: int, workers: int
) -> None:
    config, log = tmp_path / "flowops.yaml", tmp_path / "stderr.log"
    port = free_port()
    write_config(config, port, upstream, ["/a"], workers)
    with log.open("w") as stderr:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "flowops", "gateway", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        until_sync(lambda: _status(port, "/readyz") == 200, "the gateway's start")
        before = [_status(port, "/a/"), _status(port, "/b/")]

        write_config(config, port, upstream, ["/a", "/b"], workers)
        os.kill(gateway.pid, signal.SIGHUP)
        until_sync(lambda: log.read_text().count("routes reloaded") == workers, "the reloads")
        after = [_status(port, path) for path in ("/a/", "/b/") * 5]  # every worker's

        config.write_text(config.read_text().replace("prefix: /b", "prefix: b"))
        os.kill(gateway.pid, signal.SIGHUP)
        until_sync(lambda: log.read_text().count("kept the previous") == workers, "the refusals")
        kept = [_status(port, path) for path in ("/a/", "/b/") * 5]
        assert gateway.poll() is None
    finally:
        gateway.terminate()
        code = gateway.wait(WAIT)
    text = log.read_text()
    assert before == [200, 404]
    assert after == [200] * 10
    assert kept == [200] * 10
    refusals = [line for line in text.splitlines() if "kept the previous routes" in line]
    assert len(refusals) == workers
    assert all("gateway.routes.1.prefix" in line for line in refusals), refusals
    assert code == 0, text


@pytest.mark.asyncio
async def test_a_reload_keeps_the_state_of_unchanged_routes_and_refuses_bad_files(
    tmp_path: Path,
) -> None:
    """In process: the route left as it was keeps its live state (its pools' health and
    breakers), the changed one is new; a reload that cannot be used changes nothing."""

    def settings(routes: list[dict[str, object]]) -> Settings:
        gateway = {"listen": f"127.0.0.1:{free_port()}", "routes": routes}
        return load_settings(overrides={"gateway": {**gateway, "publish": {"enabled": False}}})

    a = {"name": "a", "prefix": "/a", "upstreams": ["http://127.0.0.1:9"]}
    b = {"name": "b", "prefix": "/b", "upstreams": ["http://127.0.0.1:9"]}
    app = Gateway(settings([a, b]))
    await app.start()
    try:
        assert app.proxy is not None
        before = {route.settings.name: route for route in app.proxy.routes}
        changed = {**b, "upstreams": ["http://127.0.0.1:10"]}
        await app.reload_routes(settings([a, changed]))
        after = {route.settings.name: route for route in app.proxy.routes}
        unreadable = {
            **b,
            "upstreams": [
                {"url": "https://127.0.0.1:10", "tls": {"ca_file": str(tmp_path / "gone.pem")}}
            ],
        }
        with pytest.raises(ConfigError) as refused:
            await app.reload_routes(settings([a, unreadable]))
        kept = {route.settings.name: route for route in app.proxy.routes}
    finally:
        await app.stop()
    assert after["a"] is before["a"]
    assert after["b"] is not before["b"]
    assert after["b"].settings.upstreams[0].url == "http://127.0.0.1:10"
    assert kept["a"] is after["a"]
    assert kept["b"] is after["b"]
    assert refused.value.key == "gateway.routes.1.upstreams.0.tls.ca_file"
