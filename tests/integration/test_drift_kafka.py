"""``flowops drift baseline --publish`` and ``flowops drift watch`` on a real Tansu broker:
the profile lands on flowops.references keyed by model; a watcher prints the alerts
published to flowops.drift.alerts, one model's when asked, each alert id once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from click.testing import CliRunner

from flowops.cli import cli
from flowops.data import read_profile
from flowops.events import (
    DriftAlert,
    EventProducer,
    EventTypes,
    ReferenceProfile,
    Topics,
    describe_topics,
    read_cloudevent_headers,
)

pytestmark = pytest.mark.integration

READY_TIMEOUT = 30.0  # a watcher is ready about 2 s after it starts
LINE_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    rows = [f"{20 + i % 47},{1000 + 17 * i},{['north', 'south'][i % 2]}" for i in range(1_000)]
    path.write_text("age,income,region\n" + "\n".join(rows) + "\n")
    return path


async def read_to_end(bootstrap: str, topic: str) -> list[Any]:
    """Every message of ``topic``: read until each partition's high watermark, as the
    fetches report it (Tansu 0.6's ListOffsets answer for the end can fall short)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        count = (await describe_topics(bootstrap, [topic]))[topic].partitions
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[Any] = []
        for _ in range(100):
            batches = await consumer.getmany(timeout_ms=200)
            found += [m for part in batches.values() for m in part]
            ends = [consumer.highwater(tp) for tp in tps]
            if None not in ends and all(
                [await consumer.position(tp) >= end for tp, end in zip(tps, ends, strict=True)]
            ):
                return found
    finally:
        await consumer.stop()
    raise AssertionError(f"did not reach the end of {topic}")


def test_publish_puts_the_profile_on_references_keyed_by_model(
    broker: str, data: Path, tmp_path: Path
) -> None:
    model = unique("publish")
    written = tmp_path / "profile.json"

    result = CliRunner().invoke(
        cli,
        ["drift", "baseline", "--data", str(data), "--model", model, "--publish",
         "--model-version", "7", "--bootstrap", broker, "-o", str(written)],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert f"published the profile of {model} (version 7) to flowops.references" in result.stderr
    messages = [
        m for m in asyncio.run(read_to_end(broker, Topics.REFERENCES)) if m.key == model.encode()
    ]
    assert len(messages) == 1
    [message] = messages
    event = ReferenceProfile.from_json(message.value)
    assert (event.model, event.version) == (model, "7")
    profile = read_profile(written)
    assert profile is not None
    assert event.to_profile().to_json() == profile.to_json()
    headers = read_cloudevent_headers(message.headers)
    assert (headers.type, headers.id) == (EventTypes.REFERENCE, event.event_id())
    partitions = list(range(3))
    assert message.partition == DefaultPartitioner()(model.encode(), partitions, partitions)
    info = asyncio.run(describe_topics(broker, [Topics.REFERENCES]))[Topics.REFERENCES]
    assert info.configs.get("cleanup.policy") == "compact"


def test_publishing_again_adds_the_new_profile_for_the_same_key(broker: str, data: Path) -> None:
    model = unique("again")
    for bins in ("5", "8"):
        args = ["drift", "baseline", "--data", str(data), "--model", model, "--publish"]
        result = CliRunner().invoke(cli, [*args, "--bootstrap", broker, "--bins", bins])
        assert result.exit_code == 0, result.output
    mine = [
        m for m in asyncio.run(read_to_end(broker, Topics.REFERENCES)) if m.key == model.encode()
    ]
    assert [ReferenceProfile.from_json(m.value).profile.bins for m in mine] == [5, 8]
    assert len({m.partition for m in mine}) == 1  # the latest per key wins on compaction


# -- watch -------------------------------------------------------------------------------


def alert(model: str, window: int, *, feature: str = "income") -> DriftAlert:
    return DriftAlert(
        alert_id=f"{model}/{feature}/ks/{window}",
        model=model,
        version="1",
        feature=feature,
        test="ks",
        statistic=0.25,
        pvalue=1e-6,
        threshold=0.05,
        window_start=1_000.0 + 60 * window,
        window_end=1_060.0 + 60 * window,
        window_index=window,
        n_reference=5_000,
        n_current=2_000,
        severity="critical",
        reference="profile",
        detected_at=1_061.0 + 60 * window,
    )


async def publish(bootstrap: str, alerts: list[DriftAlert]) -> None:
    """All in one producer batch per partition, as a worker sends them."""
    async with EventProducer(bootstrap, source="/tests/watch", linger_ms=50) as producer:
        for event in alerts:
            await producer.publish(event)


async def start_watch(*args: str, stderr: Path) -> asyncio.subprocess.Process:
    with stderr.open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flowops", "drift", "watch", "-o", "json", *args,
            stdout=asyncio.subprocess.PIPE, stderr=err,
            env={k: v for k, v in os.environ.items() if not k.startswith("FLOWOPS_")},
        )  # fmt: skip


async def wait_ready(proc: asyncio.subprocess.Process, stderr: Path) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
    while "flowops: watching flowops.drift.alerts" not in stderr.read_text():
        if proc.returncode is not None or asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"watch not ready (exit {proc.returncode}):\n{stderr.read_text()}")
        await asyncio.sleep(0.1)


async def next_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), LINE_TIMEOUT)
    assert line, "the watcher closed its output"
    return line.decode()


@pytest.mark.asyncio
async def test_watch_from_the_beginning_one_model_each_alert_once(
    broker: str, tmp_path: Path
) -> None:
    mine, other = unique("watch"), unique("other")
    a0, a1, a2 = alert(mine, 0), alert(mine, 1), alert(mine, 2)
    await publish(broker, [a0, a0, alert(other, 0), a1, a1, alert(other, 1), a2])

    stderr = tmp_path / "watch.err"
    proc = await start_watch(
        "--bootstrap", broker, "--from-beginning", "--model", mine, "--max", "3",
        "--timeout", "60", stderr=stderr,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), EXIT_TIMEOUT + 60)

    assert proc.returncode == 0, stderr.read_text()
    assert [DriftAlert.from_json(line) for line in out.decode().splitlines()] == [a0, a1, a2]
    assert stderr.read_text().splitlines()[-1] == "flowops: 3 alerts, 2 duplicates dropped"


@pytest.mark.asyncio
async def test_watch_prints_new_alerts_as_they_come_and_stops_on_ctrl_c(
    broker: str, tmp_path: Path
) -> None:
    model = unique("live")
    # before the watcher starts, in one batch: Tansu's end offset would replay the last two
    old = [alert(model, window, feature="age") for window in range(3)]
    await publish(broker, old)
    stderr = tmp_path / "watch.err"
    proc = await start_watch("--bootstrap", broker, stderr=stderr)
    try:
        await wait_ready(proc, stderr)
        new = [alert(model, 0), alert(model, 0), alert(model, 1)]
        await publish(broker, new)

        lines = [await next_line(proc), await next_line(proc)]
        shown = [DriftAlert.from_json(line) for line in lines]
        assert [a for a in shown if a.model == model] == [new[0], new[2]]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), EXIT_TIMEOUT)

    assert proc.returncode == 0, stderr.read_text()
    assert out == b""  # nothing after the two alerts: the duplicate was dropped
    assert "duplicate dropped" in stderr.read_text().splitlines()[-1]


@pytest.mark.asyncio
async def test_watch_stops_after_its_timeout(broker: str, tmp_path: Path) -> None:
    stderr = tmp_path / "watch.err"
    model = unique("quiet")
    proc = await start_watch(
        "--bootstrap", broker, "--model", model, "--timeout", "0.5", stderr=stderr
    )
    out, _ = await asyncio.wait_for(proc.communicate(), EXIT_TIMEOUT + READY_TIMEOUT)
    assert proc.returncode == 0, stderr.read_text()
    assert out == b""
    assert stderr.read_text().splitlines()[-1] == "flowops: 0 alerts"
