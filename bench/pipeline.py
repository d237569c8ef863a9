"""The stream pipeline: one worker's throughput and its alert latency, on the embedded broker.

Everything runs in one run, against one Tansu broker started here (memory
storage, 127.0.0.1, 4 partitions per topic), with one ``flowops streams worker``
subprocess per measurement:

- **Throughput**, with 1,000-row messages and with one-row messages: the messages are
  produced first, then a worker starts with a fresh consumer group committed at their
  first offsets, and its ``flowops_stream_events_total`` counter is polled; the rate is
  the rows counted after the first batch over the time from the first batch to the last.
  The anchor is a raw aiokafka consumer reading the same offsets of the same broker in
  ``getmany`` batches without decoding (the ceiling for a Python consumer), timed the
  same way, best of 3. Goals (the issue's): 100,000 rows/s batched, 20,000 rows/s in
  one-row messages. Every model has a reference profile, so each 10,000-row window is
  tested against it.
- **Alert latency**: 20,000 rows/s for 20 s in 100-row messages, every row drifted so
  that every 2,000-row window alerts; the latency of a window is its first alert's
  record timestamp on ``flowops.drift.alerts`` minus the timestamp of the window's last
  row. Goal: p99 under 1 s.

Progress goes to stderr, the table to stdout. The broker and every worker are stopped by
their pid (SIGINT, then SIGKILL after a timeout) whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from _harness import usage
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from flowops.broker import EmbeddedBroker, free_port
from flowops.drift import Profile
from flowops.events import (
    DriftAlert,
    EventProducer,
    ReferenceProfile,
    Topics,
    TrafficBatch,
    TrafficProducer,
    TrafficRow,
    ensure_topics,
)

PARTITIONS = 4
WINDOW_ROWS = 10_000
BATCH_ROWS = 1_000
BATCHED_MESSAGES = 2_000  # 2,000,000 rows
ONE_ROW_MESSAGES = 200_000
REFERENCE_ROWS = 20_000  # above 10,000 values KS uses its asymptotic p-value (see RESULTS.md)
ANCHOR_RUNS = 3

LATENCY_RATE = 20_000  # rows/s
LATENCY_SECONDS = 20.0
LATENCY_MESSAGE_ROWS = 100
LATENCY_WINDOW_ROWS = 2_000
DRIFT = 1.0  # standard deviations of income added to every row of the latency run

GOAL_BATCHED = 100_000  # rows/s
GOAL_ONE_ROW = 20_000  # rows/s
GOAL_P99 = 1.0  # seconds

SOURCE = "/bench/pipeline"
START_TIMEOUT = 90.0  # a worker joins two consumer groups
RUN_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
ALERTS_TIMEOUT = 15.0  # after the last row sent
POLL_SECONDS = 0.05
# The traffic agent's reading settings (streams/agents/traffic.py), for the anchor.
FETCH = {"max_partition_fetch_bytes": 16 * 1024 * 1024, "fetch_max_wait_ms": 50}
MAX_RECORDS = 20_000


def say(line: str) -> None:
    """A progress line, on stderr."""
    print(f"pipeline: {line}", file=sys.stderr, flush=True)


# --- traffic --------------------------------------------------------------------------


def traffic(model: str, rows: int, rng: np.random.Generator, *, shift: float = 0.0) -> TrafficBatch:
    """``rows`` requests to ``model`` stamped now: two numeric features and a category;
    ``shift`` moves income's mean by that many standard deviations."""
    return TrafficBatch(
        model=model,
        version="1",
        request_ids=[uuid.uuid4().hex for _ in range(rows)],
        timestamps=np.full(rows, time.time()),
        features={
            "age": rng.normal(40, 10, rows).round().tolist(),
            "income": rng.normal(50_000 + shift * 10_000, 10_000, rows).tolist(),
            "region": rng.choice(["north", "south", "east", "west"], rows).tolist(),
        },
        predictions=rng.uniform(0, 1, rows).tolist(),
        latency_ms=rng.uniform(1, 10, rows),
        status=np.full(rows, 200),
    )


def rows_of(batch: TrafficBatch) -> Iterator[TrafficRow]:
    """The batch's requests as one-row events."""
    columns = zip(
        batch.request_ids,
        batch.timestamps.tolist(),
        batch.predictions,
        batch.latency_ms.tolist(),
        batch.status.tolist(),
        strict=True,
    )
    for i, (request_id, stamp, prediction, latency, status) in enumerate(columns):
        features = {name: values[i] for name, values in batch.features.items()}
        yield TrafficRow(
            batch.model, batch.version, request_id, stamp, features, prediction, latency, status
        )


def models_per_partition(prefix: str) -> list[str]:
    """One model name per traffic partition, as the default partitioner places the keys."""
    partitioner, every = DefaultPartitioner(), list(range(PARTITIONS))
    found: dict[int, str] = {}
    for i in range(10_000):
        name = f"{prefix}-{i}"
        found.setdefault(partitioner(name.encode(), every, every), name)
        if len(found) == PARTITIONS:
            return [found[p] for p in every]
    raise RuntimeError("no model names cover every partition")


def profile_of(batch: TrafficBatch) -> Profile:
    """The reference profile of a batch's features."""
    features = batch.features
    return Profile.from_columns(
        {
            "age": np.array(features["age"], dtype=np.float64),
            "income": np.array(features["income"], dtype=np.float64),
            "region": [str(value) for value in features["region"]],
        },
        model=batch.model,
    )


async def publish_profiles(bootstrap: str, models: Sequence[str], rng: np.random.Generator) -> None:
    """A reference profile per model, from undrifted traffic."""
    async with EventProducer(bootstrap, source=SOURCE) as producer:
        for model in models:
            profile = profile_of(traffic(model, REFERENCE_ROWS, rng))
            await producer.publish(ReferenceProfile.from_profile(profile, model=model))


async def produce(bootstrap: str, models: Sequence[str], messages: int, rows: int) -> None:
    """``messages`` traffic messages of ``rows`` rows each, the models taking turns."""
    rng = np.random.default_rng(1)
    async with TrafficProducer(bootstrap, source=SOURCE) as producer:
        if rows > 1:
            for i in range(messages):
                await producer.send(traffic(models[i % len(models)], rows, rng))
            return
        per_model = messages // len(models)
        for model in models:
            for row in rows_of(traffic(model, per_model, rng)):
                await producer.send(row)


# --- topic offsets and the anchor -----------------------------------------------------


async def end_offsets(bootstrap: str, topic: str = Topics.TRAFFIC) -> dict[TopicPartition, int]:
    """The next offset of each partition of ``topic``, found by reading.

    Tansu 0.6 answers a ListOffsets request for the latest offset with the base offset of
    the partition's last record batch plus one, short of the end when that batch holds
    several records; so the consumer reads on from there to the real end.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends: dict[TopicPartition, int] = dict(await consumer.end_offsets(tps))
        consumer.assign(tps)
        for tp, offset in ends.items():
            consumer.seek(tp, offset)
        while batch := await consumer.getmany(timeout_ms=300):
            for tp, records in batch.items():
                ends[tp] = records[-1].offset + 1
        return ends
    finally:
        await consumer.stop()


async def commit_offsets(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group``, so that a worker of that group starts there."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


@dataclass
class Progress:
    """Rows counted over time; the rate from the first count to the last change."""

    samples: list[tuple[float, float]] = field(default_factory=list)

    def add(self, rows: float) -> None:
        """Record the count now, if it is above zero and changed."""
        if rows > 0 and (not self.samples or rows != self.samples[-1][1]):
            self.samples.append((time.perf_counter(), rows))

    @property
    def rows(self) -> float:
        """The last count."""
        return self.samples[-1][1] if self.samples else 0.0

    @property
    def rate(self) -> float:
        """Rows after the first sample per second from it to the last (0 if too few)."""
        if len(self.samples) < 2:
            return 0.0
        (first_time, first_rows), (last_time, last_rows) = self.samples[0], self.samples[-1]
        return (last_rows - first_rows) / (last_time - first_time)


async def raw_read(
    bootstrap: str, start: dict[TopicPartition, int], end: dict[TopicPartition, int], rows: int
) -> float:
    """Rows/s of an aiokafka consumer that only reads ``start`` to ``end`` in batches."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **FETCH)
    await consumer.start()
    expected = sum(end[tp] - start[tp] for tp in start)
    progress, messages = Progress(), 0
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        while messages < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=MAX_RECORDS)
            messages += sum(len(records) for records in batch.values())
            progress.add(messages * rows)
    finally:
        await consumer.stop()
    return progress.rate


# --- the worker -----------------------------------------------------------------------


@dataclass
class Worker:
    """A ``flowops streams worker`` subprocess, its stderr file and its metrics port."""

    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    @classmethod
    def start(cls, bootstrap: str, directory: Path, app_id: str, window: int) -> Worker:
        """Start a worker of its own app id with a count window of ``window`` rows."""
        settings = {
            "log_level": "warning",
            "kafka": {"bootstrap": bootstrap, "partitions": PARTITIONS},
            "streams": {
                "app_id": app_id,
                "datadir": str(directory / app_id),
                "session_timeout": 6,
                "window": {"kind": "count", "size": window},
            },
        }
        config, log = directory / f"{app_id}.yaml", directory / f"{app_id}.log"
        config.write_text(yaml.safe_dump(settings))
        port = free_port()
        command = [sys.executable, "-m", "flowops", "streams", "worker", "--config", str(config)]
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [*command, "--metrics-port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return cls(proc, log, port)

    def tail(self, chars: int = 3000) -> str:
        """The end of what the worker wrote to stderr."""
        return self.log.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        """Raise, with the end of its log, if the worker has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.proc.returncode}):\n{self.tail()}")

    async def assigned(self) -> None:
        """Wait until the worker has its traffic partitions."""
        deadline = time.monotonic() + START_TIMEOUT
        while "assigned (" not in self.tail(100_000):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker did not start in {START_TIMEOUT:g} s:\n{self.tail()}"
                )
            await asyncio.sleep(0.2)

    async def metric(self, name: str) -> float:
        """An unlabelled sample of the worker's /metrics page (0 while it does not answer)."""
        text = await asyncio.to_thread(self._metrics_page)
        for line in text.splitlines():
            sample, _, value = line.partition(" ")
            if sample == name:
                return float(value)
        return 0.0

    def _metrics_page(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
        except OSError:
            return ""
        return body.decode()

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it has not stopped within ``STOP_TIMEOUT`` seconds."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            say(f"worker {self.proc.pid} did not stop in {STOP_TIMEOUT:g} s; killing it")
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def app_id(purpose: str) -> str:
    """A fresh app id: its consumer groups and state topic are new."""
    return f"bench-{purpose}-{uuid.uuid4().hex[:8]}"


# --- throughput -----------------------------------------------------------------------


@dataclass
class Throughput:
    """One worker's rows/s beside the raw consumer's on the same messages."""

    name: str
    rows: int
    ours: float
    anchor: float
    goal: float
    counted: float
    windows: float


async def measure_throughput(
    bootstrap: str, directory: Path, models: Sequence[str], messages: int, rows: int
) -> Throughput:
    """Produce the messages, read them raw (the anchor), then through a worker."""
    start = await end_offsets(bootstrap)
    say(f"producing {messages:,} messages of {rows:,} rows")
    await produce(bootstrap, models, messages, rows)
    end = await end_offsets(bootstrap)
    total = sum(end[tp] - start[tp] for tp in start) * rows
    anchor = 0.0
    for _ in range(ANCHOR_RUNS):
        anchor = max(anchor, await raw_read(bootstrap, start, end, rows))
    say(f"raw aiokafka consumer: {anchor:,.0f} rows/s (best of {ANCHOR_RUNS})")
    app = app_id(f"rows{rows}")
    await commit_offsets(bootstrap, f"{app}-traffic", start)
    worker = Worker.start(bootstrap, directory, app, WINDOW_ROWS)
    try:
        progress = await count_rows(worker, total)
        windows = await worker.metric("flowops_stream_windows_closed_total")
    finally:
        worker.stop()
    say(
        f"worker: {progress.rate:,.0f} rows/s, {progress.rows:,.0f} of {total:,} rows, "
        f"{len(progress.samples)} counts"
    )
    goal = GOAL_BATCHED if rows > 1 else GOAL_ONE_ROW
    name = f"{rows:,}-row messages" if rows > 1 else "one-row messages"
    return Throughput(name, total, progress.rate, anchor, goal, progress.rows, windows)


async def count_rows(worker: Worker, total: int) -> Progress:
    """Poll the worker's row counter until it reaches ``total`` or time runs out."""
    progress = Progress()
    deadline = time.monotonic() + START_TIMEOUT + RUN_TIMEOUT
    while progress.rows < total and time.monotonic() < deadline:
        worker.check_alive()
        progress.add(await worker.metric("flowops_stream_events_total"))
        await asyncio.sleep(POLL_SECONDS)
    return progress


# --- alert latency --------------------------------------------------------------------


@dataclass
class Latency:
    """Seconds from each window's last row to its first alert."""

    by_record: list[float]  # to the alert's record timestamp (the worker's send)
    by_receipt: list[float]  # to the moment a reader here received it
    windows: int  # windows the traffic sent fills
    sent_rate: float  # rows/s actually sent


async def measure_latency(bootstrap: str, directory: Path, model: str) -> Latency:
    """Steady drifted traffic through a worker; the latency of every window's alert."""
    app = app_id("latency")
    await commit_offsets(bootstrap, f"{app}-traffic", await end_offsets(bootstrap))
    worker = Worker.start(bootstrap, directory, app, LATENCY_WINDOW_ROWS)
    try:
        await worker.assigned()
        say(f"sending {LATENCY_RATE:,} rows/s for {LATENCY_SECONDS:g} s, every window drifted")
        return await send_and_collect(bootstrap, model, worker)
    finally:
        worker.stop()


async def send_and_collect(bootstrap: str, model: str, worker: Worker) -> Latency:
    """Send the traffic while a reader collects the model's alerts, first per window."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=10)
    await reader.start()
    first: dict[int, tuple[float, float]] = {}
    try:
        ends = await end_offsets(bootstrap, Topics.ALERTS)
        reader.assign(list(ends))
        for tp, offset in ends.items():
            reader.seek(tp, offset)
        collecting = asyncio.create_task(collect_alerts(reader, model, first))
        try:
            started = time.monotonic()
            sent = await send_steadily(bootstrap, model)
            rate = sent / (time.monotonic() - started)
            windows = sent // LATENCY_WINDOW_ROWS
            await wait_for_windows(first, windows, worker)
        finally:
            collecting.cancel()
    finally:
        await reader.stop()
    return Latency(
        [record for record, _ in first.values()],
        [receipt for _, receipt in first.values()],
        windows,
        rate,
    )


async def collect_alerts(
    reader: AIOKafkaConsumer, model: str, first: dict[int, tuple[float, float]]
) -> None:
    """Keep, per window of ``model``, the latency of its first window-test alert."""
    while True:
        batch = await reader.getmany(timeout_ms=100)
        received = time.time()
        for record in (r for records in batch.values() for r in records):
            alert = DriftAlert.from_json(record.value)
            if alert.model != model or alert.test == "adwin":
                continue
            latency = record.timestamp / 1000 - alert.window_end
            found = (latency, received - alert.window_end)
            first[alert.window_index] = min(first.get(alert.window_index, found), found)


async def send_steadily(bootstrap: str, model: str) -> int:
    """Drifted traffic at ``LATENCY_RATE`` rows/s for ``LATENCY_SECONDS``; rows sent."""
    rng = np.random.default_rng(2)
    sent = 0
    async with TrafficProducer(bootstrap, source=SOURCE) as producer:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < LATENCY_SECONDS:
            while sent < elapsed * LATENCY_RATE:
                await producer.send(traffic(model, LATENCY_MESSAGE_ROWS, rng, shift=DRIFT))
                sent += LATENCY_MESSAGE_ROWS
            await asyncio.sleep(0.002)
    return sent


async def wait_for_windows(
    first: dict[int, tuple[float, float]], windows: int, worker: Worker
) -> None:
    """Wait until every window has its alert, at most ``ALERTS_TIMEOUT`` seconds."""
    deadline = time.monotonic() + ALERTS_TIMEOUT
    while len(first) < windows and time.monotonic() < deadline:
        worker.check_alive()
        await asyncio.sleep(0.1)


# --- the table ------------------------------------------------------------------------


def throughput_row(result: Throughput) -> str:
    """The table line of a throughput measurement."""
    verdict = "met" if result.ours >= result.goal else "NOT met"
    ratio = result.ours / result.anchor if result.anchor else float("nan")
    note = f"{result.rows:,} rows; {result.windows:,.0f} windows closed"
    if result.counted < result.rows:
        note += f"; only {result.counted:,.0f} rows counted in time"
    return (
        f"| one worker, {result.name} | {result.ours:,.0f} rows/s "
        f"| raw aiokafka getmany, no decoding: {result.anchor:,.0f} rows/s "
        f"| {ratio:.1%} | >= {result.goal:,.0f} rows/s {verdict} | {note} |"
    )


def percentiles_ms(values: Sequence[float], *qs: float) -> list[float]:
    """Percentiles of ``values`` (seconds) in milliseconds; NaN when there are none."""
    if not values:
        return [float("nan")] * len(qs)
    return [float(np.percentile(values, q)) * 1e3 for q in qs]


def latency_row(result: Latency) -> str:
    """The table line of the alert latency."""
    p50, p99, worst = percentiles_ms(result.by_record, 50, 99, 100)
    (receipt,) = percentiles_ms(result.by_receipt, 99)
    goal_ms = GOAL_P99 * 1e3
    alerted = len(result.by_record)
    verdict = "met" if p99 < goal_ms and alerted == result.windows else "NOT met"
    note = (
        f"{alerted} of {result.windows} windows alerted; {result.sent_rate:,.0f} rows/s sent "
        f"in {LATENCY_MESSAGE_ROWS}-row messages, {LATENCY_WINDOW_ROWS:,}-row windows; "
        f"p99 to receipt by a reader here {receipt:.0f} ms"
    )
    return (
        f"| alert latency p50 / p99 / max | {p50:.0f} / {p99:.0f} / {worst:.0f} ms "
        f"| the issue's goal: p99 < {goal_ms:,.0f} ms | p99 = {p99 / goal_ms:.2f}x the goal "
        f"| p99 < {goal_ms:,.0f} ms {verdict} | {note} |"
    )


def print_table(throughput: Sequence[Throughput], latency: Latency) -> None:
    """The results as a markdown table, ours beside the anchor."""
    print("| benchmark | FlowOps | anchor | ours / anchor | goal | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for result in throughput:
        print(throughput_row(result))
    print(latency_row(latency))


# --- main -----------------------------------------------------------------------------


async def run(bootstrap: str, directory: Path) -> tuple[list[Throughput], Latency]:
    """Every measurement, on the broker at ``bootstrap``."""
    await ensure_topics(bootstrap, PARTITIONS)
    models = models_per_partition("bench")
    latency_model = "bench-latency"
    await publish_profiles(bootstrap, [*models, latency_model], np.random.default_rng(0))
    throughput = [
        await measure_throughput(bootstrap, directory, models, BATCHED_MESSAGES, BATCH_ROWS),
        await measure_throughput(bootstrap, directory, models, ONE_ROW_MESSAGES, 1),
    ]
    latency = await measure_latency(bootstrap, directory, latency_model)
    return throughput, latency


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flowops-bench-") as tmp:
        directory = Path(tmp)
        broker = EmbeddedBroker(port=free_port(), log=directory / "tansu.log")
        broker.start()
        say(f"Tansu on {broker.bootstrap} (pid {broker.pid}), memory storage")
        try:
            throughput, latency = asyncio.run(run(broker.bootstrap, directory))
        finally:
            broker.stop()
    print(
        f"one worker, Tansu in memory, {PARTITIONS} partitions, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; {time.monotonic() - started:.0f} s"
    )
    print_table(throughput, latency)


if __name__ == "__main__":
    usage(__doc__)
    main()
