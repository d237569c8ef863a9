"""Helpers for the stream-worker tests: workers as subprocesses, traffic, topic readers.

A worker runs as ``python -m flowops streams worker`` with a config file of the test's
own (a unique app id, so consumer groups and the state topic are the test's); it is
stopped by its pid, SIGINT first, SIGKILL if it does not stop in time.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from flowops.broker import free_port
from flowops.drift import Profile
from flowops.events import (
    EventProducer,
    ReferenceProfile,
    Topics,
    TrafficBatch,
    describe_topics,
    ensure_topics,
)

T = TypeVar("T")

START_TIMEOUT = 90.0  # two group joins; after a kill -9, the dead member's session too
STOP_TIMEOUT = 40.0
_ASSIGNED = re.compile(r"traffic: partitions \[([0-9, ]*)\] assigned \((\d+) monitors restored\)")


@dataclass
class Worker:
    """A ``flowops streams worker`` process and the file its stderr goes to."""

    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def text(self) -> str:
        """Everything the worker wrote to stderr so far."""
        return self.log.read_text(errors="replace")

    def assignments(self) -> list[tuple[list[int], int]]:
        """Each "partitions [...] assigned (n monitors restored)" line, in order."""
        return [
            ([int(p) for p in found.group(1).split(",") if p.strip()], int(found.group(2)))
            for found in _ASSIGNED.finditer(self.text())
        ]

    async def assigned(self, count: int = 1, timeout: float = START_TIMEOUT) -> list[int]:
        """The partitions of the ``count``-th assignment, once it has happened."""
        found = await wait_for(
            lambda: self.assignments()[count - 1] if len(self.assignments()) >= count else None,
            timeout,
            f"assignment {count} of worker {self.proc.pid}",
            alive=self,
        )
        return found[0]

    def metrics(self) -> str:
        """The worker's /metrics page ("" while it does not answer)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
        except OSError:
            return ""
        return body.decode()

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the /metrics page; None when it is not there."""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in self.metrics().splitlines():
            sample, _, value = line.rpartition(" ")
            metric, _, label_text = sample.partition("{")
            if metric == name and ",".join(sorted(label_text.rstrip("}").split(","))) == wanted:
                return float(value)
        return None

    def kill9(self) -> None:
        """SIGKILL, as a crash would."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)

    def interrupt(self) -> None:
        """SIGINT (Ctrl-C), if it still runs."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)

    def stop(self) -> int:
        """SIGINT, then SIGKILL if it has not stopped in time; its exit code."""
        self.interrupt()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)
        return self.proc.returncode


@dataclass
class Stack:
    """The workers a test started (stopped at teardown) and their shared config."""

    bootstrap: str
    directory: Path
    app_id: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:10]}")
    workers: list[Worker] = field(default_factory=list)

    def config(self, windows: Mapping[str, int | dict[str, Any]], **streams: Any) -> Path:
        """Write the config file: windows per model (a row count, or a window setting),
        and other ``streams`` settings."""
        path = self.directory / f"{self.app_id}.yaml"
        settings = {
            "log_level": "info",
            "kafka": {"bootstrap": self.bootstrap},
            "streams": {
                "app_id": self.app_id,
                "datadir": str(self.directory / "faust"),
                "session_timeout": 6,
                "models": {
                    model: {"window": size if isinstance(size, dict) else {"size": size}}
                    for model, size in windows.items()
                },
                **streams,
            },
        }
        path.write_text(yaml.safe_dump(settings))
        return path

    def start(self, config: Path) -> Worker:
        """Start a worker process with ``config``."""
        port = free_port()
        log = self.directory / f"worker-{len(self.workers)}.log"
        command = [sys.executable, "-m", "flowops", "streams", "worker", "--config", str(config)]
        command += ["--bootstrap", self.bootstrap, "--metrics-port", str(port)]
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        worker = Worker(proc, log, port)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        """Stop every worker this stack started, by pid: all told first, then waited for."""
        for worker in self.workers:
            worker.interrupt()
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait(timeout=STOP_TIMEOUT)

    @property
    def group(self) -> str:
        """The traffic agent's consumer group."""
        return f"{self.app_id}-traffic"


async def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, *, alive: Worker | None = None
) -> T:
    """Poll ``probe`` until it gives a value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(f"worker exited while waiting for {what}:\n{alive.text()}")
        await asyncio.sleep(0.2)
    detail = f"\n{alive.text()[-3000:]}" if alive is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


# --- traffic --------------------------------------------------------------------------


def traffic(
    model: str,
    rows: int,
    rng: np.random.Generator,
    *,
    shift: float = 0.0,
    start: int = 0,
    at: float | None = None,
) -> TrafficBatch:
    """Rows of a model with four features; ``shift`` moves income's mean (5 sd per 25).

    Timestamps start at ``at`` (default: now), 0.1 ms apart.
    """
    first = time.time() if at is None else at
    return TrafficBatch(
        model=model,
        version="1",
        request_ids=[f"{model}-{start + i}" for i in range(rows)],
        timestamps=first + np.arange(rows) * 1e-4,
        features={
            "age": rng.normal(40, 10, rows).round().tolist(),
            "income": (rng.normal(50, 5, rows) + shift).tolist(),
            "score": rng.uniform(0, 1, rows).tolist(),
            "region": rng.choice(["north", "south", "east", "west"], rows).tolist(),
        },
        predictions=rng.uniform(0, 1, rows).tolist(),
        latency_ms=rng.uniform(1, 10, rows),
        status=np.full(rows, 200),
    )


def profile_of(batch: TrafficBatch) -> Profile:
    """The reference profile of a batch's features."""
    columns: dict[str, Any] = {}
    for name, values in batch.features.items():
        columns[name] = values if name == "region" else np.array(values, dtype=np.float64)
    return Profile.from_columns(columns, model=batch.model)


async def publish_profiles(bootstrap: str, models: Iterable[str], seed: int = 7) -> None:
    """A reference profile per model, from 5,000 undrifted rows (topics created first:
    Tansu would create a topic asked about with its own defaults)."""
    await ensure_topics(bootstrap)
    rng = np.random.default_rng(seed)
    async with EventProducer(bootstrap, source="/tests/streams") as producer:
        for model in models:
            profile = profile_of(traffic(model, 5_000, rng))
            await producer.publish(ReferenceProfile.from_profile(profile, model=model))


async def skip_existing_traffic(bootstrap: str, group: str) -> None:
    """Commit the group's offsets at the end of the traffic topic: other tests' traffic
    on the shared broker is not this worker's business."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(Topics.TRAFFIC, p) for p in range(await partitions(bootstrap))]
        consumer.assign(tps)
        await consumer.commit(await true_ends(consumer, tps))
    finally:
        await consumer.stop()


async def true_ends(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> dict[Any, int]:
    """The end offsets of assigned partitions, from a fetch's high watermark: Tansu 0.6
    answers ListOffsets(latest) with the base offset of the last record batch + 1."""
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, ends[tp])
    deadline = time.monotonic() + 10
    while any(consumer.highwater(tp) is None for tp in tps):
        assert time.monotonic() < deadline, "no fetch answered for every partition"
        await consumer.getmany(*tps, timeout_ms=200)
    return {tp: max(ends[tp], consumer.highwater(tp)) for tp in tps}


async def partitions(bootstrap: str, topic: str = Topics.TRAFFIC) -> int:
    """How many partitions ``topic`` has."""
    return (await describe_topics(bootstrap, [topic]))[topic].partitions


def models_covering(prefix: str, count: int, partitions: int) -> dict[str, int]:
    """Model names (``count`` of them, at least one per partition) and their partitions,
    as the default partitioner places their keys."""
    partitioner = DefaultPartitioner()
    chosen: dict[str, int] = {}
    covered: set[int] = set()
    for i in range(10_000):
        name = f"{prefix}-{i}"
        part = partitioner(name.encode(), list(range(partitions)), list(range(partitions)))
        if part not in covered or len(covered) == partitions:
            chosen[name] = part
            covered.add(part)
        if len(chosen) >= count and len(covered) == partitions:
            return chosen
    raise AssertionError("no spread of model names found")


async def read_topic(
    bootstrap: str,
    topic: str,
    keep: Callable[[Any], T | None],
    done: Callable[[list[T]], bool],
    *,
    workers: Sequence[Worker] = (),
    timeout: float = 60.0,
    settle: float = 3.0,
) -> list[T]:
    """The messages of ``topic`` (from its start) that ``keep`` turns into values, read
    until ``done`` says so and then ``settle`` seconds more, to see late duplicates.

    Fails, with the logs of ``workers``, on timeout or when one of them exits.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[T] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(await partitions(bootstrap, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while time.monotonic() < (settled_at or deadline):
            batches = await consumer.getmany(timeout_ms=300)
            for message in (m for part in batches.values() for m in part):
                value = keep(message)
                if value is not None:
                    found.append(value)
            if settled_at is None and done(found):
                settled_at = time.monotonic() + settle
            _check_alive(workers, f"reading {topic}")
    finally:
        await consumer.stop()
    if settled_at is None:
        logs = "\n".join(f"--- worker {w.proc.pid}:\n{w.text()[-4000:]}" for w in workers)
        raise AssertionError(f"timed out reading {topic}; found {found}\n{logs}")
    return found


def _check_alive(workers: Sequence[Worker], what: str) -> None:
    for worker in workers:
        if worker.proc.poll() is not None and worker.proc.returncode != -signal.SIGKILL:
            raise AssertionError(f"worker exited while {what}:\n{worker.text()[-4000:]}")
