"""``flowops up``: the whole pipeline on one machine, until Ctrl-C.

:class:`LocalStack` starts, in order: the embedded Tansu broker (unless
``broker.embedded`` is false, when it uses the Kafka at ``kafka.bootstrap``), the
topics, a stream worker, and the gateway (``flowops gateway``) when it has routes to
serve, each as a child process; it prints each drift alert as it comes. The routes are
the config's ``gateway.routes``; ``demo`` adds one, ``/models/credit-demo``, in front of
the demo model server (:mod:`flowops.demo_model`, another child), publishes the demo
model's reference profile and sends its traffic through the gateway as HTTP requests
(:mod:`flowops.demo`); incomes drift ``shift_after`` seconds in. Without routes and
without ``demo`` no gateway runs.

Ctrl-C (or SIGTERM, or the end of ``duration``) stops everything in reverse order; each
child gets SIGTERM, then SIGKILL after a bounded wait. A child that dies on its own
stops the stack with a :class:`~flowops.errors.ServiceError` ending in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from flowops import demo
from flowops.broker import HOST, EmbeddedBroker, free_port, port_in_use
from flowops.config import KafkaSettings, ModelStreamSettings, Settings, WindowSettings
from flowops.errors import ConfigError, ServiceError
from flowops.events import DriftAlert, EventProducer, ReferenceProfile, Topics, ensure_topics
from flowops.gateway.config import GatewaySettings, gateway_settings
from flowops.monitor.config import monitor_settings
from flowops.process import Child
from flowops.watch import AlertFilter, tail_alerts

__all__ = [
    "DEMO_PREFIX",
    "DEMO_WINDOW_ROWS",
    "GATEWAY_STOP_TIMEOUT",
    "HOST",
    "MODEL_STOP_TIMEOUT",
    "MONITOR_INTERVAL",
    "MONITOR_STOP_TIMEOUT",
    "PROGRESS_EVERY",
    "READY_TIMEOUT",
    "RESTART_BACKOFF",
    "RESTART_BACKOFF_MAX",
    "SERVER_READY_TIMEOUT",
    "STABLE_AFTER",
    "WORKER_STOP_TIMEOUT",
    "LocalStack",
    "UpOptions",
    "UpSummary",
    "curl_example",
]

READY_TIMEOUT: Final = 90.0
"""Longest wait for the worker to join its group (Faust starts, then the traffic reader)."""
SERVER_READY_TIMEOUT: Final = 30.0
"""Longest wait for the gateway or the demo model to answer HTTP."""
WORKER_STOP_TIMEOUT: Final = 20.0
GATEWAY_STOP_TIMEOUT: Final = 20.0
"""The gateway finishes requests in flight (10 s) and delivers its queued events (5 s)."""
MODEL_STOP_TIMEOUT: Final = 5.0
MONITOR_STOP_TIMEOUT: Final = 15.0
"""The agent lets its last alert send finish and delivers its health events (5 s)."""
MONITOR_INTERVAL: Final = 5.0
RESTART_BACKOFF: Final = 1.0
"""Seconds before the first restart of a child that died; doubled at each death after."""
RESTART_BACKOFF_MAX: Final = 30.0
STABLE_AFTER: Final = 60.0
"""A child that has run this many seconds since its restart starts its backoff again."""
"""The agent's beat under ``up`` unless the config's monitor section sets one."""
PROGRESS_EVERY: Final = 5.0
DEMO_WINDOW_ROWS: Final = 4_000
DEMO_PREFIX: Final = f"/models/{demo.MODEL}"
"""The gateway route of the demo model; it serves ``{DEMO_PREFIX}/invocations``."""
_CONFIG_HEADER: Final = (
    "# Written by `flowops up`: the merged settings (file, FLOWOPS_*, flags).\n"
    "# The stream worker and the gateway it started read this file.\n"
)
_ANY_HOST: Final = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
_NOT_SECURITY: Final = frozenset(
    name
    for name in KafkaSettings.model_fields
    if not name.startswith(("security_", "sasl_", "ssl_")) and name != "bootstrap"
)


@dataclass(frozen=True)
class UpOptions:
    """What ``flowops up`` runs besides the broker and the worker, and for how long."""

    demo: bool = False
    duration: float | None = None
    """Stop by itself after this many seconds (None: at Ctrl-C)."""
    workdir: Path | None = None
    """Where the config, the worker's state and the logs go (None: a new temporary folder)."""
    rate: int = 2_000
    """The demo's traffic, rows a second."""
    shift_after: float = 15.0
    """Seconds into the demo's traffic when incomes drift."""
    gateway_port: int | None = None
    """The gateway's port (None: the port of ``gateway.listen``, 8080 by default)."""
    model_port: int | None = None
    """The demo model server's port on 127.0.0.1 (None: a free one)."""
    monitor_port: int | None = None
    """The monitoring agent's port (None: the port of ``monitor.listen``, 9108 by default)."""


@dataclass
class UpSummary:
    """What a run saw: the alerts, the demo's rows, when its drift was first detected."""

    alerts: list[DriftAlert] = field(default_factory=list)
    rows_sent: int = 0
    """Rows of the demo's requests the gateway answered (with the model's predictions)."""
    rows_failed: int = 0
    """Rows of the demo's requests that failed."""
    detected_after: float | None = None
    """Seconds from the demo's shift to the first income alert (None: not detected)."""
    gateway_url: str | None = None
    """Where the gateway served (None: no gateway ran)."""
    monitor_url: str | None = None
    """Where the monitoring agent served /metrics and /status."""


@dataclass(frozen=True)
class _Plan:
    """What :meth:`LocalStack.run` starts besides the broker and the worker."""

    gateway: dict[str, Any] | None = None
    """The gateway section to write to the config (None: no gateway)."""
    routes: str = ""
    """The routes, for the progress line."""
    listen: str | None = None
    model_port: int | None = None
    """The demo model server's port (None: no demo)."""
    monitor_listen: str = ""
    """Where the monitoring agent serves."""


class LocalStack:
    """Runs the broker, the worker, the gateway, (``demo``) the demo model and the
    monitoring agent until told to stop.

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
        # made in run(), once the ports are known to be free: a start refused at once
        # leaves no empty folder behind
        self.workdir = options.workdir or _new_temporary_folder()
        self._stop = asyncio.Event()
        self._traffic: demo.DemoTraffic | None = None
        self._shift_announced = False
        self._embedded: EmbeddedBroker | None = None

    async def run(self) -> UpSummary:
        """Start everything, wait for Ctrl-C, SIGTERM or ``duration``, stop everything."""
        plan = self._plan()
        self._check_ports(plan)
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
                    self._kafka(bootstrap),
                    self.settings.kafka.partitions,
                    replication=self.settings.kafka.replication,
                )
                self.say(f"topics: created {', '.join(created)}" if created else "topics: present")
                config = self._write_config(bootstrap, plan)
                worker = self._start_worker(stack, config, bootstrap)
                children = [worker, *await self._start_servers(stack, config, bootstrap, plan)]
                await self._until_ready(worker, children)
                if not self._stop.is_set():
                    children.append(await self._start_monitor(stack, config, plan))
                await self._serve(stack, bootstrap, children)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        self.say("stopped")
        return self.summary

    # -- what to start -----------------------------------------------------------------

    def _plan(self) -> _Plan:
        """The gateway's section and the demo model's port; ConfigError before any start."""
        options = self.options
        model_port = (options.model_port or free_port()) if options.demo else None
        model_url = f"http://{HOST}:{model_port}" if model_port is not None else None
        section = _gateway_section(self.settings, options.gateway_port, model_url)
        monitor = monitor_settings(self.settings)  # the user's section: errors name its keys
        host, _, port = monitor.listen.rpartition(":")
        monitor_listen = f"{host}:{options.monitor_port or port}"
        if section is None:
            return _Plan(model_port=model_port, monitor_listen=monitor_listen)
        gateway, checked = section
        routes = ", ".join(f"{route.name} {route.prefix}" for route in checked.routes)
        return _Plan(gateway, routes, checked.listen, model_port, monitor_listen)

    def _check_ports(self, plan: _Plan) -> None:
        """Every port the stack is to listen on is free; one ConfigError naming all those
        that are taken, each with the option that moves it."""
        taken = [
            f"{port} ({key}; {flag})"
            for key, flag, host, port in self._ports(plan)
            if ":" not in host and port_in_use(port, host)
        ]
        if taken:
            raise ConfigError(
                "ports",
                f"already in use (an earlier `flowops up` still running?): {', '.join(taken)}",
            )

    def _ports(self, plan: _Plan) -> list[tuple[str, str, str, int]]:
        """(setting, option, host, port) of each listener the stack starts."""
        ports = [
            ("streams.metrics_port", "--metrics-port", HOST, self.settings.streams.metrics_port)
        ]
        if self.settings.broker.embedded:
            ports.append(("broker.port", "--broker-port", HOST, self.settings.broker.port))
        for key, flag, listen in (
            ("gateway.listen", "--gateway-port", plan.listen),
            ("monitor.listen", "--monitor-port", plan.monitor_listen),
        ):
            if listen:
                host, _, port = listen.rpartition(":")
                ports.append((key, flag, "0.0.0.0" if host in _ANY_HOST else host, int(port)))
        if self.options.model_port is not None:
            ports.append(("--model-port", "--model-port", HOST, self.options.model_port))
        return ports

    def _write_config(self, bootstrap: str, plan: _Plan) -> Path:
        """The merged settings, as the worker and the gateway are to read them."""
        config = self.workdir / "flowops.yaml"
        values = self.settings.model_dump(mode="json", exclude_none=True)
        values["kafka"] = self._kafka(bootstrap).model_dump(mode="json", exclude_none=True)
        values["streams"].setdefault("datadir", str(self.workdir / "faust"))
        if plan.gateway is not None:
            values["gateway"] = plan.gateway
        values["monitor"] = self._monitor_section(bootstrap, plan)
        config.write_text(_CONFIG_HEADER + yaml.safe_dump(values, sort_keys=False))
        return config

    def _monitor_section(self, bootstrap: str, plan: _Plan) -> dict[str, Any]:
        """The config's monitor section plus the stack's own targets: Kafka, the worker,
        the gateway and the demo model."""
        section = dict(self.settings.monitor)
        section["listen"] = plan.monitor_listen
        section.setdefault("interval", MONITOR_INTERVAL)
        section.setdefault("kafka", {"bootstrap": bootstrap})
        worker = f"http://{HOST}:{self.settings.streams.metrics_port}/metrics"
        services = [{"name": "worker", "url": worker, "protocol": "stream_worker"}]
        if plan.listen is not None:
            services.append({"name": "gateway", "url": f"{_local_url(plan.listen)}/readyz"})
        section["services"] = [*section.get("services", []), *services]
        if plan.model_port is not None:
            model = {"name": demo.MODEL, "url": f"http://{HOST}:{plan.model_port}"}
            servers = section.get("model_servers", [])
            section["model_servers"] = [*servers, {**model, "protocol": "mlflow"}]
        return section

    # -- children ----------------------------------------------------------------------

    def _kafka(self, bootstrap: str) -> KafkaSettings:
        """The ``kafka`` settings every client of the stack uses: the user's cluster with
        its TLS and SASL settings, or the embedded broker, which is plain TCP on loopback."""
        kafka = self.settings.kafka
        if self.settings.broker.embedded:
            return KafkaSettings(
                **kafka.model_dump(include=set(_NOT_SECURITY)), bootstrap=bootstrap
            )
        return kafka.model_copy(update={"bootstrap": bootstrap})

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
        self._embedded = broker
        stack.callback(self.say, "broker: stopped")
        self.say(f"broker: ready (pid {broker.pid})")
        return broker.bootstrap

    def _start_worker(self, stack: AsyncExitStack, config: Path, bootstrap: str) -> Child:
        port = str(self.settings.streams.metrics_port)
        command = [sys.executable, "-m", "flowops", "streams", "worker", "--config", str(config)]
        command += ["--bootstrap", bootstrap, "--metrics-port", port]
        return self._start(stack, "worker", "stream worker", command, WORKER_STOP_TIMEOUT)

    async def _start_servers(
        self, stack: AsyncExitStack, config: Path, bootstrap: str, plan: _Plan
    ) -> list[Child]:
        """The demo model server (``demo``), then the gateway (when it has routes)."""
        children: list[Child] = []
        if plan.model_port is not None and not self._stop.is_set():
            url = f"http://{HOST}:{plan.model_port}"
            command = [sys.executable, "-m", "flowops.demo_model", "--port", str(plan.model_port)]
            model = self._start(stack, "demo model", "demo model", command, MODEL_STOP_TIMEOUT)
            children.append(model)
            await self._until_serving(model, f"{url}/ping")
            self.say(f"demo model: ready, {demo.MODEL} answers POST {url}/invocations")
        if plan.listen is None:
            if not self._stop.is_set():
                self.say("gateway: not started (no routes in the config's gateway section)")
            return children
        if not self._stop.is_set():
            command = [sys.executable, "-m", "flowops", "gateway", "--config", str(config)]
            command += ["--listen", plan.listen, "--bootstrap", bootstrap, "--no-access-log"]
            gateway = self._start(stack, "gateway", "gateway", command, GATEWAY_STOP_TIMEOUT)
            children.append(gateway)
            url = _local_url(plan.listen)
            await self._until_serving(gateway, f"{url}/healthz")
            self.summary.gateway_url = url
            self.say(f"gateway: ready on {url} (routes: {plan.routes}), metrics on {url}/metrics")
        return children

    async def _start_monitor(self, stack: AsyncExitStack, config: Path, plan: _Plan) -> Child:
        """The monitoring agent, probing what the stack started."""
        command = [sys.executable, "-m", "flowops", "monitor", "--config", str(config)]
        monitor = self._start(stack, "monitor", "monitor", command, MONITOR_STOP_TIMEOUT)
        url = _local_url(plan.monitor_listen)
        await self._until_serving(monitor, f"{url}/healthz")
        self.summary.monitor_url = url
        self.say(f"monitor: ready, {url}/status and {url}/metrics")
        return monitor

    def _start(
        self, stack: AsyncExitStack, label: str, name: str, command: list[str], stop: float
    ) -> Child:
        log = self.workdir / f"{label.split()[-1]}.log"
        child = Child(name, command, log=log, stop_timeout=stop)
        child.start()
        stack.push_async_callback(self._stop_child, child)
        self.say(f"{label}: started (pid {child.pid}), log {child.log_path}")
        return child

    async def _stop_child(self, child: Child) -> None:
        """Stop ``child`` and say how it ended: it stopped, it had to be killed, or it
        was no longer running (dead before the stop, with its exit)."""
        was_running = child.running
        code = await asyncio.to_thread(child.stop)
        if not was_running:
            self.say(f"{child.name}: was not running ({_exit(code)})")
        elif child.killed:
            self.say(f"{child.name}: stopped (killed: it did not stop in {child.stop_timeout:g} s)")
        else:
            self.say(f"{child.name}: stopped")

    async def _until_serving(self, child: Child, url: str) -> None:
        """Until ``url`` answers 200 (or Ctrl-C); raises when ``child`` dies or is slow."""
        deadline = time.monotonic() + SERVER_READY_TIMEOUT
        while not await asyncio.to_thread(_answers, url):
            _check_alive(child)
            if self._stop.is_set():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    child.name,
                    f"{url} did not answer in {SERVER_READY_TIMEOUT:g} s; "
                    f"its log ends:\n{child.log_tail()}",
                )
            await asyncio.sleep(0.1)

    async def _until_ready(self, worker: Child, children: list[Child]) -> None:
        """Until the worker reads the traffic topic (its partitions gauge is above 0)."""
        deadline = time.monotonic() + READY_TIMEOUT
        port = self.settings.streams.metrics_port
        while await asyncio.to_thread(_assigned_partitions, port) < 1:
            for child in children:
                _check_alive(child)
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

    async def _serve(self, stack: AsyncExitStack, bootstrap: str, children: list[Child]) -> None:
        tasks = [asyncio.create_task(self._print_alerts(bootstrap), name="alerts")]
        if self.options.demo and not self._stop.is_set():
            client = await self._start_demo(stack, bootstrap)
            tasks.append(asyncio.create_task(self._demo_traffic(client), name="traffic"))
        tasks.append(asyncio.create_task(self._watch(children), name="watch"))
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

    async def _watch(self, children: list[Child]) -> None:
        """Restarts each child that dies, after a backoff; raises when the embedded
        broker dies (the stack's data went with it: nothing to restart into)."""
        supervised = [_Supervised(child, time.monotonic()) for child in children]
        while True:
            if self._embedded is not None and not self._embedded.running:
                raise ServiceError(
                    "broker",
                    f"the embedded broker exited; its log ends:\n{self._embedded.log_tail()}",
                )
            for entry in supervised:
                self._supervise(entry, time.monotonic())
            await asyncio.sleep(0.25)

    def _supervise(self, entry: _Supervised, now: float) -> None:
        """One look at a child: note its death and when to restart it, or restart it."""
        child = entry.child
        if child.running:
            if now - entry.started > STABLE_AFTER:
                entry.deaths = 0
            return
        if entry.restart_at is None:
            delay = min(RESTART_BACKOFF * 2**entry.deaths, RESTART_BACKOFF_MAX)
            entry.deaths += 1
            entry.restart_at = now + delay
            self.say(
                f"{child.name}: died ({_exit(child.returncode)}); restarting in {delay:g} s; "
                f"its log ends:\n{child.log_tail(5)}"
            )
        elif now >= entry.restart_at:
            child.restart()
            entry.started, entry.restart_at = now, None
            self.say(f"{child.name}: restarted (pid {child.pid})")

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

    async def _start_demo(self, stack: AsyncExitStack, bootstrap: str) -> demo.DemoClient:
        kafka = self._kafka(bootstrap)
        profile = demo.reference_profile()
        async with EventProducer.from_settings(kafka, source="/flowops/up/demo") as producer:
            await producer.publish(ReferenceProfile.from_profile(profile, model=demo.MODEL))
        self.say(
            f"demo: published the reference profile of {demo.MODEL} "
            f"({len(profile.features)} features) to {Topics.REFERENCES}"
        )
        assert self.summary.gateway_url is not None, "the demo runs behind the gateway"
        self.say(f"demo: try it: {curl_example(self.summary.gateway_url)}")
        url = f"{self.summary.gateway_url}{DEMO_PREFIX}/invocations"
        return await stack.enter_async_context(demo.DemoClient(url))

    async def _demo_traffic(self, client: demo.DemoClient) -> None:
        options = self.options
        traffic = self._traffic = demo.DemoTraffic(options.rate, options.shift_after)
        self.say(
            f"demo: sending {options.rate:,} rows/s of {demo.MODEL} to {client.url} "
            f"({traffic.rows_per_request:,} rows a request; windows of {DEMO_WINDOW_ROWS:,} "
            f"rows); incomes rise ~15% after {options.shift_after:g} s"
        )
        sender = asyncio.create_task(traffic.run(client.send))
        next_progress = time.monotonic() + PROGRESS_EVERY
        try:
            while not sender.done():
                await asyncio.wait([sender], timeout=0.25)
                self.summary.rows_sent, self.summary.rows_failed = traffic.rows, traffic.failed
                if traffic.shifted_at is not None:
                    self._announce_shift()
                if time.monotonic() >= next_progress:
                    next_progress += PROGRESS_EVERY
                    self.say(await self._demo_progress(traffic))
            sender.result()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _demo_progress(self, traffic: demo.DemoTraffic) -> str:
        line = f"demo: {traffic.rows:,} rows answered through the gateway"
        assert self.summary.gateway_url is not None
        published = await asyncio.to_thread(
            _metric, f"{self.summary.gateway_url}/metrics", "flowops_gateway_published_total"
        )
        if published is not None:
            line += f", {published:,.0f} traffic events published"
        if traffic.failed:
            line += f"; {traffic.failed:,} rows failed (last: {traffic.last_error})"
        return line


def curl_example(gateway_url: str) -> str:
    """A curl command line that asks the demo model for one prediction through the gateway.

    >>> print(curl_example("http://127.0.0.1:8080"))  # doctest: +NORMALIZE_WHITESPACE
    curl -s http://127.0.0.1:8080/models/credit-demo/invocations
    -H 'Content-Type: application/json' -d '{"dataframe_records": [{"age": 35,
    "income": 48000, "debt_ratio": 0.3, "region": "north", "channel": "web"}]}'
    """
    row = '{"age": 35, "income": 48000, "debt_ratio": 0.3, "region": "north", "channel": "web"}'
    return (
        f"curl -s {gateway_url}{DEMO_PREFIX}/invocations -H 'Content-Type: application/json' "
        f"""-d '{{"dataframe_records": [{row}]}}'"""
    )


def _gateway_section(
    settings: Settings, port: int | None, model_url: str | None
) -> tuple[dict[str, Any], GatewaySettings] | None:
    """The config's gateway section, with ``port`` and (``model_url``) the demo's route,
    and its checked settings; None when there is no route to serve."""
    checked = gateway_settings(settings)  # the user's section: errors name its keys
    section = dict(settings.gateway)
    routes = list(section.get("routes") or [])
    if model_url is not None:
        routes.append(_demo_route(model_url))
    if not routes:
        return None
    section["routes"] = routes
    if port is not None:
        section["listen"] = f"{checked.host}:{port}"
    try:
        return section, GatewaySettings.model_validate(section)
    except ValidationError as exc:  # the demo's route clashes with one of the config's
        reason = f"{exc.errors()[0]['msg']}; --demo adds the route {demo.MODEL} {DEMO_PREFIX}"
        raise ConfigError("gateway.routes", reason) from None


def _demo_route(model_url: str) -> dict[str, Any]:
    """The gateway route in front of the demo model server: its traffic events carry the
    model name and version of the demo's reference profile."""
    return {
        "name": demo.MODEL,
        "prefix": DEMO_PREFIX,
        "strip_prefix": True,
        "upstreams": [model_url],
        "model": demo.MODEL,
        "version": demo.VERSION,
        "features": list(demo.FEATURES),
        "health_check": {"path": "/ping"},
    }


def _with_demo_window(settings: Settings) -> Settings:
    """The settings with a count window of :data:`DEMO_WINDOW_ROWS` for the demo model,
    unless the config gives it one."""
    streams = settings.streams
    if demo.MODEL in streams.models:
        return settings
    window = WindowSettings(kind="count", size=DEMO_WINDOW_ROWS)
    models = {**streams.models, demo.MODEL: ModelStreamSettings(window=window)}
    return settings.model_copy(update={"streams": streams.model_copy(update={"models": models})})


def _local_url(listen: str) -> str:
    """The URL to reach a server listening on ``listen`` from this machine.

    >>> _local_url("0.0.0.0:8080"), _local_url("127.0.0.2:81")
    ('http://127.0.0.1:8080', 'http://127.0.0.2:81')
    """
    host, _, port = listen.rpartition(":")
    return f"http://{HOST if host in _ANY_HOST else host}:{port}"


@dataclass
class _Supervised:
    """A child under supervision: when it last started, how often it died in a row, and
    when it is to be restarted (None: it runs)."""

    child: Child
    started: float
    deaths: int = 0
    restart_at: float | None = None


def _exit(code: int | None) -> str:
    """How a process ended, in words.

    >>> _exit(-9), _exit(1)
    ('killed by SIGKILL', 'exit code 1')
    """
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _new_temporary_folder() -> Path:
    """A name for a new folder in the temporary directory; not created here."""
    return Path(tempfile.gettempdir()) / f"flowops-up-{os.getpid()}-{secrets.token_hex(4)}"


def _check_alive(child: Child) -> None:
    if not child.running:
        raise ServiceError(
            child.name,
            f"exited with code {child.returncode}; its log ends:\n{child.log_tail()}",
        )


def _answers(url: str) -> bool:
    """Whether a GET of ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _metric(url: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of the sample ``name`` (with these ``labels``) on a /metrics page;
    None when the page does not answer or has no such sample."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels or {}).items() <= sample.labels.items():
                return float(sample.value)
    return None


def _assigned_partitions(port: int) -> float:
    """The worker's ``flowops_stream_partitions`` for the traffic topic (0: no answer)."""
    url = f"http://{HOST}:{port}/metrics"
    return _metric(url, "flowops_stream_partitions", {"topic": Topics.TRAFFIC}) or 0
