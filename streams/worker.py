"""Running one stream worker in this process, until Ctrl-C or SIGTERM.

:func:`run_worker` checks the broker, creates the topics that are missing, builds the
Faust app and runs its worker. Each startup step is one line given to ``say`` (the CLI
writes them to stderr); Faust's own log goes to stderr at ``log_level``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import faust
from prometheus_client import disable_created_metrics

from flowops.config import Settings
from flowops.events import ensure_topics
from flowops.logs import LOG_FORMAT as _LOG_FORMAT
from flowops.logs import log_to
from streams.agents.merge import merge_topics
from streams.app import build
from streams.state import ensure_state_topic

__all__ = ["run_worker"]

_FAUST_LEVELS = {"debug": "debug", "info": "warn", "warning": "warn", "error": "error"}


def run_worker(settings: Settings, *, say: Callable[[str], None]) -> None:
    """Run a stream worker; returns when it has stopped cleanly.

    Raises :class:`~flowops.errors.BrokerError` when the broker does not answer.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        try:
            loop.run_until_complete(_prepare(settings, say))
        except BaseException:
            loop.close()
            raise
        parts = build(settings, say=say)
        streams = settings.streams
        say(f"metrics: http://{streams.metrics_host}:{streams.metrics_port}/metrics")
        worker = faust.Worker(
            parts.app,
            loop=loop,
            quiet=True,
            loglevel=_FAUST_LEVELS[settings.log_level],
            stdout=sys.stderr,
            redirect_stdouts=False,
        )
        worker.spinner = None  # its terminal codes do not belong in a log
        _hook_logging(settings)
        say("worker: starting (Faust joins its group, restores the reference table)")
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    finally:
        asyncio.set_event_loop(None)
    say("worker: stopped")


async def _prepare(settings: Settings, say: Callable[[str], None]) -> None:
    kafka = settings.kafka
    streams = settings.streams
    say(f"config: app {streams.app_id}, kafka {kafka.bootstrap}, window {_window(settings)}")
    created = await ensure_topics(kafka, kafka.partitions, replication=kafka.replication)
    say(f"topics: created {', '.join(created)}" if created else "topics: all present")
    # Before Faust asks about them: Tansu makes a topic asked about with its own partition
    # count, and the merge table's changelog must have as many partitions as its source.
    for topic, compact in merge_topics(streams.app_id):
        await ensure_state_topic(kafka, topic, kafka.partitions, kafka.replication, compact=compact)


def _window(settings: Settings) -> str:
    window = settings.streams.window
    unit = "rows" if window.kind == "count" else "s"
    overrides = len(settings.streams.models)
    extra = f" ({overrides} model override{'s' if overrides != 1 else ''})" if overrides else ""
    return f"{window.kind} {window.size:g} {unit}{extra}"


def _hook_logging(settings: Settings) -> None:
    """FlowOps' own log lines (alerts, restores, warnings) to stderr at ``log_level``.

    Faust's logging setup puts its handler on the root logger at Faust's (quieter) level;
    FlowOps' logger has a handler of its own and does not propagate to it.
    """
    log_to("flowops", sys.stderr, settings.log_level, _LOG_FORMAT)
