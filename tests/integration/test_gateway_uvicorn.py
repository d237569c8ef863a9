"""The gateway in front of a real uvicorn + FastAPI model server that closes idle
keep-alive connections after 1 s (``--timeout-keep-alive 1``), with requests spaced
around that second: none may meet a closed connection and become a 502
(flowops/gateway/http/client.py: idle expiry, EOF seen on idle connections, one replay)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from gateway_servers import running_gateway
from helpers import until

from flowops.broker import free_port
from flowops.gateway.http.messages import Handler, Request, Response

pytestmark = [pytest.mark.integration]

SPACING = [0.2, 0.9, 0.95, 0.98, 1.0, 1.0, 1.02, 1.05, 1.1, 1.3, 0.99, 1.01]
"""Seconds between two requests: on both sides of uvicorn's 1 s."""


@pytest.fixture
def uvicorn_server() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "fastapi_model:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--timeout-keep-alive", "1", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=Path(__file__).parent)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def seen(url: str) -> int:
    with urllib.request.urlopen(f"{url}/seen", timeout=10) as answer:
        return int(orjson.loads(answer.read())["requests"])


async def ready(url: str) -> bool:
    try:
        return await asyncio.to_thread(seen, url) >= 0
    except OSError:
        return False


@pytest.mark.asyncio
@pytest.mark.parametrize("idle_timeout", [None, 0.5], ids=["gateway-keeps-longer", "expires-first"])
async def test_requests_spaced_around_uvicorns_keep_alive_never_get_a_502(
    uvicorn_server: str, idle_timeout: float | None
) -> None:
    await until(lambda: ready(uvicorn_server), "uvicorn answers")
    before = await asyncio.to_thread(seen, uvicorn_server)
    gateway = {
        "routes": [
            {"name": "m", "prefix": "/m", "strip_prefix": True, "upstreams": [uvicorn_server]}
        ],
        "publish": {"enabled": False},
    }
    if idle_timeout is not None:
        gateway["upstream_pool"] = {"idle_timeout": idle_timeout}
    statuses = []
    async with running_gateway(gateway) as base, aiohttp.ClientSession() as session:
        for i, pause in enumerate(SPACING):
            await asyncio.sleep(pause)
            body = orjson.dumps({"instances": [[i, 1]]})  # a POST: not replayed on its own
            headers = {"Content-Type": "application/json"}
            async with session.post(f"{base}/m/predict", data=body, headers=headers) as response:
                statuses.append(response.status)
                if response.status == 200:
                    assert orjson.loads(await response.read()) == {"predictions": [i + 1]}
    assert statuses == [200] * len(SPACING)
    assert await asyncio.to_thread(seen, uvicorn_server) - before == len(SPACING)


def busy(handler: Handler) -> Handler:
    """The gateway's handler behind 0.6 s of blocking work: what other requests' work
    does to one event loop round under load. An EOF that arrives meanwhile has not been
    seen by the loop when the request takes a connection from the pool."""

    async def handle(request: Request) -> Response | None:
        time.sleep(0.6)
        return await handler(request)

    return handle


@pytest.mark.asyncio
async def test_a_busy_gateway_does_not_send_on_a_connection_uvicorn_closed(
    uvicorn_server: str,
) -> None:
    await until(lambda: ready(uvicorn_server), "uvicorn answers")
    gateway = {
        "routes": [
            {"name": "m", "prefix": "/m", "strip_prefix": True, "upstreams": [uvicorn_server]}
        ],
        "publish": {"enabled": False},
    }
    statuses = []
    async with running_gateway(gateway, wrap=busy) as base, aiohttp.ClientSession() as session:
        for i in range(5):
            # 0.7 s after the last answer: uvicorn closes at 1 s, within the 0.6 s of work
            await asyncio.sleep(0.7)
            body = orjson.dumps({"instances": [[i, 1]]})
            headers = {"Content-Type": "application/json"}
            async with session.post(f"{base}/m/predict", data=body, headers=headers) as response:
                statuses.append(response.status)
    assert statuses == [200] * 5
