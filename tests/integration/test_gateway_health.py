"""Active health checks against real aiohttp model servers on free ports of 127.0.0.1:
a server whose readiness endpoint starts failing is marked down and comes back, a server
that stops (connect refused) or hangs (timeout) is marked down, and a pool never picks a
server the checks marked down.

The servers run in the test's event loop (aiohttp ``AppRunner`` + ``TCPSite``), so each
is stopped by closing its runner; no process is started. Waits are bounded polls of the
pool's state: nothing here measures time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from helpers import until

from flowops.broker import free_port
from flowops.gateway.health import USER_AGENT, HealthChecker, HealthCheckSettings
from flowops.gateway.upstreams import Pool, UpstreamEvent

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

READY_PATH = "/v2/health/ready"  # KServe v2's readiness endpoint
CHECKS = HealthCheckSettings(
    path=READY_PATH, interval=0.1, timeout=0.1, healthy_threshold=2, unhealthy_threshold=2
)


class ModelServer:
    """A model server with a readiness endpoint the test turns on and off, or makes hang."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready = True
        self.hang = False
        self.checks = 0
        self.user_agents: set[str] = set()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(READY_PATH, self._ready)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ready(self, request: web.Request) -> web.Response:
        self.checks += 1
        self.user_agents.add(request.headers.get("User-Agent", ""))
        if self.hang:
            await asyncio.sleep(3600)  # cancelled when the client gives up or at cleanup
        return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[list[ModelServer]]:
    started = [ModelServer(), ModelServer()]
    try:  # the ones started are stopped if a later one cannot start
        for server in started:
            await server.start()
        yield started
    finally:
        for server in started:
            await server.stop()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Watched:
    """A pool of the servers, its checker, and the events the pool reported."""

    def __init__(self, servers: list[ModelServer], session: aiohttp.ClientSession) -> None:
        self.events: list[UpstreamEvent] = []
        self.pool = Pool("iris", [s.url for s in servers], on_event=self.events.append)
        self.checker = HealthChecker(self.pool, CHECKS, session)

    def state(self, server: ModelServer) -> bool | None:
        return next(u.healthy for u in self.pool.upstreams if u.url == server.url)

    def last_event(self, server: ModelServer) -> UpstreamEvent:
        return [e for e in self.events if e.upstream == server.url][-1]

    def picks(self, n: int = 20) -> set[str]:
        return {upstream.url for _ in range(n) if (upstream := self.pool.pick()) is not None}


@pytest_asyncio.fixture
async def watched(
    servers: list[ModelServer], session: aiohttp.ClientSession
) -> AsyncIterator[Watched]:
    watch = Watched(servers, session)
    watch.checker.start()
    try:
        await until(lambda: all(watch.state(s) for s in servers))
        yield watch
    finally:
        await watch.checker.stop()


async def test_a_failing_readiness_endpoint_is_marked_down_and_comes_back(
    servers: list[ModelServer], watched: Watched
) -> None:
    sick, well = servers
    assert watched.picks() == {sick.url, well.url}

    sick.ready = False
    await until(lambda: watched.state(sick) is False)

    assert watched.last_event(sick) == UpstreamEvent("iris", sick.url, "unhealthy", "HTTP 503")
    assert watched.picks() == {well.url}
    assert watched.state(well) is True

    sick.ready = True
    await until(lambda: watched.state(sick) is True)

    assert watched.last_event(sick) == UpstreamEvent("iris", sick.url, "healthy", "HTTP 200")
    assert watched.picks() == {sick.url, well.url}
    assert sick.user_agents == {USER_AGENT}


async def test_a_stopped_server_is_marked_down_with_a_connect_error(
    servers: list[ModelServer], watched: Watched
) -> None:
    gone, well = servers

    await gone.stop()
    await until(lambda: watched.state(gone) is False)

    event = watched.last_event(gone)
    assert event.kind == "unhealthy"
    assert event.detail.startswith("connect error"), event.detail
    assert watched.picks() == {well.url}

    await gone.start()  # the same port again
    await until(lambda: watched.state(gone) is True)
    assert watched.picks() == {gone.url, well.url}


async def test_a_hanging_server_is_marked_down_by_the_timeout(
    servers: list[ModelServer], watched: Watched
) -> None:
    stuck, well = servers

    stuck.hang = True
    await until(lambda: watched.state(stuck) is False)

    assert watched.last_event(stuck).detail == "no answer in 0.1 s"
    assert watched.state(well) is True


async def test_every_server_down_leaves_nothing_to_pick(
    servers: list[ModelServer], watched: Watched
) -> None:
    for server in servers:
        server.ready = False
    await until(lambda: not any(watched.state(s) for s in servers))

    assert watched.pool.pick() is None


async def test_a_server_down_at_start_is_out_after_the_first_round(
    servers: list[ModelServer], session: aiohttp.ClientSession
) -> None:
    down, up = servers
    await down.stop()
    watch = Watched(servers, session)

    await watch.checker.check_once()

    assert (watch.state(down), watch.state(up)) == (False, True)
    assert watch.pool.available() == [watch.pool.upstreams[1]]


async def test_stop_ends_the_checks(servers: list[ModelServer], watched: Watched) -> None:
    await watched.checker.stop()
    counts = [s.checks for s in servers]

    await asyncio.sleep(5 * CHECKS.interval)  # rounds that would have run

    assert not watched.checker.running
    assert [s.checks for s in servers] == counts
