"""What a handler of the listener deals in: the :class:`Request` whose head has
arrived (its body read through it), the :class:`Response` written whole, the
:class:`Stream` of an answer written piece by piece, and the conditions it may meet.

The connection (:mod:`flowops.gateway.http.connection`) makes the requests and feeds
them their bodies; :mod:`flowops.gateway.http.listener` says how the whole server behaves.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

import orjson
from multidict import CIMultiDict

if TYPE_CHECKING:
    from flowops.gateway.http.connection import Connection

__all__ = [
    "HIGH_WATER",
    "BadResponseHead",
    "BodyRefused",
    "BodyTooLarge",
    "ClientGone",
    "Handler",
    "Request",
    "Response",
    "Stream",
    "has_body",
    "json_response",
]

HIGH_WATER: Final = 256 * 1024  # body bytes waiting for the handler: stop reading

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


class BodyRefused(ClientGone):
    """The listener refused the rest of a body (a timeout, a bad chunk, the worker's
    body budget): the handler's read ends, and the listener answers the request."""


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
        connection: Connection,
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
    def expects_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and waits for our ``100`` before its
        body (which the first :meth:`read` sends)."""
        return self._continue

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
        bodyless = not has_body(self, status)
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
        if self._size > HIGH_WATER and self._waiter is None:
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


def has_body(request: Request, status: int) -> bool:
    return request.method != "HEAD" and status >= 200 and status not in (204, 304)
