"""``streams.state``: changelog records of the monitors, and reading them back."""

from __future__ import annotations

import zlib

import numpy as np
import orjson

from flowops.drift import ModelMonitor, WindowSpec
from streams.state import (
    POSITION_KEY,
    decode_partition,
    encode_monitor_state,
    encode_position,
    monitor_key,
    state_topic,
)


def test_state_topic_is_named_after_the_app() -> None:
    assert state_topic("flowops-streams") == "flowops-streams-monitors-changelog"


def test_a_monitor_restored_mid_window_finishes_it_as_if_it_never_stopped() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 1_000), rng.normal(3, 1, 1_000)])
    stamps = np.arange(2_000, dtype=np.float64)
    straight = ModelMonitor("m", "1", WindowSpec("count", 1_000))
    expected = straight.add(stamps, {"x": values})
    first = ModelMonitor("m", "1", WindowSpec("count", 1_000))
    found = first.add(stamps[:1_500], {"x": values[:1_500]})
    record = encode_monitor_state(first, 1_500)
    restored = decode_partition([(monitor_key("m", "1"), record)])
    monitor, next_offset = restored.monitors["m", "1"]
    found += monitor.add(stamps[1_500:], {"x": values[1_500:]})
    assert next_offset == 1_500
    assert [f.alert_id for f in found] == [f.alert_id for f in expected]
    assert monitor.stats.rows == 2_000


def test_the_last_value_of_a_key_wins_and_a_tombstone_deletes() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 10))
    restored = decode_partition(
        [
            (POSITION_KEY, encode_position(5)),
            (monitor_key("m", "1"), encode_monitor_state(monitor, 3)),
            (POSITION_KEY, encode_position(9)),
            (monitor_key("gone", "1"), encode_monitor_state(monitor, 1)),
            (monitor_key("gone", "1"), None),
        ]
    )
    assert restored.position == 9
    assert list(restored.monitors) == [("m", "1")]
    assert restored.errors == []


def test_an_unreadable_record_is_reported_and_left_out() -> None:
    future = zlib.compress(orjson.dumps({"format": 99, "next_offset": 1}))
    restored = decode_partition(
        [
            (monitor_key("a", "1"), b"not zlib"),
            (monitor_key("b", "1"), future),
            (b'["what"]', encode_position(1)),
        ]
    )
    assert (restored.position, restored.monitors) == (None, {})
    assert len(restored.errors) == 3
    assert "unsupported state format 99" in restored.errors[1]
