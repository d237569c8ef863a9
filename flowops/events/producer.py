"""Publishing FlowOps events to Kafka: a small async API over aiokafka.

:class:`TrafficProducer` lets a model server publish its traffic without the gateway::

    async with TrafficProducer("127.0.0.1:9092", source="/models/credit") as producer:
        await producer.send(TrafficRow("credit", "3", "r-1", time.time(),
                                       {"age": 41}, 0.12, 8.5, 200))
        await producer.send(batch)      # a TrafficBatch travels as one columnar message
        await producer.flush()          # waits for delivery; raises BrokerError on failure

Every message is keyed by model (so one model's traffic stays in one partition and one
worker), carries CloudEvents headers (binary mode), and is written with ``acks=all``.
:meth:`EventProducer.publish` sends the other events (alerts, profiles, health, dead
letters) to their own topics with their own keys.

``send`` and ``publish`` return once the message is queued: delivery is checked by
``flush()``, by leaving the ``async with`` block, and by the next ``send`` after a
failure, each of which raises :class:`~flowops.errors.BrokerError`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, Self, TypedDict, Unpack

from flowops.config import KafkaSettings
from flowops.errors import BrokerError
from flowops.events.headers import EventTypes, cloudevent_headers
from flowops.events.schemas import Event
from flowops.events.topics import Topics

if TYPE_CHECKING:  # numpy comes with them; EventProducer's users (the monitor) need none
    from flowops.events.labels import LabelBatch, LabelRow
    from flowops.events.traffic import TrafficBatch, TrafficRow

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Compression",
    "EventProducer",
    "LabelProducer",
    "ProducerClient",
    "ProducerOptions",
    "TrafficProducer",
    "kafka_error",
]

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
MAX_MESSAGE_BYTES: Final = 900_000
"""A batch encoding to more than this is split (Kafka's default limit is about 1 MB)."""


def kafka_error() -> type[Exception]:
    """aiokafka's ``KafkaError``, for ``except kafka_error():``, which Python evaluates only
    when an exception is being matched: importing this module costs no Kafka client, so
    the monitor (which may never publish) stays small."""
    from aiokafka.errors import KafkaError

    error: type[Exception] = KafkaError  # aiokafka is untyped
    return error


class ProducerClient(Protocol):
    """What :class:`EventProducer` needs of a Kafka producer: aiokafka's, or a fake."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        """Queue a message; the future is done when the broker has it."""
        ...


class ProducerOptions(TypedDict, total=False):
    """The keyword options of :class:`EventProducer`."""

    source: str
    client_id: str
    compression: Compression
    idempotence: bool
    linger_ms: int
    max_message_bytes: int
    client: ProducerClient
    security: KafkaSettings


class EventProducer:
    """An aiokafka producer that writes FlowOps events with CloudEvents headers.

    ``idempotence`` stays off by default: Tansu's memory engine rejects the
    InitProducerId request idempotent producers need; turn it on with Apache Kafka.
    The aiokafka producer is made by :meth:`start`, so the object can be built outside
    a running event loop; tests pass a fake ``client``.
    """

    def __init__(
        self,
        bootstrap: str = "127.0.0.1:9092",
        *,
        source: str = "/flowops/sdk",
        client_id: str = "flowops",
        compression: Compression = "lz4",
        idempotence: bool = False,
        linger_ms: int = 5,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        client: ProducerClient | None = None,
        security: KafkaSettings | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.source = source
        self.max_message_bytes = max_message_bytes
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "compression_type": None if compression == "none" else compression,
            "enable_idempotence": idempotence,
            "linger_ms": linger_ms,
        }
        self._client = client
        self._pending: set[asyncio.Future[Any]] = set()
        self._failure: BaseException | None = None

    @classmethod
    def from_settings(cls, kafka: KafkaSettings, *, source: str = "/flowops/sdk") -> Self:
        """A producer configured by the ``kafka`` settings section."""
        return cls(
            kafka.bootstrap,
            source=source,
            client_id=kafka.client_id,
            compression=kafka.compression,
            idempotence=kafka.idempotence,
            security=kafka,
        )

    async def start(self) -> None:
        """Connect to the broker; raises BrokerError if it cannot be reached, naming the
        setting at fault when ``security`` (the ``kafka`` settings) is given and TLS or
        SASL is the cause."""
        if self._client is None:
            from aiokafka import AIOKafkaProducer

            self._client = AIOKafkaProducer(**self._options, **self._security_options())
        try:
            await self._client.start()
        except Exception as exc:  # KafkaError; a refused SCRAM login is a KeyError in aiokafka
            await self._client.stop()
            raise await self._diagnosis() or BrokerError(
                self.bootstrap, f"cannot start a producer: {exc}{self._hint()}"
            ) from None

    def _security_options(self) -> dict[str, Any]:
        if self.security is None:
            return {}
        from flowops.kafka_security import client_options

        return {k: v for k, v in client_options(self.security).items() if k != "bootstrap_servers"}

    async def _diagnosis(self) -> BrokerError | None:
        if self.security is None:
            return None
        from flowops.kafka_security import diagnose

        return await diagnose(self.security)

    async def stop(self) -> None:
        """Send what is queued and disconnect."""
        if self._client is not None:
            await self._client.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self.stop()

    async def publish(self, event: Event) -> None:
        """Queue an alert, profile, health event or dead letter on its topic."""
        await self.send_message(
            event.TOPIC, event.kafka_key(), event.to_json(), event.EVENT_TYPE, event.event_id()
        )

    async def send_message(
        self, topic: str, key: bytes, value: bytes, event_type: str, event_id: str
    ) -> None:
        """Queue one message with CloudEvents headers; raises an earlier failure first."""
        self._raise_failure()
        if self._client is None:
            raise RuntimeError("start the producer first (or use `async with`)")
        headers = cloudevent_headers(event_type, self.source, event_id, datetime.now(UTC))
        try:
            future = await self._client.send(topic, value, key=key, headers=headers)
        except kafka_error() as exc:
            raise BrokerError(
                self.bootstrap, f"cannot send to {topic}: {exc}{self._hint()}"
            ) from None
        self._pending.add(future)
        future.add_done_callback(self._delivered)

    async def flush(self) -> None:
        """Wait until every queued message is delivered; raise the first failure."""
        if self._pending:
            await asyncio.wait(list(self._pending))
        self._raise_failure()

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise BrokerError(
                self.bootstrap, f"a message was not delivered: {failure}{self._hint()}"
            )

    def _hint(self) -> str:
        if not self._options["enable_idempotence"]:
            return ""
        return (
            " (idempotent producers need Apache Kafka: Tansu's memory engine refuses them;"
            " set kafka.idempotence to false)"
        )


class TrafficProducer(EventProducer):
    """Publishes traffic to ``flowops.traffic``, keyed by model.

    A :class:`TrafficBatch` (or a list of rows, gathered into one batch message per
    model version) goes out as columnar messages, split when one would pass
    ``max_message_bytes``.
    """

    def __init__(
        self,
        bootstrap: str = "127.0.0.1:9092",
        *,
        topic: str = Topics.TRAFFIC,
        **options: Unpack[ProducerOptions],
    ) -> None:
        super().__init__(bootstrap, **options)
        self.topic = topic

    async def send(self, traffic: TrafficRow | TrafficBatch | Sequence[TrafficRow]) -> None:
        """Queue a row, a batch, or rows (sent as one batch per model version; encoded
        from the rows, without numpy, for the gateway)."""
        from flowops.events.codec import encode_traffic
        from flowops.events.traffic import TrafficBatch, TrafficRow

        if isinstance(traffic, TrafficRow):
            await self._send_encoded(traffic.model, encode_traffic(traffic))
            return
        if isinstance(traffic, TrafficBatch):
            for model, payload in self._messages(traffic):
                await self._send_encoded(model, payload)
            return
        for rows in _row_groups(traffic):
            for payload in self._row_messages(rows):
                await self._send_encoded(rows[0].model, payload)

    def _row_messages(self, rows: Sequence[TrafficRow]) -> Iterator[bytes]:
        """The rows' messages, halving them until each fits ``max_message_bytes``."""
        from flowops.events.codec import encode_traffic_rows

        payload = encode_traffic_rows(rows)
        if len(payload) <= self.max_message_bytes or len(rows) == 1:
            yield payload
            return
        middle = len(rows) // 2
        yield from self._row_messages(rows[:middle])
        yield from self._row_messages(rows[middle:])

    def _messages(self, batch: TrafficBatch) -> Iterator[tuple[str, bytes]]:
        """The batch's messages, halving it until each fits ``max_message_bytes``."""
        from flowops.events.codec import encode_traffic

        payload = encode_traffic(batch)
        if len(payload) <= self.max_message_bytes or batch.rows == 1:
            yield batch.model, payload
            return
        middle = batch.rows // 2
        yield from self._messages(batch.slice(0, middle))
        yield from self._messages(batch.slice(middle, batch.rows))

    async def _send_encoded(self, model: str, payload: bytes) -> None:
        event_id = os.urandom(16).hex()  # random like uuid4, at a tenth of its cost
        await self.send_message(self.topic, model.encode(), payload, EventTypes.TRAFFIC, event_id)


class LabelProducer(EventProducer):
    """Publishes labels to ``flowops.labels``, keyed by model (like traffic, so a model's
    labels and its predictions can meet in one worker).

    A :class:`~flowops.events.labels.LabelBatch` (or a list of rows, gathered into one
    batch per model and version) goes out as columnar messages, halved until each fits
    ``max_message_bytes``.
    """

    def __init__(
        self,
        bootstrap: str = "127.0.0.1:9092",
        *,
        topic: str = Topics.LABELS,
        **options: Unpack[ProducerOptions],
    ) -> None:
        super().__init__(bootstrap, **options)
        self.topic = topic

    async def send(self, labels: LabelRow | LabelBatch | Sequence[LabelRow]) -> None:
        """Queue a row, a batch, or rows (sent as one batch per model and version)."""
        from flowops.events.labels import LabelRow, encode_labels

        if isinstance(labels, LabelRow):
            await self._send_encoded(labels.model, encode_labels(labels))
            return
        for batch in _label_batches(labels):
            for payload in self._messages(batch):
                await self._send_encoded(batch.model, payload)

    def _messages(self, batch: LabelBatch) -> Iterator[bytes]:
        from flowops.events.labels import encode_labels

        payload = encode_labels(batch)
        if len(payload) <= self.max_message_bytes or batch.rows == 1:
            yield payload
            return
        middle = batch.rows // 2
        yield from self._messages(batch.slice(0, middle))
        yield from self._messages(batch.slice(middle, batch.rows))

    async def _send_encoded(self, model: str, payload: bytes) -> None:
        event_id = os.urandom(16).hex()
        await self.send_message(self.topic, model.encode(), payload, EventTypes.LABEL, event_id)


def _label_batches(labels: LabelBatch | Sequence[LabelRow]) -> list[LabelBatch]:
    from flowops.events.labels import LabelBatch

    if isinstance(labels, LabelBatch):
        return [labels]
    groups: dict[tuple[str, str | None], list[LabelRow]] = {}
    for row in labels:
        groups.setdefault((row.model, row.version), []).append(row)
    return [LabelBatch.from_rows(rows) for rows in groups.values()]


def _row_groups(rows: Sequence[TrafficRow]) -> list[list[TrafficRow]]:
    """Rows as one list per (model, version), in order of first row."""
    groups: dict[tuple[str, str], list[TrafficRow]] = {}
    for row in rows:
        groups.setdefault((row.model, row.version), []).append(row)
    return list(groups.values())
