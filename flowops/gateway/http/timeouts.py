"""A connection's timeouts (``gateway.limits``: sending, the head, the body, idle), looked
at on one timer a connection rather than a timer armed and cancelled a request.

The timer fires every :func:`tick` seconds; :func:`look` acts on the first timeout that
has run out, by the connection's own means (a cut, a ``408`` refusal, a close), and says
when to look again. The tries' timeouts towards upstreams are another matter
(:mod:`~flowops.gateway.http.deadline`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowops.gateway.config import LimitSettings

if TYPE_CHECKING:
    from flowops.gateway.http.connection import Connection

__all__ = ["look", "tick"]


def tick(limits: LimitSettings) -> float:
    """How often a connection looks at its deadlines: a quarter of the shortest one,
    so a deadline fires within a quarter of itself after it is due."""
    shortest = min(
        limits.head_timeout, limits.body_timeout, limits.send_timeout, limits.keep_alive_timeout
    )
    return max(shortest / 4, 0.005)


def look(connection: Connection, now: float, due: float) -> float | None:
    """Act on ``connection``'s first timeout run out at ``now``; the loop time to look
    again (``due`` at the latest), or None when the connection was cut or closed."""
    limits = connection.limits
    if connection.writable is not None:
        if now - connection.paused_at >= limits.send_timeout:
            connection.abort()  # as nginx does: the client reads nothing, no answer helps
            return None
    elif connection.deaf:
        pass
    elif connection.in_head and connection.reading:
        if now - connection.head_started >= limits.head_timeout:
            connection.refuse(408, f"the request's head took over {limits.head_timeout:g}s")
    elif (
        connection.parsing is not None
        and connection.reading
        and not connection.parsing.expects_continue
    ):
        # (a client sent "Expect: 100-continue" waits for our 100 before its body)
        if now - max(connection.read_at, connection.head_started) >= limits.body_timeout:
            timeout = limits.body_timeout
            connection.refuse(408, f"the request's body paused for over {timeout:g}s")
    elif connection.active is None and not connection.waiting and connection.parsing is None:
        due = min(due, connection.idle_since + limits.keep_alive_timeout)
        if now >= connection.idle_since + limits.keep_alive_timeout:
            connection.close()
            return None
    return due
