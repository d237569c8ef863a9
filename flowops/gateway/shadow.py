"""Shadow traffic: a copy of a route's requests sent to its ``shadow`` upstreams in the
background, after the client has its answer, whose answers become traffic events
(variant ``shadow``) and counts, never the client's concern.

Only requests that reached an upstream are copied, ``percent`` of them, at most
``max_in_flight`` at a time per route (past it a copy is skipped and counted); each
copy has its own ``timeout``, and the gateway's stop cancels those still under way.
"""

from __future__ import annotations

import asyncio
import random
import time

from flowops.gateway.http.client import Response as UpstreamResponse
from flowops.gateway.http.client import UpstreamClient, UpstreamConnectError, UpstreamError
from flowops.gateway.http.deadline import Deadlines
from flowops.gateway.http.messages import Request
from flowops.gateway.metrics import GatewayMetrics
from flowops.gateway.state import Exchange, RouteState, ShadowCopy
from flowops.gateway.traffic import Traffic
from flowops.gateway.upstreams import Lease, Outcome, outcome_of_status

__all__ = ["Shadows"]


class Shadows:
    """The shadow copies of one proxy: sent through its ``client`` within its
    ``deadlines``, counted in ``metrics``, their answers' events to ``traffic``, their
    first ``capture_bytes`` kept."""

    def __init__(
        self,
        client: UpstreamClient,
        deadlines: Deadlines,
        metrics: GatewayMetrics,
        traffic: Traffic,
        *,
        capture_bytes: int,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.traffic = traffic
        self._deadlines = deadlines
        self._capture_bytes = capture_bytes
        self._tasks: set[asyncio.Task[None]] = set()

    def mirror(self, request: Request, exchange: Exchange) -> None:
        """Send a copy of the request to the route's shadow, in the background."""
        route = exchange.route
        settings = route.settings.shadow
        assert settings is not None
        assert route.shadow is not None
        assert exchange.forwarded is not None  # it reached an upstream
        if settings.percent < 100 and random.random() * 100 >= settings.percent:
            return
        if route.shadows_in_flight >= settings.max_in_flight:
            self.metrics.shadow(route.settings.name, "skipped")
            return
        route.shadows_in_flight += 1
        copy = ShadowCopy(
            request.method,
            *exchange.forwarded,
            exchange.body,
            request.headers.get("Content-Type"),
            exchange.request_id,
        )
        task = asyncio.create_task(self._send(route, copy), name=f"shadow-{copy.request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, route: RouteState, copy: ShadowCopy) -> None:
        """One copy at the shadow: its answer becomes traffic (variant ``shadow``), its
        failure a count; the client has long had its answer."""
        assert route.shadow is not None
        assert route.settings.shadow is not None
        name = route.settings.name
        try:
            lease = route.shadow.pool.acquire()
            if lease is None:
                self.metrics.shadow(name, "no_upstream")
                return
            outcome, status, captured, response_type = await self._try(
                route, lease, copy, route.settings.shadow.timeout
            )
            self.metrics.shadow(name, outcome if status is None else _status_class(status))
            if status is not None:
                self.traffic.publish_shadow(
                    route, copy, (status, captured, response_type), lease.started_at
                )
        finally:
            route.shadows_in_flight -= 1

    async def _try(
        self, route: RouteState, lease: Lease, copy: ShadowCopy, budget: float
    ) -> tuple[Outcome, int | None, bytes | None, str | None]:
        """The copy sent: its outcome, and its status, first bytes and type if it answered."""
        try:
            async with self._deadlines.after(budget):
                response = await self.client.request(
                    copy.method,
                    lease.upstream.url,
                    copy.path,
                    copy.headers,
                    copy.body,
                    connect_timeout=route.settings.timeout.connect,
                    replayable=route.settings.retryable,
                )
                try:
                    latency = time.monotonic() - lease.started_at
                    kept = await _bounded_read(response, self._capture_bytes)
                finally:
                    response.release()
        except asyncio.CancelledError:
            lease.finish("cancelled")
            raise
        except TimeoutError:
            lease.finish("timeout")
            return "timeout", None, None, None
        except UpstreamConnectError:
            lease.finish("connect_error")
            return "connect_error", None, None, None
        except UpstreamError:
            lease.finish("reset")
            return "reset", None, None, None
        outcome = outcome_of_status(response.status)
        lease.finish(outcome, latency)
        return outcome, response.status, kept, response.header("Content-Type")

    async def close(self) -> None:
        """Cancel the copies still under way (the gateway is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _bounded_read(response: UpstreamResponse, limit: int) -> bytes | None:
    """The whole body when it holds at most ``limit`` bytes, else None (read all the
    same, so the connection goes back to the pool)."""
    kept: bytearray | None = bytearray()
    async for chunk in response:
        if kept is not None:
            kept += chunk
            if len(kept) > limit:
                kept = None
    return None if kept is None else bytes(kept)


def _status_class(status: int) -> str:
    """``2xx``, ``4xx``, ``5xx``...: a shadow's answers, counted by class."""
    return f"{status // 100}xx"
