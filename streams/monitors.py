"""The monitors of the traffic partitions a worker owns, and what a batch does to them.

No I/O here: :class:`Partition` turns the records the consumer read into findings,
rejects and counts, and says which monitors changed since their state was last saved.
The traffic agent (:mod:`streams.agents.traffic`) does the reading and writing.

**Offsets.** ``next_offset`` is the first offset of the partition not yet in the
monitors. Each saved monitor carries the ``next_offset`` it was saved at; after a
restore, records below a monitor's saved offset are already in it and are skipped
(``replay_end`` bounds the records that need that per-model check), so a replayed row is
never counted twice.

**Batches.** One-row messages are decoded together
(:func:`~flowops.events.decode_traffic_many`): one batch per model version and one
``ModelMonitor.add`` call for all of them, which is what makes one-row traffic cheap.

**Windows are the partition's.** A monitor sees the rows of its model that this
partition carries, so its count windows and ADWIN rows are counted within the partition
and its findings carry the partition number, which is part of their alert id: a model
whose rows two partitions carry (a foreign producer's partitioner) gets two sets of
windows whose alerts all reach the topic.

**Only answered requests are data.** A row with a status outside 2xx (the model server
rejected the request: its "prediction" is an error object) or a ``parse_error`` (a
gateway could not read the request's features) is counted per model in ``Outcome`` and
kept out of the drift windows (:meth:`~flowops.events.TrafficBatch.answered`); every
request counts in the model's error-rate windows, whose jumps are alerts of their own
(``test: "error_rate"``, :mod:`flowops.drift.error_rate`): the monitor's, or for a model
whose windows are merged across partitions, the partials' (``requests``, ``failed``).

**Predictions are monitored like features** when the reference holds them (a profile
made with ``--prediction-column``) or is the first window: see :func:`drift_columns`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from flowops.drift import Finding, ModelMonitor, Profile
from flowops.drift.detector import Values
from flowops.drift.partial import Prepared
from flowops.drift.window_tests import DriftedWindow
from flowops.errors import EventError, InputError
from flowops.events import TrafficBatch, decode_traffic, decode_traffic_many
from flowops.predictions import PREDICTION as _PREDICTION
from flowops.predictions import prediction_columns
from streams.metrics import StatsDelta
from streams.reduce import PartitionReducer

__all__ = [
    "Merging",
    "MonitorFactory",
    "Outcome",
    "Partition",
    "Record",
    "Reject",
    "Tracked",
    "drift_columns",
]

log = logging.getLogger("flowops.streams")

_NO_VALUE = EventError("a message without a value", event="traffic", code="bad_json")

ModelKey = tuple[str, str]  # (model, version)


class Record(Protocol):
    """What the traffic agent needs of a consumer record (aiokafka's ConsumerRecord)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


MonitorFactory = Callable[[str, str], ModelMonitor]
"""Makes the monitor of a (model, version) seen for the first time."""

Merging = Callable[[str, str], "tuple[Prepared, float] | None"]
"""The reference and window size of a model version whose windows are merged across
partitions (its monitor has no window tests), or None."""


@dataclass(frozen=True)
class Reject:
    """A message that goes to the dead-letter topic, and the error that put it there."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    error: Exception

    @classmethod
    def of(cls, record: Record, error: Exception) -> Reject:
        """The reject of a consumer record."""
        return cls(record.topic, record.partition, record.offset, record.key, record.value, error)

    @property
    def code(self) -> str:
        """The reason as a code: an :class:`EventError` code, or ``exception``."""
        return self.error.code if isinstance(self.error, EventError) else "exception"


@dataclass
class Outcome:
    """What processing records gave: findings to publish, rejects, rows counted.

    ``rows`` counts the answered rows given to monitors; by model, ``requests`` every
    request, ``rejected_requests`` those with a status outside 2xx and ``unparsable``
    those with a ``parse_error`` (the last two left out of drift).
    """

    findings: list[Finding] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rows: int = 0
    unparsable: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    rejected_requests: dict[str, int] = field(default_factory=dict)


@dataclass
class Tracked:
    """A monitor with its bookkeeping: changed since saved, rows since last advance."""

    monitor: ModelMonitor
    delta: StatsDelta
    dirty: bool = False
    touched: bool = False
    profile_token: object = None  # the reference value last given to set_profile

    @classmethod
    def of(cls, monitor: ModelMonitor, *, dirty: bool = False) -> Tracked:
        """Track ``monitor``; its current counts are the metrics' baseline."""
        return cls(monitor, StatsDelta(monitor.stats), dirty=dirty)


class Partition:
    """One traffic partition this worker owns: its monitors and how far it has read."""

    def __init__(
        self,
        number: int,
        factory: MonitorFactory,
        *,
        next_offset: int | None = None,
        monitors: dict[ModelKey, tuple[ModelMonitor, int]] | None = None,
        catch_up: int | None = None,
        merging: Merging = lambda model, version: None,
        flush: tuple[int, int] | None = None,
    ) -> None:
        self.number = number
        self.next_offset = next_offset
        self.saved_position = next_offset  # the position last saved in the changelog
        self.catch_up = catch_up  # time windows close by the clock once read past this
        # The end offset a broker gives at assignment may be short (Tansu 0.6 answers the
        # base offset of the last record batch + 1): the first fetch's high watermark
        # confirms it. An end of 0 is an empty partition either way.
        self.end_confirmed = not catch_up
        self._factory = factory
        self.monitors: dict[ModelKey, Tracked] = {}
        self._saved_at: dict[ModelKey, int] = {}
        for key, (monitor, saved_at) in (monitors or {}).items():
            monitor.partition = number  # a state saved before monitors knew theirs
            self.monitors[key] = Tracked.of(monitor)
            self._saved_at[key] = saved_at
        self.replay_end = max(self._saved_at.values(), default=0)
        self._merging = merging
        # Partials: rows below reduce_from were flushed before; a flush begun and perhaps
        # not finished (flush = (start, end) past the position) is made again, to end.
        start = next_offset or 0
        self.cut_at: int | None = None
        if flush is not None and flush[1] > start:
            start, self.cut_at = flush
        self.reduce_from = start
        self.reducer = PartitionReducer(number, start=start)
        self._reducing = True
        self.unmerged = 0  # rows of a merged model whose reference went away
        self.sent_watermark = -math.inf

    @property
    def caught_up(self) -> bool:
        """Whether the records that were in the partition at assignment have been read."""
        if not self.end_confirmed:
            return False
        if not self.catch_up:  # unknown, or an empty partition
            return True
        return self.next_offset is not None and self.next_offset >= self.catch_up

    def confirm_end(self, highwater: int | None) -> None:
        """Take a fetch's high watermark as the end to catch up with, if it is further."""
        if highwater is not None and not self.end_confirmed:
            self.catch_up = max(self.catch_up or 0, highwater)
            self.end_confirmed = True

    def segments(self, records: Sequence[Record]) -> list[Sequence[Record]]:
        """The records cut where reducing starts and where the flush to make again ends:
        :meth:`process` each, and flush when :attr:`cut_due`."""
        cuts = [c for c in (self.reduce_from, self.cut_at) if c is not None]
        pieces: list[Sequence[Record]] = []
        start = 0
        for cut in sorted(set(cuts)):
            stop = start
            while stop < len(records) and records[stop].offset < cut:
                stop += 1
            if stop > start:
                pieces.append(records[start:stop])
            start = stop
        if start < len(records):
            pieces.append(records[start:])
        return pieces

    @property
    def position(self) -> int:
        """Where a restore should start reading: ``next_offset``, or while a flush is
        being made again, its start (so that a restore makes it again whole)."""
        assert self.next_offset is not None
        if self.cut_at is None:
            return self.next_offset
        return min(self.next_offset, self.reduce_from)

    @property
    def cut_due(self) -> bool:
        """Whether the flush made again has all its records: flush now, at ``cut_at``."""
        return self.cut_at is not None and self.next_offset == self.cut_at

    def process(self, records: Sequence[Record]) -> Outcome:
        """Add the records' rows to the monitors; records must be in offset order, and
        on one side of ``reduce_from`` and ``cut_at`` (see :meth:`segments`)."""
        outcome = Outcome()
        fresh = [r for r in records if self.next_offset is None or r.offset >= self.next_offset]
        if not fresh:
            return outcome
        self._reducing = fresh[0].offset >= self.reduce_from
        replayed = [r for r in fresh if r.offset < self.replay_end]
        if replayed:
            self._replay(replayed, outcome)
        self._decode(fresh[len(replayed) :], outcome)
        self.next_offset = fresh[-1].offset + 1
        return outcome

    def advance(self, now: float) -> list[Finding]:
        """Close time windows that ended before ``now``; feed ADWIN the rows buffered.

        Until the partition has caught up with what was in it when it was assigned,
        windows close only on rows (a replay must not find its window closed by the clock).
        """
        clock = now if self.caught_up else -math.inf
        findings: list[Finding] = []
        for tracked in self.monitors.values():
            monitor = tracked.monitor
            if not (tracked.touched or monitor.spec.kind == "time"):
                continue
            closed = monitor.stats.windows_closed
            found = monitor.advance(clock)
            if found or tracked.touched or monitor.stats.windows_closed != closed:
                tracked.dirty = True
            tracked.touched = False
            findings += found
        return findings

    def apply_profile(
        self, model: str, version: str | None, token: object, profile: Profile
    ) -> None:
        """Give the model's monitors (of ``version``, or all) a new reference profile."""
        for (name, of_version), tracked in self.monitors.items():
            if name != model or version not in (None, of_version):
                continue
            if tracked.profile_token is not token:
                tracked.monitor.set_profile(profile)
                tracked.profile_token = token
                tracked.dirty = True

    def take_drifted(self) -> list[tuple[ModelKey, DriftedWindow]]:
        """The windows that made findings since the last call, of monitors that keep
        them (:attr:`~flowops.drift.ModelMonitor.keep_drifted`: reports are on)."""
        return [
            (key, window)
            for key, tracked in self.monitors.items()
            for window in tracked.monitor.take_drifted()
        ]

    def take_dirty(self) -> list[tuple[ModelKey, ModelMonitor]]:
        """The monitors changed since saved, now marked clean (see :meth:`mark_dirty`)."""
        dirty = [(key, t.monitor) for key, t in self.monitors.items() if t.dirty]
        for key, _ in dirty:
            self.monitors[key].dirty = False
        return dirty

    def mark_dirty(self, keys: Sequence[ModelKey]) -> None:
        """Mark monitors changed again, after their state failed to save."""
        for key in keys:
            if key in self.monitors:
                self.monitors[key].dirty = True

    # -- decoding --------------------------------------------------------------------

    def _decode(self, records: Sequence[Record], outcome: Outcome) -> None:
        """Decode records together, one ``add`` per model version; rejects set aside."""
        usable = self._with_value(records, outcome)
        if not usable:
            return
        try:
            decoded = decode_traffic_many([value for _, value in usable])
        except Exception:  # a decoder bug must not stop the partition: one by one
            log.exception("decoding a batch failed; decoding its records one by one")
            self._replay([record for record, _ in usable], outcome)
            return
        for index, error in decoded.errors:
            outcome.rejects.append(Reject.of(usable[index][0], error))
        for batch in decoded.batches:
            self._add(batch, outcome, [record for record, _ in usable])

    def _replay(self, records: Sequence[Record], outcome: Outcome) -> None:
        """Decode records one at a time, skipping rows a restored monitor already has."""
        for record, value in self._with_value(records, outcome):
            try:
                batch = decode_traffic(value)
            except Exception as exc:  # EventError, or a decoder bug: dead-lettered alike
                outcome.rejects.append(Reject.of(record, exc))
                continue
            monitor = record.offset >= self._saved_at.get((batch.model, batch.version), 0)
            self._add(batch, outcome, [record], monitor=monitor)

    def _with_value(
        self, records: Sequence[Record], outcome: Outcome
    ) -> list[tuple[Record, bytes]]:
        """The records with a value; one without (a tombstone) is rejected."""
        usable = [(record, record.value) for record in records if record.value is not None]
        if len(usable) != len(records):
            outcome.rejects += [Reject.of(r, _NO_VALUE) for r in records if r.value is None]
        return usable

    def _add(
        self,
        batch: TrafficBatch,
        outcome: Outcome,
        records: Sequence[Record],
        *,
        monitor: bool = True,
    ) -> None:
        """Rows of one model version into its monitor (unless ``monitor`` is False: it
        has them) and, for a merged model, into the partials; an error rejects their
        records. Every request counts in the error-rate windows; only answered ones
        (2xx, readable) are drift data, with the model's predictions beside the features.
        """
        failed = _failed(batch)
        if monitor:
            _tally(outcome, batch, failed)
        key = (batch.model, batch.version)
        tracked = self.monitors.get(key)
        if tracked is None:
            made = self._factory(*key)
            made.partition = self.number  # its windows are this partition's: see Finding
            tracked = self.monitors[key] = Tracked.of(made, dirty=True)
        answered = batch.answered()
        merged = not tracked.monitor.window_tests
        try:
            if merged and self._reducing:  # the error rate is merged with the windows
                self._reduce_requests(batch, failed)
            elif monitor and not merged:
                outcome.findings += tracked.monitor.requests(batch.timestamps, failed)
            if answered.rows:
                columns = drift_columns(answered, tracked.monitor.profile)
                if merged and self._reducing:
                    self._reduce(answered, columns)
                if monitor:
                    outcome.findings += tracked.monitor.add(answered.timestamps, columns)
        except Exception as exc:
            log.exception("monitor of %s version %s failed on a batch", *key)
            outcome.rejects += [Reject.of(r, exc) for r in _of_model(records, key)]
        else:
            outcome.rows += answered.rows if monitor else 0
        tracked.dirty = tracked.touched = True

    def _reduce(self, batch: TrafficBatch, columns: Mapping[str, Values]) -> None:
        """A merged model's rows into the partials of their windows."""
        merging = self._merging(batch.model, batch.version)
        if merging is None:
            self.unmerged += batch.rows
            return
        prepared, size = merging
        self.reducer.add(prepared, size, batch.model, batch.version, batch.timestamps, columns)

    def _reduce_requests(self, batch: TrafficBatch, failed: NDArray[np.bool_]) -> None:
        """A merged model's requests, answered or not, into their windows' partials."""
        merging = self._merging(batch.model, batch.version)
        if merging is not None:
            prepared, size = merging
            model, version = batch.model, batch.version
            self.reducer.requests(prepared, size, model, version, batch.timestamps, failed)


def drift_columns(batch: TrafficBatch, profile: Profile | None) -> Mapping[str, Values]:
    """The columns drift sees of answered rows: the features and, when the reference
    has the model's outputs (or is still to come: the first window), the predictions as
    :func:`~flowops.predictions.prediction_columns` reads them (``prediction``, or
    ``prediction[<class>]`` per class; another shape than the first is missing). A
    feature called ``prediction`` wins over the model's output.
    """
    if profile is not None and not any(_is_prediction(name) for name in profile.features):
        return batch.features
    try:
        predicted = prediction_columns(batch.predictions, strict=False)
    except InputError:  # no shape drift can read (an object of objects): features only
        return batch.features
    return {**predicted, **batch.features}


def _is_prediction(name: str) -> bool:
    return name == _PREDICTION or (name.startswith(f"{_PREDICTION}[") and name.endswith("]"))


def _failed(batch: TrafficBatch) -> NDArray[np.bool_]:
    """Which requests failed: a status outside 2xx, or a request that could not be read."""
    failed: NDArray[np.bool_] = (batch.status < 200) | (batch.status >= 300)
    if batch.parse_errors is not None:
        failed |= np.array([error is not None for error in batch.parse_errors], dtype=bool)
    return failed


def _tally(outcome: Outcome, batch: TrafficBatch, failed: NDArray[np.bool_]) -> None:
    """Count a batch's requests, failed ones and unparsable ones for the metrics."""
    model = batch.model
    outcome.requests[model] = outcome.requests.get(model, 0) + batch.rows
    rejected = int(((batch.status < 200) | (batch.status >= 300)).sum())
    if rejected:
        outcome.rejected_requests[model] = outcome.rejected_requests.get(model, 0) + rejected
    if batch.unparsable:
        outcome.unparsable[model] = outcome.unparsable.get(model, 0) + batch.unparsable


def _of_model(records: Sequence[Record], key: ModelKey) -> list[Record]:
    """The records that hold rows of ``key`` (decoded again: only on the error path)."""
    found = []
    for record in records:
        try:
            batch = decode_traffic(record.value or b"")
        except Exception:
            continue
        if (batch.model, batch.version) == key:
            found.append(record)
    return found
