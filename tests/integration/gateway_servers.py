"""Model servers and a gateway for the gateway tests, all real, on free loopback ports.

A :class:`ModelServer` is a small aiohttp app that answers like an MLflow or KServe v1
server (``{"predictions": [...]}``, one per instance) and says who it is in an
``X-Upstream`` header; a test can make it fail (``status``), slow (``delay``) or stop.
:func:`running_gateway` runs :class:`flowops.gateway.app.Gateway` on its
:class:`~flowops.gateway.listener.Listener` in the test's loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from flowops.broker import free_port
from flowops.config import load_settings
from flowops.gateway.app import Gateway
from flowops.gateway.listener import Listener


@dataclass
class ModelServer:
    """One upstream: its name, port, what it saw, and how it behaves now."""

    name: str
    port: int = field(default_factory=free_port)
    status: int = 200
    delay: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{tail:.*}", self._predict)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.status < 500 else 503, text="ok")

    async def _predict(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append({"path": request.path_qs, "headers": dict(request.headers), "body": body})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status >= 400:
            return web.json_response({"error": "failing on purpose"}, status=self.status)
        payload = orjson.loads(body) if body else {}
        instances = payload.get("instances", [payload]) if isinstance(payload, dict) else []
        predictions = [round(sum(_numbers(row)), 3) for row in instances]
        response = web.Response(
            body=orjson.dumps({"predictions": predictions}), content_type="application/json"
        )
        response.headers["X-Upstream"] = self.name
        response.headers["Keep-Alive"] = "timeout=5"  # hop-by-hop: the gateway drops it
        return response


def _numbers(row: Any) -> list[float]:
    values = row.values() if isinstance(row, Mapping) else row if isinstance(row, list) else []
    return [float(v) for v in values if isinstance(v, int | float)]


@asynccontextmanager
async def model_servers(count: int) -> AsyncIterator[list[ModelServer]]:
    """``count`` started model servers, stopped afterwards."""
    servers = [ModelServer(f"m{i}") for i in range(count)]
    try:  # the ones started are stopped if a later one cannot start
        for server in servers:
            await server.start()
        yield servers
    finally:
        for server in servers:
            await server.stop()


@asynccontextmanager
async def running_gateway(gateway: Mapping[str, Any], **sections: Any) -> AsyncIterator[str]:
    """A gateway with this ``gateway`` section (a free port unless it says ``listen``)
    and other settings sections; yields its base URL."""
    async with serving_gateway(gateway, **sections) as (base, _):
        yield base


@asynccontextmanager
async def serving_gateway(
    gateway: Mapping[str, Any], **sections: Any
) -> AsyncIterator[tuple[str, Listener]]:
    """:func:`running_gateway`, yielding its listener too (its connections and the body
    bytes it holds, for the tests of its limits)."""
    port = free_port()
    settings = load_settings(
        overrides={"gateway": {"listen": f"127.0.0.1:{port}", **gateway}, **sections}
    )
    app = Gateway(settings)
    await app.start()
    listener = Listener(app.handle, limits=app.gateway.limits)
    try:
        sock = socket.create_server(("127.0.0.1", port))
        sock.setblocking(False)
        await listener.start(sock)
        yield f"http://127.0.0.1:{port}", listener
    finally:
        await listener.stop(timeout=5.0)
        await app.stop()
