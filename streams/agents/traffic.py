"""The traffic agent: ``flowops.traffic`` in batches -> monitors -> alerts and dead letters.

It runs as a service of the Faust app but reads the traffic topic with its own aiokafka
consumer (group ``<app id>-traffic``) in batches of up to ``streams.max_poll_records``
messages: Faust's per-event stream costs about 200 µs a message here, the batch read
about 10 µs (figures in ``docs/streaming.md``). Each loop:

1. reads a batch (at most 100 ms of waiting), and hands each partition's records to its
   :class:`~streams.monitors.Partition` (decode, group by model version, ``add``);
2. closes time windows whose end plus ``streams.grace`` has passed, applies new
   reference profiles;
3. writes the report of each window that alerted (``streams.reports``, off the loop:
   :mod:`streams.reports`), publishes the alerts and dead letters and waits for the
   broker's acks;
4. checkpoints (when an alert was made, or every ``streams.checkpoint_interval``): the
   changed monitors' state, then each partition's position, acknowledged, then commits
   the offsets that state covers.

A failed publish rewinds the partitions to their last checkpoint, as a restart would;
nothing a message holds stops the loop (it is dead-lettered with its reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from flowops.config import Settings
from flowops.drift import ModelMonitor, WindowSpec
from flowops.drift.partial import Prepared
from flowops.drift.rules import rules_from_settings
from flowops.errors import FlowOpsError
from flowops.events import Topics, describe_topics
from flowops.events.partials import Watermark, encode_flush, encode_watermark
from flowops.kafka_security import client_options
from streams.agents.merge import partials_topic
from streams.metrics import LateLog, StreamMetrics
from streams.monitors import Outcome, Partition
from streams.publish import Publisher
from streams.references import References
from streams.reports import ReportWriter, WindowKey, WindowReport, alert_links
from streams.state import (
    FLUSH_KEY as _FLUSH_KEY,
)
from streams.state import (
    POSITION_KEY as _POSITION_KEY,
)
from streams.state import (
    StateReader,
    encode_flush_intent,
    encode_monitor_state,
    encode_position,
    ensure_state_topic,
    monitor_key,
    state_topic,
)

__all__ = [
    "FETCH_MAX_WAIT_MS",
    "POLL_TIMEOUT",
    "REWIND_RETRY",
    "STOP_TIMEOUT",
    "WATERMARK_STEP",
    "TrafficAgent",
]

log = logging.getLogger("flowops.streams")

POLL_TIMEOUT: Final = 0.1
"""Longest wait for traffic before the loop ticks (time windows, checkpoints)."""
STOP_TIMEOUT: Final = 30.0
REWIND_RETRY: Final = 2.0
WATERMARK_STEP: Final = 0.1
"""A partition's watermark is sent on when it has moved this many seconds (or with a
flush): the clock moves it at every loop, and each send goes to every merge partition."""
FETCH_MAX_WAIT_MS: Final = 50
"""How long the broker may hold a fetch for data: Tansu holds it that long even when
data arrives meanwhile, so it bounds the alert latency (aiokafka's default is 500 ms)."""


class TrafficAgent(Service):
    """Reads traffic in batches, drives the monitors, publishes, checkpoints."""

    def __init__(
        self,
        settings: Settings,
        references: References,
        metrics: StreamMetrics,
        *,
        say: Callable[[str], None] = log.info,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._streams = settings.streams
        self.rules = rules_from_settings(settings.drift)  # a bad drift.* key stops start-up
        self._references = references
        self._metrics = metrics
        self._say = say
        self.group = f"{self._streams.app_id}-traffic"
        self.state_topic = state_topic(self._streams.app_id)
        self.partials_topic = partials_topic(self._streams.app_id)
        self.traffic_partitions = 0
        self._partials_partitions = 0
        kafka = settings.kafka
        self._publisher = Publisher(
            kafka, source=f"/flowops/streams/{self._streams.app_id}", consumer=self.group
        )
        self._reader = StateReader(
            kafka, self.state_topic, client_id=f"{kafka.client_id}-streams-state"
        )
        self._consumer: Any = None  # made in on_start(): aiokafka wants a running loop
        self._partitions: dict[int, Partition] = {}
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_checkpoint = time.monotonic()
        self._late = LateLog()
        self._reports = ReportWriter(self._streams.reports)

    # -- lifecycle -------------------------------------------------------------------

    async def on_start(self) -> None:
        """Create the state topic, connect, join the group, start the loop."""
        kafka = self._settings.kafka
        partitions = self.traffic_partitions = await self._traffic_partitions()
        await ensure_state_topic(kafka, self.state_topic, partitions, kafka.replication)
        # Made here, not by asking about it: Tansu would make it with its own default
        # partition count, and the merge table's changelog must have as many as it.
        await ensure_state_topic(
            kafka, self.partials_topic, kafka.partitions, kafka.replication, compact=False
        )
        self._partials_partitions = await self._topic_partitions(self.partials_topic)
        await self._publisher.start()
        await self._reader.start()
        self._consumer = self._new_consumer()
        await self._consumer.start()
        self._consumer.subscribe([Topics.TRAFFIC], listener=_Listener(self))
        self._loop_task = asyncio.create_task(self._run(), name="flowops-traffic")
        self._say(f"traffic: joining consumer group {self.group}")

    async def on_stop(self) -> None:
        """Finish the batch in hand, checkpoint, leave the group, disconnect."""
        self._stopping = True
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(self._loop_task, STOP_TIMEOUT)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("traffic loop did not stop in %s s", STOP_TIMEOUT)
        if self._consumer is None:  # it did not get as far as starting
            return
        async with self._lock:
            try:
                await self._flush_all()
            except KafkaError as exc:  # the rows are read again at the next start
                log.warning("traffic: the last partials were not sent (%s)", exc)
            else:
                await self._checkpoint(force=True)
        await self._consumer.stop()
        await self._publisher.stop()
        await self._reader.stop()

    def _new_consumer(self) -> Any:
        session = self._streams.session_timeout
        return AIOKafkaConsumer(
            **client_options(self._settings.kafka),
            client_id=f"{self._settings.kafka.client_id}-streams",
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(session * 1000),
            heartbeat_interval_ms=int(session * 1000 / 4),
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )

    async def _traffic_partitions(self) -> int:
        """How many partitions the traffic topic has (the state topic gets as many)."""
        return await self._topic_partitions(Topics.TRAFFIC)

    async def _topic_partitions(self, topic: str) -> int:
        found = await describe_topics(self._settings.kafka, [topic])
        info = found.get(topic)
        return info.partitions if info is not None else self._settings.kafka.partitions

    # -- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                batch = await self._consumer.getmany(
                    timeout_ms=int(POLL_TIMEOUT * 1000),
                    max_records=self._streams.max_poll_records,
                )
                async with self._lock:
                    await self._handle(batch)
            except KafkaError as exc:
                log.warning("traffic: %s; going on in a second", exc)
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the worker: rewind as a restart would
                log.exception("traffic: unexpected error; rewinding to the last checkpoint")
                async with self._lock:
                    await self._rewind()

    async def _handle(self, batch: Mapping[Any, Sequence[Any]]) -> None:
        outcome = Outcome()
        try:
            for tp, records in batch.items():
                part = self._partitions.get(tp.partition)
                if part is not None:  # else revoked while the batch was in hand
                    await self._process(part, records, outcome)
            self._apply_references()
            outcome.rejects += self._references.take_rejects()
            clock = time.time() - self._streams.grace
            for number, part in self._partitions.items():
                highwater = self._consumer.highwater(TopicPartition(Topics.TRAFFIC, number))
                part.confirm_end(highwater)
                outcome.findings += part.advance(clock)
            await self._flush_all()
            links = await self._write_reports() if outcome.findings else {}
            await self._publish(outcome, links)
            await self._reports.prune_due()
        except KafkaError as exc:
            log.warning("traffic: publishing failed (%s); rewinding to the last checkpoint", exc)
            await self._rewind()
            return
        self._count(outcome)
        due = time.monotonic() - self._last_checkpoint >= self._streams.checkpoint_interval
        if outcome.findings or due:
            await self._checkpoint()

    async def _process(self, part: Partition, records: Sequence[Any], outcome: Outcome) -> None:
        """The records into the partition; a flush made again is sent where it ended."""
        for segment in part.segments(records):
            _merge(outcome, part.process(segment))
            if part.cut_due:
                await self._flush(part)

    async def _flush_all(self) -> None:
        for part in list(self._partitions.values()):
            await self._flush(part)

    async def _flush(self, part: Partition) -> None:
        """Send the partials of the rows read since the last flush, and the watermark.

        The flush's offsets are written to the state topic first: a reader restored
        after a crash makes the same flush again (see :mod:`streams.monitors`)."""
        if part.cut_at is not None and not part.cut_due:
            return  # a flush made again goes out whole, at its end, or not at all
        reducer, start = part.reducer, part.reducer.start
        clock = time.time() if part.caught_up else None
        flushes = []
        if part.next_offset is not None:
            flushes = reducer.flush(part.next_offset, clock=clock)
        elif clock is not None:  # an empty partition: its watermark is the clock
            reducer.watermark = max(reducer.watermark, clock)
        part.cut_at = None
        if flushes:
            assert part.next_offset is not None
            intent = [(_FLUSH_KEY, encode_flush_intent(start or 0, part.next_offset))]
            await self._publisher.records(self.state_topic, part.number, intent)
            sent = [(flush.model.encode(), encode_flush(flush)) for flush in flushes]
            await self._publisher.keyed(self.partials_topic, sent)
        if flushes or reducer.watermark >= part.sent_watermark + WATERMARK_STEP:
            mark = Watermark(part.number, reducer.watermark, self.traffic_partitions)
            values = [encode_watermark(mark)]
            await self._publisher.everywhere(self.partials_topic, self._partials_partitions, values)
            part.sent_watermark = reducer.watermark

    async def _write_reports(self) -> dict[WindowKey, str]:
        """The report of each window that made findings (``streams.reports``)."""
        if not self._reports.enabled:
            return {}
        pages = [
            WindowReport.of_window(model, version, part.number, window)
            for part in self._partitions.values()
            for (model, version), window in part.take_drifted()
        ]
        return await self._reports.write(pages)

    async def _publish(self, outcome: Outcome, links: Mapping[WindowKey, str]) -> None:
        await self._publisher.dead_letters(outcome.rejects)
        reports = alert_links(outcome.findings, links)
        for alert in await self._publisher.alerts(outcome.findings, reports):
            self._metrics.alert(alert.model, alert.test)
            log.info(
                "alert %s: %s %s %s (window %d of partition %s)",
                alert.alert_id[:12],
                alert.model,
                alert.feature,
                alert.test,
                alert.window_index,
                alert.partition,
            )

    def _count(self, outcome: Outcome) -> None:
        metrics = self._metrics
        if outcome.rows:
            metrics.events(outcome.rows)
        for model, rows in outcome.requests.items():
            metrics.requests(model, rows, outcome.rejected_requests.get(model, 0))
        for model, rows in outcome.unparsable.items():
            metrics.unparsable(model, rows)
        for reject in outcome.rejects:
            metrics.rejected(reject.code)
        for number, part in self._partitions.items():
            for (model, _), tracked in part.monitors.items():
                late = metrics.monitor(model, tracked.monitor.stats, tracked.delta)
                line = self._late.note(model, late, now=time.monotonic())
                if line is not None:
                    log.warning("traffic: %s", line)
            highwater = self._consumer.highwater(TopicPartition(Topics.TRAFFIC, number))
            if highwater is not None and part.next_offset is not None:
                metrics.lag(Topics.TRAFFIC, number, max(0, highwater - part.next_offset))

    def _apply_references(self) -> None:
        for part in self._partitions.values():
            for model in {model for model, _ in part.monitors}:
                found = self._references.get(model)
                if found is not None:
                    token, reference = found
                    part.apply_profile(model, reference.version, token, reference.to_profile())

    def _new_monitor(self, model: str, version: str) -> ModelMonitor:
        """A model version's monitor: without window tests when its windows are merged."""
        window = self._streams.window_for(model)
        found = self._references.get(model)
        profile = None
        if found is not None and found[1].version in (None, version):
            profile = found[1].to_profile()
        drift = self._settings.drift
        monitor = ModelMonitor(
            model,
            version,
            WindowSpec(window.kind, window.size),
            profile,
            alpha=drift.alpha,
            adwin_delta=drift.adwin_delta,
            correction=drift.correction,
            window_tests=self._merging(model, version) is None,
            rules=self.rules,
        )
        monitor.keep_drifted = self._reports.enabled  # a report behind its windows' alerts
        return monitor

    def _merging(self, model: str, version: str) -> tuple[Prepared, float] | None:
        """Time windows of a model with a reference profile are merged across partitions
        (stage 2, :mod:`streams.agents.merge`); other windows are the partition's."""
        window = self._streams.window_for(model)
        if window.kind != "time":
            return None
        prepared = self._references.prepared(model, version)
        return None if prepared is None else (prepared, float(window.size))

    # -- checkpoints -----------------------------------------------------------------

    async def _checkpoint(self, *, force: bool = False, only: Sequence[int] | None = None) -> None:
        """Save the changed monitors and positions, then commit the offsets they cover."""
        started = time.monotonic()
        numbers = list(self._partitions) if only is None else only
        parts = [self._partitions[n] for n in numbers if n in self._partitions]
        offsets = {}
        for part in parts:
            if part.next_offset is None:
                continue
            if await self._save(part):
                offsets[TopicPartition(Topics.TRAFFIC, part.number)] = part.position
        self._last_checkpoint = time.monotonic()
        if offsets:
            await self._commit(offsets)
            self._metrics.checkpoint(time.monotonic() - started)
        elif force:
            log.debug("checkpoint: nothing to save")

    async def _save(self, part: Partition) -> bool:
        """Write a partition's changed monitors, then its position; False on failure."""
        assert part.next_offset is not None
        dirty = part.take_dirty()
        if not dirty and part.saved_position == part.position:
            return False
        monitors = [
            (monitor_key(*key), encode_monitor_state(m, part.next_offset)) for key, m in dirty
        ]
        try:
            await self._publisher.records(self.state_topic, part.number, monitors)
            position = [(_POSITION_KEY, encode_position(part.position))]
            await self._publisher.records(self.state_topic, part.number, position)
        except KafkaError as exc:
            log.warning("checkpoint of partition %d failed (%s); retrying later", part.number, exc)
            part.mark_dirty([key for key, _ in dirty])
            return False
        part.saved_position = part.position
        return True

    async def _commit(self, offsets: Mapping[Any, int]) -> None:
        try:
            await self._consumer.commit(dict(offsets))
        except KafkaError as exc:  # the saved position is what a restore trusts
            log.info("commit of %s failed (%s); the saved positions stand", offsets, exc)

    # -- partitions coming and going -------------------------------------------------

    async def assigned(self, tps: Sequence[Any]) -> None:
        """Restore the state of newly assigned partitions and seek to their positions."""
        async with self._lock:
            new = sorted(tp.partition for tp in tps if tp.partition not in self._partitions)
            await self._restore(new)
            numbers = sorted(self._partitions)
            monitors = sum(len(self._partitions[n].monitors) for n in new)
            self._metrics.partitions(Topics.TRAFFIC, len(numbers))
            self._say(f"traffic: partitions {numbers} assigned ({monitors} monitors restored)")

    async def revoked(self, tps: Sequence[Any]) -> None:
        """Checkpoint the partitions being taken away, then forget them."""
        async with self._lock:
            numbers = [tp.partition for tp in tps if tp.partition in self._partitions]
            try:
                for number in numbers:
                    await self._flush(self._partitions[number])
            except KafkaError as exc:  # the new owner reads those rows again
                log.warning("traffic: partials of %s not sent (%s)", numbers, exc)
            else:
                await self._checkpoint(force=True, only=numbers)
            for number in numbers:
                del self._partitions[number]
                self._metrics.forget_partition(Topics.TRAFFIC, number)
            self._metrics.partitions(Topics.TRAFFIC, len(self._partitions))

    async def _restore(self, numbers: Sequence[int], *, rewind: bool = False) -> None:
        if not numbers:
            return
        restored = await self._reader.read(numbers)
        tps = [TopicPartition(Topics.TRAFFIC, n) for n in numbers]
        ends = await self._consumer.end_offsets(tps)
        for tp in tps:
            state = restored[tp.partition]
            for error in state.errors:
                log.error("traffic partition %d: %s", tp.partition, error)
            self._check_windows(state.monitors)
            for monitor, _ in state.monitors.values():
                monitor.rules = self.rules  # the configuration's, not the saved one's
                monitor.keep_drifted = self._reports.enabled
            position = state.position
            if position is not None:
                self._consumer.seek(tp, position)
            elif rewind:
                position = await self._seek_to_committed(tp)
            else:
                position = await self._consumer.committed(tp)
            self._partitions[tp.partition] = Partition(
                tp.partition,
                self._new_monitor,
                next_offset=position,
                monitors=state.monitors,
                catch_up=ends[tp],
                merging=self._merging,
                flush=state.flush,
            )

    async def _rewind(self) -> None:
        """Drop the in-memory state and restore every partition from its checkpoint;
        while the broker does not answer, try again every few seconds."""
        numbers = sorted(self._partitions)
        self._partitions.clear()
        while not self._stopping:
            try:
                await self._restore(numbers, rewind=True)
            except (KafkaError, FlowOpsError) as exc:
                log.warning("traffic: restoring partitions %s failed (%s); retrying", numbers, exc)
                self._partitions.clear()
                await asyncio.sleep(REWIND_RETRY)
            else:
                return

    async def _seek_to_committed(self, tp: Any) -> int | None:
        """Back to the committed offset (returned), or to the start when there is none."""
        committed: int | None = await self._consumer.committed(tp)
        if committed is None:
            await self._consumer.seek_to_beginning(tp)
        else:
            self._consumer.seek(tp, committed)
        return committed

    def _check_windows(self, monitors: Mapping[tuple[str, str], tuple[ModelMonitor, int]]) -> None:
        for (model, version), (monitor, _) in monitors.items():
            window = self._streams.window_for(model)
            if monitor.spec != WindowSpec(window.kind, window.size):
                log.warning(
                    "%s version %s keeps its saved window %s; the configured %s applies to new"
                    " monitors only",
                    model,
                    version,
                    monitor.spec,
                    window,
                )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, agent: TrafficAgent) -> None:
        self._agent = agent

    async def on_partitions_revoked(self, revoked: Sequence[Any]) -> None:
        await self._agent.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[Any]) -> None:
        await self._agent.assigned(assigned)


def _merge(total: Outcome, part: Outcome) -> None:
    total.findings += part.findings
    total.rejects += part.rejects
    total.rows += part.rows
    for mine, theirs in (
        (total.unparsable, part.unparsable),
        (total.requests, part.requests),
        (total.rejected_requests, part.rejected_requests),
    ):
        for model, rows in theirs.items():
            mine[model] = mine.get(model, 0) + rows
