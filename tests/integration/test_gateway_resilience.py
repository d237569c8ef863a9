"""Timeouts and the circuit breaker through the real gateway, with real model servers.

A model server that turns slow makes tries time out (``timeout.per_try``); the client
gets its answer from the other upstream; after ``failure_threshold`` timeouts in a row
the slow one's breaker opens and it gets no more requests; once ``cool_down`` has passed
it is half-open, and one trial decides: a slow answer opens it again, a fast one closes
it and the upstream is back in the spread. A request that runs out of
``timeout.total`` gets a 504 with a JSON body.

``test_gateway.py`` covers every upstream down (a quick 503) and a 5xx retried
elsewhere. The breaker's state is read where an operator reads it: the
``flowops_gateway_breaker_state`` gauge and the ``breaker_*`` upstream events on
/metrics. Nothing here measures time: waits are bounded polls.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from gateway_load import Answer, metric, request, samples
from gateway_servers import ModelServer, model_servers, running_gateway
from helpers import until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NO_PUBLISH = {"enabled": False}
PER_TRY = 0.2  # seconds
SLOW = 1.0  # seconds: five times the per-try timeout
BREAKER = {"failure_threshold": 3, "cool_down": 1.0}
NO_OUTLIERS = {"enabled": False}  # the breaker alone leaves the slow one out


def route(servers: list[ModelServer], **extra: Any) -> dict[str, Any]:
    return {
        "name": "iris",
        "prefix": "/models/iris",
        "upstreams": [server.url for server in servers],
        **extra,
    }


class Watch:
    """The gateway's /metrics, as an operator reads them, for one upstream."""

    def __init__(self, session: aiohttp.ClientSession, base: str, upstream: ModelServer) -> None:
        self.session, self.base, self.url = session, base, upstream.url

    async def breaker(self) -> str:
        """The state whose gauge reads 1, in one scrape."""
        gauges = await samples(self.session, self.base, "flowops_gateway_breaker_state")
        found = [
            dict(labels)["state"]
            for labels, value in gauges.items()
            if dict(labels)["upstream"] == self.url and value == 1.0
        ]
        assert len(found) == 1, found
        return found[0]

    async def events(self, kind: str) -> float:
        return await metric(
            self.session,
            self.base,
            "flowops_gateway_upstream_events_total",
            upstream=self.url,
            kind=kind,
        )


async def test_a_slow_upstream_trips_its_breaker_and_recovers_through_half_open() -> None:
    async with model_servers(2) as (slow, fast):
        settings = route(
            [slow, fast], timeout={"per_try": PER_TRY}, breaker=BREAKER, outlier=NO_OUTLIERS
        )
        async with (
            running_gateway({"routes": [settings], "publish": NO_PUBLISH}) as base,
            aiohttp.ClientSession() as session,
        ):
            watch = Watch(session, base, slow)
            answers: list[Answer] = []

            async def get() -> Answer:
                answer = await request(session, "GET", f"{base}/models/iris/info")
                answers.append(answer)
                return answer

            for _ in range(4):
                await get()
            assert {a.upstream for a in answers} == {"m0", "m1"}  # round robin, both fast
            assert await watch.breaker() == "closed"

            slow.delay = SLOW
            for _ in range(2 * BREAKER["failure_threshold"]):
                await get()  # every other one times out at m0, and is retried at m1
            assert await watch.breaker() == "open"
            timed_out = len(slow.seen)
            for _ in range(10):
                await get()
            assert len(slow.seen) == timed_out  # open: it gets nothing

            # half-open, still slow: the one trial times out and opens it again
            await until(lambda: _is(watch, "half_open"), "half-open after the cool-down")
            await until(lambda: _trial(get, slow, timed_out), "a trial at the slow upstream")
            assert await watch.breaker() == "open"
            assert await watch.events("breaker_open") == 2

            slow.delay = 0.0  # fast again: the next trial closes it
            tried = len(slow.seen)
            await until(lambda: _is(watch, "half_open"), "half-open again")
            await until(lambda: _trial(get, slow, tried), "a trial at the fast upstream")
            assert await watch.breaker() == "closed"
            before = len(slow.seen)
            for _ in range(10):
                await get()
            assert len(slow.seen) == before + 5  # back in the round robin
            transitions = [
                await watch.events(kind)
                for kind in ("breaker_open", "breaker_half_open", "breaker_closed")
            ]
            retried = await metric(
                session, base, "flowops_gateway_retries_total", outcome="timeout"
            )
    assert {a.status for a in answers} == {200}  # not one client saw the slow upstream
    assert transitions == [2, 2, 1]
    assert retried == BREAKER["failure_threshold"] + 1  # three to open it, one failed trial


async def _is(watch: Watch, state: str) -> bool:
    return await watch.breaker() == state


async def _trial(get: Any, server: ModelServer, seen: int) -> bool:
    """Send a request; whether ``server`` has had one more than ``seen`` by then."""
    await get()
    return len(server.seen) > seen


async def test_total_timeout_is_a_504_with_a_json_body() -> None:
    """A GET is tried again within ``timeout.total``, then refused with 504; a POST on a
    route that is not ``retryable`` gets its 504 after the one try."""
    async with model_servers(1) as (hung,):
        hung.delay = SLOW
        timeout = {"per_try": 0.3, "total": 0.5}
        settings = route([hung], timeout=timeout, outlier=NO_OUTLIERS)
        async with (
            running_gateway({"routes": [settings], "publish": NO_PUBLISH}) as base,
            aiohttp.ClientSession() as session,
        ):
            url = f"{base}/models/iris/x"
            sent = {"X-Request-ID": "late-1"}
            async with session.get(url, headers=sent) as response:
                got = response.status, await response.json(), response.headers["X-Request-ID"]
            gets = len(hung.seen)
            post = await request(session, "POST", url, {"instances": [[1]]})
            posts = len(hung.seen) - gets
    status, body, request_id = got
    assert (status, body["error"], request_id, body["request_id"]) == (
        504,
        "upstream_timeout",
        "late-1",
        "late-1",
    )
    assert gets >= 2  # tried again while the total allowed it
    assert (post.status, post.error, posts) == (504, "upstream_timeout", 1)
