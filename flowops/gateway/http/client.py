"""The gateway's upstream client: keep-alive HTTP/1.1 on asyncio Protocols and httptools.

A proxy needs little of an HTTP client: send a request it has whole, stream the answer
back, and keep the connection for the next request. :class:`UpstreamClient` does that
and no more (no cookies, redirects, decompression or proxies), so a request costs one
``transport.write`` of its head and body, and one C parse of the answer.

* per upstream (scheme, host, port), a pool of at most ``limit_per_host`` connections;
  the most recently used idle one is taken first, a new one opened when none is idle,
  and past the limit the request waits for one to come back;
* a connection goes back to the pool only after a complete response that did not say
  ``Connection: close``; on an error, a cancellation (the caller's timeout) or a
  response not read to its end, it is closed;
* an idle connection is not reused once the server may have closed it: past the
  origin's ``idle_timeout`` (:data:`IDLE_TIMEOUT`, below uvicorn's 5 s keep-alive, so the
  gateway lets go first), or when its socket is readable while no request is under way
  (an EOF or bytes nobody asked for, seen before the event loop got to them; one
  ``poll`` call, made for connections idle 50 ms or more: no idle timer is shorter,
  and under load connections are reused sooner than that). Expired connections are
  closed by a timer as well, not only when met;
* a request that failed on a reused connection before any byte of its answer arrived is
  sent once more on a new connection when it may be replayed (an idempotent method, or
  ``replayable``): the server most likely closed the idle connection as the request
  went out, and never read it (what Go's and urllib3's clients do too);
* the response's head is awaited by :meth:`UpstreamClient.request`; its body is an async
  iterator of chunks as they arrive (``Content-Length``, chunked, or up to the close),
  with reading paused while more than ``_HIGH_WATER`` bytes wait for the caller;
* headers are a list of ``(name, value)`` pairs in the order received, duplicates kept;
  ``Host`` and ``Content-Length`` of the request are the client's to set.

Timeouts: ``connect_timeout`` bounds getting a connection (waiting for a free one and
opening it); everything after is bounded by the caller, with ``asyncio.timeout``.

Errors, under :class:`~flowops.errors.ServiceError` (``.target`` is the upstream's URL)::

    UpstreamError                       the upstream failed this request
    ├── UpstreamConnectError            no byte of the request was sent: any method may
    │   │                               be retried (refused, unreachable, TLS failed)
    │   └── UpstreamConnectTimeoutError (also TimeoutError) no connection within
    │                                   connect_timeout
    └── UpstreamResetError              the connection broke, or the answer was not HTTP,
                                        after the request was sent (it may have been
                                        acted on)

>>> client = UpstreamClient(limit_per_host=8)
>>> client.limit_per_host
8
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

from flowops.errors import ServiceError

__all__ = [
    "IDLE_TIMEOUT",
    "OriginOptions",
    "Response",
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamConnectTimeoutError",
    "UpstreamError",
    "UpstreamResetError",
]

_HIGH_WATER: Final = 256 * 1024  # bytes of body waiting for the caller: stop reading
_LOW_WATER: Final = 64 * 1024  # read again below this
_SET_BY_CLIENT: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_BODYLESS_METHODS: Final = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_POLL_AFTER: Final = 0.05
"""Seconds idle after which a connection's socket is polled before reuse. Servers close
idle connections on timers of a second or more; under load connections are reused
within milliseconds, and the poll (a system call, about 1 us) is skipped for them."""
IDLE_TIMEOUT: Final = 4.0
"""Seconds an idle upstream connection is kept by default: below uvicorn's 5 s."""


@dataclass(frozen=True, slots=True)
class OriginOptions:
    """How the client talks to one upstream: how long an idle connection is kept, and
    the TLS context of an ``https`` one (None: the system's CAs, hostname checked)."""

    idle_timeout: float = IDLE_TIMEOUT
    tls: ssl.SSLContext | None = None


class UpstreamError(ServiceError):
    """The upstream failed this request; ``target`` is its URL."""


class UpstreamConnectError(UpstreamError):
    """No connection: no byte of the request was sent, so any method may be retried."""


class UpstreamConnectTimeoutError(UpstreamConnectError, TimeoutError):
    """No connection within the connect timeout (a timeout too, like aiohttp's)."""


class UpstreamResetError(UpstreamError):
    """The connection broke or the answer was not HTTP after the request was sent."""


class UpstreamClient:
    """Keep-alive HTTP/1.1 connections to upstreams, ``limit_per_host`` at most each."""

    def __init__(self, *, limit_per_host: int = 256, idle_timeout: float = IDLE_TIMEOUT) -> None:
        if limit_per_host < 1:
            raise ValueError(f"limit_per_host must be at least 1, got {limit_per_host}")
        self.limit_per_host = limit_per_host
        self.defaults = OriginOptions(idle_timeout=idle_timeout)
        self._options: dict[str, OriginOptions] = {}
        self._pools: dict[str, _HostPool] = {}
        self._closed = False

    def configure(self, url: str, options: OriginOptions) -> None:
        """Use ``options`` for ``url``: for its connections opened from now on (those
        open keep the TLS session they have until they close or expire)."""
        self._options[url] = options
        pool = self._pools.get(url)
        if pool is not None:
            pool.options = options
            pool.origin.use_tls(options.tls)

    async def request(
        self,
        method: str,
        url: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        connect_timeout: float | None = None,
        replayable: bool = False,
    ) -> Response:
        """Send ``method url+path`` and return the response once its head has arrived.

        ``url`` is the upstream's ``http(s)://host[:port][/base]``; ``path`` the target
        (with its query) appended to it. Raises :class:`UpstreamConnectError` when no
        byte was sent and :class:`UpstreamResetError` when the answer did not come; the
        caller bounds the wait (``asyncio.timeout``) and must :meth:`Response.release`
        the response, or read its body to the end. ``replayable``: a request of any
        method may be sent again when a reused connection turns out closed.
        """
        if self._closed:
            raise RuntimeError("the upstream client is closed")
        pool = self._pools.get(url)
        if pool is None:
            options = self._options.get(url, self.defaults)
            origin = _Origin(url, options.tls)
            pool = self._pools[url] = _HostPool(origin, self.limit_per_host, options)
        data = pool.origin.encode(method, path, headers, body)
        connection = await pool.acquire(connect_timeout)
        reused = connection.requests > 0
        response = Response(connection, pool.origin.url, head=method == "HEAD")
        connection.send(response, data)
        try:
            await response.head_received
        except BaseException as exc:
            response.release()  # cancelled or broken: the connection is closed
            replay = reused and not connection.received and (replayable or method in _IDEMPOTENT)
            if not (replay and isinstance(exc, UpstreamResetError)):
                raise
        else:
            return response
        # the server closed the kept connection as the request went out: once more, anew
        fresh = await pool.acquire(connect_timeout, fresh=True)
        return await _exchange(fresh, pool, method, data)

    def connections(self, url: str) -> int:
        """How many connections to ``url`` are open or opening now."""
        pool = self._pools.get(url)
        return 0 if pool is None else pool.size

    async def close(self) -> None:
        """Close the idle connections; those in use close when released."""
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        await asyncio.sleep(0)  # let the transports call connection_lost


async def _exchange(connection: _Connection, pool: _HostPool, method: str, data: bytes) -> Response:
    """Send ``data`` on ``connection``; the response once its head has arrived."""
    response = Response(connection, pool.origin.url, head=method == "HEAD")
    connection.send(response, data)
    try:
        await response.head_received
    except BaseException:
        response.release()  # cancelled or broken: the connection is closed
        raise
    return response


class Response:
    """An upstream's answer: its head, and its body as an async iterator of chunks.

    ``headers`` holds ``(name, value)`` pairs in the order received, duplicates kept.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_complete",
        "_connection",
        "_content_length",
        "_error",
        "_first",
        "_head",
        "_interim",
        "_released",
        "_until_close",
        "_waiter",
        "head_received",
        "headers",
        "keep_alive",
        "reason",
        "status",
        "url",
    )

    def __init__(self, connection: _Connection, url: str, *, head: bool = False) -> None:
        self.url = url
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self._first: dict[str, str] = {}  # lower-case name: first value
        self.keep_alive = False
        self.head_received: asyncio.Future[None] = connection.loop.create_future()
        self._connection = connection
        self._head = head
        self._content_length: int | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._until_close = False
        self._interim = False
        self._error: UpstreamError | None = None
        self._released = False

    @property
    def content_length(self) -> int | None:
        """The ``Content-Length`` the upstream declared, if any."""
        return self._content_length

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived (reading it will not wait)."""
        return self._complete

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), None when absent."""
        return self._first.get(name.lower())

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._complete:
                self.release()
                raise StopAsyncIteration
            if self._error is not None:
                self.release()
                raise self._error
            self._waiter = self._connection.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered < _LOW_WATER:
            self._connection.resume_reading()
        return chunk

    def body_if_complete(self) -> bytes | None:
        """The whole body if it has all arrived (then the connection is released), else
        None and nothing is consumed: a small answer is often whole with its head."""
        if not self._complete or self._error is not None or self._released:
            return None
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self.release()
        return body

    async def read(self) -> bytes:
        """The whole body (then the connection is back in the pool)."""
        return b"".join([chunk async for chunk in self])

    def release(self) -> None:
        """Done with this response: its connection is pooled if the response is complete
        and may be kept, else closed. Unread chunks are dropped. Safe to call twice."""
        if self._released:
            return
        self._released = True
        self._connection.finish(self._complete and self.keep_alive and self._error is None)

    # -- from the connection (httptools callbacks) ------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_received.done():
            return  # a trailer: not kept
        if len(name) == 14 and name.lower() == b"content-length":
            self._content_length = int(value)
        key = name.decode("utf-8", "surrogateescape")
        text = value.decode("utf-8", "surrogateescape")
        self.headers.append((key, text))
        self._first.setdefault(key.lower(), text)

    def on_headers_complete(self) -> None:
        parser = self._connection.parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and the like: the answer comes after
            self._interim = True
            self.headers, self._first, self._content_length = [], {}, None
            return
        self.status = status
        self.keep_alive = parser.should_keep_alive()
        bodyless = self._head or status in (204, 304)
        if bodyless:
            self._complete = True
        elif self._content_length is None:
            chunked = any(
                k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in self.headers
            )
            self._until_close = not chunked
        if not self.head_received.done():
            self.head_received.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._complete:  # bytes after a bodyless answer: the connection is not kept
            self.keep_alive = False
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER:
            self._connection.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True
        self._wake()

    def fail(self, error: UpstreamError) -> None:
        """The connection broke or sent what is not HTTP."""
        if self._complete:
            self.keep_alive = False
            return
        if self.head_received.done() and self._until_close and error.reason == _CLOSED:
            self._complete = True  # a body delimited by the close: it has ended
            self.keep_alive = False
        else:
            self._error = error
            if not self.head_received.done():
                self.head_received.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


_CLOSED: Final = "the connection was closed"


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to an upstream, one request at a time."""

    def __init__(self, pool: _HostPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()  # once: each lookup is a getpid() call
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.response: Response | None = None
        self.counted = True  # in pool.size until lost
        self.lost = False
        self.requests = 0  # sent on this connection
        self.received = False  # any byte of the current request's answer
        self.idle_since = 0.0  # loop time it went back to the pool
        self._poll: select.poll | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        response, parser = self.response, self.parser
        if response is None or parser is None:  # bytes nobody asked for: not kept
            self.close()
            return
        self.received = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # a 101: what follows is not HTTP
            reason = "the upstream switched protocols (101); the gateway relays HTTP only"
            response.fail(UpstreamResetError(self.pool.origin.url, reason))
            self.close()
        except httptools.HttpParserError as exc:
            response.fail(UpstreamResetError(self.pool.origin.url, f"not HTTP: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.response is not None:
            reason = _CLOSED if exc is None else f"{_CLOSED}: {exc}"
            self.response.fail(UpstreamResetError(self.pool.origin.url, reason))
        self.pool.forget(self)

    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def reusable(self, now: float, idle_timeout: float) -> bool:
        """Whether this idle connection may take a request: open, not idle for too long,
        and, once idle for :data:`_POLL_AFTER`, nothing to read on it (an EOF the loop
        has not seen yet, most likely)."""
        idle = now - self.idle_since
        if not self.usable() or idle >= idle_timeout:
            return False
        return idle < _POLL_AFTER or self._poll is None or not self._poll.poll(0)

    def send(self, response: Response, data: bytes) -> None:
        assert self.transport is not None
        self.requests += 1
        self.received = False
        self.response = response
        self.parser = httptools.HttpResponseParser(response)
        self.transport.write(data)

    def finish(self, keep: bool) -> None:
        """The response is done with: back to the pool when ``keep``, else closed."""
        self.response = self.parser = None
        if keep and self.usable():
            self.resume_reading()
            self.pool.give_back(self)
        else:
            self.close()

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        else:
            self.pool.forget(self)


class _HostPool:
    """The connections to one upstream: idle ones, a count, and requests waiting."""

    def __init__(self, origin: _Origin, limit: int, options: OriginOptions) -> None:
        self.origin = origin
        self.limit = limit
        self.options = options
        self.size = 0  # open or opening
        self.idle: list[_Connection] = []  # the most recently used last
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.closed = False
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self, connect_timeout: float | None, *, fresh: bool = False) -> _Connection:
        """An idle connection that may be reused (unless ``fresh``), else a new one."""
        if self.idle and not fresh:
            now = self.idle[-1].loop.time()
            timeout = self.options.idle_timeout
            while self.idle:
                connection = self.idle.pop()
                if connection.reusable(now, timeout):
                    return connection
                connection.close()
        try:
            async with asyncio.timeout(connect_timeout):
                return await self._new_or_freed()
        except TimeoutError:
            raise UpstreamConnectTimeoutError(
                self.origin.url, f"no connection within {connect_timeout:g} s"
            ) from None

    async def _new_or_freed(self) -> _Connection:
        if self.size >= self.limit:
            handed = await self._wait()
            if handed is not None:
                return handed
        else:
            self.size += 1
        # a slot is ours: open a connection in it
        connection = _Connection(self)
        try:
            await self.origin.connect(connection)
        except BaseException as exc:
            self.forget(connection)
            if isinstance(exc, OSError):
                raise UpstreamConnectError(self.origin.url, str(exc) or repr(exc)) from exc
            raise
        return connection

    async def _wait(self) -> _Connection | None:
        """A connection handed over by a release, or None: a slot freed, to connect in."""
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if not waiter.done():
                self.waiters.remove(waiter)
            elif not waiter.cancelled():  # handed over just as we gave up: pass it on
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.give_back(handed)
            raise

    def give_back(self, connection: _Connection) -> None:
        if self.closed:
            connection.close()
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.idle_since = connection.loop.time()
        self.idle.append(connection)
        if self._sweep is None:
            self._sweep = connection.loop.call_later(self.options.idle_timeout, self._expire)

    def _expire(self) -> None:
        """Close the connections idle for ``idle_timeout``; look again when the oldest
        left is due. One timer a pool, not one a connection."""
        self._sweep = None
        if not self.idle:
            return
        loop = self.idle[0].loop
        due = loop.time() - self.options.idle_timeout
        while self.idle and self.idle[0].idle_since <= due:
            self.idle.pop(0).close()
        if self.idle:
            delay = self.idle[0].idle_since - due
            self._sweep = loop.call_later(delay, self._expire)

    def forget(self, connection: _Connection) -> None:
        """A connection closed (or never opened): its slot is free."""
        if not connection.counted:
            return
        connection.counted = False
        if connection in self.idle:
            self.idle.remove(connection)
        self._free_slot()

    def _free_slot(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it
                return
        self.size -= 1

    def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()


class _Origin:
    """Where an upstream is: how to connect, and the ``Host`` and target of its requests."""

    def __init__(self, url: str, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http(s)://host[:port][/path], got {url!r}")
        self.url = url
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.base = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if self.tls:
            self._ssl = tls if tls is not None else ssl.create_default_context()

    def use_tls(self, tls: ssl.SSLContext | None) -> None:
        """Connect with ``tls`` from now on (None: the default context)."""
        if self.tls:
            self._ssl = tls if tls is not None else ssl.create_default_context()

    async def connect(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(
            lambda: connection,
            self.host,
            self.port,
            ssl=self._ssl,
            server_hostname=self.host if self.tls else None,
        )

    def encode(
        self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> bytes:
        """The request's head and body, as one buffer for one write."""
        lines = [f"{method} {self.base}{path} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        for name, value in headers:
            if name.lower() in _SET_BY_CLIENT:
                continue
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"header {name!r}: a line break is not allowed")
            lines.append(f"{name}: {value}\r\n")
        if body or method not in _BODYLESS_METHODS:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("utf-8", "surrogateescape")
        return head + body if body else head
