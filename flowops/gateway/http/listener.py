"""The gateway's HTTP/1.1 server: asyncio Protocols and httptools' C parser.

The client side of the gateway left aiohttp for :mod:`flowops.gateway.http.client`; this is
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
* keep-alive by HTTP/1.1's rules (``Connection: close``, HTTP/1.0 without keep-alive).
  A request whose body was not read whole is answered with ``Connection: close``, and
  what is left of its body is read and dropped for up to :data:`LINGER` seconds first,
  so the client gets its answer rather than a reset;
* requests pipelined behind the one being handled wait their turn (reading pauses past
  :data:`_MAX_WAITING` of them); a body unread past :data:`_HIGH_WATER` bytes pauses
  reading too, and a client that does not read pauses the writer (:meth:`Stream.write`
  waits, and no further request is started);
* the limits of ``gateway.limits`` (:class:`~flowops.gateway.config.LimitSettings`) hold
  as bytes arrive, with nginx's defaults and mostly its answers (docs/gateway.md,
  "Limits and conformance", says where not): a request target over its cap gets
  ``414``, a header line or a whole head over theirs ``431``, a head or a body that
  stalls ``408``, a worker holding too many body bytes ``503``; a client that reads
  nothing is cut; idle connections close; past ``max_connections`` the worker stops
  accepting (clients wait in the backlog);
* RFC 9112: what is not HTTP/1.x gets a ``400`` (``505`` for other versions), as do a
  missing (HTTP/1.1) or repeated ``Host``, an HTTP/1.0 request with
  ``Transfer-Encoding``, ``CONNECT`` and a bad chunk; a transfer coding other than ``chunked``
  (``gzip, chunked``) a ``501``; an ``Upgrade`` an ordinary answer and then the close
  (the gateway proxies no WebSockets); an answer whose head holds CR, LF or NUL, or is
  informational (an upstream's ``101``), is replaced by a ``502``; a handler that
  raises gets a ``500`` (or a cut connection, if it had started to stream), logged
  with its traceback.

A refusal stops the parser where it stands: nothing after it is parsed, the answers to
the requests accepted before it go out in order, then the refusal, then the close. A
connection's memory is bounded (docs/gateway.md, "Limits") and freed when it closes,
without waiting for the garbage collector.

With a :class:`~flowops.gateway.http.tls.ServerTls`, connections are TLS (the transport's,
asyncio's or uvloop's: the bytes reach the parser decrypted, and every limit above holds
on them); the handshake has the head's deadline, and :attr:`Request.scheme` says
``https``.

:meth:`Listener.stop` stops accepting, closes idle connections, lets requests in flight
finish within its timeout, answers them with ``Connection: close``, then closes the rest.
"""

from __future__ import annotations

import asyncio
import logging
import re
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

from flowops.gateway.config import LimitSettings
from flowops.gateway.http.tls import ServerTls

__all__ = [
    "LINGER",
    "BadResponseHead",
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

LINGER: Final = 5.0
"""Seconds to read and drop the rest of a body nobody read, before closing."""
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


class BadResponseHead(ValueError):  # noqa: N818 - named for what is wrong
    """An answer's head cannot be written as given (a header holds CR, LF or NUL, or
    the status is informational); the client gets a ``502`` in its place."""


class _BodyRefused(ClientGone):
    """The listener refused the rest of a body (a timeout, a bad chunk, the worker's
    body budget): the handler's read ends, and the listener answers the request."""


class _Refused(Exception):  # noqa: N818 - a refusal, raised to stop the parser
    """Raised in a parser callback: llhttp stops at once, so nothing after it is parsed
    (returning would let it parse the rest of the read, pipelined requests included)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
        "_held",
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
        self._held = 0  # of _size, what the listener's body_held counts
        self._complete = False
        self._discard = False
        self._error: ClientGone | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._started = False  # a response's head has been written
        self._ended = False  # and all of its body

    @property
    def scheme(self) -> str:
        """``https`` on a connection the listener terminated TLS for, else ``http``."""
        return self._connection.scheme

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
        self._release()
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
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._held += len(chunk)
        if self._size > _HIGH_WATER and self._waiter is None:
            self._connection.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: ClientGone) -> None:
        """The rest of the body will not come: the reader gets ``error``."""
        self._release()
        if not self._complete:
            self._error = error
            self._wake()

    def _release(self) -> None:
        """The body's bytes leave the listener's keeping (taken, or dropped)."""
        self._chunks.clear()
        if self._held:
            self._connection.listener.body_held -= self._held
            self._held = 0

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
    """Serves ``handler`` on listening sockets until :meth:`stop`, within ``limits``;
    over TLS with ``tls``'s context of the moment (a connection takes the context
    current when it is accepted, so a reloaded certificate serves the next ones)."""

    def __init__(
        self,
        handler: Handler,
        *,
        limits: LimitSettings | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits if limits is not None else LimitSettings()
        self.tls = tls
        self.tick = _tick(self.limits)
        self.closing = False
        self.connections: set[_Connection] = set()
        self.body_held = 0
        """Request body bytes received and not yet taken by a handler, all connections."""
        self._open = 0  # accepted and not yet lost: what max_connections counts
        self._accepting = False
        self._socks: list[socket.socket] = []
        self._opening: set[asyncio.Task[None]] = set()  # held: the loop keeps tasks weakly
        self._retry: asyncio.TimerHandle | None = None
        self._all_closed: asyncio.Event | None = None

    async def start(self, sock: socket.socket, *, backlog: int = 1024) -> None:
        """Accept connections on ``sock`` (listening already, or to listen now).

        The listener accepts them itself rather than through ``loop.create_server``: at
        ``max_connections`` it stops reading the listening socket, so that clients wait
        in the kernel's backlog (as nginx's do) instead of being accepted and dropped;
        an asyncio server cannot pause its accepting."""
        self.loop = asyncio.get_running_loop()
        sock.setblocking(False)
        sock.listen(backlog)
        self._socks.append(sock)
        self._accepting = False
        self._resume_accepting()

    async def stop(self, timeout: float) -> None:
        """Stop accepting; close idle connections; give requests in flight ``timeout``
        seconds to finish (their answers say ``Connection: close``); close the rest."""
        self.closing = True
        self._pause_accepting()
        for sock in self._socks:
            sock.close()
        self._all_closed = asyncio.Event()
        if self._opening:  # not yet connections: TLS handshakes, mostly
            for task in self._opening:
                task.cancel()
            await asyncio.gather(*self._opening, return_exceptions=True)
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

    # -- accepting -------------------------------------------------------------------

    def _accept(self, sock: socket.socket) -> None:
        while self._open < self.limits.max_connections:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: wait rather than spin
                log.warning("gateway: cannot accept a connection (%s): retrying in 1s", exc)
                self._pause_accepting()
                self._retry = self.loop.call_later(1.0, self._resume_accepting)
                return
            self._open += 1
            task = self.loop.create_task(self._serve(conn))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)
        self._pause_accepting()  # at the cap: the next ones wait in the backlog

    async def _serve(self, conn: socket.socket) -> None:
        """Make ``conn`` a connection: at once, or after its TLS handshake.

        The handshake has the head's deadline (``head_timeout``, as nginx gives it
        ``client_header_timeout``): a client that stalls in it is cut, and counts
        against ``max_connections`` meanwhile. A failed handshake is not logged (a
        scanner's, a client that does not trust the certificate: the client knows)."""
        conn.setblocking(False)
        loop = self.loop
        try:
            if self.tls is None:
                await loop.connect_accepted_socket(lambda: _Connection(self), conn)
            else:
                await loop.connect_accepted_socket(
                    lambda: _Connection(self, scheme="https"),
                    conn,
                    ssl=self.tls.context,
                    ssl_handshake_timeout=self.limits.head_timeout,
                )
        except (OSError, asyncio.CancelledError):  # cancelled: the listener stops
            conn.close()  # the transport closed it already, if it had taken it
            self._closed()

    def _pause_accepting(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._accepting:
            self._accepting = False
            for sock in self._socks:
                if sock.fileno() >= 0:
                    self.loop.remove_reader(sock.fileno())

    def _resume_accepting(self) -> None:
        self._retry = None
        if not self._accepting and not self.closing and self._open < self.limits.max_connections:
            self._accepting = True
            for sock in self._socks:
                self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _closed(self) -> None:
        self._open -= 1
        if not self._accepting:
            self._resume_accepting()

    def _forget(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        self._closed()
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the handler on each in turn.

    The head is counted as it arrives. llhttp reports the target piece by piece
    (``on_url``), but httptools hands over a header only once it is whole (and joins
    its pieces itself), so a read that leaves a head unfinished is measured too: what
    follows its last LF is the line still arriving (``_line``), and a read without an
    LF adds to it. One read is not measured: one in which a request ended and the next
    began without a header reported yet (where it began in the read is not known). A
    head may pass its caps by that read at most before it is refused.
    """

    def __init__(self, listener: Listener, *, scheme: str = "http") -> None:
        self.listener = listener
        self.scheme = scheme
        self.limits = listener.limits
        self.loop = listener.loop  # once: each get_running_loop() is a getpid() call
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.remote: str | None = None
        self.parsing: Request | None = None  # the request whose body is arriving
        self.active: Request | None = None  # the request being handled
        self.waiting: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        self.timer: asyncio.TimerHandle | None = None  # the deadlines' one timer
        self.idle_since = 0.0  # loop time of the connection's start or last answer
        self.head_started = 0.0  # loop time of the current head's first byte
        self.read_at = 0.0  # loop time of the last read of a body
        self.paused_at = 0.0  # loop time writing was paused (the client reads nothing)
        self.linger: asyncio.TimerHandle | None = None  # closes it after an unread body
        self.reading = True
        self.deaf = False  # after an Upgrade or a refusal: read nothing more
        self.refusal: bytes | None = None  # sent once the answers before it have gone
        self.lost = False
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.in_head = False
        self._began = False  # a head began during this read
        self._ended = False  # a request ended during this read
        self._url: list[bytes] = []
        self._headers: list[tuple[str, str]] = []
        self._url_bytes = 0
        self._head_bytes = 0  # the whole header lines reported so far
        self._line = 0  # the line still arriving, as far as the reads measured it

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        self.listener.connections.add(self)
        if self.listener.closing:
            self.abort()
            return
        self.idle_since = self.loop.time()
        self.timer = self.loop.call_later(self.listener.tick, self._check)

    def data_received(self, data: bytes) -> None:
        if self.deaf:
            return  # what follows an Upgrade or a refusal: dropped until the close
        if self.parsing is not None:
            self.read_at = self.loop.time()
        self._ended = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._stopped(exc)
        except httptools.HttpParserUpgrade:
            self.deaf = True
        except httptools.HttpParserError as exc:
            self._refuse(400, f"not a valid HTTP/1.1 request: {exc}")
        else:
            if self.in_head:
                self._measure_head(data)

    def eof_received(self) -> bool | None:
        return False  # close our side too: a half-closed client gets nothing more

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.deaf = True
        for timer in (self.timer, self.linger):
            if timer is not None:
                timer.cancel()
        self.timer = self.linger = None
        for request in (self.parsing, self.active, *self.waiting):
            if request is not None:
                request._fail(ClientGone("the client closed the connection"))
        self.parsing = None
        self.waiting.clear()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.parser = _NO_PARSER  # the parser holds this protocol: free both now, not at a GC
        self.listener._forget(self)

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()
            self.paused_at = self.loop.time()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
        if self.active is None and not self.lost:
            self._next()

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = []
        self._headers = []
        self._url_bytes = self._head_bytes = self._line = 0
        self.in_head = self._began = True
        self.head_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_bytes += len(url)
        cap = self.limits.max_request_line_bytes
        if self._url_bytes > cap:
            raise _Refused(414, f"the request target is over {cap} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4  # ": " and CRLF
        limits = self.limits
        if size > limits.max_header_bytes:
            raise _Refused(431, f"a header line is over {limits.max_header_bytes} bytes")
        self._head_bytes += size
        if self._url_bytes + self._head_bytes > limits.max_head_bytes:
            raise _Refused(431, f"the request's head is over {limits.max_head_bytes} bytes")
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        headers = CIMultiDict(self._headers)
        method = parser.get_method().decode("ascii", "replace")
        version = parser.get_http_version()
        refused = _nonconforming(method, version, headers)
        if refused is not None:
            raise _Refused(*refused)
        request = Request(
            self,
            method,
            b"".join(self._url).decode("utf-8", "surrogateescape"),
            headers,
            version=version,
            keep_alive=parser.should_keep_alive(),
            remote=self.remote,
        )
        self.parsing = request
        if self.active is None and not self.waiting and self.writable is None:
            self._handle(request)
        else:
            self.waiting.append(request)
            if len(self.waiting) >= _MAX_WAITING:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if request is None or request._discard:
            return
        listener = self.listener
        listener.body_held += len(body)
        request._feed(body)
        if listener.body_held > self.limits.max_body_buffer_bytes:
            raise _Refused(503, "the gateway holds too many request bodies: try again")

    def on_message_complete(self) -> None:
        self._ended = True
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
        except BadResponseHead as exc:
            log.error("gateway: %s %s: %s", request.method, request.path, exc)
            response = None if request._started else _bad_gateway()
        except Exception:
            log.exception("gateway: %s %s failed", request.method, request.path)
            response = None if request._started else _server_error()
        if response is not None and not request._started:
            self._answer(request, response)
        self._done(request)

    def _answer(self, request: Request, response: Response) -> None:
        try:
            head = self.head(
                request,
                response.status,
                response.reason,
                response.headers,
                length=len(response.body),
            )
        except BadResponseHead as exc:
            log.error("gateway: %s %s: %s", request.method, request.path, exc)
            response = _bad_gateway()
            head = self.head(request, 502, None, response.headers, length=len(response.body))
        self.write(head + response.body if _has_body(request, response.status) else head)
        request._ended = True

    def _done(self, request: Request) -> None:
        self.active = None
        self.task = None
        request._release()
        if self.lost:
            return
        if not (request._ended and request.keep_alive and request._complete):
            self._close_after(request)
            return
        self._next()

    def _next(self) -> None:
        """After an answer: the next request waiting, else a refusal, else reading on."""
        if self.writable is not None:
            return  # the client has not read the answers yet: resume_writing calls again
        if self.waiting:
            self._handle(self.waiting.popleft())
            if len(self.waiting) < _MAX_WAITING:
                self.resume_reading()
            return
        if self.refusal is not None:
            self._send_refusal()
            return
        if self.deaf or self.listener.closing:
            self.close()
            return
        self.resume_reading()
        self.idle_since = self.loop.time()

    def _close_after(self, request: Request) -> None:
        """Close now, or once the rest of an unread body has arrived (LINGER at most)."""
        if self.refusal is not None and not request._started:
            self._send_refusal()  # the refusal is this request's answer
            return
        if request._complete or request is not self.parsing or self.deaf:
            self.close()
            return
        request._discard = True
        request._release()
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
        """The status line and headers; ``length`` is set as ``Content-Length``.

        :class:`BadResponseHead` if a name or value holds CR, LF or NUL (a header the
        upstream could use to write the client a second answer): counted over the
        whole head, three scans in C, rather than a test a header."""
        if not (request._complete and not self.listener.closing):
            request.keep_alive = False
        if reason is None:
            reason = _REASONS.get(status, "Unknown")
        if status < 200:
            raise BadResponseHead(f"an informational answer ({status}) cannot be relayed")
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if length is not None and status not in (204, 304):
            lines.append(f"Content-Length: {length}\r\n")
        if not any(name.lower() == "date" for name, _ in headers):
            lines.append(f"Date: {_date()}\r\n")
        if not request.keep_alive:
            lines.append("Connection: close\r\n")
        elif request.version == "1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        text = "".join(lines)
        count = len(lines)
        if text.count("\n") != count or text.count("\r") != count or "\0" in text:
            raise BadResponseHead("a response header holds CR, LF or NUL")
        request._started = True
        return text.encode("utf-8", "surrogateescape")

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self.lost:
            raise ClientGone("the client closed the connection")
        if self.writable is not None:
            await self.writable

    # -- refusals --------------------------------------------------------------------

    def _stopped(self, exc: httptools.HttpParserCallbackError) -> None:
        """A callback stopped the parser: a refusal, or a fault of ours."""
        cause = exc.__context__
        if isinstance(cause, _Refused):
            self._refuse(cause.status, cause.reason)
            return
        log.error("gateway: the listener failed on a request", exc_info=cause)
        self._refuse(500, "the gateway failed")

    def _measure_head(self, data: bytes) -> None:
        """A read left a head unfinished: measure the line still arriving, refuse at a cap.

        Until the first header is whole the line may be the request line, whose target
        ``on_url`` counts exactly; it is held to the larger of the two line caps."""
        end = data.rfind(b"\n")
        if self._began and self._ended and not self._headers:
            self._line = 0  # the LF may be the previous request's
        elif end >= 0:
            self._line = len(data) - end - 1
        elif self._began:
            self._line = len(data)
        else:
            self._line += len(data)
        self._began = False
        limits = self.limits
        cap = limits.max_header_bytes
        if not self._headers:
            cap = max(cap, limits.max_request_line_bytes)
        if self._line > cap:
            self._refuse(431, f"a header line is over {limits.max_header_bytes} bytes")
        elif self._url_bytes + self._head_bytes + self._line > limits.max_head_bytes:
            self._refuse(431, f"the request's head is over {limits.max_head_bytes} bytes")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer what cannot be served, then close; nothing after it is parsed.

        The answers to the requests accepted before it go first, in order; a request
        whose body was arriving gets the refusal as its answer."""
        self.deaf = True
        self.in_head = False
        self.refusal = _refusal(status, reason)
        request, self.parsing = self.parsing, None
        if request is not None:
            request._fail(_BodyRefused(reason))
            if self.waiting and self.waiting[-1] is request:
                self.waiting.pop()
        if self.active is None and not self.waiting:
            self._send_refusal()

    def _send_refusal(self) -> None:
        """Write the refusal, then close: our side at once, the connection once the
        client has closed its side or after LINGER, reading and dropping meanwhile,
        so that a client still sending gets the answer rather than a reset."""
        data, self.refusal = self.refusal, None
        transport = self.transport
        if data is None or transport is None or transport.is_closing():
            return
        transport.write(data)
        if not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self.resume_reading()
        if self.linger is None:
            self.linger = self.loop.call_later(LINGER, self.close)

    # -- deadlines, reading, closing -------------------------------------------------

    def _check(self) -> None:
        """The connection's deadlines, on one timer that looks every ``tick`` rather
        than a timer armed and cancelled a request: sending, the head, the body, idle."""
        now = self.loop.time()
        limits = self.limits
        due = now + self.listener.tick
        if self.writable is not None:
            if now - self.paused_at >= limits.send_timeout:
                self.abort()  # as nginx does: the client reads nothing, no answer helps
                return
        elif self.deaf:
            pass
        elif self.in_head and self.reading:
            if now - self.head_started >= limits.head_timeout:
                self._refuse(408, f"the request's head took over {limits.head_timeout:g}s")
        elif self.parsing is not None and self.reading and not self.parsing._continue:
            # (a client sent "Expect: 100-continue" waits for our 100 before its body)
            if now - max(self.read_at, self.head_started) >= limits.body_timeout:
                timeout = limits.body_timeout
                self._refuse(408, f"the request's body paused for over {timeout:g}s")
        elif self.active is None and not self.waiting and self.parsing is None:
            due = min(due, self.idle_since + limits.keep_alive_timeout)
            if now >= self.idle_since + limits.keep_alive_timeout:
                self.close()
                return
        if not self.lost:
            self.timer = self.loop.call_at(due, self._check)

    def pause_reading(self) -> None:
        if self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = True
            self.read_at = self.loop.time()  # a pause of ours does not count against it
            self.transport.resume_reading()

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


def _bad_gateway() -> Response:
    reason = "the upstream's answer could not be relayed"
    return json_response({"error": "bad_gateway", "reason": reason}, status=502)


def _refusal(status: int, reason: str) -> bytes:
    """A refusal's whole answer, ``Connection: close`` included."""
    code = _REASONS[status].lower().replace(" ", "_").replace("-", "_")
    body = orjson.dumps({"error": code, "reason": reason})
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nDate: {_date()}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _nonconforming(method: str, version: str, headers: CIMultiDict[str]) -> tuple[int, str] | None:
    """Why a head cannot be served (RFC 9112), as a status and a reason; None if it can."""
    if version not in ("1.1", "1.0"):
        if version.startswith("0."):
            return 400, "HTTP/0.9 requests are not served"
        return 505, f"HTTP/{version} is not served here (HTTP/1.1 is)"
    if method == "CONNECT":  # nginx's answer too; llhttp would take it for an upgrade
        return 400, "CONNECT is not served: the gateway is no forward proxy"
    hosts = headers.getall("Host", ())
    if len(hosts) != 1:
        if hosts:
            return 400, "a request has one Host header (RFC 9112, 3.2)"
        if version == "1.1":
            return 400, "an HTTP/1.1 request names its Host (RFC 9112, 3.2)"
    elif hosts[0] not in _HOSTS_SEEN and not _valid_host(hosts[0]):
        return 400, f"not a valid Host: {hosts[0]!r}"
    if "Transfer-Encoding" in headers:
        if version == "1.0":  # RFC 9112, 6.1: the framing is faulty
            return 400, "an HTTP/1.0 request has no Transfer-Encoding (RFC 9112, 6.1)"
        if _codings(headers) != ["chunked"]:
            return 501, "only the chunked transfer coding is understood"
    return None


def _valid_host(host: str) -> bool:
    """Whether ``host`` is RFC 3986's ``host [ ":" port ]``, remembered when it is: a
    worker sees few hosts, and the set's lookup costs a tenth of the match's."""
    if _HOST.fullmatch(host) is None:
        return False
    if len(_HOSTS_SEEN) >= 1024:  # a client sending many hosts only costs the match
        _HOSTS_SEEN.clear()
    _HOSTS_SEEN.add(host)
    return True


_HOSTS_SEEN: Final[set[str]] = set()
_HOST: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
"""RFC 3986's ``host [ ":" port ]``: an IP literal, or a registered name."""

_NO_PARSER: Final = httptools.HttpRequestParser(object())
"""A lost connection's parser, in place of its own (which holds the connection)."""


def _tick(limits: LimitSettings) -> float:
    """How often a connection looks at its deadlines: a quarter of the shortest one,
    so a deadline fires within a quarter of itself after it is due."""
    shortest = min(
        limits.head_timeout, limits.body_timeout, limits.send_timeout, limits.keep_alive_timeout
    )
    return max(shortest / 4, 0.005)


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
