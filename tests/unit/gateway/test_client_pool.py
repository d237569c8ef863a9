"""The upstream pool's keep-alive races (flowops/gateway/http/client.py): connections the
server closed are not reused, idle ones expire, and a request that met a closed
connection before any byte of its answer is sent again when it may be.

The server runs in a thread with blocking sockets, so a test can let it close a
connection while the event loop is held, the way a busy gateway sees an EOF late."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from flowops.gateway.http.client import UpstreamClient, UpstreamResetError

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
Script = Callable[[socket.socket], None]
"""What the server does with one accepted connection."""


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            while len(body) < int(line.split(b":")[1]):
                body += conn.recv(65536)
    return data


def answer_then_close(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(OK)  # keep-alive by its head, and closed all the same


def answer_then_drop_next(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(OK)
    read_request(conn)  # read, and closed unanswered: the race as the client sees it


def answer_then_cut_next(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(OK)
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")  # an answer had begun


def answer(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(OK)


class ThreadServer:
    """Accepts connections one at a time and runs the next script on each."""

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.accepted = 0
        self.closed = threading.Event()  # set after each connection is closed
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for script in self.scripts:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                script(conn)
            self.closed.set()


@contextmanager
def thread_server(*scripts: Script) -> Iterator[ThreadServer]:
    server = ThreadServer(list(scripts))
    server.thread.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError):  # wakes an accept() that will get no connection
            server.sock.shutdown(socket.SHUT_RDWR)
        server.sock.close()
        server.thread.join(timeout=30)


async def get(client: UpstreamClient, url: str, method: str = "GET", **kw: bool) -> bytes:
    response = await client.request(method, url, "/", body=b"{}" if method == "POST" else b"", **kw)
    return await response.read()


@pytest.mark.asyncio
async def test_a_connection_the_server_closed_is_not_reused_even_before_the_loop_sees_it() -> None:
    client = UpstreamClient()
    with thread_server(answer_then_close, answer) as server:
        try:
            assert await get(client, server.url, "POST") == b"ok"
            # the server closes; the loop is held (blocking waits) so it cannot see the
            # EOF, and the connection has been idle longer than the client's poll threshold
            assert server.closed.wait(timeout=30)
            time.sleep(0.1)
            # a POST that may not be replayed: it must not meet the closed connection
            assert await get(client, server.url, "POST") == b"ok"
        finally:
            await client.close()
    assert server.accepted == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "replayable"), [("GET", False), ("POST", True)])
async def test_a_request_that_met_a_closed_connection_is_sent_once_more(
    method: str, replayable: bool
) -> None:
    client = UpstreamClient()
    with thread_server(answer_then_drop_next, answer) as server:
        try:
            assert await get(client, server.url, method, replayable=replayable) == b"ok"
            assert await get(client, server.url, method, replayable=replayable) == b"ok"
        finally:
            await client.close()
    assert server.accepted == 2


@pytest.mark.asyncio
async def test_a_post_that_may_not_be_replayed_is_not_sent_twice() -> None:
    client = UpstreamClient()
    with thread_server(answer_then_drop_next, answer) as server:
        try:
            assert await get(client, server.url, "POST") == b"ok"
            with pytest.raises(UpstreamResetError):
                await get(client, server.url, "POST")
        finally:
            await client.close()
    assert server.accepted == 1


@pytest.mark.asyncio
async def test_a_request_whose_answer_had_begun_is_not_sent_again() -> None:
    client = UpstreamClient()
    with thread_server(answer_then_cut_next, answer) as server:
        try:
            assert await get(client, server.url) == b"ok"
            with pytest.raises(UpstreamResetError):
                await get(client, server.url)
        finally:
            await client.close()
    assert server.accepted == 1


@pytest.mark.asyncio
async def test_idle_connections_expire_and_are_closed_by_the_pool() -> None:
    client = UpstreamClient(idle_timeout=0.05)

    def hold(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(OK)
        assert conn.recv(1) == b""  # the client closes it, unasked

    with thread_server(hold, answer) as server:
        try:
            assert await get(client, server.url) == b"ok"
            for _ in range(3000):  # bounded poll: the pool's timer closes it
                if client.connections(server.url) == 0:
                    break
                await asyncio.sleep(0.01)
            assert client.connections(server.url) == 0
            assert await get(client, server.url) == b"ok"
        finally:
            await client.close()
    assert server.accepted == 2
