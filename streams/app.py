"""The Faust app of the stream workers, built from FlowOps settings.

:func:`build_app` makes a ``faust.App`` whose worker

* keeps the reference profiles in a global table over ``flowops.references``
  (:mod:`streams.references`; Faust restores it before the worker starts);
* runs the traffic agent (:mod:`streams.agents.traffic`) once that table is ready, and
  the merge agent (:mod:`streams.agents.merge`) over ``<app id>-partials`` with its
  table ``merge``;
* serves ``/metrics`` (Prometheus text) on ``streams.metrics_host:streams.metrics_port``
  (127.0.0.1:6066 unless configured).

Faust's own consumer group is ``streams.app_id``; the traffic agent's is
``<app id>-traffic``. Processing is at-least-once and producers are not idempotent:
Tansu's memory engine rejects idempotent producers and transactions, so Faust's
``exactly_once`` is not used.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faust
from faust.web import Request, Response, View

from flowops.config import Settings
from flowops.kafka_security import faust_credentials
from streams.agents.merge import MergeStage
from streams.agents.traffic import TrafficAgent
from streams.metrics import CONTENT_TYPE as _CONTENT_TYPE
from streams.metrics import StreamMetrics
from streams.references import References, reference_table

__all__ = ["StreamsApp", "build", "build_app"]

log = logging.getLogger("flowops.streams")


@dataclass(frozen=True)
class StreamsApp:
    """The Faust app and the parts a caller may look at (tests, the CLI)."""

    app: faust.App
    traffic: TrafficAgent
    merge: MergeStage
    references: References
    metrics: StreamMetrics


def build_app(settings: Settings, *, say: Callable[[str], None] | None = None) -> faust.App:
    """The Faust app of a stream worker; ``say`` hears one line per startup step."""
    return build(settings, say=say).app


def build(settings: Settings, *, say: Callable[[str], None] | None = None) -> StreamsApp:
    """:func:`build_app`, returning the app's parts as well."""
    streams, kafka = settings.streams, settings.kafka
    app = faust.App(
        streams.app_id,
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap.split(",")],
        store=streams.store,
        datadir=str(_datadir(settings)),
        autodiscover=False,
        broker_credentials=faust_credentials(kafka),
        processing_guarantee="at_least_once",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication,
        broker_session_timeout=streams.session_timeout,
        broker_rebalance_timeout=streams.session_timeout,
        broker_heartbeat_interval=streams.session_timeout / 4,
        web_enabled=True,
        web_bind=streams.metrics_host,
        web_host=streams.metrics_host,
        web_port=streams.metrics_port,
    )
    metrics = StreamMetrics()
    table = reference_table(app, kafka.partitions)
    references = References(table)
    traffic = TrafficAgent(settings, references, metrics, say=say or (lambda line: None))
    merge = MergeStage(settings, references, metrics)
    merge.install(app)
    _add_metrics_page(app, metrics)
    _start_after_recovery(app, traffic, merge)
    return StreamsApp(app, traffic, merge, references, metrics)


def _datadir(settings: Settings) -> Path:
    configured = settings.streams.datadir
    if configured is not None:
        return configured
    return Path(tempfile.gettempdir()) / f"flowops-{settings.streams.app_id}"


def _add_metrics_page(app: faust.App, metrics: StreamMetrics) -> None:
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body = metrics.render()
            return self.bytes(body, content_type=_CONTENT_TYPE)

    app.page("/metrics")(Metrics)


def _start_after_recovery(app: faust.App, traffic: TrafficAgent, merge: MergeStage) -> None:
    """The traffic agent starts once Faust has restored the reference table."""

    async def start_traffic() -> None:
        try:
            await app.add_runtime_dependency(merge)  # stops with the app: its producer
            await app.add_runtime_dependency(traffic)
        except Exception as exc:  # the worker stops, with the reason, rather than idle on
            log.exception("the traffic agent did not start")
            await app.crash(exc)

    app.task(start_traffic)
