"""Running the gateway until Ctrl-C or SIGTERM (``flowops gateway``): one process, or
``gateway.workers`` processes serving one port.

Progress lines go to ``say`` (the CLI writes them to stderr); with ``access_log`` each
request is one JSON line on stdout, as log collectors expect.

**Event loop.** With ``gateway.uvloop`` on (the default) and uvloop installed, each
process runs on uvloop's loop, else on asyncio's; the "listening" line says which.

**Workers.** With ``workers: N`` above 1 this process binds N listening sockets to the
port, each with ``SO_REUSEPORT`` (so a port taken by anything else is one clear
ConfigError before any worker starts), forks N workers that each serve one socket, and
supervises them. The kernel spreads new connections over the sockets by a hash of their
addresses; a keep-alive connection stays with the worker that accepted it. SIGINT and
SIGTERM are passed on to every worker, which finishes its requests in flight
(:data:`SHUTDOWN_TIMEOUT`) and delivers what its publisher holds; the gateway exits 0
when all have stopped (SIGKILL for one still there :data:`KILL_AFTER` seconds later). A
worker that exits on its own (a crash, a failed start) stops the others and the gateway
exits non-zero: leave restarting to the supervisor (systemd, Kubernetes).

Each worker is a whole gateway: its own upstream connections, health checks, circuit
breakers and outlier ejection, and Kafka producer. So:

* **Rate limits.** ``rate_limit.store: memory`` keeps buckets per process: with N
  workers a caller whose connections land on several of them would get up to N times
  its rate. That is refused at start-up (a ConfigError naming the route's
  ``rate_limit.store`` and ``gateway.workers``); use ``store: shared``, buckets in
  memory that this process maps before it forks and every worker shares, exactly
  (:mod:`flowops.gateway.policies.ratelimit.shared_store`), ``store: redis``, shared by replicas on
  other hosts too, or ``workers: 1``.
* **Metrics.** This process makes a directory before it forks (removed when the
  gateway stops) where every worker keeps its metric values, memory-mapped, so the
  ``/metrics`` of any worker adds up all of them: a scrape of the shared port describes
  the whole gateway, whichever worker the kernel picks (:mod:`flowops.gateway.metrics`).
  ``/healthz`` names the pid of the worker that answered.
* **Variant weights.** A weight changed through ``/admin/routes`` (or by the variant
  policy) is written on a board in memory this process maps before it forks
  (:mod:`flowops.gateway.weights`), which every worker reads: the next request of any
  worker uses it. Worker 0 alone reads the alerts for the variant policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final, NoReturn

from flowops import logs
from flowops.config import Settings
from flowops.errors import ConfigError, FlowOpsError
from flowops.gateway.app import Gateway
from flowops.gateway.config import GatewaySettings, gateway_settings
from flowops.gateway.http.listener import Listener
from flowops.gateway.http.tls import is_loopback
from flowops.gateway.weights import WeightBoard

if TYPE_CHECKING:
    from flowops.gateway.policies.ratelimit.shared_store import SharedTable

__all__ = [
    "BACKLOG",
    "GC_THRESHOLD",
    "KILL_AFTER",
    "SHUTDOWN_TIMEOUT",
    "check_workers",
    "clear_text_warning",
    "reload_routes",
    "run_gateway",
]

SHUTDOWN_TIMEOUT: Final = 10.0
"""Seconds in-flight requests get to finish when the gateway stops."""
KILL_AFTER: Final = SHUTDOWN_TIMEOUT + 20.0
"""Seconds a worker gets to stop after SIGTERM (requests, then the publisher's last
delivery) before it is killed."""
BACKLOG: Final = 1024
GC_THRESHOLD: Final = 20_000
"""Allocations between collections of the youngest generation (Python's default: 700).
A request makes a few hundred short-lived objects that reference counting frees; at the
default the collector ran every few requests and took about a sixth of a worker's time."""
_POLL: Final = 0.1  # seconds between the supervisor's looks at its workers

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def run_gateway(
    settings: Settings,
    *,
    say: Callable[[str], None],
    access_log: bool = True,
    reread: Callable[[], Settings] | None = None,
) -> None:
    """Serve until Ctrl-C or SIGTERM; raises ConfigError for settings it cannot use, and
    FlowOpsError (exit 1) when a worker process fails. With ``reread`` (the settings
    read again from their sources), SIGHUP reloads the routes (:func:`reload_routes`)."""
    config = gateway_settings(settings)
    check_workers(config)
    if config.tls is not None:
        config.tls.context()  # a bad file is one ConfigError here, not one a worker
    if reread is not None:  # until the loop takes SIGHUP, one must not stop the gateway
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logs.log_to("flowops", sys.stderr, settings.log_level, logs.LOG_FORMAT)
    logs.log_to(
        "flowops.gateway.access", sys.stdout, "INFO" if access_log else "WARNING", "%(message)s"
    )
    logs.quiet_kafka_client()  # the publisher says when Kafka is away and when it is back
    loop_factory, loop_name = _loop_factory(config.uvloop)
    room = _file_room(config.limits.max_connections)
    for warning in (room, clear_text_warning(config)):
        if warning is not None:
            say(warning)
    sockets = [_listen(config, reuse_port=config.workers > 1) for _ in range(config.workers)]
    routes = ", ".join(f"{r.name} {r.prefix}" for r in config.routes) or "none"
    scheme = "http" if config.tls is None else "https"
    listening = f"listening on {scheme}://{config.listen} (routes: {routes}; {loop_name}"
    if config.workers == 1:
        ready = _Say(say, f"{listening}); Ctrl-C stops")
        shared = _Shared(_shared_table(config), reread=reread, weights=WeightBoard())
        _serve_in(settings, sockets[0], loop_factory, say, ready, shared)
    else:
        metrics = Path(tempfile.mkdtemp(prefix="flowops-gateway-metrics-"))
        try:
            shared = _Shared(_shared_table(config), metrics, reread, WeightBoard())
            _Supervisor(settings, sockets, loop_factory, say, shared).run(listening)
        finally:
            shutil.rmtree(metrics, ignore_errors=True)
    say("stopped")


def clear_text_warning(config: GatewaySettings) -> str | None:
    """A line to say when credentials would cross a network in clear text: a route
    requires them (or an admin identity is set), TLS is off, and the listen address is
    not loopback's (a TLS-terminating proxy on the same host is the safe exception).

    >>> route = {"name": "m", "prefix": "/m", "upstreams": ["http://127.0.0.1:9001"],
    ...          "auth": True}
    >>> clear_text_warning(GatewaySettings(listen="127.0.0.1:8080", routes=[route])) is None
    True
    >>> clear_text_warning(GatewaySettings(listen="0.0.0.0:8080", routes=[route]))[:50]
    'warning: API keys and tokens would cross the netwo'
    """
    uses_credentials = bool(config.admin_identities) or any(r.auth for r in config.routes)
    if not uses_credentials or config.tls is not None or is_loopback(config.host):
        return None
    return (
        "warning: API keys and tokens would cross the network in clear text: "
        f"gateway.tls is not set and {config.listen} is not a loopback address "
        "(set gateway.tls, or listen on 127.0.0.1 behind a TLS-terminating proxy)"
    )


def _file_room(connections: int) -> str | None:
    """Raise this process's open-file limit (inherited by its workers) to what
    ``connections`` clients need, each with an upstream connection, plus room; a line to
    say when the hard limit is lower, else None. Without it, a worker reaches the
    descriptor limit (often 1024) before ``max_connections`` and fails its accepts."""
    wanted = 2 * connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return None
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if ceiling > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    if ceiling < wanted:
        return (
            f"warning: open files are limited to {ceiling}, below the {wanted} that "
            f"gateway.limits.max_connections ({connections}) may need: lower it or raise "
            "the limit (ulimit -n)"
        )
    return None


@dataclass(frozen=True)
class _Shared:
    """What the workers share, made before any fork: the rate limits' buckets (when a
    route keeps them there), the metrics' directory (with several workers), how to
    read the settings again (SIGHUP), and the variant weights set at run time."""

    table: SharedTable | None = None
    metrics: Path | None = None
    reread: Callable[[], Settings] | None = None
    weights: WeightBoard | None = None


def check_workers(config: GatewaySettings) -> None:
    """Refuse ``workers`` above 1 with a route whose rate limit lives in process memory.

    >>> from flowops.gateway.config import GatewaySettings
    >>> route = {"name": "iris", "prefix": "/iris", "upstreams": ["http://127.0.0.1:9001"],
    ...          "rate_limit": {"rate": 10}}
    >>> check_workers(GatewaySettings(workers=2, routes=[route]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flowops.errors.ConfigError: config: gateway.routes[0].rate_limit.store: memory ...
    """
    if config.workers == 1:
        return
    for index, route in enumerate(config.routes):
        if route.rate_limit is not None and route.rate_limit.store == "memory":
            raise ConfigError(
                f"gateway.routes[{index}].rate_limit.store",
                f"memory keeps a bucket per process, and gateway.workers is "
                f"{config.workers}: a caller could get {config.workers} times the rate of "
                f"route {route.name}; use store: shared (the workers share buckets), "
                "store: redis (replicas too) or workers: 1",
            )


# -- one process ------------------------------------------------------------------------


class _Say:
    """A line to say once, when the server is up."""

    def __init__(self, say: Callable[[str], None], line: str) -> None:
        self.say, self.line = say, line

    def __call__(self) -> None:
        self.say(self.line)


def _serve_in(
    settings: Settings,
    sock: socket.socket,
    loop_factory: LoopFactory,
    say: Callable[[str], None],
    ready: Callable[[], None],
    shared: _Shared,
    *,
    leader: bool = True,
) -> None:
    """Serve ``sock`` in this process until SIGINT or SIGTERM; the ``leader`` (the only
    worker, or worker 0) reads the alerts for the variant policy."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(settings, sock, say, ready, shared, leader))


async def _serve(
    settings: Settings,
    sock: socket.socket,
    say: Callable[[str], None],
    ready: Callable[[], None],
    shared: _Shared,
    leader: bool,
) -> None:
    gateway = Gateway(
        settings,
        say=say,
        shared=shared.table,
        metrics_across=shared.metrics,
        weights=shared.weights,
        leader=leader,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await gateway.start()
    if shared.reread is not None:
        hangup = _Hangup(gateway, shared, say)
        loop.add_signal_handler(signal.SIGHUP, hangup)
    _tune_gc()
    listener = Listener(gateway.handle, limits=gateway.gateway.limits, tls=gateway.tls)
    try:
        await listener.start(sock, backlog=BACKLOG)
        ready()
        await stop.wait()
        say("stopping: finishing requests in flight")
    finally:
        await listener.stop(SHUTDOWN_TIMEOUT)
        await gateway.stop()


class _Hangup:
    """SIGHUP's handler: one reload of the routes at a time, in a task."""

    def __init__(self, gateway: Gateway, shared: _Shared, say: Callable[[str], None]) -> None:
        self.gateway, self.shared, self.say = gateway, shared, say
        self.task: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        assert self.shared.reread is not None
        line = await reload_routes(self.gateway, self.shared.reread, shared=self.shared.table)
        self.say(line)


async def reload_routes(
    gateway: Gateway, reread: Callable[[], Settings], *, shared: SharedTable | None = None
) -> str:
    """Read the settings again, check them, and serve their routes from the next
    request on (:meth:`Gateway.reload_routes`); the line to say. A file that cannot be
    read or used keeps the routes as they were, and the line says why."""
    running = gateway.gateway
    try:
        settings = reread()
        config = gateway_settings(settings)
        check_workers(config.model_copy(update={"workers": running.workers}))
        _check_shared_store(config, running.workers, shared)
        await gateway.reload_routes(settings)
    except FlowOpsError as exc:
        return f"SIGHUP: kept the previous routes: {exc}"
    except Exception as exc:  # any reason at all: the routes being served stay
        return f"SIGHUP: kept the previous routes: {type(exc).__name__}: {exc}"
    routes = ", ".join(f"{r.name} {r.prefix}" for r in gateway.gateway.routes) or "none"
    return f"SIGHUP: routes reloaded ({routes})"


def _check_shared_store(config: GatewaySettings, workers: int, shared: SharedTable | None) -> None:
    """``store: shared`` needs the table made before the workers forked."""
    if workers == 1 or shared is not None:
        return
    for index, route in enumerate(config.routes):
        if route.rate_limit is not None and route.rate_limit.store == "shared":
            raise ConfigError(
                f"gateway.routes[{index}].rate_limit.store",
                "shared needs the table the gateway makes before forking its workers: restart it",
            )


def _shared_table(config: GatewaySettings) -> SharedTable | None:
    """The shared-memory buckets, made before any fork, if a route keeps its limit there."""
    if not any(r.rate_limit is not None and r.rate_limit.store == "shared" for r in config.routes):
        return None
    from flowops.gateway.policies.ratelimit.shared_store import SharedTable

    return SharedTable()


def _tune_gc() -> None:
    """Move what start-up made out of the collector's sight (``gc.freeze``), and collect
    the young generation less often (:data:`GC_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, older, oldest)


def _listen(config: GatewaySettings, *, reuse_port: bool) -> socket.socket:
    """A listening socket on ``gateway.listen``; ConfigError when that is not possible."""
    host = config.host.strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError("gateway.listen", f"cannot listen on {config.listen}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ConfigError("gateway.listen", f"cannot listen on {config.listen}: {reason}") from None
    sock.setblocking(False)
    return sock


def _loop_factory(wanted: bool) -> tuple[LoopFactory, str]:
    """uvloop's loop when ``wanted`` and installed, else asyncio's; and its name."""
    if wanted:
        try:
            import uvloop
        except ImportError:
            return asyncio.new_event_loop, "asyncio (uvloop is not installed)"
        return uvloop.new_event_loop, "uvloop"
    return asyncio.new_event_loop, "asyncio"


def _failure(message: str, code: int) -> FlowOpsError:
    failure = FlowOpsError(f"gateway: {message}")
    failure.exit_code = code if code > 0 else 1
    return failure


# -- several processes ------------------------------------------------------------------


@dataclass
class _Worker:
    index: int
    pid: int
    ready_fd: int
    code: int | None = None


class _Supervisor:
    """Forks a worker per socket, passes signals on, and waits for the workers."""

    def __init__(
        self,
        settings: Settings,
        sockets: list[socket.socket],
        loop_factory: LoopFactory,
        say: Callable[[str], None],
        shared: _Shared,
    ) -> None:
        self.settings = settings
        self.shared = shared
        self.sockets = sockets
        self.loop_factory = loop_factory
        self.say = say
        self.workers: list[_Worker] = []
        self.stop_requested = False
        self.failed: _Worker | None = None

    def run(self, listening: str) -> None:
        """Start the workers, then wait for them all; raises when one failed."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        if self.shared.reread is not None:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        try:
            self._fork_all()
            if self._wait_ready():
                pids = ", ".join(str(worker.pid) for worker in self.workers)
                self.say(f"{listening}, {len(self.workers)} workers: pids {pids}); Ctrl-C stops")
            self._wait_all()
        finally:
            self._kill_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self.failed is not None:
            worker = self.failed
            raise _failure(
                f"worker {worker.index} (pid {worker.pid}) {_how(worker.code)}; "
                "the others were stopped",
                worker.code or 1,
            )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        """Each worker reloads its routes itself."""
        running = {worker.pid: worker for worker in self.workers if worker.code is None}
        self._signal_all(signal.SIGHUP, running)

    def _fork_all(self) -> None:
        for sys_stream in (sys.stdout, sys.stderr):
            sys_stream.flush()  # or the children write what this process buffered
        for index, sock in enumerate(self.sockets):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker
                os.close(read_fd)
                self._become_worker(index, sock, write_fd)
            os.close(write_fd)
            sock.close()
            self.workers.append(_Worker(index, pid, read_fd))

    def _become_worker(self, index: int, sock: socket.socket, ready_fd: int) -> NoReturn:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        if self.shared.reread is not None:  # until its loop takes it
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for other in self.sockets:
            if other is not sock:
                other.close()
        for worker in self.workers:
            os.close(worker.ready_fd)
        say = self.say
        prefix = f"worker {index} (pid {os.getpid()}): "

        def worker_say(line: str) -> None:
            say(prefix + line)

        def ready() -> None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)

        code = 1
        try:
            _serve_in(
                self.settings,
                sock,
                self.loop_factory,
                worker_say,
                ready,
                self.shared,
                leader=index == 0,
            )
            code = 0
        except FlowOpsError as exc:
            worker_say(f"error: {exc}")
            code = exc.exit_code
        except BaseException:  # a worker reports everything, then exits: never returns
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _wait_ready(self) -> bool:
        """True when every worker said it serves; False when one exited first."""
        for worker in self.workers:
            while True:
                try:
                    said = os.read(worker.ready_fd, 1)
                    break
                except InterruptedError:  # pragma: no cover - PEP 475 retries
                    continue
            os.close(worker.ready_fd)
            if not said:
                return False
        return True

    def _wait_all(self) -> None:
        running = {worker.pid: worker for worker in self.workers}
        signalled = False
        kill_at = float("inf")
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid in running:
                worker = running.pop(pid)
                worker.code = os.waitstatus_to_exitcode(status)
                if not (self.stop_requested or signalled):
                    self.failed = worker  # exited on its own: take the gateway down
                    self.stop_requested = True
                elif worker.code not in (0, -signal.SIGTERM, -signal.SIGINT):
                    self.failed = self.failed or worker
                continue
            if self.stop_requested and not signalled:
                if self.failed is None:
                    self.say("stopping: finishing requests in flight")
                self._signal_all(signal.SIGTERM, running)
                signalled = True
                kill_at = time.monotonic() + KILL_AFTER
            if time.monotonic() > kill_at:
                self.say(f"workers still running after {KILL_AFTER:g} s: killing them")
                self._signal_all(signal.SIGKILL, running)
                kill_at = float("inf")
            time.sleep(_POLL)

    def _signal_all(self, signum: int, running: dict[int, _Worker]) -> None:
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _kill_all(self) -> None:
        """Whatever happened in this process, no worker outlives it."""
        for worker in self.workers:
            if worker.code is None:
                with contextlib.suppress(ChildProcessError, ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                    os.waitpid(worker.pid, 0)


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
