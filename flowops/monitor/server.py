"""``flowops monitor``: the agent in this process until Ctrl-C or SIGTERM, or one round.

The agent serves, on ``monitor.listen`` (127.0.0.1):

* ``GET /metrics``: Prometheus text format (:mod:`flowops.monitor.metrics`);
* ``GET /status``: the last round as JSON (``{"healthy", "checked_at", "checks"}``),
  503 when a check failed, so a load balancer or a script can read it as is;
* ``GET /healthz``: 200 while the agent runs.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Final

import aiohttp
import orjson
from aiohttp import web

from flowops.config import Settings
from flowops.errors import ConfigError
from flowops.monitor.agent import Agent, Round
from flowops.monitor.config import MonitorSettings, build_listeners, build_probes, monitor_settings
from flowops.monitor.metrics import MonitorMetrics

__all__ = ["probe_once", "run_monitor"]

_METRICS_TYPE: Final = "text/plain; version=0.0.4"


async def probe_once(settings: Settings) -> Round:
    """Every configured probe once (``flowops monitor --once``): no alerts, no events."""
    monitor = monitor_settings(settings)
    async with _session(monitor) as session:
        agent = Agent(build_probes(settings, monitor, session), monitor.interval)
        return await agent.round()


def run_monitor(settings: Settings, *, say: Callable[[str], None]) -> None:
    """Serve until Ctrl-C or SIGTERM; raises ConfigError for settings it cannot use."""
    asyncio.run(_serve(settings, monitor_settings(settings), say))
    say("stopped")


async def _serve(settings: Settings, monitor: MonitorSettings, say: Callable[[str], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(_session(monitor))
        metrics = MonitorMetrics()
        listeners = await stack.enter_async_context(
            build_listeners(settings, monitor, session, metrics)
        )
        agent = Agent(
            build_probes(settings, monitor, session), monitor.interval, metrics, listeners
        )
        runner = web.AppRunner(_application(agent), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        host, _, port = monitor.listen.rpartition(":")
        try:
            await web.TCPSite(runner, host, int(port)).start()
        except OSError as exc:
            raise ConfigError(
                "monitor.listen", f"cannot listen on {monitor.listen}: {exc.strerror}"
            ) from None
        say(
            f"probing {len(agent.probes)} targets every {monitor.interval:g} s; "
            f"/metrics and /status on http://{monitor.listen}; Ctrl-C stops"
        )

        async def report(round_: Round) -> None:
            failed = [r for r in round_.results if not r.success]
            if failed:
                names = ", ".join(f"{r.check} {r.target}" for r in failed[:5])
                more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
                say(f"{len(failed)} of {len(round_.results)} checks failed: {names}{more}")

        await agent.run(stop, report)


def _session(monitor: MonitorSettings) -> aiohttp.ClientSession:
    """One session for every HTTP probe: pooled connections, no cookies, no redirects'
    surprises (probes pass ``allow_redirects`` themselves)."""
    connector = aiohttp.TCPConnector(limit=monitor.max_connections, ttl_dns_cache=60)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def _application(agent: Agent) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=agent.metrics.render(), headers={"Content-Type": _METRICS_TYPE})

    async def status(request: web.Request) -> web.Response:
        if agent.last is None:
            body: dict[str, object] = {"healthy": None, "checks": [], "reason": "no round yet"}
            return _json(body, 503)
        return _json(agent.last.as_json(), 200 if agent.last.healthy else 503)

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"}, 200)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_get("/healthz", healthz)
    return app


def _json(body: object, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
