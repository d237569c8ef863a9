"""The gateway against hostile clients, over raw sockets, in front of a recording model
server: one test per kind of attack of issue 11, each checking what reached the
upstream, what the attacker got, and that another client was served meanwhile.

The limits are made small (``LIMITS``) so that each attack reaches them in a few
kilobytes and under a second; the defaults and the answers are in docs/gateway.md,
"Limits". Nothing here measures time: the deadlines are waited for with :func:`until`
and the answers are read as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from gateway_load import request
from gateway_servers import ModelServer, model_servers, serving_gateway
from helpers import until

from flowops.broker import free_port
from flowops.gateway.http.listener import Listener

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

LIMITS: dict[str, Any] = {
    "max_request_line_bytes": 1024,
    "max_header_bytes": 1024,
    "max_head_bytes": 4096,
    "head_timeout": 0.5,
    "body_timeout": 0.5,
    "send_timeout": 0.5,
    "keep_alive_timeout": 30.0,
    "max_connections": 6,
    "max_body_buffer_bytes": 8192,
}
PREDICT = "/models/iris/predict"
ROW = orjson.dumps({"instances": [[1.0, 2.0]]})


class Raw:
    """A client that writes bytes as an attacker would and reads what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names), body (by length)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode().split("\r\n")[:-2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(lines[0].split()[1]), headers, body

    async def closed(self) -> bool:
        """Whether the gateway closed the connection (after what was already read)."""
        try:
            return await asyncio.wait_for(self.reader.read(), 10) == b""
        except ConnectionResetError:
            return True


@asynccontextmanager
async def raw(base: str, *, rcvbuf: int | None = None) -> AsyncIterator[Raw]:
    """A raw connection to the gateway at ``base``; closed afterwards."""
    port = int(base.rpartition(":")[2])
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    client = Raw(*await asyncio.open_connection(sock=sock))
    try:
        yield client
    finally:
        client.writer.close()
        with contextlib.suppress(OSError):
            await client.writer.wait_closed()


@asynccontextmanager
async def gateway(**limits: Any) -> AsyncIterator[tuple[str, Listener, ModelServer]]:
    """A gateway with the small ``LIMITS`` (and ``limits``) before one model server."""
    async with model_servers(1) as (server,):
        route = {"name": "iris", "prefix": "/models/iris", "upstreams": [server.url]}
        settings = {
            "routes": [route],
            "publish": {"enabled": False},
            "limits": {**LIMITS, **limits},
        }
        async with serving_gateway(settings) as (base, listener):
            yield base, listener, server


async def served(base: str) -> bool:
    """Whether an ordinary client gets its prediction now."""
    async with aiohttp.ClientSession() as session:
        answer = await request(session, "POST", base + PREDICT, {"instances": [[1.0, 2.0]]})
    return answer.status == 200 and answer.upstream == "m0"


def post(path: str = PREDICT, body: bytes = ROW, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: gw", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def refused_while_streaming(client: Raw, start: bytes, piece: bytes, cap: int) -> int:
    """Send ``start``, then ``piece`` after ``piece`` up to twice ``cap``; the status.

    The head never ends: the answer must come from the cap, not from the end."""
    await client.send(start)
    for _ in range(2 * cap // len(piece) + 1):
        await client.send(piece)
    status, headers, _ = await client.answer()
    assert headers["connection"] == "close"
    return status


# -- 1. limits as bytes arrive --------------------------------------------------------


async def test_a_request_target_that_never_ends_gets_414_at_its_cap() -> None:
    async with gateway() as (base, _, server), raw(base) as client:
        status = await refused_while_streaming(client, b"GET /models/iris/", b"a" * 100, 1024)
        assert await served(base)
        assert await client.closed()
    assert status == 414
    assert [seen["path"] for seen in server.seen] == ["/models/iris/predict"]


async def test_a_header_value_that_never_ends_gets_431_at_its_cap() -> None:
    async with gateway() as (base, _, server), raw(base) as client:
        start = b"POST /models/iris/predict HTTP/1.1\r\nHost: gw\r\nX-Long: "
        status = await refused_while_streaming(client, start, b"v" * 100, 1024)
        assert await served(base)
        assert await client.closed()
    assert status == 431
    assert len(server.seen) == 1  # the ordinary client's request only


async def test_many_header_lines_get_431_at_the_head_cap() -> None:
    async with gateway() as (base, _, server), raw(base) as client:
        start = b"GET /models/iris/x HTTP/1.1\r\nHost: gw\r\n"
        status = await refused_while_streaming(client, start, b"X-A: " + b"b" * 95 + b"\r\n", 4096)
        assert await served(base)
    assert status == 431
    assert len(server.seen) == 1


async def test_a_head_that_stalls_gets_408_and_the_close() -> None:
    async with gateway() as (base, _, server), raw(base) as client:
        await client.send(b"POST /models/iris/predict HTTP/1.1\r\nHost: gw\r\n")
        assert await served(base)
        status, headers, _ = await client.answer()  # comes at head_timeout
        assert await client.closed()
    assert (status, headers["connection"]) == (408, "close")
    assert len(server.seen) == 1


async def test_a_body_that_stalls_gets_408_and_nothing_reaches_the_upstream() -> None:
    async with gateway() as (base, listener, server), raw(base) as client:
        await client.send(post(body=ROW)[: -len(ROW) + 5])  # the head and 5 bytes
        assert await served(base)
        status, headers, body = await client.answer()  # comes at body_timeout
        assert await client.closed()
        await until(lambda: listener.body_held == 0, "the stalled body released")
    assert (status, headers["connection"]) == (408, "close")
    assert b"body" in body
    assert len(server.seen) == 1


async def test_a_client_that_reads_nothing_is_cut_at_the_send_deadline() -> None:
    async with (
        upstream(big_answers) as url,
        serving_gateway(single_route(url)) as (base, listener),
        raw(base, rcvbuf=1024) as client,
    ):
        await client.send(b"GET /big/x HTTP/1.1\r\nHost: gw\r\n\r\n")  # and reads nothing
        await until(lambda: len(listener.connections) == 1, "the reader connected")
        await until(lambda: len(listener.connections) == 0, "the non-reader cut")
        async with raw(base) as other:
            await other.send(b"GET /big/y HTTP/1.1\r\nHost: gw\r\n\r\n")
            status, _, body = await other.answer()
    assert (status, len(body)) == (200, BIG)


async def test_past_max_connections_clients_wait_in_the_backlog_not_dropped() -> None:
    async with (
        gateway(max_connections=3) as (base, listener, server),
        raw(base) as first,
        raw(base) as second,
        raw(base),
    ):
        await until(lambda: len(listener.connections) == 3, "three connections held")
        async with raw(base) as waiting:
            await waiting.send(post())  # connected by the kernel, not accepted yet
            await first.send(post())
            assert (await first.answer())[0] == 200  # the held ones are served
            assert len(listener.connections) == 3
            second.writer.close()  # one leaves: the one waiting is accepted
            status, _, body = await waiting.answer()
    assert status == 200
    assert orjson.loads(body) == {"predictions": [3.0]}
    assert len(server.seen) == 2


async def test_a_worker_holds_bodies_up_to_its_budget_then_answers_503() -> None:
    big = orjson.dumps({"instances": [[1.0] * 800]})  # about 4 KiB
    async with (
        gateway() as (base, listener, server),
        raw(base) as first,
        raw(base) as second,
        raw(base) as third,
    ):
        for client in (first, second):  # two bodies held, short by 10 bytes each
            await client.send(post(body=big)[:-10])
        await until(lambda: listener.body_held >= 2 * (len(big) - 10), "bodies held")
        await third.send(post(body=big))  # past the 8 KiB budget
        status, headers, _ = await third.answer()
        assert await served(base)
        await first.send(post(body=big)[-10:])
        assert (await first.answer())[0] == 200
    assert (status, headers["connection"]) == (503, "close")
    assert len(server.seen) == 2  # the ordinary client's and the first's


# -- 2. nothing parsed after a refusal ----------------------------------------------


@pytest.mark.parametrize(
    ("refused", "status"),
    [
        (
            b"POST /models/iris/predict HTTP/1.1\r\nHost: gw\r\n"
            b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            501,
        ),
        (b"GET /models/iris/x HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n", 431),
    ],
    ids=["gzip-chunked-501", "head-431"],
)
async def test_requests_behind_a_refusal_are_not_parsed(refused: bytes, status: int) -> None:
    async with gateway() as (base, _, server), raw(base) as client:
        server.delay = 0.2  # the first is still in flight when the refusal is parsed
        await client.send(post() + refused + post(PREDICT + "?after=1"))
        first = await client.answer()
        second = await client.answer()
        assert await client.closed()
        server.delay = 0.0
        assert await served(base)
    assert (first[0], second[0], second[1]["connection"]) == (200, status, "close")
    assert [seen["path"] for seen in server.seen] == [PREDICT, PREDICT]  # no ?after=1


# -- 3. RFC 9112 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET /models/iris/x HTTP/1.1\r\n\r\n",
        b"GET /models/iris/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /models/iris/x HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"POST /models/iris/x HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        b"GET /models/iris/x\r\n\r\n",
        b"POST /models/iris/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    ],
    ids=["no-host", "two-hosts", "bad-host", "1.0-chunked", "http-0.9", "bad-chunk", "connect"],
)
async def test_nonconforming_requests_get_400_then_the_close(data: bytes) -> None:
    async with gateway() as (base, _, server), raw(base) as client:
        await client.send(data)
        status, headers, _ = await client.answer()
        assert await client.closed()
        assert await served(base)
    assert (status, headers["connection"]) == (400, "close")
    assert len(server.seen) == 1


async def test_an_upstream_101_becomes_a_502_without_a_transport_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with (
            upstream(switching) as url,
            serving_gateway(single_route(url)) as (base, _),
            raw(base) as client,
        ):
            await client.send(b"GET /big/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            status, _, _ = await client.answer()
    assert status == 502
    assert not [r for r in caplog.records if "Fatal error" in r.getMessage()]


# -- raw upstreams ----------------------------------------------------------------------

BIG = 8 * 1024 * 1024  # more than the socket buffers between the gateway and a client


async def big_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request with :data:`BIG` bytes."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
            writer.write(bytes(BIG))
            await writer.drain()
    writer.close()


async def switching(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers with 101 Switching Protocols, which nobody asked for."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n\x81\x00"
        )
        await writer.drain()
        await reader.read()
    writer.close()


@asynccontextmanager
async def upstream(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A raw upstream serving ``serve`` on a free port; its URL."""
    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def single_route(url: str) -> dict[str, Any]:
    """Gateway settings: route /big to ``url``, with the small ``LIMITS``."""
    route = {"name": "big", "prefix": "/big", "upstreams": [url]}
    return {"routes": [route], "publish": {"enabled": False}, "limits": LIMITS}
