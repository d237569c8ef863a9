"""One client connection of the listener: an asyncio Protocol that parses requests
with httptools and runs the handler on each in turn, within ``gateway.limits``.

How it behaves (keep-alive, pipelining, back-pressure, limits, refusals, deadlines) is
said in :mod:`flowops.gateway.http.listener`'s docstring.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, cast

import httptools
from multidict import CIMultiDict

from flowops.gateway.http.conformance import (
    REASONS,
    http_date,
    nonconforming,
    refusal_answer,
)
from flowops.gateway.http.messages import (
    BadResponseHead,
    BodyRefused,
    ClientGone,
    Request,
    Response,
    has_body,
    json_response,
)
from flowops.gateway.http.timeouts import look

if TYPE_CHECKING:
    from flowops.gateway.http.listener import Listener

__all__ = ["LINGER", "Connection"]

log = logging.getLogger("flowops.gateway")

LINGER: Final = 5.0
"""Seconds to read and drop the rest of a body nobody read, before closing."""
_MAX_WAITING: Final = 16  # pipelined requests waiting behind the current one


class _Refused(Exception):  # noqa: N818 - a refusal, raised to stop the parser
    """Raised in a parser callback: llhttp stops at once, so nothing after it is parsed
    (returning would let it parse the rest of the read, pipelined requests included)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Connection(asyncio.Protocol):
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
            self.refuse(400, f"not a valid HTTP/1.1 request: {exc}")
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
        self.listener.forget(self)

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
        refused = nonconforming(method, version, headers)
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
        self.write(head + response.body if has_body(request, response.status) else head)
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
            reason = REASONS.get(status, "Unknown")
        if status < 200:
            raise BadResponseHead(f"an informational answer ({status}) cannot be relayed")
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if length is not None and status not in (204, 304):
            lines.append(f"Content-Length: {length}\r\n")
        if not any(name.lower() == "date" for name, _ in headers):
            lines.append(f"Date: {http_date()}\r\n")
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
            self.refuse(cause.status, cause.reason)
            return
        log.error("gateway: the listener failed on a request", exc_info=cause)
        self.refuse(500, "the gateway failed")

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
            self.refuse(431, f"a header line is over {limits.max_header_bytes} bytes")
        elif self._url_bytes + self._head_bytes + self._line > limits.max_head_bytes:
            self.refuse(431, f"the request's head is over {limits.max_head_bytes} bytes")

    def refuse(self, status: int, reason: str) -> None:
        """Answer what cannot be served, then close; nothing after it is parsed.

        The answers to the requests accepted before it go first, in order; a request
        whose body was arriving gets the refusal as its answer."""
        self.deaf = True
        self.in_head = False
        self.refusal = refusal_answer(status, reason)
        request, self.parsing = self.parsing, None
        if request is not None:
            request._fail(BodyRefused(reason))
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
        """The timer: the connection's timeouts (:mod:`~flowops.gateway.http.timeouts`)."""
        now = self.loop.time()
        due = look(self, now, now + self.listener.tick)
        if due is not None and not self.lost:
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


def _server_error() -> Response:
    return json_response({"error": "internal_error", "reason": "the gateway failed"}, status=500)


def _bad_gateway() -> Response:
    reason = "the upstream's answer could not be relayed"
    return json_response({"error": "bad_gateway", "reason": reason}, status=502)


_NO_PARSER: Final = httptools.HttpRequestParser(object())
"""A lost connection's parser, in place of its own (which holds the connection)."""
