"""Running the gateway in this process until Ctrl-C or SIGTERM (``flowops gateway``).

Progress lines go to ``say`` (the CLI writes them to stderr); with ``access_log`` each
request is one JSON line on stdout, as log collectors expect.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from flowops.config import Settings
from flowops.errors import ConfigError
from flowops.gateway.app import Gateway
from flowops.logs import LOG_FORMAT, log_to, quiet_kafka_client

__all__ = ["run_gateway"]

SHUTDOWN_TIMEOUT = 10.0
"""Seconds in-flight requests get to finish when the gateway stops."""


def run_gateway(settings: Settings, *, say: Callable[[str], None], access_log: bool = True) -> None:
    """Serve until Ctrl-C or SIGTERM; raises ConfigError for settings it cannot use."""
    log_to("flowops", sys.stderr, settings.log_level, LOG_FORMAT)
    log_to("flowops.gateway.access", sys.stdout, "INFO" if access_log else "WARNING", "%(message)s")
    quiet_kafka_client()  # the publisher says when Kafka is away and when it is back
    asyncio.run(_serve(settings, say))
    say("stopped")


async def _serve(settings: Settings, say: Callable[[str], None]) -> None:
    gateway = Gateway(settings, say=say)
    config = gateway.gateway
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(
        await gateway.start(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                "gateway.listen", f"cannot listen on {config.listen}: {exc.strerror}"
            ) from None
        routes = ", ".join(f"{r.name} {r.prefix}" for r in config.routes) or "none"
        say(f"listening on http://{config.listen} (routes: {routes}); Ctrl-C stops")
        await stop.wait()
        say("stopping: finishing requests in flight")
    finally:
        await runner.cleanup()
        await gateway.stop()
