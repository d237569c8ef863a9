"""Active health checks: ask every upstream of a pool, every few seconds, whether it is ready.

A :class:`HealthChecker` runs one task per pool. Every ``interval`` seconds it sends
``GET <upstream><path>`` to all the pool's upstreams at once, through the one
``aiohttp.ClientSession`` it is given, each with a ``timeout``. A 2xx answer is a
success; any other status, a connect error, a broken connection or a timeout is a
failure. Paths model servers answer: ``/v2/health/ready`` (KServe v2, Triton),
``/health`` (MLflow), ``/ping`` (SageMaker-style), or whatever a FastAPI app defines.

:class:`HealthTracker` turns the results into a verdict with hysteresis, as HAProxy's
``rise`` and ``fall`` do: ``healthy_threshold`` successes in a row mark an upstream
healthy, ``unhealthy_threshold`` failures in a row mark it unhealthy, and one odd result
changes nothing. The first result decides at once (there is nothing to smooth yet), so a
model server that is down when the gateway starts is left out after the first round.

Verdicts go to :meth:`Pool.set_health <flowops.gateway.upstreams.Pool.set_health>`: an
unhealthy upstream gets no requests, and each change reaches the pool's ``on_event``
callback as an ``UpstreamEvent`` (``healthy`` or ``unhealthy``, with the last result as
its detail), where the gateway logs it and updates its metrics.

>>> tracker = HealthTracker(healthy_threshold=2, unhealthy_threshold=3)
>>> [tracker.record(ok) for ok in (True, False, False, True, False, False, False)]
[True, None, None, None, None, None, False]
>>> [tracker.record(True) for _ in range(2)]
[None, True]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Mapping
from typing import Final

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from flowops.gateway.upstreams import Pool, Upstream

__all__ = ["USER_AGENT", "HealthCheckSettings", "HealthChecker", "HealthTracker"]

USER_AGENT: Final = "flowops-gateway-health"
"""The ``User-Agent`` of health checks, so model servers can keep them out of their logs."""

_log = logging.getLogger(__name__)


class HealthCheckSettings(BaseModel):
    """Active health checks of a route's upstreams (``routes[].health_check``)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        None, description="path to GET on each upstream, e.g. /v2/health/ready; none: no checks"
    )
    interval: float = Field(5.0, gt=0, le=3600, description="seconds between two rounds")
    timeout: float = Field(
        2.0, gt=0, le=3600, description="seconds a check may take (at most the interval)"
    )
    healthy_threshold: int = Field(
        2, ge=1, le=100, description="successes in a row that mark an upstream healthy"
    )
    unhealthy_threshold: int = Field(
        3, ge=1, le=100, description="failures in a row that mark an upstream unhealthy"
    )

    @property
    def enabled(self) -> bool:
        """Whether checks run: a path is set."""
        return self.path is not None

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"a path starts with '/', got {value!r}")
        return value

    @field_validator("timeout")
    @classmethod
    def _within_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and value > interval:
            raise ValueError(f"must be at most the interval ({interval} s)")
        return value


class HealthTracker:
    """One upstream's verdict from its check results, with rise/fall thresholds (no I/O)."""

    __slots__ = ("_failures", "_successes", "healthy", "healthy_threshold", "unhealthy_threshold")

    def __init__(
        self, *, healthy_threshold: int, unhealthy_threshold: int, healthy: bool | None = None
    ) -> None:
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.healthy = healthy
        self._successes = 0
        self._failures = 0

    def record(self, ok: bool) -> bool | None:
        """Count one result; returns the new verdict when it changes, else None."""
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            changed = self.healthy is not True and (
                self.healthy is None or self._successes >= self.healthy_threshold
            )
        else:
            self._successes, self._failures = 0, self._failures + 1
            changed = self.healthy is not False and (
                self.healthy is None or self._failures >= self.unhealthy_threshold
            )
        if not changed:
            return None
        self.healthy = ok
        return ok


class HealthChecker:
    """Checks one pool's upstreams on a schedule, from :meth:`start` to :meth:`stop`.

    The session is shared and owned by the caller (the gateway's one client session);
    the checker never closes it. When ``settings.path`` is None, :meth:`start` does
    nothing, so the gateway may make a checker for every pool.
    """

    def __init__(
        self,
        pool: Pool,
        settings: HealthCheckSettings,
        session: aiohttp.ClientSession,
        *,
        tls: Mapping[str, ssl.SSLContext] | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self._session = session
        self._tls = (
            tls if tls is not None else {}
        )  # an https upstream's own context (CA, mTLS), by URL; kept
        # by reference: the gateway replaces a context when its files change
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout)
        self._trackers = {
            upstream: HealthTracker(
                healthy_threshold=settings.healthy_threshold,
                unhealthy_threshold=settings.unhealthy_threshold,
                healthy=upstream.healthy,
            )
            for upstream in pool.upstreams
        }
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the checking task is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start checking in a task of the running loop: a first round at once."""
        if not self.settings.enabled or self.running:
            return
        self._task = asyncio.create_task(self._run(), name=f"health-check-{self.pool.route}")

    async def stop(self) -> None:
        """Stop checking and wait until the task has ended (a round in flight is cancelled)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def check_once(self) -> None:
        """One round: check every upstream concurrently and record the results."""
        results = await asyncio.gather(*(self.probe(u) for u in self.pool.upstreams))
        for upstream, (ok, detail) in zip(self.pool.upstreams, results, strict=True):
            self.record(upstream, ok, detail)

    def record(self, upstream: Upstream, ok: bool, detail: str) -> None:
        """Count one check result of ``upstream``; tell the pool when the verdict changes."""
        verdict = self._trackers[upstream].record(ok)
        if verdict is not None:
            self.pool.set_health(upstream, verdict, detail)

    async def probe(self, upstream: Upstream) -> tuple[bool, str]:
        """One check of ``upstream``: (success, what happened in a few words)."""
        url = f"{upstream.url}{self.settings.path}"
        headers = {"User-Agent": USER_AGENT}
        try:
            async with self._session.get(
                url,
                timeout=self._timeout,
                headers=headers,
                allow_redirects=False,
                ssl=self._tls.get(upstream.url, True),
            ) as response:
                await response.read()
                return 200 <= response.status < 300, f"HTTP {response.status}"
        except TimeoutError:
            return False, f"no answer in {self.settings.timeout:g} s"
        except aiohttp.ClientConnectorError as exc:
            return False, f"connect error: {exc.os_error.strerror or exc.os_error}"
        except (aiohttp.ClientError, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}"

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # a bug must not end the checks of a pool for good
                _log.exception("health check round of route %s failed", self.pool.route)
            await asyncio.sleep(self.settings.interval)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<HealthChecker {self.pool.route} {self.settings.path} {state}>"
