"""Model servers and a gateway for the gateway tests, all real, on free loopback ports.

A :class:`ModelServer` is a small aiohttp app that answers like an MLflow or KServe v1
server (``{"predictions": [...]}``, one per instance) and says who it is in an
``X-Upstream`` header; a test can make it fail (``status``), slow (``delay``) or stop.
:func:`running_gateway` runs :class:`flowops.gateway.app.Gateway` on its
:class:`~flowops.gateway.http.listener.Listener` in the test's loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from flowops.broker import free_port
from flowops.config import load_settings
from flowops.gateway.app import Gateway
from flowops.gateway.http.listener import Listener
from flowops.gateway.http.messages import Handler


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
async def running_gateway(
    gateway: Mapping[str, Any],
    *,
    wrap: Callable[[Handler], Handler] | None = None,
    **sections: Any,
) -> AsyncIterator[str]:
    """A gateway with this ``gateway`` section (a free port unless it says ``listen``)
    and other settings sections; yields its base URL. ``wrap`` wraps its handler (a test
    may make it slow)."""
    async with serving_gateway(gateway, wrap=wrap, **sections) as (base, _):
        yield base


@asynccontextmanager
async def serving_gateway(
    gateway: Mapping[str, Any],
    *,
    wrap: Callable[[Handler], Handler] | None = None,
    **sections: Any,
) -> AsyncIterator[tuple[str, Listener]]:
    """:func:`running_gateway`, yielding its listener too (its connections and the body
    bytes it holds, for the tests of its limits)."""
    port = free_port()
    settings = load_settings(
        overrides={"gateway": {"listen": f"127.0.0.1:{port}", **gateway}, **sections}
    )
    app = Gateway(settings)
    await app.start()
    handler = app.handle if wrap is None else wrap(app.handle)
    listener = Listener(handler, limits=app.gateway.limits, tls=app.tls)
    try:
        sock = socket.create_server(("127.0.0.1", port))
        sock.setblocking(False)
        await listener.start(sock)
        yield f"{'http' if app.tls is None else 'https'}://127.0.0.1:{port}", listener
    finally:
        await listener.stop(timeout=5.0)
        await app.stop()


@dataclass
class RecordingUpstream:
    """An upstream on raw asyncio streams that records each request as it came on the
    wire (request line, headers in order, body) and answers ``200 {}`` keep-alive.

    aiohttp's server, like most, reads a target through its own URL parser; this one
    keeps the bytes, so a test asserts exactly what the gateway forwarded.
    """

    name: str
    port: int = field(default_factory=free_port)
    seen: list[Recorded] = field(default_factory=list)
    server: asyncio.Server | None = None
    clients: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in self.clients:  # Python 3.11's Server has no close_clients()
                task.cancel()
            await asyncio.gather(*self.clients, return_exceptions=True)
            await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.clients.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")[:-2]
                headers = [tuple(f.split(":", 1)) for f in fields]
                pairs = [(k, v.strip()) for k, v in headers]
                length = next((int(v) for k, v in pairs if k.lower() == "content-length"), 0)
                body = await reader.readexactly(length)
                method, target, _ = line.split(" ")
                self.seen.append(Recorded(method, target, pairs, body))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"X-Upstream: " + self.name.encode() + b"\r\nContent-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.clients.discard(task)
            writer.close()

    def header(self, index: int, name: str) -> list[str]:
        """Every value of header ``name`` (exact spelling) in request ``index``."""
        return [value for key, value in self.seen[index].headers if key == name]


@dataclass(frozen=True)
class Recorded:
    """One request a :class:`RecordingUpstream` received."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


async def raw_exchange(port: int, data: bytes, *, timeout: float = 30.0) -> bytes:
    """Send ``data`` on a new connection and read the answer(s) until the gateway closes
    it (the last request should say ``Connection: close``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


def statuses(answer: bytes) -> list[int]:
    """The status codes of the responses in ``answer``, in order."""
    return [
        int(line.split(b" ")[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")
    ]
