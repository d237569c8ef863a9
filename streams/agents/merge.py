"""The merge agent: stage 2 of merged windows, a Faust agent and a Faust table.

It reads ``<app id>-partials`` (flushes keyed by model, watermarks sent to every
partition; :mod:`flowops.events.partials`) with Faust's consumer, keeps one
:class:`~streams.merge.Merger` a partition of that topic, and the state of each model's
:class:`~streams.merge.ModelMerger` in the table ``merge`` (key: the model; value: the
partials partition and the state), whose changelog Faust restores on whichever worker is
given the partition. For each message:

1. a flush is merged into its model (a replay is dropped), a watermark noted;
2. the windows the least watermark lets close are tested on their merged counts
   (:func:`~flowops.drift.partial.compare_partial`, by the ``drift.*`` rules), the
   report of each window that alerts written (``streams.reports``,
   :mod:`streams.reports`), and their alerts published, acked;
3. only then is the changed models' state written to the table, so a crash between the
   two closes those windows again after the restart, with the same alert ids (readers
   drop them by id), and never loses one.

Watermarks are not saved: every reader sends its partitions' watermarks each loop.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable
from typing import Any, Final

import faust
from mode import Service

from flowops.config import Settings
from flowops.drift import Finding
from flowops.drift.error_rate import jump_finding
from flowops.drift.partial import Prepared, compare_partial
from flowops.drift.report import DriftReport
from flowops.drift.rules import rules_from_settings
from flowops.drift.window_tests import report_findings
from flowops.errors import EmptyInputError, EventError
from flowops.events.partials import Flush, decode_message
from streams.merge import MergedWindow, Merger, ModelMerger
from streams.metrics import LateLog, StreamMetrics
from streams.publish import Publisher
from streams.references import References
from streams.reports import ReportWriter, WindowReport, alert_links

__all__ = ["MergeStage", "merge_topics", "partials_topic"]

log = logging.getLogger("flowops.streams")

_PARTITION: Final = struct.Struct("<I")


def partials_topic(app_id: str) -> str:
    """The internal topic between the stages."""
    return f"{app_id}-partials"


def merge_topics(app_id: str) -> list[tuple[str, bool]]:
    """The merge stage's topics, and whether each is compacted: the partials, and the
    table's changelog (named as Faust names it)."""
    return [(partials_topic(app_id), False), (f"{app_id}-merge-changelog", True)]


class MergeStage(Service):
    """What the merge agent does with each message; the agent is :meth:`install`\\ ed."""

    def __init__(
        self,
        settings: Settings,
        references: References,
        metrics: StreamMetrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self.rules = rules_from_settings(settings.drift)  # the stream judges as compare does
        self._references = references
        self._metrics = metrics
        self._publisher = Publisher(
            settings.kafka,
            source=f"/flowops/streams/{settings.streams.app_id}",
            consumer=settings.streams.app_id,
        )
        self._publishing = False
        self._reports = ReportWriter(settings.streams.reports)
        self._mergers: dict[int, Merger] = {}
        self._table: Any = None
        self._late = LateLog()
        self._late_seen: dict[str, int] = {}
        self._mismatched_seen: dict[str, int] = {}

    def install(self, app: faust.App) -> None:
        """Declare the topic, the table and the agent on ``app``."""
        partitions = self._settings.kafka.partitions
        topic = app.topic(
            partials_topic(self._settings.streams.app_id),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )
        self._table = app.Table(
            "merge",
            key_type=bytes,  # bytes: Faust's "raw" serializer, in the changelog too
            value_type=bytes,
            partitions=partitions,
            help="merged windows by model (streams.merge.ModelMerger)",
        )

        async def merge(stream: Any) -> None:
            async for event in stream.events():
                await self.handle(event.message.partition, event.value)

        app.agent(topic, name="flowops-merge")(merge)

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust types handlers loosely
        async def forget(app: faust.App, revoked: Iterable[Any], **_: Any) -> None:
            for tp in revoked:
                if tp.topic == topic.get_topic_name():
                    self._mergers.pop(tp.partition, None)

    async def on_stop(self) -> None:
        """Disconnect the alert producer."""
        if self._publishing:
            await self._publisher.stop()

    async def handle(self, partition: int, value: bytes) -> None:
        """One message of partials partition ``partition``."""
        try:
            message = decode_message(value)
        except EventError as exc:
            log.error("partials partition %d: %s", partition, exc)
            return
        merger = self._merger(partition)
        if isinstance(message, Flush):
            self._load(merger, partition, message.model)
            closed = merger.add(message)
            changed = {message.model, *(window.model for window in closed)}
        else:
            closed = merger.watermark(message.source, message.watermark, message.partitions)
            changed = {window.model for window in closed}
        await self._publish(closed)
        for model in changed:
            self._save(partition, merger.models[model])

    def _merger(self, partition: int) -> Merger:
        merger = self._mergers.get(partition)
        if merger is None:
            grace = self._settings.streams.grace
            levels = self.rules.error_rate
            merger = self._mergers[partition] = Merger(grace=grace, error_rate=levels)
            for key, value in list(self._table.items()):
                if _PARTITION.unpack_from(value)[0] == partition:
                    state = value[_PARTITION.size :]
                    model = ModelMerger.from_state(state, error_rate=levels)
                    merger.models[key.decode()] = model
        return merger

    def _load(self, merger: Merger, partition: int, model: str) -> None:
        if model not in merger.models:
            merger.models[model] = ModelMerger(
                model, grace=merger.grace, error_rate=merger.error_rate
            )

    def _save(self, partition: int, model: ModelMerger) -> None:
        self._table[model.model.encode()] = _PARTITION.pack(partition) + model.to_state()
        late = model.late_rows - self._late_seen.get(model.model, 0)
        self._late_seen[model.model] = model.late_rows
        if late:
            self._metrics.late(model.model, late)
        line = self._late.note(model.model, late, now=time.monotonic())
        if line is not None:
            log.warning("merge: %s", line)
        mismatched = model.mismatched_rows - self._mismatched_seen.get(model.model, 0)
        self._mismatched_seen[model.model] = model.mismatched_rows
        if mismatched:
            log.warning(
                "merge: %d rows of %s reduced on another reference profile than their"
                " window's (the profile changed while it was open): left out",
                mismatched,
                model.model,
            )

    def _judge(self, prepared: Prepared, window: MergedWindow) -> DriftReport | None:
        """The merged window's tests by the ``drift.*`` rules (None: no usable value)."""
        drift = self._settings.drift
        try:
            return compare_partial(
                prepared,
                window.partial,
                alpha=drift.alpha,
                correction=drift.correction,
                rules=self.rules,
            )
        except EmptyInputError:
            return None

    async def _publish(self, closed: list[MergedWindow]) -> None:
        if not closed:
            return
        findings: list[Finding] = []
        pages: list[WindowReport] = []
        for window in closed:
            prepared = self._references.prepared(window.model, window.version)
            if prepared is None or prepared.token != window.partial.reference:
                log.warning(
                    "window %d of %s version %s: its reference profile changed; not tested",
                    window.window,
                    window.model,
                    window.version,
                )
                continue
            found = []
            if window.jump is not None:  # the model's error rate, merged as its rows are
                found.append(
                    jump_finding(
                        window.jump,
                        window.model,
                        window.version,
                        threshold=self.rules.error_rate.alpha,
                    )
                )
            report = self._judge(prepared, window)
            if report is not None:
                bounds = (window.window, window.start, window.end)
                found += report_findings(
                    report,
                    model=window.model,
                    version=window.version,
                    window=bounds,
                    reference="profile",
                )
            if found and report is not None and self._reports.enabled:
                pages.append(
                    WindowReport.of_merged(
                        window.partial,
                        report.to_dict(),
                        prepared.baselines,
                        start=window.start,
                        end=window.end,
                    )
                )
            findings += found
        self._metrics.windows_closed(len(closed))
        if not self._publishing:
            await self._publisher.start()
            self._publishing = True
        links = alert_links(findings, await self._reports.write(pages))
        for alert in await self._publisher.alerts(findings, links):
            self._metrics.alert(alert.model, alert.test)
            log.info(
                "alert %s: %s %s %s (window %d, merged)",
                alert.alert_id[:12],
                alert.model,
                alert.feature,
                alert.test,
                alert.window_index,
            )
