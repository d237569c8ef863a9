"""FlowOps' Kafka topics: their names, their settings, and creating them.

============================  ===========  =======================================
topic                         key          value
============================  ===========  =======================================
``flowops.traffic``           model        traffic event (one row or a batch)
``flowops.labels``            model        label event (one row or a batch)
``flowops.references``        model        reference profile (compacted: latest wins)
``flowops.drift.alerts``      model        drift alert
``flowops.health``            target       health event
``flowops.deadletter``        source topic dead letter: the original bytes + reason
``flowops.gateway.events``    route        a variant's weight changed (the gateway)
============================  ===========  =======================================

>>> [spec.name for spec in TOPICS if spec.configs.get("cleanup.policy") == "compact"]
['flowops.references']
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from flowops.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from flowops.config import KafkaSettings

__all__ = ["TOPICS", "TopicInfo", "TopicSpec", "Topics", "describe_topics", "ensure_topics"]

_TOPIC_ALREADY_EXISTS: Final = 36


class Topics:
    """The topic names, as ``ARCHITECTURE.md`` draws them."""

    TRAFFIC: Final = "flowops.traffic"
    LABELS: Final = "flowops.labels"
    REFERENCES: Final = "flowops.references"
    ALERTS: Final = "flowops.drift.alerts"
    HEALTH: Final = "flowops.health"
    DEADLETTER: Final = "flowops.deadletter"
    GATEWAY: Final = "flowops.gateway.events"


@dataclass(frozen=True)
class TopicSpec:
    """A topic FlowOps creates: its name and the topic configs it needs."""

    name: str
    configs: Mapping[str, str] = field(default_factory=dict)


TOPICS: Final = (
    TopicSpec(Topics.TRAFFIC),
    TopicSpec(Topics.LABELS),
    TopicSpec(Topics.REFERENCES, {"cleanup.policy": "compact"}),
    TopicSpec(Topics.ALERTS),
    TopicSpec(Topics.HEALTH),
    TopicSpec(Topics.DEADLETTER),
    TopicSpec(Topics.GATEWAY),
)
"""Every FlowOps topic, in the order :func:`ensure_topics` creates them."""


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the broker describes it; ``configs`` holds what the broker reports."""

    name: str
    partitions: int
    configs: dict[str, str]


async def ensure_topics(
    bootstrap: str | KafkaSettings,
    partitions: int = 3,
    *,
    replication: int = 1,
    topics: Sequence[TopicSpec] = TOPICS,
    timeout: float = 10.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Topics that exist are left as they are (their partitions are not changed), so this
    is safe to run at every start. Raises :class:`~flowops.errors.BrokerError` when the
    broker cannot be reached or refuses a topic. ``bootstrap`` is the servers' addresses,
    or the ``kafka`` settings for a secured cluster (TLS, SASL).
    """
    _check_counts(partitions, replication)
    async with _admin(bootstrap, timeout) as admin:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topics if spec.name not in existing]
        if missing:
            new = [_new_topic(spec, partitions, replication) for spec in missing]
            _check_created(_servers(bootstrap), await admin.create_topics(new))
    return [spec.name for spec in missing]


async def describe_topics(
    bootstrap: str | KafkaSettings, names: Iterable[str], *, timeout: float = 10.0
) -> dict[str, TopicInfo]:
    """Partition counts and configs of those of ``names`` that exist, by name.

    Only existing topics are described: a broker that creates topics on a metadata
    request (Tansu does) would otherwise create the ones asked about.
    """
    async with _admin(bootstrap, timeout) as admin:
        existing = set(await admin.list_topics())
        found = [name for name in names if name in existing]
        if not found:
            return {}
        metadata = await admin.describe_topics(found)
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in found]
        configs = _configs(await admin.describe_configs(resources))
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in metadata}
    return {name: TopicInfo(name, partitions[name], configs.get(name, {})) for name in found}


@asynccontextmanager
async def _admin(bootstrap: str | KafkaSettings, timeout: float) -> AsyncIterator[Any]:
    """A started admin client, closed after; connection errors become BrokerError (naming
    the setting at fault when the cause is TLS or SASL).

    aiokafka is imported here, not with the module, so that the topic names cost no
    Kafka client to those that only need them (the monitor).
    """
    from aiokafka.admin import AIOKafkaAdminClient

    from flowops.kafka_security import as_settings, client_options, diagnose

    kafka = as_settings(bootstrap)
    client = AIOKafkaAdminClient(
        **client_options(kafka), client_id="flowops-admin", request_timeout_ms=int(timeout * 1000)
    )
    try:
        await client.start()
    except Exception as exc:  # KafkaError; a refused SCRAM login is a KeyError in aiokafka
        await client.close()
        raise await diagnose(kafka) or BrokerError(
            kafka.bootstrap,
            f"cannot reach the Kafka broker ({exc}); is it running? "
            "`flowops up` starts one, or set kafka.bootstrap (FLOWOPS_KAFKA__BOOTSTRAP)",
        ) from None
    try:
        yield client
    finally:
        await client.close()


def _servers(bootstrap: str | KafkaSettings) -> str:
    return bootstrap if isinstance(bootstrap, str) else bootstrap.bootstrap


def _check_counts(partitions: int, replication: int) -> None:
    if partitions < 1:
        raise ConfigError("kafka.partitions", f"must be at least 1, got {partitions}")
    if replication < 1:
        raise ConfigError("kafka.replication", f"must be at least 1, got {replication}")


def _new_topic(spec: TopicSpec, partitions: int, replication: int) -> Any:
    from aiokafka.admin import NewTopic

    return NewTopic(spec.name, partitions, replication, topic_configs=dict(spec.configs))


def _check_created(bootstrap: str, response: Any) -> None:
    """Raise BrokerError for a topic the broker refused, unless it exists already."""
    for topic, code, message, *_ in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            from aiokafka.errors import for_code

            reason = message or for_code(code).__name__
            raise BrokerError(bootstrap, f"cannot create topic {topic!r}: {reason}")


def _configs(responses: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Topic name -> {config name: value} from DescribeConfigs responses."""
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for code, _message, _kind, name, entries, *_ in response.resources:
            if code == 0:
                found[name] = {entry[0]: entry[1] for entry in entries}
    return found
