"""flowops.events.topics without a broker: names, settings, and the errors it raises.

Creating and describing topics on a real broker is in tests/integration/test_events_kafka.py.
"""

from __future__ import annotations

import pytest

from flowops.broker import free_port
from flowops.errors import BrokerError, ConfigError
from flowops.events.topics import TOPICS, Topics, ensure_topics


def test_names_follow_the_architecture() -> None:
    assert [spec.name for spec in TOPICS] == [
        "flowops.traffic",
        "flowops.labels",
        "flowops.references",
        "flowops.drift.alerts",
        "flowops.health",
        "flowops.deadletter",
        "flowops.gateway.events",
    ]
    assert Topics.TRAFFIC == "flowops.traffic"


def test_only_references_are_compacted() -> None:
    configs = {spec.name: dict(spec.configs) for spec in TOPICS}
    assert configs.pop(Topics.REFERENCES) == {"cleanup.policy": "compact"}
    assert all(config == {} for config in configs.values())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("partitions", "replication", "key"),
    [(0, 1, "kafka.partitions"), (3, 0, "kafka.replication")],
)
async def test_counts_below_one_are_config_errors(
    partitions: int, replication: int, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        await ensure_topics("127.0.0.1:9", partitions, replication=replication)
    assert caught.value.key == key


@pytest.mark.asyncio
async def test_no_broker_is_a_broker_error_that_says_what_to_do() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BrokerError) as caught:
        await ensure_topics(bootstrap, timeout=2)
    assert caught.value.target == bootstrap
    assert "flowops up" in str(caught.value)
    assert "kafka.bootstrap" in str(caught.value)
