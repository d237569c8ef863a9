"""The gateway's HTTP/1.1 server: asyncio Protocols and httptools' C parser.

The client side of the gateway left aiohttp for :mod:`flowops.gateway.client`; this is
the server side's turn. aiohttp's server built a request object, ran its router and
middleware chain and wrote the head and body of each answer apart: about 0.1 ms of CPU a
request, more than the whole proxy path beside it (bench/RESULTS.md). A gateway needs
little of a web framework: a parsed head, a body it reads whole or not at all, and an
answer written whole or streamed. :class:`Listener` does that and no more.

One connection, :class:`_Connection`, handles one request at a time, in order:

* the head is parsed in C; the handler gets a :class:`Request` as soon as the head has
  arrived, and reads the body when (and if) it wants it (:meth:`Request.read`, with a
  limit: :class:`BodyTooLarge` at the first byte past it, before a byte is read when the
  declared length says so). ``Expect: 100-continue`` is answered when the body is read;
* the handler returns a :class:`Response`, written as one ``transport.write`` of head and
  body, or streams one (:meth:`Request.stream`: ``Content-Length`` when known, else
  chunked) and returns None;
* keep-alive by HTTP/1.1's rules (``Connection: close``, HTTP/1.0 without keep-alive);
  a connection with no request under way (none, or a head still arriving) closes
  :data:`KEEP_ALIVE_TIMEOUT` after it opened or answered its last request. A request
  whose body was not read whole is answered with ``Connection: close``, and what is left
  of its body is read and dropped for up to :data:`LINGER` seconds first, so the client
  gets its answer rather than a reset;
* requests pipelined behind the one being handled wait their turn (reading pauses past
  :data:`_MAX_WAITING` of them); a body unread past :data:`_HIGH_WATER` bytes pauses
  reading too, and a slow client pauses the writer (:meth:`Stream.write` waits);
* what is not HTTP gets a ``400``, a head over :data:`MAX_HEAD_BYTES` a ``431``, a
  transfer coding other than ``chunked`` (``gzip, chunked``) a ``501``, an
  ``Upgrade`` an ordinary answer and then the close (the gateway proxies no WebSockets);
  a handler that raises gets a ``500`` (or a cut connection, if it had started to
  stream), logged with its traceback.

:meth:`Listener.stop` stops accepting, closes idle connections, lets requests in flight
finish within its timeout, answers them with ``Connection: close``, then closes the rest.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Final, cast
from urllib.parse import unquote

import httptools
import orjson
from multidict import CIMultiDict

__all__ = [
    "KEEP_ALIVE_TIMEOUT",
    "LINGER",
    "MAX_HEAD_BYTES",
    "BodyTooLarge",
    "ClientGone",
    "Handler",
    "Listener",
    "Request",
    "Response",
    "Stream",
    "json_response",
]

log = logging.getLogger("flowops.gateway")

KEEP_ALIVE_TIMEOUT: Final = 75.0
"""Seconds an idle keep-alive connection is kept (aiohttp's and nginx's default)."""
LINGER: Final = 5.0
"""Seconds to read and drop the rest of a body nobody read, before closing."""
MAX_HEAD_BYTES: Final = 64 * 1024
"""The request line and headers together; past it, ``431``."""
_HIGH_WATER: Final = 256 * 1024  # body bytes waiting for the handler: stop reading
_LOW_WATER: Final = 64 * 1024  # read again below this
_MAX_WAITING: Final = 16  # pipelined requests waiting behind the current one

Handler = Callable[["Request"], Awaitable["Response | None"]]
"""What the listener calls for each request: a response, or None when it streamed one."""


class BodyTooLarge(Exception):  # noqa: N818 - a condition the handler answers (413)
    """The request body has more bytes than the reader's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body may hold at most {limit} bytes")
        self.limit = limit


class ClientGone(ConnectionResetError):  # noqa: N818 - named for what happened
    """The client closed its connection before the request's body arrived."""


@dataclass(slots=True)
class Response:
    """An answer written whole: head and body in one write.

    ``Content-Length`` and ``Date`` are the listener's to set (a ``Date`` among
    ``headers`` is kept); ``reason`` defaults to the status's phrase.
    """

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None


def json_response(
    body: object, *, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """A JSON answer.

    >>> json_response({"status": "ok"}).body
    b'{"status":"ok"}'
    """
    return Response(
        status,
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        [("Content-Type", "application/json"), *headers],
    )


class Request:
    """A request whose head has arrived; its body comes through :meth:`read`."""

    __slots__ = (
        "_chunks",
        "_complete",
        "_connection",
        "_continue",
        "_discard",
        "_ended",
        "_error",
        "_size",
        "_started",
        "_waiter",
        "content_length",
        "headers",
        "keep_alive",
        "method",
        "remote",
        "target",
        "version",
    )

    scheme: Final = "http"

    def __init__(
        self,
        connection: _Connection,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        *,
        version: str = "1.1",
        keep_alive: bool = True,
        remote: str | None = None,
    ) -> None:
        self.method = method
        self.target = target
        """The request target as sent: path and query, still percent-encoded."""
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.remote = remote
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self._connection = connection
        self._continue = headers.get("Expect", "").lower() == "100-continue"
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._complete = False
        self._discard = False
        self._error: ClientGone | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._started = False  # a response's head has been written
        self._ended = False  # and all of its body

    @property
    def path(self) -> str:
        """The path without the query, percent-decoded (as routes are written)."""
        path = self.target.partition("?")[0]
        return unquote(path) if "%" in path else path

    async def read(self, limit: int) -> bytes:
        """The whole body; :class:`BodyTooLarge` as soon as it is known to pass
        ``limit`` bytes, :class:`ClientGone` if the client leaves first."""
        if self.content_length is not None and self.content_length > limit:
            raise BodyTooLarge(limit)
        if self._continue and not self._complete:
            self._continue = False
            self._connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self._complete:
            if self._size > limit:
                raise BodyTooLarge(limit)
            if self._error is not None:
                raise self._error
            self._waiter = self._connection.loop.create_future()
            self._connection.resume_reading()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._size > limit:
            raise BodyTooLarge(limit)
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body

    async def stream(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        *,
        reason: str | None = None,
        content_length: int | None = None,
    ) -> Stream:
        """Start a streamed answer: its head is written now, its body by the stream."""
        bodyless = not _has_body(self, status)
        chunked = content_length is None and self.version == "1.1" and not bodyless
        if content_length is None and not chunked and not bodyless:
            self.keep_alive = False  # HTTP/1.0: the close ends the body
        extra = [("Transfer-Encoding", "chunked")] if chunked else []
        if content_length is not None:
            extra.append(("Content-Length", str(content_length)))
        connection = self._connection
        connection.write(connection.head(self, status, reason, [*headers, *extra], length=None))
        return Stream(self, chunked=chunked, bodyless=bodyless)

    # -- from the connection ---------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        if self._discard:
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > _HIGH_WATER and self._waiter is None:
            self._connection.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _lose(self) -> None:
        if not self._complete:
            self._error = ClientGone("the client closed the connection")
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Stream:
    """The body of a streamed answer (:meth:`Request.stream`)."""

    __slots__ = ("_bodyless", "_chunked", "_connection", "_request")

    def __init__(self, request: Request, *, chunked: bool, bodyless: bool) -> None:
        self._request = request
        self._connection = request._connection
        self._chunked = chunked
        self._bodyless = bodyless

    async def write(self, data: bytes) -> None:
        """Send ``data``; waits while the client is slower than the upstream."""
        if not data or self._bodyless:
            return
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        self._connection.write(data)
        await self._connection.drain()

    async def end(self) -> None:
        """The body is complete."""
        if self._chunked:
            self._connection.write(b"0\r\n\r\n")
        self._request._ended = True
        await self._connection.drain()


class Listener:
    """Serves ``handler`` on listening sockets until :meth:`stop`."""

    def __init__(self, handler: Handler, *, keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT) -> None:
        self.handler = handler
        self.keep_alive_timeout = keep_alive_timeout
        self.closing = False
        self.connections: set[_Connection] = set()
        self._servers: list[asyncio.Server] = []
        self._all_closed: asyncio.Event | None = None

    async def start(self, sock: socket.socket, *, backlog: int = 1024) -> None:
        """Accept connections on ``sock`` (listening already, or to listen now)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=backlog)
        self._servers.append(server)

    async def stop(self, timeout: float) -> None:
        """Stop accepting; close idle connections; give requests in flight ``timeout``
        seconds to finish (their answers say ``Connection: close``); close the rest."""
        self.closing = True
        for server in self._servers:
            server.close()
        self._all_closed = asyncio.Event()
        for connection in list(self.connections):
            connection.close_if_idle()
        if self.connections:
            try:
                async with asyncio.timeout(timeout):
                    await self._all_closed.wait()
            except TimeoutError:
                busy = len(self.connections)
                log.warning("%d connections still busy after %gs: closing them", busy, timeout)
        for connection in list(self.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()

    def _forget(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the handler on each in turn."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()  # once: each lookup is a getpid() call
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.remote: str | None = None
        self.parsing: Request | None = None  # the request whose body is arriving
        self.active: Request | None = None  # the request being handled
        self.waiting: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        self.idle: asyncio.TimerHandle | None = None  # closes the connection if idle
        self.idle_since = 0.0  # loop time of the connection's start or last answer
        self.linger: asyncio.TimerHandle | None = None  # closes it after an unread body
        self.reading = True
        self.deaf = False  # after an Upgrade or what is not HTTP: read nothing more
        self.lost = False
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._url: list[bytes] = []
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        self.listener.connections.add(self)
        if self.listener.closing:
            self.abort()
            return
        self._idle_timer()

    def data_received(self, data: bytes) -> None:
        if self.deaf:
            return  # what follows an Upgrade or an error: dropped until the close
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.deaf = True
        except httptools.HttpParserError as exc:
            self._refuse(400, f"not a valid HTTP/1.1 request: {exc}")

    def eof_received(self) -> bool | None:
        return False  # close our side too: a half-closed client gets nothing more

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for timer in (self.idle, self.linger):
            if timer is not None:
                timer.cancel()
        for request in (self.parsing, self.active, *self.waiting):
            if request is not None:
                request._lose()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.listener._forget(self)

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = []
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes <= MAX_HEAD_BYTES:
            self._headers.append(
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            )

    def on_headers_complete(self) -> None:
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"the request's head is over {MAX_HEAD_BYTES} bytes")
            return
        parser = self.parser
        headers = CIMultiDict(self._headers)
        if "Transfer-Encoding" in headers and _codings(headers) != ["chunked"]:
            self._refuse(501, "only the chunked transfer coding is understood")
            return
        request = Request(
            self,
            parser.get_method().decode("ascii", "replace"),
            b"".join(self._url).decode("utf-8", "surrogateescape"),
            headers,
            version=parser.get_http_version(),
            keep_alive=parser.should_keep_alive(),
            remote=self.remote,
        )
        self.parsing = request
        if self.active is None:
            self._handle(request)
        else:
            self.waiting.append(request)
            if len(self.waiting) >= _MAX_WAITING:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing._feed(body)

    def on_message_complete(self) -> None:
        request, self.parsing = self.parsing, None
        if request is None:
            return
        request._finish()
        if request._discard:  # its answer has gone: only its body was awaited
            self.close()

    # -- requests --------------------------------------------------------------------

    def _handle(self, request: Request) -> None:
        self.active = request
        self.task = self.loop.create_task(self._run(request))

    async def _run(self, request: Request) -> None:
        try:
            response = await self.listener.handler(request)
        except ClientGone:
            response = None
        except Exception:
            log.exception("gateway: %s %s failed", request.method, request.path)
            response = None if request._started else _server_error()
        if response is not None and not request._started:
            head = self.head(
                request,
                response.status,
                response.reason,
                response.headers,
                length=len(response.body),
            )
            self.write(head + response.body if _has_body(request, response.status) else head)
            request._ended = True
        self._done(request)

    def _done(self, request: Request) -> None:
        self.active = None
        self.task = None
        if self.lost:
            return
        if not (request._ended and request.keep_alive and request._complete):
            self._close_after(request)
            return
        if self.waiting:
            self._handle(self.waiting.popleft())
            if len(self.waiting) < _MAX_WAITING:
                self.resume_reading()
            return
        if self.deaf or self.listener.closing:
            self.close()
            return
        self.resume_reading()
        self.idle_since = self.loop.time()

    def _close_after(self, request: Request) -> None:
        """Close now, or once the rest of an unread body has arrived (LINGER at most)."""
        if request._complete or request is not self.parsing or self.deaf:
            self.close()
            return
        request._discard = True
        request._chunks.clear()
        self.resume_reading()
        self.linger = self.loop.call_later(LINGER, self.close)

    def head(
        self,
        request: Request,
        status: int,
        reason: str | None,
        headers: Sequence[tuple[str, str]],
        *,
        length: int | None,
    ) -> bytes:
        """The status line and headers; ``length`` is set as ``Content-Length``."""
        request._started = True
        if not (request._complete and not self.listener.closing):
            request.keep_alive = False
        if reason is None:
            reason = _REASONS.get(status, "Unknown")
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if length is not None and status >= 200 and status not in (204, 304):
            lines.append(f"Content-Length: {length}\r\n")
        if not any(name.lower() == "date" for name, _ in headers):
            lines.append(f"Date: {_date()}\r\n")
        if not request.keep_alive:
            lines.append("Connection: close\r\n")
        elif request.version == "1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("utf-8", "surrogateescape")

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self.lost:
            raise ClientGone("the client closed the connection")
        if self.writable is not None:
            await self.writable

    def _refuse(self, status: int, reason: str) -> None:
        """Answer what cannot be a request, then close: nothing after it can be trusted."""
        self.deaf = True
        if self.parsing is not None:
            self.parsing._lose()  # its handler stops waiting for the rest of its body
        code = _REASONS[status].lower().replace(" ", "_")
        body = orjson.dumps({"error": code, "reason": reason})
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nDate: {_date()}\r\nConnection: close\r\n\r\n"
        )
        if self.active is None:
            self.write(head.encode() + body)
            self.close()
        else:  # the answer to the request being handled comes first, then the close
            self.waiting.clear()

    # -- reading, closing ------------------------------------------------------------

    def pause_reading(self) -> None:
        if self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = True
            self.transport.resume_reading()

    def _idle_timer(self) -> None:
        """Close the connection when no request has been under way for
        ``keep_alive_timeout`` since it opened or last answered (a head still arriving is
        not under way: slow heads lose). One timer a connection, moved on when it fires
        early, rather than one a request."""
        loop = self.loop
        self.idle_since = loop.time()
        self.idle = loop.call_later(self.listener.keep_alive_timeout, self._idle_check)

    def _idle_check(self) -> None:
        loop = self.loop
        timeout = self.listener.keep_alive_timeout
        due = self.idle_since + timeout
        if self.active is not None or self.parsing is not None:
            due = loop.time() + timeout  # under way: look again later
        if due <= loop.time():
            self.close()
        else:
            self.idle = loop.call_at(due, self._idle_check)

    def close_if_idle(self) -> None:
        if self.active is None and self.parsing is None:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _has_body(request: Request, status: int) -> bool:
    return request.method != "HEAD" and status >= 200 and status not in (204, 304)


def _server_error() -> Response:
    return json_response({"error": "internal_error", "reason": "the gateway failed"}, status=500)


_REASONS: Final = {status.value: status.phrase for status in HTTPStatus}


def _codings(headers: CIMultiDict[str]) -> list[str]:
    """A request's transfer codings, in order (``gzip, chunked``: ``["gzip", "chunked"]``).

    The parser undoes ``chunked`` only: a body with another coding would be forwarded
    still coded and no longer saying so, hence the 501 (RFC 9112, 6.1) for any other.
    """
    return [
        coding.strip().lower()
        for value in headers.getall("Transfer-Encoding")
        for coding in value.split(",")
        if coding.strip()
    ]


_date_cache: list[object] = [0, ""]


def _date() -> str:
    """The ``Date`` header's value, made at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return str(_date_cache[1])
