"""The monitors' state on Kafka: a compacted changelog topic, one partition per traffic
partition, written by the worker that owns the traffic partition.

Records of changelog partition ``p`` (``p`` = the traffic partition)::

    key ["monitor", model, version]  value zlib(JSON {"format", "next_offset", "monitor"})
    key ["position"]                 value zlib(JSON {"format", "next_offset"})
    key ["flush"]                    value zlib(JSON {"format", "start", "next_offset"})

``monitor`` is :meth:`ModelMonitor.to_state`; ``next_offset`` is the first traffic offset
*not* in it. A checkpoint writes the changed monitors, then the position; offsets are
committed only after the broker acknowledged all of them (see ``docs/streaming.md``).
``["flush"]`` is written before the partials of traffic offsets ``[start, next_offset)``
are sent to the merge stage: a reader restored after a crash sends that flush again,
offset for offset, so that the merge stage can tell it from new rows.

>>> from flowops.drift import WindowSpec
>>> record = encode_monitor_state(ModelMonitor("m", "1", WindowSpec("count", 10)), 42)
>>> restored = decode_partition([(monitor_key("m", "1"), record), (POSITION_KEY,
...                              encode_position(42))])
>>> restored.position, restored.monitors[("m", "1")][1], restored.errors
(42, 42, [])
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from flowops.config import KafkaSettings
from flowops.drift import ModelMonitor
from flowops.errors import BrokerError, InputError
from flowops.kafka_security import as_settings, client_options

__all__ = [
    "FLUSH_KEY",
    "MAX_RECORD_BYTES",
    "POSITION_KEY",
    "STATE_FORMAT",
    "Restored",
    "StateReader",
    "decode_partition",
    "encode_flush_intent",
    "encode_monitor_state",
    "encode_position",
    "ensure_state_topic",
    "monitor_key",
    "state_topic",
]

log = logging.getLogger("flowops.streams")

STATE_FORMAT: Final = 1
POSITION_KEY: Final = b'["position"]'
FLUSH_KEY: Final = b'["flush"]'
MAX_RECORD_BYTES: Final = 64 * 1024 * 1024
"""Largest state record: a window of many rows is big (the topic allows this size)."""
_TOPIC_EXISTS: Final = 36


def state_topic(app_id: str) -> str:
    """The changelog topic of an app's monitors (Faust's naming of table changelogs)."""
    return f"{app_id}-monitors-changelog"


def monitor_key(model: str, version: str) -> bytes:
    """The changelog key of a model version's monitor."""
    return orjson.dumps(["monitor", model, version])


def encode_monitor_state(monitor: ModelMonitor, next_offset: int) -> bytes:
    """A monitor's changelog value (zlib keeps a window's raw values small on the wire)."""
    document = {"format": STATE_FORMAT, "next_offset": next_offset, "monitor": monitor.to_state()}
    return zlib.compress(orjson.dumps(document), 1)


def encode_position(next_offset: int) -> bytes:
    """The partition's position record: every monitor holds the offsets before it."""
    return zlib.compress(orjson.dumps({"format": STATE_FORMAT, "next_offset": next_offset}), 1)


def encode_flush_intent(start: int, end: int) -> bytes:
    """The record written before a flush of traffic offsets ``[start, end)`` is sent."""
    document = {"format": STATE_FORMAT, "start": start, "next_offset": end}
    return zlib.compress(orjson.dumps(document), 1)


@dataclass
class Restored:
    """A changelog partition read back: the position, each monitor with its offset, and
    the last flush of partials begun (``(start, end)``)."""

    position: int | None = None
    flush: tuple[int, int] | None = None
    monitors: dict[tuple[str, str], tuple[ModelMonitor, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def decode_partition(records: Iterable[tuple[bytes | None, bytes | None]]) -> Restored:
    """The state in a changelog partition's records, read in order: the last value of a
    key wins (as compaction keeps it), a record without value deletes its key.

    A record that cannot be read is reported in ``errors`` and left out: its monitor
    starts again empty rather than stopping the worker.
    """
    latest: dict[bytes, bytes | None] = {}
    for key, value in records:
        if key is not None:
            latest[key] = value
    restored = Restored()
    for key, value in latest.items():
        if value is not None:
            _decode_one(key, value, restored)
    return restored


def _decode_one(key: bytes, value: bytes, restored: Restored) -> None:
    try:
        name = orjson.loads(key)
        document = orjson.loads(zlib.decompress(value))
        if document.get("format") != STATE_FORMAT:
            raise InputError(f"unsupported state format {document.get('format')!r}")
        next_offset = int(document["next_offset"])
        if name == ["position"]:
            restored.position = next_offset
        elif name == ["flush"]:
            restored.flush = (int(document["start"]), next_offset)
        elif isinstance(name, list) and len(name) == 3 and name[0] == "monitor":
            monitor = ModelMonitor.from_state(document["monitor"])
            restored.monitors[str(name[1]), str(name[2])] = (monitor, next_offset)
        else:
            raise InputError("unknown key")
    except (InputError, ValueError, KeyError, TypeError, zlib.error) as exc:
        restored.errors.append(f"state record {key!r}: {exc}")


async def ensure_state_topic(
    bootstrap: str | KafkaSettings,
    topic: str,
    partitions: int,
    replication: int = 1,
    *,
    compact: bool = True,
) -> None:
    """Create the compacted state topic with ``partitions`` partitions if it is missing
    (``compact=False``: a plain topic, as the partials topic between the stages)."""
    kafka = as_settings(bootstrap)
    admin = AIOKafkaAdminClient(**client_options(kafka), client_id="flowops-streams-admin")
    try:
        await admin.start()
        if topic in set(await admin.list_topics()):
            return
        configs = {"max.message.bytes": str(MAX_RECORD_BYTES)}
        if compact:
            configs["cleanup.policy"] = "compact"
        new = NewTopic(
            topic, num_partitions=partitions, replication_factor=replication, topic_configs=configs
        )
        response = await admin.create_topics([new])
        for name, code, message, *_ in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise BrokerError(kafka.bootstrap, f"cannot create topic {name!r}: {message}")
    finally:
        await admin.close()


class StateReader:
    """Reads changelog partitions from the start to their end, for a restore."""

    def __init__(self, bootstrap: str | KafkaSettings, topic: str, *, client_id: str) -> None:
        self.topic = topic
        self._options = {**client_options(as_settings(bootstrap)), "client_id": client_id}
        self._consumer: Any = None  # made in start(): aiokafka wants a running loop

    async def start(self) -> None:
        """Connect."""
        self._consumer = AIOKafkaConsumer(
            **self._options,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
            fetch_max_bytes=MAX_RECORD_BYTES,
        )
        await self._consumer.start()

    async def stop(self) -> None:
        """Disconnect."""
        await self._consumer.stop()

    async def read(self, partitions: Sequence[int], timeout: float = 60.0) -> dict[int, Restored]:
        """Each partition's state; BrokerError when the topic cannot be read in time."""
        if not partitions:
            return {}
        try:
            records = await asyncio.wait_for(self._read_records(partitions), timeout)
        except TimeoutError:
            raise BrokerError(
                self.topic, f"state partitions {list(partitions)} not read in {timeout} s"
            ) from None
        return {p: decode_partition(records[p]) for p in partitions}

    async def _read_records(
        self, partitions: Sequence[int]
    ) -> dict[int, list[tuple[bytes | None, bytes | None]]]:
        consumer = self._consumer
        tps = [TopicPartition(self.topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        records: dict[int, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in partitions}
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, messages in batch.items():
                records[tp.partition] += [(m.key, m.value) for m in messages]
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        consumer.unsubscribe()
        return records
