"""flowops.gateway.http.client: the upstream client against real asyncio servers on loopback,
each written byte by byte so that every shape of answer (and of failure) is exact."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from flowops.gateway.http.client import (
    UpstreamClient,
    UpstreamConnectError,
    UpstreamConnectTimeoutError,
    UpstreamResetError,
)

Handler = Callable[["Peer"], Awaitable[None]]


class Peer:
    """One connection the server accepted: read requests, write raw answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self) -> tuple[list[str], bytes] | None:
        """The next request's head lines and body; None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode().split("\r\n")[:-2]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return lines, await self.reader.readexactly(length)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class Server:
    """An asyncio server on a free port that counts its connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[tuple[list[str], bytes]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(Peer(reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            if task.get_coro().__qualname__.startswith("Server._serve"):  # type: ignore[union-attr]
                task.cancel()
        await listener.wait_closed()


def answering(*answers: bytes, close: bool = False) -> Callable[[Server], Handler]:
    """A handler that answers each request on a connection with the next of ``answers``."""

    def make(server: Server) -> Handler:
        async def handle(peer: Peer) -> None:
            for answer in answers:
                request = await peer.request()
                if request is None:
                    return
                server.requests.append(request)
                await peer.send(answer)
            if not close:
                await peer.reader.read()  # keep the connection until the client closes

        return handle

    return make


@asynccontextmanager
async def upstream(
    make: Callable[[Server], Handler], limit: int = 256
) -> AsyncIterator[tuple[Server, str, UpstreamClient]]:
    holder: list[Server] = []

    async def handle(peer: Peer) -> None:
        await make(holder[0])(peer)

    async with serving(handle) as (server, url):
        holder.append(server)
        client = UpstreamClient(limit_per_host=limit)
        try:
            yield server, url, client
        finally:
            await client.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.asyncio
async def test_content_length_answer_with_headers_in_order() -> None:
    answer = (
        b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\n"
        b"Content-Type: text/plain\r\nSet-Cookie: b=2\r\n\r\nhello"
    )
    async with upstream(answering(answer)) as (server, url, client):
        response = await client.request(
            "POST", url, "/x?q=1", [("X-One", "1"), ("X-One", "2")], b'{"a": 1}'
        )
        body = await response.read()

    assert (response.status, response.reason, body) == (201, "Created", b"hello")
    assert response.headers == [
        ("Content-Length", "5"),
        ("Set-Cookie", "a=1"),
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "b=2"),
    ]
    assert (response.content_length, response.header("content-type")) == (5, "text/plain")
    lines, sent = server.requests[0]
    host = url.removeprefix("http://")
    assert lines == [
        "POST /x?q=1 HTTP/1.1",
        f"Host: {host}",
        "X-One: 1",
        "X-One: 2",
        "Content-Length: 8",
    ]
    assert sent == b'{"a": 1}'


@pytest.mark.asyncio
async def test_chunked_answer() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\nTrailer-X: t\r\n\r\n"
    )
    async with upstream(answering(answer, OK)) as (server, url, client):
        response = await client.request("GET", url, "/")
        body = await response.read()
        again = await client.request("GET", url, "/")  # the trailer did not spoil the next
        assert await again.read() == b"ok"

    assert body == b"hello, world"
    assert response.content_length is None
    assert response.headers == [("Transfer-Encoding", "chunked")]
    assert server.connections == 1


@pytest.mark.asyncio
async def test_a_large_body_streams_as_it_arrives() -> None:
    piece = b"x" * 65536
    pieces = 64  # 4 MiB, sent after the client has had the first piece
    first_seen = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * pieces))
        await peer.send(piece)
        await first_seen.wait()
        for _ in range(pieces - 1):
            await peer.send(piece)
        await peer.reader.read()

    async with upstream(lambda _: handle) as (_, url, client):
        response = await client.request("GET", url, "/big")
        assert not response.complete
        received = 0
        chunks = 0
        async for chunk in response:
            received += len(chunk)
            chunks += 1
            first_seen.set()
        assert client.connections(url) == 1

    assert received == len(piece) * pieces
    assert chunks > 1


@pytest.mark.asyncio
async def test_a_body_whole_with_its_head_is_taken_at_once_and_pools_the_connection() -> None:
    async with upstream(answering(OK, OK)) as (server, url, client):
        response = await client.request("GET", url, "/")
        for _ in range(50):  # the body follows the head in the same read, or just after
            if response.complete:
                break
            await asyncio.sleep(0.01)
        assert response.body_if_complete() == b"ok"
        assert response.body_if_complete() is None  # taken: released, not read twice
        again = await client.request("GET", url, "/")
        assert await again.read() == b"ok"

    assert server.connections == 1


@pytest.mark.asyncio
async def test_a_body_still_arriving_is_not_taken() -> None:
    arrived = asyncio.Event()

    async def handle(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await arrived.wait()
        await peer.send(b"cd")
        await peer.reader.read()

    async with upstream(lambda _: handle) as (_, url, client):
        response = await client.request("GET", url, "/")
        assert response.body_if_complete() is None
        arrived.set()
        assert await response.read() == b"abcd"  # nothing was consumed by the refusal


@pytest.mark.asyncio
async def test_sequential_requests_share_one_connection() -> None:
    async with upstream(answering(*[OK] * 5)) as (server, url, client):
        bodies = []
        for _ in range(5):
            response = await client.request("POST", url, "/", body=b"{}")
            bodies.append(await response.read())

    assert bodies == [b"ok"] * 5
    assert server.connections == 1


@pytest.mark.asyncio
async def test_connection_close_is_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with upstream(answering(closing, close=True)) as (server, url, client):
        for _ in range(2):
            response = await client.request("GET", url, "/")
            assert await response.read() == b"ok"

    assert server.connections == 2


@pytest.mark.asyncio
async def test_a_body_up_to_the_close() -> None:
    answer = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    async with upstream(answering(answer, close=True)) as (server, url, client):
        response = await client.request("GET", url, "/")
        assert await response.read() == b"all of it"
        response = await client.request("GET", url, "/")
        assert await response.read() == b"all of it"

    assert server.connections == 2


@pytest.mark.asyncio
async def test_a_server_that_closes_after_the_head() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"
    async with upstream(answering(cut, close=True)) as (_, url, client):
        response = await client.request("GET", url, "/")
        received: list[bytes] = []

        async def read_all() -> None:
            async for chunk in response:
                received.append(chunk)

        with pytest.raises(UpstreamResetError) as raised:
            await read_all()
        await asyncio.sleep(0)
        assert client.connections(url) == 0

    assert response.status == 200
    assert b"".join(received) == b"only ten b"
    assert raised.value.target == url


@pytest.mark.asyncio
async def test_a_server_that_closes_before_answering() -> None:
    async with upstream(answering(b"", close=True)) as (_, url, client):
        with pytest.raises(UpstreamResetError):
            await client.request("POST", url, "/", body=b"{}")


@pytest.mark.asyncio
async def test_an_answer_that_is_not_http() -> None:
    async with upstream(answering(b"SSH-2.0-OpenSSH\r\n\r\n")) as (_, url, client):
        with pytest.raises(UpstreamResetError, match="not HTTP"):
            await client.request("GET", url, "/")


@pytest.mark.asyncio
async def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = UpstreamClient()
    with pytest.raises(UpstreamConnectError) as raised:
        await client.request("POST", url, "/", body=b"{}", connect_timeout=1.0)
    await client.close()

    assert not isinstance(raised.value, TimeoutError)
    assert client.connections(url) == 0


@pytest.mark.asyncio
async def test_a_hung_server_meets_the_callers_timeout() -> None:
    async def hang(peer: Peer) -> None:
        await peer.request()
        await peer.reader.read()

    async with upstream(lambda _: hang) as (server, url, client):
        with pytest.raises(TimeoutError) as raised:
            async with asyncio.timeout(0.2):
                await client.request("GET", url, "/")
        await asyncio.sleep(0.05)

        assert not isinstance(raised.value, UpstreamConnectError)
        assert client.connections(url) == 0  # discarded, not pooled
        assert server.open == 0


@pytest.mark.asyncio
async def test_a_body_cut_by_the_callers_timeout_discards_the_connection() -> None:
    async def stall(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await peer.reader.read()

    async with upstream(lambda _: stall) as (_, url, client):
        response = await client.request("GET", url, "/")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await response.read()
        response.release()
        await asyncio.sleep(0)
        assert client.connections(url) == 0


@pytest.mark.asyncio
async def test_the_pool_limit_is_respected() -> None:
    async def slow(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.05)
            await peer.send(OK)

    async with upstream(lambda _: slow, limit=2) as (server, url, client):

        async def one() -> bytes:
            response = await client.request("GET", url, "/")
            return await response.read()

        bodies = await asyncio.gather(*(one() for _ in range(6)))

    assert bodies == [b"ok"] * 6
    assert (server.connections, server.most_open) == (2, 2)


@pytest.mark.asyncio
async def test_waiting_for_a_full_pool_is_bounded_by_the_connect_timeout() -> None:
    async def hang(peer: Peer) -> None:
        await peer.request()
        await peer.reader.read()

    async with upstream(lambda _: hang, limit=1) as (_, url, client):
        first = asyncio.create_task(client.request("GET", url, "/"))
        await asyncio.sleep(0.05)
        with pytest.raises(UpstreamConnectTimeoutError) as raised:
            await client.request("GET", url, "/", connect_timeout=0.1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    assert isinstance(raised.value, TimeoutError)


@pytest.mark.asyncio
async def test_a_waiter_that_gives_up_passes_its_turn_on() -> None:
    async def slow(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.1)
            await peer.send(OK)

    async with upstream(lambda _: slow, limit=1) as (server, url, client):

        async def one() -> bytes:
            response = await client.request("GET", url, "/")
            return await response.read()

        first = asyncio.create_task(one())
        await asyncio.sleep(0.01)
        gives_up = asyncio.create_task(one())
        third = asyncio.create_task(one())
        await asyncio.sleep(0.01)
        gives_up.cancel()
        assert (await first, await third) == (b"ok", b"ok")

    assert server.connections == 1


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
        ("POST", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
    ],
)
@pytest.mark.asyncio
async def test_answers_without_a_body(method: str, answer: bytes) -> None:
    async with upstream(answering(answer, OK)) as (server, url, client):
        response = await client.request(method, url, "/", body=b"{}" if method == "POST" else b"")
        body = await response.read()
        after = await client.request("GET", url, "/")  # the same connection, in step
        assert await after.read() == b"ok"

    assert body == b""
    assert response.status in (200, 204, 304)
    assert server.connections == 1


@pytest.mark.asyncio
async def test_a_response_released_unread_closes_its_connection() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"  # the rest never comes

    def make(server: Server) -> Handler:
        return answering(big if server.connections == 1 else OK)(server)

    async with upstream(make) as (server, url, client):
        response = await client.request("GET", url, "/")
        response.release()
        response = await client.request("GET", url, "/")
        await response.read()

    assert server.connections == 2


@pytest.mark.asyncio
async def test_a_complete_response_released_unread_keeps_its_connection() -> None:
    async with upstream(answering(OK, OK)) as (server, url, client):
        response = await client.request("GET", url, "/")
        await asyncio.sleep(0.01)  # the whole answer has arrived
        assert response.complete
        response.release()
        response = await client.request("GET", url, "/")
        assert await response.read() == b"ok"

    assert server.connections == 1


@pytest.mark.asyncio
async def test_request_headers_the_client_sets_and_line_breaks() -> None:
    async with upstream(answering(OK)) as (server, url, client):
        response = await client.request(
            "GET", url, "/", [("Host", "evil"), ("Content-Length", "99"), ("Accept", "*/*")]
        )
        await response.read()
        with pytest.raises(ValueError, match="line break"):
            await client.request("GET", url, "/", [("X-Bad", "a\r\nInjected: 1")])

    lines, _ = server.requests[0]
    assert lines[1:] == [f"Host: {url.removeprefix('http://')}", "Accept: */*"]


@pytest.mark.parametrize(
    ("url", "target", "host"),
    [
        ("http://127.0.0.1:9001", "/x", "127.0.0.1:9001"),
        ("http://model.internal/base/", "/x?y=1", "model.internal"),
        ("https://[::1]:8443/v1", "/x", "[::1]:8443"),
    ],
)
def test_request_target_and_host(url: str, target: str, host: str) -> None:
    from flowops.gateway.http.client import _Origin

    origin = _Origin(url)
    head = origin.encode("GET", target, [], b"").decode()
    path = url.split("//", 1)[1].partition("/")[2].rstrip("/")
    expected_target = (f"/{path}" if path else "") + target

    assert head == f"GET {expected_target} HTTP/1.1\r\nHost: {host}\r\n\r\n"
