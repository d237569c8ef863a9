"""The gateway's HTTP/1.1 server: asyncio Protocols and httptools' C parser.

The client side of the gateway left aiohttp for :mod:`flowops.gateway.http.client`; this is
the server side's turn. aiohttp's server built a request object, ran its router and
middleware chain and wrote the head and body of each answer apart: about 0.1 ms of CPU a
request, more than the whole proxy path beside it (bench/RESULTS.md). A gateway needs
little of a web framework: a parsed head, a body it reads whole or not at all, and an
answer written whole or streamed. :class:`Listener` does that and no more.

One connection handles one request at a time, in order:

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
  16 of them); a body unread past :data:`HIGH_WATER` bytes pauses
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


The parts, each in its module: the requests, answers and streams a handler deals in
(:mod:`~flowops.gateway.http.messages`), the connection's protocol with its limits and
deadlines (:mod:`~flowops.gateway.http.connection`, its timeouts in
:mod:`~flowops.gateway.http.timeouts`), RFC 9112's checks and the refusals'
bytes (:mod:`~flowops.gateway.http.conformance`), and here the accepting of connections."""

from __future__ import annotations

import asyncio
import logging
import socket

from flowops.gateway.config import LimitSettings
from flowops.gateway.http.connection import Connection
from flowops.gateway.http.messages import Handler
from flowops.gateway.http.timeouts import tick
from flowops.gateway.http.tls import ServerTls

__all__ = ["Listener"]

log = logging.getLogger("flowops.gateway")


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
        self.tick = tick(self.limits)
        self.closing = False
        self.connections: set[Connection] = set()
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
                await loop.connect_accepted_socket(lambda: Connection(self), conn)
            else:
                await loop.connect_accepted_socket(
                    lambda: Connection(self, scheme="https"),
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

    def forget(self, connection: Connection) -> None:
        """``connection`` is lost (its protocol says so): it no longer counts."""
        self.connections.discard(connection)
        self._closed()
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()
