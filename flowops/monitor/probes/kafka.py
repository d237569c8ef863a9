"""Kafka: does the cluster answer, are the FlowOps topics there, do the workers keep up?

:class:`KafkaProbe` makes three checks, in this order, within its ``timeout``:

* ``kafka.metadata``: the bootstrap servers answer a Metadata request (values:
  ``brokers``);
* ``kafka.topics``: every expected topic exists, the missing ones named (values:
  ``missing``). Topics are listed, never described by name: a broker that creates topics
  on a metadata request (Tansu does) would create the ones asked about;
* ``kafka.lag``: each watched consumer group's lag on the topics it reads, failed when
  a group is more than ``lag_threshold`` messages behind (values: ``lag_total``,
  ``lag.<group>`` and ``members.<group>``, the consumers in the group now).

Lag of a partition is its end offset minus the group's committed offset; a partition the
group has committed nothing on counts from its log start (the workers read from the
earliest offset). End offsets come from a fetch's high watermark, not from ListOffsets
alone: Tansu 0.6 answers ListOffsets(latest) with the base offset of the last record
batch + 1, which is short of the end by the rest of that batch. The probe asks ListOffsets
(right on Apache Kafka), fetches from there, and takes the larger of the two. Committed
offsets are fetched for named partitions: Tansu closes the connection on an OffsetFetch
for all of a group's partitions.

When the cluster does not answer, every check fails within the timeout, the checks after
the first saying they were not checked; aiokafka's own log lines are for the command to
silence (:func:`flowops.logs.quiet_kafka_client`).

>>> from flowops.config import load_settings
>>> config = load_settings(overrides={"kafka": {"bootstrap": "k:9092"}, "streams": {"app_id": "a"}})
>>> probe = KafkaProbe(KafkaProbeSettings(lag_threshold=100), config)
>>> probe.target, probe.groups
('k:9092', {'a-traffic': ['flowops.traffic']})
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowops.config import KafkaSettings, Settings
from flowops.events import TOPICS as _FLOWOPS_TOPICS
from flowops.events import Topics
from flowops.events.producer import kafka_error
from flowops.monitor.checks import CheckResult, Stopwatch

if TYPE_CHECKING:  # aiokafka is imported when a probe runs: an agent without one is smaller
    from aiokafka import TopicPartition

__all__ = [
    "CHECKS",
    "GroupLag",
    "KafkaProbe",
    "KafkaProbeSettings",
    "group_lag",
    "lag_detail",
]

CHECKS: Final = ("kafka.metadata", "kafka.topics", "kafka.lag")
_FETCH_WAIT_MS: Final = 100
_CREATE_HINT: Final = "`flowops up` or `flowops streams worker` creates FlowOps' topics"


class KafkaProbeSettings(BaseModel):
    """The Kafka cluster the monitor checks (``monitor.kafka``)."""

    model_config = ConfigDict(extra="forbid")

    bootstrap: str | None = Field(
        None, description="bootstrap servers, host:port[,...]; default: kafka.bootstrap"
    )
    topics: list[str] | None = Field(
        None, description="topics that must exist; default: the FlowOps topics"
    )
    groups: dict[str, list[str]] | None = Field(
        None,
        description="consumer groups whose lag is watched, each with the topics it reads; "
        "default: the stream workers' group (<streams.app_id>-traffic) on flowops.traffic",
    )
    lag_threshold: int = Field(
        10_000, ge=0, description="messages a group may be behind before the check fails"
    )
    timeout: float = Field(5.0, gt=0, le=600, description="seconds all its checks may take")

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is not None:
            KafkaSettings(bootstrap=value)  # the same rule as kafka.bootstrap's
        return value


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A consumer group's lag: in all, by partition, and how many consumers it has."""

    group: str
    total: int
    partitions: Mapping[TopicPartition, int]
    members: int
    committed: bool
    """Whether the group has committed any offset on those partitions."""


def group_lag(
    group: str,
    committed: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int],
    members: int = 0,
) -> GroupLag:
    """The lag of ``group`` on the partitions of ``ends``: end minus committed offset, or
    minus the log start where it committed nothing (offset -1 or absent), never below 0.

    >>> from aiokafka import TopicPartition
    >>> tp = TopicPartition("flowops.traffic", 0)
    >>> group_lag("g", {tp: 4}, {tp: 10}, {tp: 0}).total
    6
    >>> group_lag("g", {}, {tp: 10}, {tp: 3}).total
    7
    """
    lags: dict[TopicPartition, int] = {}
    for tp, end in ends.items():
        offset = committed.get(tp, -1)
        start = offset if offset >= 0 else starts.get(tp, 0)
        lags[tp] = max(end - start, 0)
    found = any(committed.get(tp, -1) >= 0 for tp in ends)
    return GroupLag(group, sum(lags.values()), lags, members, found)


def lag_detail(lags: Sequence[GroupLag], threshold: int) -> tuple[bool, str]:
    """(whether every group is within ``threshold``, the check's detail).

    >>> from aiokafka import TopicPartition
    >>> tp = TopicPartition("flowops.traffic", 0)
    >>> lag_detail([GroupLag("g", 12, {tp: 12}, 2, True)], 100)
    (True, 'g: 12 behind, 2 member(s)')
    """
    behind = [lag for lag in lags if lag.total > threshold]
    if not behind:
        return True, "; ".join(_summary(lag) for lag in lags) or "no group watched"
    parts = [f"{_summary(lag)} > {threshold}: {_advice(lag)}" for lag in behind]
    return False, "; ".join(parts)


def _summary(lag: GroupLag) -> str:
    text = f"{lag.group}: {lag.total} behind, {lag.members} member(s)"
    return text if lag.committed else f"{text}, no offset committed"


def _advice(lag: GroupLag) -> str:
    if lag.members == 0:
        return "no consumer is in the group; start the stream workers (`flowops streams worker`)"
    return (
        "the consumers are slower than the traffic; add workers (up to the partition "
        "count) or look at their /metrics"
    )


class KafkaProbe:
    """The checks of one Kafka cluster; see the module's docstring."""

    kind: Final = "kafka"

    def __init__(self, settings: KafkaProbeSettings, config: Settings) -> None:
        self.settings = settings
        self.bootstrap = settings.bootstrap or config.kafka.bootstrap
        self.kafka = config.kafka.model_copy(update={"bootstrap": self.bootstrap})
        self.client_id = f"{config.kafka.client_id}-monitor"
        every = [spec.name for spec in _FLOWOPS_TOPICS]
        self.topics = settings.topics if settings.topics is not None else every
        default = {f"{config.streams.app_id}-traffic": [Topics.TRAFFIC]}
        self.groups = settings.groups if settings.groups is not None else default

    @property
    def target(self) -> str:
        return self.bootstrap

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    async def run(self) -> Sequence[CheckResult]:
        run = _Run(self.target)
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self._checks(run)
        except TimeoutError:
            run.fail_rest(
                f"no answer from Kafka at {self.bootstrap} within {self.settings.timeout:g} s: "
                "the broker is overloaded, or the address does not lead to it"
            )
        except kafka_error() as exc:
            run.fail_rest(f"Kafka at {self.bootstrap} failed: {exc}")
        return run.results

    async def _checks(self, run: _Run) -> None:
        async with self._admin(run) as admin:
            if admin is None:
                return
            cluster = await admin.describe_cluster()
            brokers = len(cluster["brokers"])
            run.done(True, f"{brokers} broker(s), cluster {cluster['cluster_id']}", brokers=brokers)
            existing = set(await admin.list_topics())
            missing = [name for name in self.topics if name not in existing]
            run.done(not missing, _topics_detail(self.topics, missing), missing=len(missing))
            await self._lag(run, admin, existing)

    @contextlib.asynccontextmanager
    async def _admin(self, run: _Run) -> AsyncIterator[Any]:
        """A started admin client, or None after failing the checks when none starts."""
        from aiokafka.admin import AIOKafkaAdminClient

        from flowops.kafka_security import client_options, diagnose

        admin = AIOKafkaAdminClient(
            **client_options(self.kafka),
            client_id=self.client_id,
            request_timeout_ms=int(self.settings.timeout * 1000),
        )
        try:
            try:
                await admin.start()
            except Exception as exc:  # KafkaError; a refused SCRAM login is a KeyError
                cause = await diagnose(self.kafka, self.settings.timeout)
                run.fail_rest(
                    str(cause)
                    if cause is not None
                    else f"cannot reach the Kafka broker at {self.bootstrap} ({exc}); is it "
                    "running? `flowops up` starts one, or set kafka.bootstrap "
                    "(monitor.kafka.bootstrap)"
                )
                yield None
            else:
                yield admin
        finally:
            await admin.close()

    async def _lag(self, run: _Run, admin: Any, existing: set[str]) -> None:
        absent = sorted({t for topics in self.groups.values() for t in topics} - existing)
        if absent:
            names = ", ".join(absent)
            run.done(False, f"topic(s) of the watched groups do not exist: {names}; {_CREATE_HINT}")
            return
        partitions = await _partitions(admin, {t for ts in self.groups.values() for t in ts})
        ends, starts = await self._offsets([tp for tps in partitions.values() for tp in tps])
        described = await admin.describe_consumer_groups(list(self.groups))
        members = _members(described)
        lags = []
        for group, topics in self.groups.items():
            tps = [tp for topic in topics for tp in partitions[topic]]
            offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
            committed = {tp: meta.offset for tp, meta in offsets.items()}
            group_ends = {tp: ends[tp] for tp in tps}
            lags.append(group_lag(group, committed, group_ends, starts, members.get(group, 0)))
        passed, detail = lag_detail(lags, self.settings.lag_threshold)
        values = {"lag_total": float(sum(lag.total for lag in lags))}
        for lag in lags:
            values[f"lag.{lag.group}"] = float(lag.total)
            values[f"members.{lag.group}"] = float(lag.members)
        run.done(passed, detail, **values)

    async def _offsets(
        self, tps: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(end offsets, log start offsets) of ``tps``; see the module's docstring."""
        if not tps:
            return {}, {}
        from aiokafka import AIOKafkaConsumer

        from flowops.kafka_security import client_options

        consumer = AIOKafkaConsumer(
            **client_options(self.kafka),
            client_id=self.client_id,
            enable_auto_commit=False,
            request_timeout_ms=int(self.settings.timeout * 1000),
            fetch_max_wait_ms=_FETCH_WAIT_MS,
        )
        await consumer.start()
        try:
            consumer.assign(tps)
            starts = await consumer.beginning_offsets(tps)
            listed = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, listed[tp])
            while any(consumer.highwater(tp) is None for tp in tps):
                await consumer.getmany(*tps, timeout_ms=_FETCH_WAIT_MS * 2)
            ends = {tp: max(listed[tp], consumer.highwater(tp)) for tp in tps}
        finally:
            await consumer.stop()
        return ends, dict(starts)


class _Run:
    """The results of one run, in the order of :data:`CHECKS`, each timed from the end of
    the one before."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.results: list[CheckResult] = []
        self._watch = Stopwatch()
        self._last = 0.0

    def done(self, success: bool, detail: str, **values: float) -> None:
        now = self._watch.elapsed()
        check = CHECKS[len(self.results)]
        result = CheckResult(check, self.target, success, now - self._last, detail, values)
        self.results.append(result)
        self._last = now

    def fail_rest(self, detail: str) -> None:
        """Fail the check in progress with ``detail``, and those after it as not checked."""
        if len(self.results) == len(CHECKS):
            return
        failed = CHECKS[len(self.results)]
        self.done(False, detail)
        while len(self.results) < len(CHECKS):
            self.done(False, f"not checked: {failed} failed")


def _topics_detail(expected: Sequence[str], missing: Sequence[str]) -> str:
    """The ``kafka.topics`` detail.

    >>> _topics_detail(["a", "b"], ["b"])
    "missing topic(s): b; `flowops up` or `flowops streams worker` creates FlowOps' topics"
    """
    if missing:
        return f"missing topic(s): {', '.join(missing)}; {_CREATE_HINT}"
    return f"all {len(expected)} topic(s) present"


async def _partitions(admin: Any, topics: set[str]) -> dict[str, list[TopicPartition]]:
    """The partitions of each of ``topics`` (which exist)."""
    if not topics:
        return {}
    from aiokafka import TopicPartition

    described = await admin.describe_topics(sorted(topics))
    return {
        item["topic"]: [TopicPartition(item["topic"], p["partition"]) for p in item["partitions"]]
        for item in described
    }


def _members(described: Sequence[Any]) -> dict[str, int]:
    """Members of each group, from DescribeGroups responses (each group a tuple: error
    code, group, state, protocol type, protocol, members, and from v3 on, operations)."""
    found: dict[str, int] = {}
    for response in described:
        for group in response.groups:
            error_code, name, members = group[0], group[1], group[5]
            if error_code == 0:
                found[name] = len(members)
    return found
