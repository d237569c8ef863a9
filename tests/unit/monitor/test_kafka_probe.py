"""flowops.monitor.probes.kafka: the settings and their defaults, the lag arithmetic and
what the lag check says (no broker: the real one is in tests/integration/test_monitor_kafka.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from pydantic import ValidationError

from flowops.config import load_settings
from flowops.events import TOPICS, Topics
from flowops.monitor.probes.kafka import (
    GroupLag,
    KafkaProbe,
    KafkaProbeSettings,
    group_lag,
    lag_detail,
)

P0, P1, P2 = (TopicPartition(Topics.TRAFFIC, p) for p in range(3))


# -- settings ----------------------------------------------------------------------------


def test_defaults_come_from_the_kafka_and_streams_sections() -> None:
    config = load_settings(
        overrides={"kafka": {"bootstrap": "k1:9093,k2:9093"}, "streams": {"app_id": "prod"}}
    )

    probe = KafkaProbe(KafkaProbeSettings(), config)

    assert (probe.kind, probe.target) == ("kafka", "k1:9093,k2:9093")
    assert probe.topics == [spec.name for spec in TOPICS]
    assert probe.groups == {"prod-traffic": [Topics.TRAFFIC]}
    assert probe.timeout == 5.0
    assert probe.settings.lag_threshold == 10_000


def test_given_settings_win() -> None:
    settings = KafkaProbeSettings(
        bootstrap="127.0.0.1:19092", topics=["a"], groups={"g": ["a"]}, timeout=2
    )

    probe = KafkaProbe(settings, load_settings())

    assert (probe.target, probe.topics, probe.groups) == ("127.0.0.1:19092", ["a"], {"g": ["a"]})
    assert probe.timeout == 2


def test_no_groups_watched() -> None:
    assert KafkaProbe(KafkaProbeSettings(groups={}), load_settings()).groups == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bootstrap": "localhost"}, "expected host:port"),
        ({"lag_threshold": -1}, "greater than or equal to 0"),
        ({"timeout": 0}, "greater than 0"),
        ({"groups": ["flowops-streams-traffic"]}, "valid dictionary"),
        ({"brokers": "k:9092"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaProbeSettings.model_validate(values)


# -- lag arithmetic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("committed", "ends", "starts", "expected"),
    [
        ({P0: 10}, {P0: 25}, {P0: 0}, {P0: 15}),  # produced 25, committed 10
        ({P0: 25}, {P0: 25}, {P0: 0}, {P0: 0}),  # caught up
        ({P0: -1}, {P0: 25}, {P0: 0}, {P0: 25}),  # nothing committed: from the log start
        ({}, {P0: 25}, {P0: 20}, {P0: 5}),  # absent; the log starts past retention
        ({P0: 30}, {P0: 25}, {P0: 0}, {P0: 0}),  # committed past the end: never negative
        ({P0: 10, P1: 3}, {P0: 25, P1: 3, P2: 7}, {}, {P0: 15, P1: 0, P2: 7}),
    ],
)
def test_group_lag(
    committed: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    starts: dict[TopicPartition, int],
    expected: dict[TopicPartition, int],
) -> None:
    found = group_lag("g", committed, ends, starts, members=2)

    assert found.partitions == expected
    assert found.total == sum(expected.values())
    assert found.members == 2


@pytest.mark.parametrize(
    ("committed", "expected"),
    [({P0: 0}, True), ({P0: -1}, False), ({}, False), ({P1: 4}, False)],
)
def test_group_lag_knows_whether_anything_was_committed(
    committed: dict[TopicPartition, int], expected: bool
) -> None:
    assert group_lag("g", committed, {P0: 5}, {P0: 0}).committed is expected


# -- what the lag check says -------------------------------------------------------------


def lag(group: str, total: int, members: int = 1, committed: bool = True) -> GroupLag:
    return GroupLag(group, total, {P0: total}, members, committed)


def test_every_group_within_the_threshold_passes() -> None:
    found = lag_detail([lag("a", 5), lag("b", 100, members=0, committed=False)], threshold=100)

    assert found == (
        True,
        "a: 5 behind, 1 member(s); b: 100 behind, 0 member(s), no offset committed",
    )


def test_a_group_without_consumers_says_to_start_the_workers() -> None:
    found = lag_detail([lag("a", 5), lag("b", 101, members=0)], threshold=100)

    assert found == (
        False,
        "b: 101 behind, 0 member(s) > 100: no consumer is in the group; "
        "start the stream workers (`flowops streams worker`)",
    )


def test_a_group_with_slow_consumers_says_to_add_workers() -> None:
    passed, detail = lag_detail([lag("a", 500, members=3)], threshold=0)

    assert not passed
    assert detail == (
        "a: 500 behind, 3 member(s) > 0: the consumers are slower than the traffic; "
        "add workers (up to the partition count) or look at their /metrics"
    )


def test_no_group_watched() -> None:
    assert lag_detail([], threshold=0) == (True, "no group watched")
