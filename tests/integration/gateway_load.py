"""Load for the gateway tests: concurrent clients, bounded polls, and what /metrics says.

:class:`Load` runs ``workers`` client tasks that send requests through one
``aiohttp.ClientSession`` until stopped, each answer recorded as an :class:`Answer`
(status, the upstream named in ``X-Upstream``, the JSON error code). A request that
fails on the client side (connection reset, timeout) is recorded with status 0, so a
test counts every failure (it waits for them with ``helpers.until``, the tests' one
poller); :func:`samples` reads one metric from the gateway's ``/metrics`` page. Nothing here
measures durations: the tests count answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from helpers import until
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's outcome as the client saw it (status 0: no HTTP answer at all)."""

    status: int
    upstream: str | None = None
    error: str | None = None
    request_id: str | None = None


Send = Callable[[aiohttp.ClientSession, int], Awaitable[Answer]]
"""Sends request number ``i`` and returns its answer."""


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request; a client-side failure is an :class:`Answer` with status 0."""
    data = None if body is None else orjson.dumps(body)
    sent = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with session.request(method, url, data=data, headers=sent) as response:
            payload = await response.read()
            error = None
            if response.status >= 400 and payload.startswith(b"{"):
                error = orjson.loads(payload).get("error")
            return Answer(
                response.status,
                response.headers.get("X-Upstream"),
                error,
                response.headers.get("X-Request-ID"),
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Answer(0, error=type(exc).__name__)


@dataclass
class Load:
    """``workers`` tasks sending requests (``send``) until :meth:`stop`, ``pause`` seconds
    apart each; ``limit`` caps the requests of the whole load."""

    send: Send
    workers: int = 8
    pause: float = 0.0
    limit: int | None = None
    answers: list[Answer] = field(default_factory=list)
    _sent: int = 0
    _running: bool = True
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Load:
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> list[Answer]:
        """Let every worker finish its request under way; the answers so far."""
        self._running = False
        await asyncio.gather(*self._tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None
        return self.answers

    async def answered(self, count: int, what: str = "") -> None:
        """Wait until ``count`` answers in all have come back."""
        await until(lambda: len(self.answers) >= count, what or f"{count} answers")

    async def _worker(self) -> None:
        assert self._session is not None
        while self._running and (self.limit is None or self._sent < self.limit):
            i, self._sent = self._sent, self._sent + 1
            self.answers.append(await self.send(self._session, i))
            if self.pause:
                await asyncio.sleep(self.pause)


async def samples(
    session: aiohttp.ClientSession, base: str, name: str
) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric ``name`` on the gateway's /metrics page, by sorted labels."""
    async with session.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def metric(session: aiohttp.ClientSession, base: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    found = await samples(session, base, name)
    return sum(value for key, value in found.items() if wanted <= set(key))
