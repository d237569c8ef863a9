"""flowops.gateway.http.listener: the HTTP/1.1 server, spoken to byte by byte over loopback
sockets, so that keep-alive, pipelining, bodies, streaming and refusals are exact. Each
test runs on asyncio's loop and on uvloop's (``conftest.py``): the gateway runs on
uvloop, whose transports differ."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from flowops.gateway.config import LimitSettings
from flowops.gateway.http.listener import Listener
from flowops.gateway.http.messages import BodyTooLarge, Request, Response, json_response

pytestmark = pytest.mark.asyncio
LATE_READ = 3.0  # seconds the /read-late handler decides before it reads the body


class App:
    """A handler with a behaviour per path; it records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes | None]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, request: Request) -> Response | None:
        path = request.path
        body: bytes | None = None
        if path == "/read-late":  # the handler decides first (an upstream, a limit)
            await asyncio.sleep(LATE_READ)
        if path.startswith("/read"):
            try:
                body = await request.read(limit=10)
            except BodyTooLarge as exc:
                return json_response({"error": str(exc)}, status=413)
        self.seen.append((request.method, request.target, body))
        if path == "/slow":
            await self.release.wait()
        if path == "/boom":
            raise RuntimeError("the handler broke")
        if path == "/stream":
            stream = await request.stream(200, [("Content-Type", "text/plain")])
            for part in (b"one,", b"two"):
                await stream.write(part)
            await stream.end()
            return None
        if path == "/stream-known":
            stream = await request.stream(200, [], content_length=6)
            await stream.write(b"abcdef")
            await stream.end()
            return None
        if path == "/stream-cut":
            stream = await request.stream(200, [])
            await stream.write(b"partial")
            raise RuntimeError("the upstream went away")
        if path == "/inject":  # as an upstream's header could, were it not checked
            return Response(200, b"x", [("X-Evil", "a\r\nSet-Cookie: stolen=1")])
        text = body if body is not None else path.encode()
        return Response(200, text, [("X-Path", path)])


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[tuple[Listener, int]]:
    listener = Listener(app)
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    await listener.start(sock)
    try:
        yield listener, port
    finally:
        await listener.stop(timeout=2.0)
        await Client.close_all()


class Client:
    """A raw connection: writes bytes, reads answers by Content-Length or chunks."""

    opened: list[Client] = []  # noqa: RUF012 - every client, closed after each test

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        cls.opened.append(client)
        return client

    @classmethod
    async def close_all(cls) -> None:
        while cls.opened:
            writer = cls.opened.pop().writer
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names), body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode().split("\r\n")[:-2]
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await self._chunks()
        elif status in (100, 204, 304):
            body = b""
        else:
            body = await asyncio.wait_for(self.reader.read(), 5)
        return status, headers, body

    async def _chunks(self) -> bytes:
        body = b""
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]

    async def closed(self) -> bool:
        """Whether the server closed the connection (after what was already read)."""
        return await asyncio.wait_for(self.reader.read(), 5) == b""


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    return (
        "\r\n".join([f"{method} {path} HTTP/{version}", "Host: x", *extra]) + "\r\n\r\n"
    ).encode()


async def test_keep_alive_answers_in_order_on_one_connection() -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        answers = []
        for path in ("/a", "/b%20c?q=1"):
            await client.send(get(path))
            answers.append(await client.answer())
    assert [(status, body) for status, _, body in answers] == [(200, b"/a"), (200, b"/b c")]
    assert answers[1][1]["x-path"] == "/b c"  # path decoded; the target kept as sent
    assert "date" in answers[0][1]
    assert "connection" not in answers[0][1]
    assert [target for _, target, _ in app.seen] == ["/a", "/b%20c?q=1"]


async def test_pipelined_requests_are_answered_in_the_order_sent() -> None:
    app = App()
    app.release.clear()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        await client.send(get("/slow") + post("/read", b"12345") + get("/c"))
        await asyncio.sleep(0.05)
        assert [target for _, target, _ in app.seen] == ["/slow"]  # one at a time
        app.release.set()
        answers = [await client.answer() for _ in range(3)]
    assert [body for _, _, body in answers] == [b"/slow", b"12345", b"/c"]


async def test_bodies_by_length_and_chunked_are_read_whole() -> None:
    app = App()
    chunked = (
        b"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    async with serving(app) as (_, port):
        client = await Client.open(port)
        await client.send(post("/read", b"0123456789"))
        first = await client.answer()
        await client.send(chunked)
        second = await client.answer()
    assert (first[0], first[2], second[0], second[2]) == (200, b"0123456789", 200, b"abcdefg")


async def test_a_body_over_the_limit_is_refused_declared_or_streamed() -> None:
    app = App()
    streamed = (
        b"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nabcdef\r\n6\r\nghijkl\r\n"  # and not yet the last chunk
    )
    async with serving(app) as (_, port):
        declared = await Client.open(port)
        await declared.send(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        status, headers, body = await declared.answer()  # before a byte of the body
        await declared.send(b"x" * 11)
        chunked = await Client.open(port)
        await chunked.send(streamed)
        streamed_status, streamed_headers, _ = await chunked.answer()
        await chunked.send(b"0\r\n\r\n")
        assert await declared.closed()
        assert await chunked.closed()
    assert (status, body) == (413, b'{"error":"the body may hold at most 10 bytes"}')
    assert headers["connection"] == "close"
    assert (streamed_status, streamed_headers["connection"]) == (413, "close")


async def test_expect_continue_is_answered_when_the_body_is_read() -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        head = (
            b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        await client.send(head)
        interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
        await client.send(b"abcd")
        status, _, body = await client.answer()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert (status, body) == (200, b"abcd")


async def test_an_unread_body_gets_its_answer_and_then_the_close() -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        # the head says 100,000 bytes; the handler of /x never reads them
        await client.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        status, headers, body = await client.answer()
        await client.send(b"y" * 100_000)  # the rest arrives: read and dropped, no reset
        assert await client.closed()
    assert (status, body, headers["connection"]) == (200, b"/x", "close")


async def test_head_answers_have_the_length_and_no_body() -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        await client.send(get("/abc", method="HEAD") + get("/d"))
        head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
        status, _, body = await client.answer()  # the next answer follows at once
    assert b"Content-Length: 4\r\n" in head
    assert (status, body) == (200, b"/d")


async def test_streamed_answers_are_chunked_or_declared() -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        await client.send(get("/stream"))
        chunked = await client.answer()
        await client.send(get("/stream-known"))
        known = await client.answer()
        await client.send(get("/stream", version="1.0"))
        old = await client.answer()  # HTTP/1.0: the close ends the body
    assert (chunked[1]["transfer-encoding"], chunked[2]) == ("chunked", b"one,two")
    assert (known[1]["content-length"], known[2]) == ("6", b"abcdef")
    assert (old[1]["connection"], old[2]) == ("close", b"one,two")


async def test_http_1_0_and_connection_close() -> None:
    app = App()
    async with serving(app) as (_, port):
        old = await Client.open(port)
        await old.send(get("/a", version="1.0"))
        old_answer = await old.answer()
        kept = await Client.open(port)
        await kept.send(get("/b", "Connection: keep-alive", version="1.0"))
        kept_answer = await kept.answer()
        await kept.send(get("/c", "Connection: close"))
        closing_answer = await kept.answer()
        assert await old.closed()
        assert await kept.closed()
    assert old_answer[1]["connection"] == "close"
    assert kept_answer[1]["connection"] == "keep-alive"
    assert closing_answer[1]["connection"] == "close"


async def test_a_failing_handler_gets_a_500_or_a_cut_stream() -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        await client.send(get("/boom"))
        status, _, body = await client.answer()
        await client.send(get("/stream-cut"))
        head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
        rest = await asyncio.wait_for(client.reader.read(), 5)  # up to the close
    assert (status, body) == (500, b'{"error":"internal_error","reason":"the gateway failed"}')
    assert b"Transfer-Encoding: chunked" in head
    assert rest == b"7\r\npartial\r\n"  # no last chunk: the client sees it was cut


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, b"http_version_not_supported"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, b'"error":"bad_request"'),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400, b"bad_request"),
        (  # smuggling: two framings, or two lengths, are refused, never guessed
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
            b"bad_request",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            b"bad_request",
        ),
        (
            b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            b'"error":"request_header_fields_too_large"',
        ),
        (  # a coding besides chunked would reach the upstream still coded, unsaid
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
            501,
            b'"error":"not_implemented"',
        ),
    ],
    ids=[
        "http-2.0",
        "garbage",
        "bad-length",
        "length-and-chunked",
        "two-lengths",
        "head-too-large",
        "gzip-coded",
    ],
)
async def test_what_is_not_a_request_is_refused_and_closed(
    data: bytes, status: int, error: bytes
) -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        await client.send(data)
        answer = await client.answer()
        assert await client.closed()
    assert (answer[0], answer[1]["connection"]) == (status, "close")
    assert error in answer[2]
    assert app.seen == []


async def test_an_upgrade_is_answered_then_closed() -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        await client.send(get("/ws", "Connection: Upgrade", "Upgrade: websocket") + b"\x81\x00")
        status, _, body = await client.answer()
        assert await client.closed()
    assert (status, body) == (200, b"/ws")


async def test_stop_closes_idle_connections_and_lets_requests_finish() -> None:
    app = App()
    app.release.clear()
    listener, port = Listener(app), 0
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    await listener.start(sock)
    idle = await Client.open(port)
    await idle.send(get("/a"))
    await idle.answer()
    busy = await Client.open(port)
    await busy.send(get("/slow"))
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(listener.stop(timeout=5.0))
    assert await idle.closed()
    assert not stopping.done()  # /slow is still being answered
    app.release.set()
    status, headers, body = await busy.answer()
    await asyncio.wait_for(stopping, 5)
    assert (status, body, headers["connection"]) == (200, b"/slow", "close")
    with pytest.raises(ConnectionRefusedError):
        await Client.open(port)  # no longer accepting
    await Client.close_all()


async def test_stop_closes_what_is_still_busy_after_its_timeout() -> None:
    app = App()
    app.release.clear()
    async with serving(app) as (listener, port):
        busy = await Client.open(port)
        await busy.send(get("/slow"))
        await asyncio.sleep(0.05)
        await listener.stop(timeout=0.1)
        assert await busy.closed()
        assert listener.connections == set()
        app.release.set()


async def test_idle_connections_close_and_slow_heads_get_a_408() -> None:
    app = App()
    listener = Listener(app, limits=LimitSettings(keep_alive_timeout=0.2, head_timeout=0.2))
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    await listener.start(sock)
    try:
        idle = await Client.open(port)
        await idle.send(get("/a"))
        await idle.answer()
        trickling = await Client.open(port)
        await trickling.send(b"GET /b HTTP/1.1\r\nHost: x\r\n")  # and never the end
        busy = await Client.open(port)
        app.release.clear()
        await busy.send(get("/slow"))
        assert await idle.closed()
        late = await trickling.answer()
        assert await trickling.closed()
        await asyncio.sleep(0.3)
        app.release.set()
        status, _, body = await busy.answer()  # a request under way is not cut
    finally:
        await listener.stop(timeout=2.0)
        await Client.close_all()
    assert (status, body) == (200, b"/slow")
    assert (late[0], late[1]["connection"]) == (408, "close")


async def test_a_header_holding_crlf_is_never_written_and_a_502_goes_instead() -> None:
    app = App()
    async with serving(app) as (_, port):
        client = await Client.open(port)
        await client.send(get("/inject") + get("/after"))
        first = await client.answer()
        second = await client.answer()
    assert first[0] == 502
    assert "set-cookie" not in first[1]
    assert second[:1] == (200,)


async def test_a_closed_connection_is_freed_without_the_garbage_collector() -> None:
    app = App()
    async with serving(app) as (listener, port):
        client = await Client.open(port)
        await client.send(get("/a") + b"GET /b HTTP/1.1\r\nHost: x\r\nX-Half: ")
        await client.answer()
        (connection,) = listener.connections
        freed = weakref.ref(connection)
        del connection
        gc.disable()
        try:
            client.writer.close()
            for _ in range(200):
                await asyncio.sleep(0.01)
                if freed() is None:
                    break
        finally:
            gc.enable()
    assert freed() is None


async def test_past_max_connections_the_next_client_waits_until_one_closes() -> None:
    app = App()
    listener = Listener(app, limits=LimitSettings(max_connections=2))
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await listener.start(sock)
    try:
        first, second = await Client.open(port), await Client.open(port)
        for client in (first, second):
            await client.send(get("/held"))
            await client.answer()
        third = await Client.open(port)  # the kernel's backlog takes it
        await third.send(get("/third"))
        await second.send(get("/still"))
        still = await second.answer()
        accepted_before = len(listener.connections)
        first.writer.close()
        third_answer = await third.answer()
    finally:
        await listener.stop(timeout=2.0)
        await Client.close_all()
    assert (still[0], accepted_before) == (200, 2)
    assert third_answer[2] == b"/third"


async def test_a_client_waiting_for_100_continue_is_not_timed_out_for_its_body() -> None:
    """The handler reads the body three times the body deadline after the head; the
    client, waiting for its 100 Continue meanwhile, is not timed out. (The deadline is
    still a whole second after the 100 goes out: the client's own step from the 100 to
    its body must fit in it on a loaded machine.)"""
    app = App()
    listener = Listener(app, limits=LimitSettings(body_timeout=LATE_READ / 3))
    sock = socket.create_server(("127.0.0.1", 0))
    await listener.start(sock)
    try:
        client = await Client.open(sock.getsockname()[1])
        await client.send(post("/read-late", b"abc", "Expect: 100-continue")[:-3])
        continued = await client.answer()
        await client.send(b"abc")
        answer = await client.answer()
    finally:
        await listener.stop(timeout=2.0)
        await Client.close_all()
    assert continued[0] == 100
    assert (answer[0], answer[2]) == (200, b"abc")
