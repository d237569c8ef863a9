"""Traffic events out of what the proxy forwarded: each exchange set aside as its answer
goes out, and read into events in the loop's next round, all those set aside meanwhile
in one go, handed to ``publish`` (which only queues them: it never waits for Kafka).
Reading a few payloads together, after the answers have been written, costs less than
one at a time between requests, and no answer waits for it. A shadow's answer is one
event at once (variant ``shadow``): no client waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from flowops.events import TrafficRow
from flowops.gateway import split as splitting
from flowops.gateway.http.messages import Request
from flowops.gateway.payloads import extract
from flowops.gateway.state import Exchange, RouteState, ShadowCopy

__all__ = ["Publish", "Traffic"]

Publish = Callable[[list[TrafficRow]], None]
"""Where events go (the traffic publisher's queue)."""


class Traffic:
    """The traffic events of one proxy; none when ``publish`` is None."""

    def __init__(self, publish: Publish | None) -> None:
        self.publish = publish
        # exchanges to publish: (exchange, request Content-Type, seconds, wall-clock time)
        self._unpublished: list[tuple[Exchange, str | None, float, float]] = []

    def set_aside(self, exchange: Exchange, request: Request, elapsed: float) -> None:
        """Keep ``exchange`` (``request``'s) for the next round's events, if its route
        publishes and it reached an upstream."""
        if self.publish is not None and exchange.route.settings.publish and exchange.upstream:
            pending = self._unpublished
            pending.append((exchange, request.headers.get("Content-Type"), elapsed, time.time()))
            if len(pending) == 1:
                asyncio.get_running_loop().call_soon(self.publish_pending)

    def publish_pending(self) -> None:
        """Read the exchanges set aside into traffic events and hand them to ``publish``
        (the loop calls this; the proxy's close too, for what is left)."""
        pending, self._unpublished = self._unpublished, []
        publish = self.publish
        if publish is None:
            return
        for exchange, request_type, elapsed, timestamp in pending:
            settings = exchange.route.settings
            response = bytes(exchange.captured) if exchange.captured is not None else None
            found = extract(
                exchange.body,
                request_type,
                response,
                exchange.response_type,
                settings.features or (),
            )
            publish(
                found.traffic_rows(
                    model=settings.model_name,
                    version=exchange.variant.version,
                    request_id=exchange.request_id,
                    timestamp=timestamp,
                    latency_ms=elapsed * 1000,
                    status=exchange.status,
                    variant=exchange.variant.name,
                )
            )

    def publish_shadow(
        self,
        route: RouteState,
        copy: ShadowCopy,
        answer: tuple[int, bytes | None, str | None],
        started_at: float,
    ) -> None:
        """The event of a shadow's ``answer`` (status, first bytes, type) to ``copy``, at
        once, if the route publishes; its latency counts from ``started_at`` (monotonic)."""
        if self.publish is None or not route.settings.publish:
            return
        assert route.shadow is not None
        status, captured, response_type = answer
        found = extract(
            copy.body,
            copy.content_type,
            captured,
            response_type,
            route.settings.features or (),
        )
        self.publish(
            found.traffic_rows(
                model=route.settings.model_name,
                version=route.shadow.version,
                request_id=copy.request_id,
                timestamp=time.time(),
                latency_ms=(time.monotonic() - started_at) * 1000,
                status=status,
                variant=splitting.SHADOW,
            )
        )
