"""`flowops streams worker` against a real Tansu broker, as processes.

End to end (drift in one feature of several), dead-lettering of each kind of bad event,
``kill -9`` and restart in the middle of a window, and two workers sharing partitions.
Each test runs workers of its own app id, skips the traffic earlier tests left on the
shared broker, and reads only its own models' alerts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from stream_worker_process import (
    Stack,
    Worker,
    models_covering,
    partitions,
    profile_of,
    publish_profiles,
    read_topic,
    skip_existing_traffic,
    traffic,
    wait_for,
)

from flowops.drift import Profile
from flowops.events import (
    DeadLetter,
    DriftAlert,
    EventProducer,
    ReferenceProfile,
    Topics,
    TrafficBatch,
    TrafficProducer,
    TrafficRow,
    encode_traffic,
    ensure_topics,
)
from flowops.events.schemas import WindowVerdictBody

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

DRIFT = 25.0  # income's mean moves by 5 standard deviations
WINDOW_TESTS = {"psi", "ks", "chi2"}


@pytest.fixture
def stack(broker: str, tmp_path: Path) -> Iterator[Stack]:
    """Workers of a fresh app id; every one started is stopped after the test."""
    stack = Stack(broker, tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()


async def start(stack: Stack, config: Path) -> Worker:
    """The topics, this test's group past old traffic, and a worker with its partitions."""
    await ensure_topics(stack.bootstrap)
    await skip_existing_traffic(stack.bootstrap, stack.group)
    worker = stack.start(config)
    await worker.assigned()
    return worker


async def send(bootstrap: str, *batches: Any, one_row: int = 0, whole: bool = False) -> None:
    """Send batches as 100-row messages (``whole``: one message each); the first
    ``one_row`` rows of each as single rows."""
    async with TrafficProducer(bootstrap, source="/tests/streams") as producer:
        for batch in batches:
            if whole:
                await producer.send(batch)
                continue
            for row in range(one_row):
                await producer.send(_row(batch, row))
            for start in range(one_row, batch.rows, 100):
                await producer.send(batch.slice(start, min(start + 100, batch.rows)))


def _row(batch: Any, i: int) -> TrafficRow:
    features = {name: values[i] for name, values in batch.features.items()}
    return TrafficRow(
        batch.model,
        batch.version,
        batch.request_ids[i],
        float(batch.timestamps[i]),
        features,
        batch.predictions[i],
        float(batch.latency_ms[i]),
        int(batch.status[i]),
    )


async def alerts_of(
    stack: Stack, models: set[str], expected: int, timeout: float = 60.0
) -> list[DriftAlert]:
    """The alerts of ``models``, once ``expected`` window-test alerts have come."""

    def keep(message: Any) -> DriftAlert | None:
        alert = DriftAlert.from_json(message.value)
        return alert if alert.model in models else None

    def done(found: list[DriftAlert]) -> bool:
        return sum(alert.test in WINDOW_TESTS for alert in found) >= expected

    return await read_topic(
        stack.bootstrap, Topics.ALERTS, keep, done, workers=stack.workers, timeout=timeout
    )


def window_tests(alerts: list[DriftAlert]) -> list[tuple[str, str, str, int]]:
    """(model, feature, test, window) of each window-test alert, sorted."""
    return sorted(
        (a.model, a.feature, a.test, a.window_index) for a in alerts if a.test in WINDOW_TESTS
    )


def assert_no_duplicates(alerts: list[DriftAlert]) -> None:
    ids = [alert.alert_id for alert in alerts]
    assert len(ids) == len(set(ids)), f"duplicate alerts: {ids}"


# --- end to end -----------------------------------------------------------------------


async def test_drift_in_one_feature_alerts_for_it_and_no_other(stack: Stack) -> None:
    model, timed = f"credit-{uuid.uuid4().hex[:8]}", f"timed-{uuid.uuid4().hex[:8]}"
    await publish_profiles(stack.bootstrap, [model, timed])
    time_window = {"kind": "time", "size": 2.0}
    worker = await start(stack, stack.config({model: 2_000, timed: time_window}))
    rng = np.random.default_rng(1)
    calm = traffic(model, 2_000, rng)
    drifted = traffic(model, 2_000, rng, shift=DRIFT, start=2_000)
    past = (time.time() // 2 - 5) * 2  # two 2-second windows that ended seconds ago
    calm_timed = traffic(timed, 1_000, rng, at=past)
    drifted_timed = traffic(timed, 1_000, rng, shift=DRIFT, start=1_000, at=past + 2)
    await send(stack.bootstrap, calm, drifted, one_row=300)
    # Each time window whole in one message: those windows ended seconds ago, so the clock
    # closes one as soon as the worker has read to the partition's end.
    await send(stack.bootstrap, calm_timed, drifted_timed, whole=True)

    alerts = await alerts_of(stack, {model, timed}, expected=4)

    last = int(past // 2 + 1)  # closed by the clock: no row after it
    assert window_tests(alerts) == sorted(
        [(model, "income", test, 1) for test in ("ks", "psi")]
        + [(timed, "income", test, last) for test in ("ks", "psi")]
    )
    assert {a.feature for a in alerts if a.test != "verdict"} == {"income"}  # ADWIN's too
    assert_no_duplicates(alerts)
    ks = next(alert for alert in alerts if alert.test == "ks" and alert.model == model)
    assert (ks.n_current, ks.reference, ks.severity) == (2_000, "profile", "critical")
    timed_ks = next(a for a in alerts if a.test == "ks" and a.model == timed)
    assert (timed_ks.window_start, timed_ks.window_end, timed_ks.n_current) == (
        past + 2,
        past + 4,
        1_000,
    )
    await wait_for(
        lambda: worker.metric("flowops_stream_events_total") == 6_000, 10, "events counted"
    )
    assert worker.metric("flowops_stream_windows_closed_total") == 4
    assert worker.metric("flowops_drift_alerts_total", model=model, test="ks") == 1
    assert (worker.metric("flowops_drift_psi", model=model, feature="income") or 0) > 1
    assert (worker.metric("flowops_drift_psi", model=model, feature="age") or 1) < 0.1
    assert (worker.metric("flowops_drift_ks_pvalue", model=model, feature="age") or 0) > 0.01


async def test_one_model_on_two_partitions_alerts_for_both_partitions_windows(
    stack: Stack,
) -> None:
    """A producer whose partitioner is not FlowOps' may put one model on two partitions
    (confluent-kafka hashes keys with CRC32): each partition's windows are windows of
    their own until the merge stage, and every one of their alerts reaches the topic."""
    model = f"split-{uuid.uuid4().hex[:8]}"
    await publish_profiles(stack.bootstrap, [model])
    await start(stack, stack.config({model: 1_000}))
    rng = np.random.default_rng(5)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for partition in (0, 1):  # the same key on two partitions, by explicit numbers
            calm = traffic(model, 1_000, rng)
            drifted = traffic(model, 1_000, rng, shift=DRIFT, start=1_000)
            for batch in (calm, drifted):
                for first in range(0, batch.rows, 250):
                    value = encode_traffic(batch.slice(first, first + 250))
                    await producer.send_and_wait(
                        Topics.TRAFFIC, value, key=model.encode(), partition=partition
                    )
    finally:
        await producer.stop()

    alerts = await alerts_of(stack, {model}, expected=4)

    tested = sorted(
        (a.partition, a.feature, a.test, a.window_index) for a in alerts if a.test in WINDOW_TESTS
    )
    assert tested == [(p, "income", test, 1) for p in (0, 1) for test in ("ks", "psi")]
    assert_no_duplicates(alerts)
    assert {a.partition for a in alerts if a.test == "adwin"} <= {0, 1}


def _crc32_apart(prefix: str, count: int) -> str:
    """A model name that librdkafka's CRC32 and FlowOps' murmur2 put on different partitions."""
    partitioner = DefaultPartitioner()
    for i in range(1_000):
        name = f"{prefix}-{i}"
        ids = list(range(count))
        if zlib.crc32(name.encode()) % count != partitioner(name.encode(), ids, ids):
            return name
    raise AssertionError("no name found")


async def test_a_confluent_kafka_producer_and_flowops_producer_alerts_all_arrive(
    stack: Stack,
) -> None:
    """The case seen: confluent-kafka's default partitioner (CRC32 of the key) put model
    credit on one partition, FlowOps' TrafficProducer (murmur2) on another; both
    partitions' window 1 had one alert id, and half the alerts were dropped."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    await ensure_topics(stack.bootstrap)
    model = _crc32_apart(f"credit-{uuid.uuid4().hex[:6]}", await partitions(stack.bootstrap))
    await publish_profiles(stack.bootstrap, [model])
    await start(stack, stack.config({model: 1_000}))
    rng = np.random.default_rng(6)
    calm, drifted = traffic(model, 1_000, rng), traffic(model, 1_000, rng, shift=DRIFT, start=1_000)
    delivered: set[int] = set()
    producer = confluent_kafka.Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 5})
    for batch in (calm, drifted):  # one-row messages, JSON as the schema says: nothing else
        for i in range(batch.rows):
            producer.produce(
                Topics.TRAFFIC,
                encode_traffic(_row(batch, i)),
                key=model.encode(),
                on_delivery=lambda err, msg: delivered.add(-1 if err else msg.partition()),
            )
            producer.poll(0)
    assert producer.flush(30) == 0
    await send(stack.bootstrap, traffic(model, 1_000, rng), traffic(model, 1_000, rng, shift=DRIFT))

    alerts = await alerts_of(stack, {model}, expected=4)

    tested = [a for a in alerts if a.test in WINDOW_TESTS]
    ours = {a.partition for a in tested} - delivered
    assert len(delivered) == 1
    assert len(ours) == 1  # murmur2 put the model elsewhere
    assert sorted((a.partition, a.test, a.window_index) for a in tested) == sorted(
        (p, test, 1) for p in (*delivered, *ours) for test in ("ks", "psi")
    )
    assert_no_duplicates(alerts)


# --- windows merged across partitions -------------------------------------------------


async def test_a_model_spread_over_every_partition_has_the_windows_of_one_partition(
    stack: Stack,
) -> None:
    """Time windows of a model with a profile are the model's: the same rows give the
    same windows, counts and statistics whether one partition carries them or every
    partition does (explicit partition numbers), and the alert ids of the model's window,
    with no partition in them."""
    await ensure_topics(stack.bootstrap)
    count = await partitions(stack.bootstrap)
    one, spread = f"one-{uuid.uuid4().hex[:8]}", f"spread-{uuid.uuid4().hex[:8]}"
    profile = profile_of(traffic("reference", 5_000, np.random.default_rng(7)))
    async with EventProducer(stack.bootstrap, source="/tests/streams") as producer:
        for model in (one, spread):
            await producer.publish(ReferenceProfile.from_profile(profile, model=model))
    window = {"kind": "time", "size": 2.0}
    await start(stack, stack.config({one: window, spread: window}))
    begin = (time.time() // 2 + 2) * 2  # live windows: they end after everything is sent
    sent = []
    for index, shift in ((0, 0.0), (1, DRIFT)):  # in time order, as live traffic comes
        rows = traffic("x", 1_000, np.random.default_rng(index), shift=shift, at=begin + 2 * index)
        for model in (one, spread):
            batch = dataclasses.replace(rows, model=model)
            for i, first in enumerate(range(0, 1_000, 100)):
                part = 0 if model == one else i % count
                sent.append((part, encode_traffic(batch.slice(first, first + 100)), model))
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for part, value, model in sent:
            await producer.send_and_wait(Topics.TRAFFIC, value, key=model.encode(), partition=part)
    finally:
        await producer.stop()

    alerts = await alerts_of(stack, {one, spread}, expected=4, timeout=90)

    def seen(model: str) -> list[tuple[object, ...]]:
        return sorted(
            (a.feature, a.test, a.window_index, a.window_start, a.n_current, a.statistic, a.pvalue)
            for a in alerts
            if a.model == model and a.test in WINDOW_TESTS
        )

    assert seen(spread) == seen(one)
    assert {(f, t, w) for f, t, w, *_ in seen(spread)} == {
        ("income", test, int(begin // 2) + 1) for test in ("ks", "psi")
    }
    assert {a.n_current for a in alerts if a.test in WINDOW_TESTS} == {1_000}
    for alert in (a for a in alerts if a.test in WINDOW_TESTS):
        key = [alert.model, alert.version, alert.feature, alert.test, alert.window_index]
        assert alert.partition is None
        assert alert.alert_id == hashlib.sha256(json.dumps(key).encode()).hexdigest()
    assert_no_duplicates(alerts)


SIZE = 10.0  # seconds of the merged windows below


async def send_spread(bootstrap: str, batch: Any, count: int, chunk: int = 50) -> None:
    """The batch in ``chunk``-row messages dealt to partitions 0, 1, ... in turn."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i, first in enumerate(range(0, batch.rows, chunk)):
            value = encode_traffic(batch.slice(first, min(first + chunk, batch.rows)))
            await producer.send_and_wait(
                Topics.TRAFFIC, value, key=batch.model.encode(), partition=i % count
            )
    finally:
        await producer.stop()


async def merged_setup(stack: Stack, prefix: str, **streams: Any) -> tuple[str, Path, int, float]:
    """A model with a profile and 10-second windows, its config, the partition count, and
    the start of a window far enough ahead that the clock closes nothing in the test."""
    await ensure_topics(stack.bootstrap)
    model = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await publish_profiles(stack.bootstrap, [model])
    config = stack.config({model: {"kind": "time", "size": SIZE}}, **streams)
    begin = (time.time() // SIZE + 6) * SIZE
    return model, config, await partitions(stack.bootstrap), begin


async def close_by_rows(bootstrap: str, model: str, count: int, begin: float) -> None:
    """One row of the next window on every partition: each partition's watermark passes
    the window's end plus grace, so the merge stage closes it."""
    tick = traffic(model, count, np.random.default_rng(9), at=begin + SIZE + 1)
    await send_spread(bootstrap, tick, count, chunk=1)


def merged_alerts_are_whole(alerts: list[DriftAlert], model: str, window: int) -> None:
    tested = [a for a in alerts if a.test in WINDOW_TESTS]
    found = {(a.feature, a.test) for a in tested}
    assert found >= {("income", "ks"), ("income", "psi")}  # others: chance, at alpha 0.05
    assert {(a.window_index, a.n_current, a.partition) for a in tested} == {(window, 1_000, None)}
    ids = [a.alert_id for a in tested]
    assert len(ids) == len(set(ids))
    for alert in tested:
        key = [model, "1", alert.feature, alert.test, alert.window_index]
        assert alert.alert_id == hashlib.sha256(json.dumps(key).encode()).hexdigest()


async def test_kill_9_mid_merged_window_closes_it_once_with_all_its_rows(stack: Stack) -> None:
    # no checkpoint but at alerts: rows read and flushed before the kill are read again
    model, config, count, begin = await merged_setup(stack, "mcrash", checkpoint_interval=3_600)
    worker = await start(stack, config)
    window = traffic(model, 1_000, np.random.default_rng(3), shift=DRIFT, at=begin + 1)
    await send_spread(stack.bootstrap, window.slice(0, 500), count)
    await wait_for(lambda: worker.metric("flowops_stream_events_total") == 500, 30, "rows")

    worker.kill9()
    await send_spread(stack.bootstrap, window.slice(500, 700), count)  # while none runs
    restarted = stack.start(config)
    await restarted.assigned()
    await send_spread(stack.bootstrap, window.slice(700, 1_000), count)
    await close_by_rows(stack.bootstrap, model, count, begin)
    alerts = await alerts_of(stack, {model}, expected=2, timeout=90)

    merged_alerts_are_whole(alerts, model, int(begin // SIZE))


async def test_two_workers_share_the_partitions_and_merge_whole_windows(stack: Stack) -> None:
    model, config, count, begin = await merged_setup(stack, "mpair")
    first = await start(stack, config)
    window = traffic(model, 1_000, np.random.default_rng(4), shift=DRIFT, at=begin + 1)
    await send_spread(stack.bootstrap, window.slice(0, 500), count)
    await wait_for(lambda: first.metric("flowops_stream_events_total") == 500, 30, "rows")

    second = stack.start(config)  # both groups rebalance in the middle of the window
    mine = await second.assigned()
    theirs = await first.assigned(count=2)
    assert sorted(mine + theirs) == list(range(count))
    await send_spread(stack.bootstrap, window.slice(500, 1_000), count)
    await close_by_rows(stack.bootstrap, model, count, begin)
    alerts = await alerts_of(stack, {model}, expected=2, timeout=90)

    merged_alerts_are_whole(alerts, model, int(begin // SIZE))
    assert mine
    assert theirs


async def test_confluent_kafka_and_flowops_producers_fill_one_merged_window(
    stack: Stack,
) -> None:
    """Half a window's rows from confluent-kafka (CRC32 of the key), half from FlowOps'
    TrafficProducer (murmur2): two partitions, one window, with all its rows."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    await ensure_topics(stack.bootstrap)
    count = await partitions(stack.bootstrap)
    model = _crc32_apart(f"mixed-{uuid.uuid4().hex[:6]}", count)
    await publish_profiles(stack.bootstrap, [model])
    config = stack.config({model: {"kind": "time", "size": SIZE}})
    begin = (time.time() // SIZE + 6) * SIZE
    await start(stack, config)
    window = traffic(model, 1_000, np.random.default_rng(12), shift=DRIFT, at=begin + 1)
    producer = confluent_kafka.Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 5})
    for i in range(500):
        producer.produce(Topics.TRAFFIC, encode_traffic(_row(window, i)), key=model.encode())
        producer.poll(0)
    assert producer.flush(30) == 0
    await send(stack.bootstrap, window.slice(500, 1_000))
    await close_by_rows(stack.bootstrap, model, count, begin)
    alerts = await alerts_of(stack, {model}, expected=2, timeout=90)

    merged_alerts_are_whole(alerts, model, int(begin // SIZE))


# --- dead letters ----------------------------------------------------------------------

BAD_EVENTS: dict[str, tuple[bytes | None, str]] = {
    "bad JSON": (b'{"schema_version": 1, "model": ', "bad_json"),
    "not an object": (b"[1, 2, 3]", "bad_json"),
    "no value": (None, "bad_json"),
    "wrong schema version": (
        b'{"schema_version": 2, "model": "m", "version": "1", "request_id": "r",'
        b' "timestamp": 1.0, "features": {}, "prediction": 1, "latency_ms": 1.0,'
        b' "status": 200}',
        "schema_version",
    ),
    "missing features": (
        b'{"schema_version": 1, "model": "m", "version": "1", "request_id": "r",'
        b' "timestamp": 1.0, "prediction": 1, "latency_ms": 1.0, "status": 200}',
        "missing_field",
    ),
    "feature of a wrong type": (
        b'{"schema_version": 1, "model": "m", "version": "1", "request_id": "r",'
        b' "timestamp": 1.0, "features": {"age": [41]}, "prediction": 1,'
        b' "latency_ms": 1.0, "status": 200}',
        "wrong_type",
    ),
    "timestamp of a wrong type": (
        b'{"schema_version": 1, "model": "m", "version": "1", "request_id": "r",'
        b' "timestamp": "yesterday", "features": {"age": 41}, "prediction": 1,'
        b' "latency_ms": 1.0, "status": 200}',
        "wrong_type",
    ),
}


async def test_every_kind_of_bad_event_is_dead_lettered_with_its_reason(stack: Stack) -> None:
    model = f"dead-{uuid.uuid4().hex[:8]}"
    worker = await start(stack, stack.config({model: 1_000}))
    sent: dict[tuple[int, int], tuple[str, bytes | None, str]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for kind, (value, code) in BAD_EVENTS.items():
            meta = await producer.send_and_wait(Topics.TRAFFIC, value, key=model.encode())
            sent[meta.partition, meta.offset] = (kind, value, code)
        good = encode_traffic(traffic(model, 1, np.random.default_rng(2)))
        await producer.send_and_wait(Topics.TRAFFIC, good, key=model.encode())
        unread = TrafficRow(model, "1", "u", 1.0, {}, None, 1.0, 200, parse_error="not JSON")
        await producer.send_and_wait(Topics.TRAFFIC, encode_traffic(unread), key=model.encode())
    finally:
        await producer.stop()

    def keep(message: Any) -> DeadLetter | None:
        letter = DeadLetter.from_json(message.value)
        return letter if letter.consumer == stack.group else None

    letters = await read_topic(
        stack.bootstrap,
        Topics.DEADLETTER,
        keep,
        lambda found: len(found) >= len(sent),
        workers=stack.workers,
    )

    got = {(letter.partition, letter.offset): letter for letter in letters}
    assert sorted(got) == sorted(sent)  # each once
    for place, (kind, value, code) in sent.items():
        letter = got[place]
        assert (letter.error, letter.value_bytes()) == (code, value), kind
        assert letter.source_topic == Topics.TRAFFIC
        assert letter.reason, kind
    assert worker.metric("flowops_stream_rejected_total", reason="bad_json") == 3
    assert worker.metric("flowops_stream_rejected_total", reason="wrong_type") == 2
    assert worker.metric("flowops_stream_rejected_total", reason="schema_version") == 1
    await wait_for(lambda: worker.metric("flowops_stream_events_total") == 1, 10, "good row")
    unparsable = "flowops_stream_unparsable_total"  # counted, not dead-lettered, not drift
    await wait_for(lambda: worker.metric(unparsable, model=model) == 1, 10, "unparsable row")
    assert worker.metric("flowops_stream_events_total") == 1
    assert worker.stop() == 0  # Ctrl-C: a clean stop
    assert "worker: stopped" in worker.text()


# --- crash and restart -------------------------------------------------------------------


async def test_kill_9_mid_window_then_restart_counts_every_row_and_alerts_once(
    stack: Stack,
) -> None:
    model = f"crash-{uuid.uuid4().hex[:8]}"
    await publish_profiles(stack.bootstrap, [model])
    # checkpoints only at alerts (and revocations): the rows of window 1 read before the
    # kill are in no saved state and must be read again after the restart
    config = stack.config({model: 1_000}, checkpoint_interval=3_600)
    worker = await start(stack, config)
    rng = np.random.default_rng(3)
    window0 = traffic(model, 1_000, rng, shift=DRIFT)
    window1 = traffic(model, 1_000, rng, shift=DRIFT, start=1_000)
    await send(stack.bootstrap, window0)
    await alerts_of(stack, {model}, expected=2)  # window 0 closed and saved
    await send(stack.bootstrap, window1.slice(0, 500))
    await wait_for(lambda: worker.metric("flowops_stream_events_total") == 1_500, 30, "rows")

    worker.kill9()
    await send(stack.bootstrap, window1.slice(500, 700))  # while no worker runs
    restarted = stack.start(config)
    await restarted.assigned()
    await send(stack.bootstrap, window1.slice(700, 1_000))
    alerts = await alerts_of(stack, {model}, expected=4)

    assert window_tests(alerts) == [
        (model, "income", test, window) for test in ("ks", "psi") for window in (0, 1)
    ]
    assert_no_duplicates(alerts)
    assert {a.n_current for a in alerts if a.test in WINDOW_TESTS} == {1_000}
    assert sum(monitors for _, monitors in restarted.assignments()) == 1  # restored
    await wait_for(  # 500 rows read again, 500 new: none counted twice in the window
        lambda: restarted.metric("flowops_stream_events_total") == 1_000, 10, "rows counted"
    )


# --- two workers -----------------------------------------------------------------------


async def test_two_workers_share_the_partitions_and_each_alert_comes_once(
    stack: Stack,
) -> None:
    await ensure_topics(stack.bootstrap)
    count = await partitions(stack.bootstrap)
    models = models_covering(f"pair-{uuid.uuid4().hex[:6]}", 6, count)
    await publish_profiles(stack.bootstrap, models)
    config = stack.config(dict.fromkeys(models, 1_000))
    first = await start(stack, config)
    rng = np.random.default_rng(4)
    halves = []
    for model in models:
        calm = traffic(model, 1_000, rng)
        drifted = traffic(model, 1_000, rng, shift=DRIFT, start=1_000)
        await send(stack.bootstrap, calm, drifted.slice(0, 500))
        halves.append(drifted.slice(500, 1_000))
    total = 1_500 * len(models)
    await wait_for(lambda: first.metric("flowops_stream_events_total") == total, 30, "rows")

    second = stack.start(config)  # the group rebalances in the middle of window 1
    mine = await second.assigned()
    theirs = await first.assigned(count=2)
    assert sorted(mine + theirs) == list(range(count))
    assert mine
    assert theirs
    gauges = [w.metric("flowops_stream_partitions", topic=Topics.TRAFFIC) for w in (first, second)]
    assert gauges == [len(theirs), len(mine)]
    await send(stack.bootstrap, *halves)
    alerts = await alerts_of(stack, set(models), expected=2 * len(models))

    assert window_tests(alerts) == sorted(
        (model, "income", test, 1) for model in models for test in ("ks", "psi")
    )
    assert_no_duplicates(alerts)
    assert {a.n_current for a in alerts if a.test in WINDOW_TESTS} == {1_000}
    by_worker = [
        {m for m in models if w.metric("flowops_drift_alerts_total", model=m, test="ks")}
        for w in (first, second)
    ]
    assert by_worker[0]
    assert by_worker[1]
    assert by_worker[0].isdisjoint(by_worker[1])


# --- what the stream judges: answered requests, predictions, error rates ----------------


def _moved(predictions: list[Any]) -> list[float]:
    """Scores in [0, 1) squeezed into [0.5, 1): KS D 0.5 against the reference's."""
    moved: list[float] = (np.asarray(predictions, dtype=np.float64) * 0.5 + 0.5).tolist()
    return moved


async def publish_with_predictions(bootstrap: str, models: list[str]) -> None:
    """Profiles of 5,000 undrifted rows with the model's scores, as ``flowops drift baseline
    --prediction-column`` makes them."""
    await ensure_topics(bootstrap)
    rng = np.random.default_rng(7)
    async with EventProducer(bootstrap, source="/tests/streams") as producer:
        for model in models:
            batch = traffic(model, 5_000, rng)
            columns: dict[str, Any] = {
                name: values if name == "region" else np.array(values, dtype=np.float64)
                for name, values in batch.features.items()
            }
            columns["prediction"] = np.array(batch.predictions, dtype=np.float64)
            profile = Profile.from_columns(columns, model=model)
            await producer.publish(ReferenceProfile.from_profile(profile, model=model))


async def test_only_the_predictions_move_and_the_alerts_name_the_prediction(
    stack: Stack,
) -> None:
    """The features stay as they were, the model's scores move: a window of one partition
    (count) and a window merged across partitions (time) both alert on ``prediction``."""
    counted, merged = f"pcount-{uuid.uuid4().hex[:8]}", f"pmerged-{uuid.uuid4().hex[:8]}"
    await publish_with_predictions(stack.bootstrap, [counted, merged])
    count = await partitions(stack.bootstrap)
    await start(stack, stack.config({counted: 2_000, merged: {"kind": "time", "size": SIZE}}))
    calm = traffic(counted, 2_000, np.random.default_rng(11))
    moved = dataclasses.replace(
        calm,
        request_ids=[f"{counted}-moved-{i}" for i in range(calm.rows)],
        timestamps=calm.timestamps + 1.0,
        predictions=_moved(calm.predictions),  # the same features, row for row
    )
    await send(stack.bootstrap, calm, moved)
    begin = (time.time() // SIZE + 6) * SIZE
    window = traffic(merged, 1_000, np.random.default_rng(12), at=begin + 1)
    await send_spread(
        stack.bootstrap, dataclasses.replace(window, predictions=_moved(window.predictions)), count
    )
    await close_by_rows(stack.bootstrap, merged, count, begin)

    alerts = await alerts_of(stack, {counted, merged}, expected=4, timeout=90)

    assert window_tests(alerts) == sorted(
        [(counted, "prediction", test, 1) for test in ("ks", "psi")]
        + [(merged, "prediction", test, int(begin // SIZE)) for test in ("ks", "psi")]
    )
    assert {a.feature for a in alerts if a.test != "verdict"} == {"prediction"}  # ADWIN's too
    ks = [alert for alert in alerts if alert.test == "ks"]
    assert {(a.severity, a.n_current) for a in ks} == {("critical", 2_000), ("critical", 1_000)}
    assert_no_duplicates(alerts)


def failing_share(batch: TrafficBatch, share: float, rng: np.random.Generator) -> TrafficBatch:
    """``share`` of the requests (at random) answered 500, with an error object for a
    prediction and an income no reference has: were they data, income would drift."""
    failed = rng.random(batch.rows) < share
    income = np.asarray(batch.features["income"]) + np.where(failed, DRIFT, 0.0)
    return dataclasses.replace(
        batch,
        features={**batch.features, "income": income.tolist()},
        predictions=[
            {"error": "boom"} if f else p for f, p in zip(failed, batch.predictions, strict=True)
        ],
        status=np.where(failed, 500, 200),
    )


async def test_thirty_percent_of_requests_failing_alerts_on_error_rate_not_on_features(
    stack: Stack,
) -> None:
    model = f"errors-{uuid.uuid4().hex[:8]}"
    await publish_profiles(stack.bootstrap, [model])
    worker = await start(stack, stack.config({model: 1_000}))
    rng = np.random.default_rng(13)
    calm = failing_share(traffic(model, 3_000, rng), 0.01, rng)
    failing = failing_share(traffic(model, 2_000, rng, start=3_000), 0.3, rng)
    await send(stack.bootstrap, calm, failing)
    answered = int((calm.status == 200).sum() + (failing.status == 200).sum())
    await wait_for(
        lambda: worker.metric("flowops_stream_events_total") == answered,
        60,
        "the answered rows",
        alive=worker,
    )

    def keep(message: Any) -> DriftAlert | None:
        alert = DriftAlert.from_json(message.value)
        return alert if alert.model == model else None

    alerts = await read_topic(
        stack.bootstrap,
        Topics.ALERTS,
        keep,
        lambda found: sum(alert.test == "error_rate" for alert in found) >= 2,
        workers=stack.workers,
    )

    assert sorted((a.feature, a.test, a.window_index) for a in alerts) == [
        ("requests", "error_rate", 3),
        ("requests", "error_rate", 4),
    ]
    first = min(alerts, key=lambda alert: alert.window_index)
    assert first.severity == "critical"
    assert first.statistic == pytest.approx(0.3, abs=0.05)
    assert first.partition is not None  # the error-rate windows are the partition's
    assert_no_duplicates(alerts)
    assert worker.metric("flowops_stream_requests_total", model=model) == 5_000
    rejected = worker.metric("flowops_stream_rejected_requests_total", model=model)
    assert rejected == 5_000 - answered


async def test_a_merged_models_error_rate_is_its_windows_whatever_the_partitions(
    stack: Stack,
) -> None:
    """A model with merged time windows, its requests dealt over every partition: three
    calm windows, then one with 30 % failing; one error_rate alert, of the model's window
    (no partition), and none on the features."""
    model, config, count, begin = await merged_setup(stack, "merrors")
    await start(stack, config)
    rng = np.random.default_rng(14)
    for index, share in enumerate([0.01, 0.01, 0.01, 0.3]):
        batch = traffic(model, 400, rng, start=400 * index, at=begin + SIZE * index + 1)
        await send_spread(stack.bootstrap, failing_share(batch, share, rng), count)
    tick = traffic(model, count, np.random.default_rng(9), at=begin + 4 * SIZE + 1)
    await send_spread(stack.bootstrap, tick, count, chunk=1)

    def keep(message: Any) -> DriftAlert | None:
        alert = DriftAlert.from_json(message.value)
        return alert if alert.model == model else None

    alerts = await read_topic(
        stack.bootstrap,
        Topics.ALERTS,
        keep,
        lambda found: any(alert.test == "error_rate" for alert in found),
        workers=stack.workers,
        timeout=90,
    )

    [jump] = alerts
    assert (jump.feature, jump.test, jump.window_index) == (
        "requests",
        "error_rate",
        int(begin // SIZE) + 3,
    )
    assert (jump.partition, jump.n_current, jump.n_reference) == (None, 400, 1_200)
    key = [model, "1", "requests", "error_rate", jump.window_index]
    assert jump.alert_id == hashlib.sha256(json.dumps(key).encode()).hexdigest()


# --- the window's verdict on the alerts ------------------------------------------------


def _with_rule(config: Path, rule: str) -> Path:
    """The worker's config with ``drift.verdict: rule``."""
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "drift": {"verdict": rule}}))
    return config


@pytest.mark.parametrize(("rule", "drift"), [("share:0.5", False), ("any", True)])
async def test_the_alerts_carry_the_windows_verdict_by_the_configured_rule(
    stack: Stack, rule: str, drift: bool
) -> None:
    """Two of five monitored features (income, and the model's prediction) move, in a
    window of one partition (count) and in a window merged across partitions (time):
    every alert of those windows says share 0.4 and the rule's answer; by ``any`` one
    more alert per window (``dataset``/``verdict``) says the model drifted, by
    ``share:0.5`` none does."""
    counted, merged = f"vcount-{uuid.uuid4().hex[:8]}", f"vmerged-{uuid.uuid4().hex[:8]}"
    await publish_with_predictions(stack.bootstrap, [counted, merged])
    count = await partitions(stack.bootstrap)
    config = stack.config({counted: 2_000, merged: {"kind": "time", "size": SIZE}})
    worker = await start(stack, _with_rule(config, rule))
    calm = traffic(counted, 2_000, np.random.default_rng(21))
    moved = traffic(counted, 2_000, np.random.default_rng(22), shift=DRIFT, start=2_000)
    moved = dataclasses.replace(moved, predictions=_moved(moved.predictions))
    await send(stack.bootstrap, calm, moved)
    begin = (time.time() // SIZE + 6) * SIZE
    window = traffic(merged, 1_000, np.random.default_rng(23), shift=DRIFT, at=begin + 1)
    await send_spread(
        stack.bootstrap, dataclasses.replace(window, predictions=_moved(window.predictions)), count
    )
    await close_by_rows(stack.bootstrap, merged, count, begin)
    merged_window = int(begin // SIZE)

    def keep(message: Any) -> DriftAlert | None:
        alert = DriftAlert.from_json(message.value)
        return alert if alert.model in (counted, merged) else None

    def done(found: list[DriftAlert]) -> bool:
        if drift:  # each window's verdict comes after its features' alerts
            return {a.model for a in found if a.test == "verdict"} == {counted, merged}
        return sum(a.test in WINDOW_TESTS for a in found) >= 8

    alerts = await read_topic(
        stack.bootstrap, Topics.ALERTS, keep, done, workers=stack.workers, timeout=90
    )

    windows = {counted: 1, merged: merged_window}
    tested = [a for a in alerts if a.test in WINDOW_TESTS]
    assert {(a.model, a.feature, a.test, a.window_index) for a in tested} == {
        (model, feature, test, index)
        for model, index in windows.items()
        for feature in ("income", "prediction")
        for test in ("ks", "psi")
    }
    expected = WindowVerdictBody(
        drift=drift,
        verdict=rule,
        drifted_features=2,
        compared_features=5,
        drifted_share=0.4,
        drifted_names=["income", "prediction"],
    )
    assert [a.window_verdict for a in tested] == [expected] * len(tested)
    assert [a.window_verdict for a in alerts if a.test == "adwin"] == [None] * sum(
        a.test == "adwin" for a in alerts
    )
    said = [a for a in alerts if a.test == "verdict"]
    for model in windows:  # a window's alerts are counted together, once all are acked
        await wait_for(
            lambda model=model: (
                worker.metric("flowops_drift_alerts_total", model=model, test="psi") == 2
            ),
            30,
            f"{model}'s alerts counted",
            alive=worker,
        )
        assert worker.metric("flowops_drift_alerts_total", model=model, test="verdict") == (
            1 if drift else None
        )
    if not drift:
        assert said == []
        return
    assert sorted((a.model, a.feature, a.window_index, a.statistic) for a in said) == [
        (counted, "dataset", 1, 0.4),
        (merged, "dataset", merged_window, 0.4),
    ]
    assert {(a.model, a.partition is None) for a in said} == {(counted, False), (merged, True)}
    assert [a.window_verdict for a in said] == [expected] * 2
    for alert in said:  # after its window's feature alerts, on the model's partition
        mine = [a for a in alerts if a.model == alert.model and a.test in WINDOW_TESTS]
        assert alerts.index(alert) > max(alerts.index(a) for a in mine)
    assert_no_duplicates(alerts)
