"""A bounded queue and a task that sends it to Kafka: what the FlowOps publishers share.

Code that must never wait (a request handler, a monitoring round) hands items to a
:class:`QueuedPublisher` with a plain function, ``_offer``: it appends the item to an
in-memory queue, or, when ``queue_size`` items are waiting already, drops it and counts
it. A background task sends the queue in *rounds*:

1. wait for an item, then up to ``linger`` seconds for ``batch_size`` items; take at
   most ``batch_size`` items off the queue;
2. hand them to the :class:`Sink` (opened first when it is not connected), which returns
   once the broker has them;
3. when that fails, *hold* the round: close the sink, wait (``retry_backoff``, doubling
   up to ``retry_backoff_max``), open it again and send the same items, until they are
   delivered. Meanwhile ``_offer`` keeps queueing up to the bound.

So every queued item is delivered once Kafka is back, in order, at least once.
:meth:`QueuedPublisher.stop` refuses new items, gives the queue ``drain_timeout`` seconds
and counts the rest as dropped. Items the publisher's ``check`` refuses with an
:class:`~flowops.errors.EventError` are dropped and counted as ``invalid``.

A publisher subclasses :class:`QueuedPublisher` with its item type, its settings, its
:class:`SenderNames` and the plain method its callers use; its Kafka sink subclasses
:class:`KafkaSink`, which creates the topic, makes a producer per connection and waits
for the broker's acknowledgements.

>>> import asyncio
>>> from types import SimpleNamespace
>>> settings = SimpleNamespace(
...     enabled=True, queue_size=2, drain_timeout=5.0, retry_backoff=0.1, retry_backoff_max=1.0
... )
>>> class Printed:
...     async def open(self): pass
...     async def send(self, items): print(items)
...     async def close(self): pass
>>> class Words(QueuedPublisher[str]):
...     names = SenderNames(logging.getLogger("demo"), "words", "words", "demo-words")
...     def offer(self, word): return self._offer(word)
>>> async def demo():
...     words = Words(settings, Printed(), batch_size=10)
...     print([words.offer(word) for word in ["a", "b", "c"]])  # the bound is 2
...     await words.start()
...     return await words.stop()
>>> asyncio.run(demo())
[True, True, False]
['a', 'b']
0
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from flowops.config import KafkaSettings
from flowops.errors import BrokerError, EventError, ServiceError
from flowops.events.producer import EventProducer, ProducerClient, kafka_error
from flowops.events.topics import TopicSpec, ensure_topics

__all__ = [
    "KafkaSink",
    "KafkaSinkSettings",
    "QueuedPublisher",
    "SenderNames",
    "SenderSettings",
    "SenderStats",
    "Sink",
    "ordered_backoff",
]

_T = TypeVar("_T")
_T_contra = TypeVar("_T_contra", contravariant=True)
_P = TypeVar("_P", bound=EventProducer)
_S = TypeVar("_S", bound="SenderStats")
_Settings = TypeVar("_Settings", bound="SenderSettings")
_Sleep = Callable[[float], Awaitable[Any]]


class SenderSettings(Protocol):
    """The settings a :class:`QueuedPublisher` reads (a publisher's pydantic model)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def queue_size(self) -> int: ...
    @property
    def drain_timeout(self) -> float: ...
    @property
    def retry_backoff(self) -> float: ...
    @property
    def retry_backoff_max(self) -> float: ...


class KafkaSinkSettings(Protocol):
    """The settings a :class:`KafkaSink` reads."""

    @property
    def request_timeout(self) -> float: ...
    @property
    def create_topic(self) -> bool: ...


def ordered_backoff(settings: _Settings) -> _Settings:
    """A settings model's check that ``retry_backoff_max`` is not below ``retry_backoff``;
    use it as ``_backoff_order = model_validator(mode="after")(ordered_backoff)``."""
    if settings.retry_backoff_max < settings.retry_backoff:
        raise ValueError(
            f"retry_backoff_max ({settings.retry_backoff_max:g}) is below "
            f"retry_backoff ({settings.retry_backoff:g})"
        )
    return settings


class Sink(Protocol[_T_contra]):
    """Where rounds go: a :class:`KafkaSink`, or a fake in tests.

    ``send`` returns once the items are stored, and raises otherwise (any exception; an
    :class:`~flowops.errors.EventError` means an item cannot be encoded). After a failure
    the publisher calls ``close``, and ``open`` before it tries again.
    """

    async def open(self) -> None:
        """Connect; raise if the broker cannot be reached."""
        ...

    async def send(self, items: Sequence[_T_contra], /) -> None:
        """Deliver ``items``, or raise."""
        ...

    async def close(self) -> None:
        """Disconnect; must not raise."""
        ...


@dataclass(frozen=True)
class SenderNames:
    """How a publisher is named in its logs and tasks."""

    log: logging.Logger
    label: str
    """What its log lines start with: ``"traffic publisher"``."""
    noun: str
    """What its items are called in them: ``"rows"``."""
    task: str
    """The sender task's name."""


@dataclass(frozen=True)
class SenderStats:
    """A publisher's counters at one moment (items, not messages), for ``/metrics``."""

    queued: int
    """Items waiting in the queue."""
    in_flight: int
    """Items of the round being sent, or held to be sent again."""
    sent: int
    """Items the broker acknowledged."""
    dropped: int
    """Items that will not be published: the queue was full, or the publisher stopped."""
    invalid: int
    """Items that cannot be published (not counted in ``dropped``)."""
    send_errors: int
    """Rounds that failed (each is tried again)."""
    connected: bool
    """Whether the last round, or connection, succeeded."""


class QueuedPublisher(Generic[_T]):
    """The bounded queue of ``T`` and the task that sends it; see the module docstring.

    Subclasses set :attr:`names` and give their callers a plain method that calls
    :meth:`_offer`, from the event loop's thread. Items offered before :meth:`start`
    wait in the queue. ``check`` raises :class:`~flowops.errors.EventError` for an item
    that cannot be encoded; without it, such a failure is retried like any other.
    """

    names: ClassVar[SenderNames]

    def __init__(
        self,
        settings: SenderSettings,
        sink: Sink[_T],
        *,
        batch_size: int,
        linger: float = 0.0,
        check: Callable[[_T], object] | None = None,
        sleep: _Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._batch_size = batch_size
        self._linger = linger
        self._check = check
        self._sleep = sleep
        self._queue: deque[_T] = deque()
        self._held: list[_T] = []
        self._accepting = settings.enabled
        self._closing = False
        self._connected = False
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.invalid = 0
        self.send_errors = 0

    def _offer(self, item: _T) -> bool:
        """Queue ``item``; ``False`` (and counted, unless disabled) when it is dropped."""
        if not self._accepting:
            if self.settings.enabled:
                self.dropped += 1
            return False
        queue = self._queue
        if len(queue) >= self.settings.queue_size:
            self.dropped += 1
            return False
        queue.append(item)
        self._wake.set()
        if len(queue) >= self._batch_size:
            self._full.set()
        return True

    @property
    def queue_depth(self) -> int:
        """Items waiting in the queue."""
        return len(self._queue)

    def stats(self) -> SenderStats:
        """The counters now."""
        return self._stats(SenderStats)

    def _stats(self, kind: type[_S]) -> _S:
        return kind(
            queued=len(self._queue),
            in_flight=len(self._held),
            sent=self.sent,
            dropped=self.dropped,
            invalid=self.invalid,
            send_errors=self.send_errors,
            connected=self._connected,
        )

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sender task; returns at once, whether Kafka answers or not."""
        if self._task is None and self.settings.enabled:
            self._task = asyncio.create_task(self._run(), name=self.names.task)

    async def stop(self, drain_timeout: float | None = None) -> int:
        """Refuse new items, send what is queued for up to ``drain_timeout`` seconds
        (``settings.drain_timeout`` by default), disconnect; return the items left
        undelivered (counted as dropped)."""
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        self._accepting = False
        self._closing = True
        self._wake.set()
        self._full.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._disconnect()
        lost = len(self._queue) + len(self._held)
        if lost:
            names = self.names
            names.log.warning("%s: stopped with %d %s undelivered", names.label, lost, names.noun)
        self.dropped += lost
        self._queue.clear()
        self._held = []
        return lost

    # -- the sender task -------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.settings.retry_backoff
        failures = 0  # in a row
        while True:
            if not self._held:
                self._held = await self._next_round()
                if not self._held:
                    return  # closing, and nothing left
            try:
                await self._deliver(self._held)
            except Exception as exc:
                failures += 1
                await self._failed(exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max)
                continue
            if failures:
                self.names.log.info(
                    "%s: sending resumed after %d failed tries", self.names.label, failures
                )
            backoff, failures = self.settings.retry_backoff, 0
            self.sent += len(self._held)
            self._held = []

    async def _next_round(self) -> list[_T]:
        """Up to ``batch_size`` items, after lingering for more; ``[]`` once closing."""
        queue, batch_size = self._queue, self._batch_size
        while not queue:
            if self._closing:
                return []
            self._wake.clear()
            await self._wake.wait()
        if len(queue) < batch_size and self._linger and not self._closing:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._linger)
        return [queue.popleft() for _ in range(min(len(queue), batch_size))]

    async def _deliver(self, items: list[_T]) -> None:
        if not self._connected:
            await self._sink.open()
            self._connected = True
        try:
            await self._sink.send(items)
        except EventError:
            if self._check is None:
                raise
            self._held = items = self._valid(items, self._check)
            if items:
                await self._sink.send(items)

    def _valid(self, items: list[_T], check: Callable[[_T], object]) -> list[_T]:
        """The items ``check`` takes; the others are counted and logged (once a round)."""
        valid: list[_T] = []
        errors: list[EventError] = []
        for item in items:
            try:
                check(item)
            except EventError as exc:
                errors.append(exc)
            else:
                valid.append(item)
        if errors:
            self.invalid += len(errors)
            names = self.names
            names.log.error(
                "%s: %d invalid %s dropped: %s", names.label, len(errors), names.noun, errors[0]
            )
        return valid

    async def _failed(self, exc: Exception, backoff: float) -> None:
        """Disconnect, count the failure, and say so (the first time, then quietly)."""
        first = self._connected or self.send_errors == 0
        await self._disconnect()
        self.send_errors += 1
        names = self.names
        names.log.log(
            logging.WARNING if first else logging.DEBUG,
            "%s: sending failed (%s); holding %d %s, %d queued; retrying in %g s",
            names.label,
            str(exc) or type(exc).__name__,
            len(self._held),
            names.noun,
            len(self._queue),
            backoff,
            exc_info=_unexpected(exc),
        )

    async def _disconnect(self) -> None:
        if self._connected:
            self._connected = False
            await self._sink.close()


def _unexpected(exc: Exception) -> bool:
    """Whether ``exc`` is not a broker failure (then its traceback is logged: a bug)."""
    return not isinstance(exc, kafka_error() | ServiceError | OSError | TimeoutError)


class KafkaSink(ABC, Generic[_T, _P]):
    """Rounds of ``T`` to ``topic`` through an :class:`~flowops.events.EventProducer`.

    Each :meth:`open` creates the topic when it is missing (unless ``create_topic`` is
    off) and makes a new producer; :meth:`send` queues a round's messages and waits for
    the broker's acknowledgements. Subclasses set :attr:`names`, make the producer
    (:meth:`_make_producer`) and queue the messages (:meth:`_publish`). ``client`` makes
    the aiokafka producer (tests pass a fake); ``client_id`` is the one it gets.
    """

    names: ClassVar[SenderNames]

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: KafkaSinkSettings,
        *,
        source: str,
        topic: str,
        client_id: str,
        client: Callable[[], ProducerClient] | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.source = source
        self.topic = topic
        self.client_id = client_id
        self._client = client or self._aiokafka
        self._producer: _P | None = None

    async def open(self) -> None:
        kafka = self.kafka
        if self.settings.create_topic:
            await ensure_topics(
                kafka,
                kafka.partitions,
                replication=kafka.replication,
                topics=[TopicSpec(self.topic)],
                timeout=self.settings.request_timeout,
            )
        producer = self._make_producer(self._client())
        try:
            await producer.start()
        except BrokerError:
            from flowops.kafka_security import diagnose

            cause = await diagnose(kafka, self.settings.request_timeout)
            if cause is None:
                raise
            raise cause from None  # the setting to fix (a password, a certificate)
        self._producer = producer

    async def send(self, items: Sequence[_T]) -> None:
        if self._producer is None:
            raise RuntimeError("open the sink first")
        await self._publish(self._producer, items)
        await self._producer.flush()

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), self.settings.request_timeout)
        except Exception as exc:  # closing a producer to a broker that is gone: say, go on
            self.names.log.debug("%s: closing the producer: %s", self.names.label, exc)

    @abstractmethod
    def _make_producer(self, client: ProducerClient) -> _P:
        """A producer to this sink's topic over ``client``."""

    @abstractmethod
    async def _publish(self, producer: _P, items: Sequence[_T]) -> None:
        """Queue the messages of ``items`` on ``producer``."""

    def _aiokafka(self) -> ProducerClient:
        """An aiokafka producer as :class:`~flowops.events.EventProducer` makes one, with
        this sink's timeout and no linger (each round waits for its acknowledgement)."""
        from aiokafka import AIOKafkaProducer

        from flowops.kafka_security import client_options

        kafka = self.kafka
        client: ProducerClient = AIOKafkaProducer(
            **client_options(kafka),
            client_id=self.client_id,
            acks="all",
            compression_type=None if kafka.compression == "none" else kafka.compression,
            enable_idempotence=kafka.idempotence,
            linger_ms=0,
            request_timeout_ms=int(self.settings.request_timeout * 1000),
        )
        return client
