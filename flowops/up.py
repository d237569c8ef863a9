"""``flowops up``: the whole pipeline on one machine, until Ctrl-C.

:class:`LocalStack` starts, in order: the embedded Tansu broker (unless
``broker.embedded`` is false, when it uses the Kafka at ``kafka.bootstrap``), the
topics, and a stream worker as a child process; it prints each drift alert as it comes.
With ``demo`` it also publishes the demo model's reference profile and sends its traffic
(:mod:`flowops.demo`), whose incomes drift ``shift_after`` seconds in.

Ctrl-C (or SIGTERM, or the end of ``duration``) stops everything in reverse order; each
child gets SIGTERM, then SIGKILL after a bounded wait. A child that dies on its own
stops the stack with a :class:`~flowops.errors.ServiceError` ending in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml
from prometheus_client.parser import text_string_to_metric_families

from flowops import demo
from flowops.broker import HOST, EmbeddedBroker, port_in_use
from flowops.config import ModelStreamSettings, Settings, WindowSettings
from flowops.errors import ConfigError, ServiceError
from flowops.events import (
    DriftAlert,
    EventProducer,
    ReferenceProfile,
    Topics,
    TrafficProducer,
    ensure_topics,
)
from flowops.process import Child
from flowops.watch import AlertFilter, tail_alerts

__all__ = ["LocalStack", "UpOptions", "UpSummary"]

READY_TIMEOUT: Final = 90.0
"""Longest wait for the worker to join its group (Faust starts, then the traffic reader)."""
WORKER_STOP_TIMEOUT: Final = 20.0
PROGRESS_EVERY: Final = 5.0
DEMO_WINDOW_ROWS: Final = 4_000


@dataclass(frozen=True)
class UpOptions:
    """What ``flowops up`` runs besides the broker and the worker, and for how long."""

    demo: bool = False
    duration: float | None = None
    """Stop by itself after this many seconds (None: at Ctrl-C)."""
    workdir: Path | None = None
    """Where the worker's config, state and logs go (None: a new temporary folder)."""
    rate: int = 2_000
    """The demo's traffic, rows a second."""
    shift_after: float = 15.0
    """Seconds into the demo's traffic when incomes drift."""


@dataclass
class UpSummary:
    """What a run saw: the alerts, the demo's rows, when its drift was first detected."""

    alerts: list[DriftAlert] = field(default_factory=list)
    rows_sent: int = 0
    detected_after: float | None = None
    """Seconds from the demo's shift to the first income alert (None: not detected)."""


class LocalStack:
    """Runs the broker, the worker and (``demo``) the demo model until told to stop.

    ``say`` gets progress lines; ``show`` gets each new alert (the CLI prints both).
    """

    def __init__(
        self,
        settings: Settings,
        options: UpOptions,
        *,
        say: Callable[[str], None],
        show: Callable[[DriftAlert], None],
    ) -> None:
        self.settings = _with_demo_window(settings) if options.demo else settings
        self.options = options
        self.say = say
        self.show = show
        self.summary = UpSummary()
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="flowops-up-"))
        self._stop = asyncio.Event()
        self._traffic: demo.DemoTraffic | None = None
        self._shift_announced = False

    async def run(self) -> UpSummary:
        """Start everything, wait for Ctrl-C, SIGTERM or ``duration``, stop everything."""
        self._check_ports()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = f"cannot create {self.workdir}: {exc.strerror}"
            raise ConfigError("--workdir", reason) from None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        try:
            async with AsyncExitStack() as stack:
                bootstrap = await self._broker(stack)
                created = await ensure_topics(
                    bootstrap,
                    self.settings.kafka.partitions,
                    replication=self.settings.kafka.replication,
                )
                self.say(f"topics: created {', '.join(created)}" if created else "topics: present")
                worker = self._start_worker(stack, bootstrap)
                await self._until_ready(worker)
                await self._serve(stack, bootstrap, worker)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        self.say("stopped")
        return self.summary

    # -- children ----------------------------------------------------------------------

    def _check_ports(self) -> None:
        port = self.settings.streams.metrics_port
        if port_in_use(port):
            raise ConfigError(
                "streams.metrics_port",
                f"port {port} is already in use (an earlier `flowops up` or worker?); "
                "choose another with --metrics-port",
            )

    async def _broker(self, stack: AsyncExitStack) -> str:
        if not self.settings.broker.embedded:
            self.say(f"kafka: using {self.settings.kafka.bootstrap} (broker.embedded is false)")
            return self.settings.kafka.bootstrap
        broker = EmbeddedBroker(
            self.settings.broker.port,
            binary=self.settings.broker.tansu_bin,
            log=self.workdir / "broker.log",
        )
        self.say(f"broker: starting Tansu on {broker.bootstrap}")
        await stack.enter_async_context(broker)
        stack.callback(self.say, "broker: stopped")
        self.say(f"broker: ready (pid {broker.pid})")
        return broker.bootstrap

    def _start_worker(self, stack: AsyncExitStack, bootstrap: str) -> Child:
        config = self.workdir / "flowops.yaml"
        values = self.settings.model_dump(mode="json", exclude_none=True)
        values["kafka"]["bootstrap"] = bootstrap
        values["streams"].setdefault("datadir", str(self.workdir / "faust"))
        config.write_text(yaml.safe_dump(values, sort_keys=False))
        port = str(self.settings.streams.metrics_port)
        command = [sys.executable, "-m", "flowops", "streams", "worker", "--config", str(config)]
        command += ["--bootstrap", bootstrap, "--metrics-port", port]
        worker = Child(
            "stream worker",
            command,
            log=self.workdir / "worker.log",
            stop_timeout=WORKER_STOP_TIMEOUT,
        )
        worker.start()
        stack.push_async_callback(self._stop_child, worker)
        self.say(f"worker: started (pid {worker.pid}), log {worker.log_path}")
        return worker

    async def _stop_child(self, child: Child) -> None:
        code = await asyncio.to_thread(child.stop)
        killed = " (killed: it did not stop in time)" if code == -signal.SIGKILL else ""
        self.say(f"{child.name}: stopped{killed}")

    async def _until_ready(self, worker: Child) -> None:
        """Until the worker reads the traffic topic (its partitions gauge is above 0)."""
        deadline = time.monotonic() + READY_TIMEOUT
        port = self.settings.streams.metrics_port
        while await asyncio.to_thread(_assigned_partitions, port) < 1:
            _check_alive(worker)
            if self._stop.is_set():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    worker.name,
                    f"not ready after {READY_TIMEOUT:g} s; its log ends:\n{worker.log_tail()}",
                )
            await asyncio.sleep(0.25)
        self.say(f"worker: ready, metrics on http://{HOST}:{port}/metrics")

    # -- running -------------------------------------------------------------------------

    async def _serve(self, stack: AsyncExitStack, bootstrap: str, worker: Child) -> None:
        tasks = [asyncio.create_task(self._print_alerts(bootstrap), name="alerts")]
        if self.options.demo and not self._stop.is_set():
            producer = await self._start_demo(stack, bootstrap)
            tasks.append(asyncio.create_task(self._demo_traffic(producer), name="traffic"))
        tasks.append(asyncio.create_task(self._watch(worker), name="watch"))
        hint = f"; stopping after {self.options.duration:g} s" if self.options.duration else ""
        self.say(f"running; Ctrl-C stops everything{hint}")
        try:
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait(
                [stop, *tasks], timeout=self.options.duration, return_when="FIRST_COMPLETED"
            )
            for task in done:
                if task is not stop:
                    task.result()  # a task that ended on its own raises its error here
        finally:
            for task in [*tasks, stop]:
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
            self.say("stopping")

    async def _watch(self, worker: Child) -> None:
        """Raises when the worker dies on its own."""
        while True:
            _check_alive(worker)
            await asyncio.sleep(0.5)

    async def _print_alerts(self, bootstrap: str) -> None:
        kafka = self.settings.kafka.model_copy(update={"bootstrap": bootstrap})
        stream = tail_alerts(kafka, AlertFilter(), on_skip=self.say)  # drops repeated ids
        async with aclosing(stream):
            async for alert in stream:
                self._record(alert)

    def _record(self, alert: DriftAlert) -> None:
        self.summary.alerts.append(alert)
        self.show(alert)
        self._note_detection(alert)

    def _note_detection(self, alert: DriftAlert) -> None:
        shifted = self._traffic.shifted_at if self._traffic is not None else None
        if shifted is None or self.summary.detected_after is not None:
            return
        if alert.model == demo.MODEL and alert.feature == "income" and alert.window_end >= shifted:
            self._announce_shift()
            after = self.summary.detected_after = alert.detected_at - shifted
            took = f"{after * 1000:.0f} ms" if after < 1 else f"{after:.1f} s"
            self.say(f"demo: drift in income detected {took} after the shift ({alert.test})")

    def _announce_shift(self) -> None:
        if not self._shift_announced:
            self._shift_announced = True
            self.say("demo: incomes have shifted; income alerts should follow")

    # -- the demo ------------------------------------------------------------------------

    async def _start_demo(self, stack: AsyncExitStack, bootstrap: str) -> TrafficProducer:
        kafka = self.settings.kafka.model_copy(update={"bootstrap": bootstrap})
        profile = demo.reference_profile()
        async with EventProducer.from_settings(kafka, source="/flowops/up/demo") as producer:
            await producer.publish(ReferenceProfile.from_profile(profile, model=demo.MODEL))
        self.say(
            f"demo: published the reference profile of {demo.MODEL} "
            f"({len(profile.features)} features) to {Topics.REFERENCES}"
        )
        traffic = TrafficProducer.from_settings(kafka, source="/flowops/up/demo")
        await stack.enter_async_context(traffic)
        return traffic

    async def _demo_traffic(self, producer: TrafficProducer) -> None:
        options = self.options
        traffic = self._traffic = demo.DemoTraffic(options.rate, options.shift_after)
        self.say(
            f"demo: sending {options.rate:,} rows/s of {demo.MODEL} (windows of "
            f"{DEMO_WINDOW_ROWS:,} rows); incomes rise ~15% after {options.shift_after:g} s"
        )
        sender = asyncio.create_task(traffic.run(producer))
        next_progress = time.monotonic() + PROGRESS_EVERY
        try:
            while not sender.done():
                await asyncio.wait([sender], timeout=0.25)
                self.summary.rows_sent = traffic.rows
                if traffic.shifted_at is not None:
                    self._announce_shift()
                if time.monotonic() >= next_progress:
                    next_progress += PROGRESS_EVERY
                    self.say(f"demo: {traffic.rows:,} rows sent")
            sender.result()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


def _with_demo_window(settings: Settings) -> Settings:
    """The settings with a count window of :data:`DEMO_WINDOW_ROWS` for the demo model,
    unless the config gives it one."""
    streams = settings.streams
    if demo.MODEL in streams.models:
        return settings
    window = WindowSettings(kind="count", size=DEMO_WINDOW_ROWS)
    models = {**streams.models, demo.MODEL: ModelStreamSettings(window=window)}
    return settings.model_copy(update={"streams": streams.model_copy(update={"models": models})})


def _check_alive(child: Child) -> None:
    if not child.running:
        raise ServiceError(
            child.name,
            f"exited with code {child.returncode}; its log ends:\n{child.log_tail()}",
        )


def _assigned_partitions(port: int) -> float:
    """The worker's ``flowops_stream_partitions`` for the traffic topic (0: no answer)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "flowops_stream_partitions" and (
                sample.labels.get("topic") == Topics.TRAFFIC
            ):
                return sample.value
    return 0
