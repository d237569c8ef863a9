"""The gateway's throughput and latency beside nginx and a plain aiohttp proxy, one run.

Everything is started here on free ports of 127.0.0.1 and stopped by its pid (SIGTERM,
then SIGKILL after a timeout) whatever happens:

- **the upstream**: nginx (Debian) with one worker answering every request with
  ``return 200`` and a 22-byte JSON body (``{"predictions": [0.5]}``): the cheapest
  server there is, so that it is not the bottleneck;
- (a) **the upstream directly**;
- (b) **nginx** ``proxy_pass`` to it, as nginx is run in front of services: an
  ``upstream`` block with ``keepalive 128``, HTTP/1.1 to the upstream, access log off,
  ``worker_processes auto``;
- (c) **the FlowOps gateway** (``flowops gateway --config FILE --no-access-log``), with
  every feature the issue names on: an API key required (``auth: true``), a rate limit
  high enough never to refuse (100,000/s; the memory store with one worker; with several,
  the store the workers share in memory, or Redis, since the gateway refuses a memory
  store there), metrics counted on every
  request (``/metrics`` is read after each run), and every request published to
  ``flowops.traffic`` on an embedded Tansu broker;
- (d) **a plain aiohttp proxy** (``bench/plain_proxy.py``, 30 lines: one shared
  ClientSession with its defaults), on asyncio and on uvloop.

Each load is wrk (Debian) for ``DURATION`` seconds after a ``WARMUP`` run, ``THREADS``
threads and ``CONNECTIONS`` keep-alive connections, POSTing a one-row JSON body with the
API key to ``/models/bench/invocations``. Every answer must be a 200: a run with any other
status or a socket error fails the bench. The script ``wrk`` runs is written here
(``WRK_SCRIPT``); its ``done()`` prints the figures as JSON.

**Latency at half of the peak.** wrk has no fixed-rate mode, and Debian has no wrk2, so
the script paces requests itself: wrk's ``delay()`` hook, called before each request,
returns the milliseconds until the next slot of a schedule of ``rate / THREADS`` slots a
second per thread, read from CLOCK_MONOTONIC through LuaJIT's ffi; a slot that has
passed is not caught up (so the rate falls rather than a burst building if the server
cannot keep up: the achieved rate is printed); these runs use ``PACED_CONNECTIONS``.
The gateway's best configuration is run so at half its peak, and so is the upstream
directly; "added p99" is the difference of the two p99s. Latency is wrk's, from a
request's send to its response, so time a request waits for its slot is not counted
(wrk2's correction for coordinated omission is not made); at half load that wait is
small, and the same for both runs.

**Steps.** The gateway is measured one change at a time (asyncio, then uvloop; the memory
store, then the shared-memory store; one worker, then several; shared memory, then Redis),
each step's gain printed beside the setup it changes.

The machine's cores are shared by wrk, the upstream, the proxy under test, the broker and
Redis: on 2 cores every figure here is a lower bound of what the proxy alone would do.
Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from _harness import usage

from flowops.broker import EmbeddedBroker, free_port
from flowops.gateway.app import METRICS_REFRESH
from flowops.gateway.auth import hash_api_key

DURATION = 5  # seconds of each measured wrk run
WARMUP = 1  # seconds of wrk before each measured run (connections, caches)
THREADS = 2
CONNECTIONS = 64
PACED_CONNECTIONS = 16  # for the runs at half the peak rate: enough to keep the pace
GATEWAY_WORKERS = (2, 3)  # worker counts measured with uvloop and the shared store
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

GOAL_VS_PLAIN = 3.0  # the full gateway's rate over the plain aiohttp proxy's
GOAL_VS_NGINX = 0.20  # the full gateway's rate over nginx proxy_pass's
GOAL_ADDED_P99_MS = 5.0  # at half of the gateway's peak rate

PATH = "/models/bench/invocations"
API_KEY = "bench-key-0123456789abcdef"
BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
ROOT = Path(__file__).resolve().parent.parent


def say(line: str) -> None:
    """A progress line, on stderr."""
    print(f"gateway bench: {line}", file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------


@dataclass
class Service:
    """A process started here, its log, and the URL it serves."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str

    def stop(self) -> None:
        """SIGTERM by pid, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            say(f"{self.name} (pid {self.proc.pid}) did not stop; killing it")
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def service(
    name: str, command: Sequence[str], workdir: Path, url: str, ready_path: str
) -> Iterator[Service]:
    """Start ``command``, wait until ``url + ready_path`` answers 200, stop it after."""
    log = workdir / f"{name.replace(' ', '-')}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    running = Service(name, proc, log, url)
    try:
        wait_ready(running, ready_path)
        yield running
    finally:
        running.stop()


def wait_ready(running: Service, path: str) -> None:
    host, _, port = running.url.removeprefix("http://").partition(":")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if running.proc.poll() is not None:
            raise RuntimeError(f"{running.name} exited:\n{running.tail()}")
        try:
            if get(host, int(port), path)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{running.name} did not answer in {START_TIMEOUT:g} s")
        time.sleep(0.1)


def get(host: str, port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path, headers={"X-API-Key": API_KEY})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- the servers ----------------------------------------------------------------------

NGINX_COMMON = """
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
"""

NGINX_UPSTREAM = """worker_processes 1;
{common}
http {{
    access_log off;
    keepalive_requests 10000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{{"predictions": [0.5]}}';
        }}
    }}
}}
"""

NGINX_PROXY = """worker_processes auto;
{common}
http {{
    access_log off;
    keepalive_requests 10000000;
    upstream model {{
        server 127.0.0.1:{upstream};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextmanager
def nginx(name: str, template: str, workdir: Path, **values: int) -> Iterator[Service]:
    """nginx in the foreground with a config made from ``template``, in a dir of its own."""
    home = workdir / name
    (home / "logs").mkdir(parents=True)
    home.chmod(0o755)  # its workers may run as another user
    port = free_port()
    config = home / "nginx.conf"
    common = NGINX_COMMON.format(dir=home)
    config.write_text(template.format(common=common, port=port, **values))
    command = [nginx_binary(), "-p", str(home), "-c", str(config)]
    with service(name, command, workdir, f"http://127.0.0.1:{port}", PATH) as running:
        yield running


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise RuntimeError("nginx not found: apt-get install nginx (make bench does)")
    return found


@contextmanager
def plain_proxy(workdir: Path, upstream: str, *, uvloop: bool) -> Iterator[Service]:
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "plain_proxy.py"), str(port), upstream]
    command += ["--uvloop"] if uvloop else []
    name = f"plain aiohttp proxy ({'uvloop' if uvloop else 'asyncio'})"
    with service(name, command, workdir, f"http://127.0.0.1:{port}", PATH) as running:
        yield running


@dataclass(frozen=True)
class GatewaySetup:
    """One configuration of the gateway, all features on."""

    workers: int
    uvloop: bool
    store: str  # memory, shared or redis

    @property
    def name(self) -> str:
        loop = "uvloop" if self.uvloop else "asyncio"
        plural = "s" if self.workers > 1 else ""
        return f"FlowOps gateway, {self.workers} worker{plural}, {loop}, {self.store} limits"


@contextmanager
def gateway(
    workdir: Path, setup: GatewaySetup, upstream: str, bootstrap: str, redis_url: str
) -> Iterator[Service]:
    port = free_port()
    limit: dict[str, object] = {"rate": 100_000, "burst": 100_000, "store": setup.store}
    if setup.store == "redis":
        limit["redis_url"] = redis_url
    settings = {
        "kafka": {"bootstrap": bootstrap},
        "gateway": {
            "listen": f"127.0.0.1:{port}",
            "workers": setup.workers,
            "uvloop": setup.uvloop,
            "auth": {"api_keys": [{"name": "bench", "sha256": hash_api_key(API_KEY)}]},
            "routes": [
                {
                    "name": "bench",
                    "prefix": "/models/bench",
                    "upstreams": [upstream],
                    "auth": True,
                    "rate_limit": limit,
                }
            ],
        },
    }
    config = workdir / f"gateway-{port}.yaml"
    config.write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-m", "flowops", "gateway", "--config", str(config)]
    command += ["--no-access-log"]
    with service(setup.name, command, workdir, f"http://127.0.0.1:{port}", "/readyz") as running:
        yield running


@contextmanager
def redis(workdir: Path) -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir)]
    log = workdir / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    running = Service("redis-server", proc, log, f"redis://127.0.0.1:{port}/0")
    try:
        wait_port(port, proc)
        yield running.url
    finally:
        running.stop()


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"redis-server did not listen on {port}")


# --- wrk ------------------------------------------------------------------------------

WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local now_ts = ffi.new("bench_timespec")
local function now_ms()
    ffi.C.clock_gettime(1, now_ts)  -- CLOCK_MONOTONIC
    return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("BENCH_KEY")
if os.getenv("BENCH_CLOSE") == "1" then wrk.headers["Connection"] = "close" end

local rate = tonumber(os.getenv("BENCH_RATE") or "0")  -- per thread; 0: no pacing
if rate > 0 then
    local interval = 1000 / rate
    local slot = nil
    function delay()
        local now = now_ms()
        if slot == nil or slot < now then slot = now end  -- no catching up
        local wait = slot - now
        slot = slot + interval
        return wait
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
        '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class Load:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int


def wrk(
    workdir: Path, url: str, *, seconds: int = DURATION, rate: float = 0.0, close: bool = False
) -> Load:
    """One wrk run against ``url + PATH``; raises if any answer was not a 200. With
    ``close``, each request asks for ``Connection: close`` (a connection a request)."""
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    env = os.environ | {"BENCH_BODY": BODY, "BENCH_KEY": API_KEY, "BENCH_CLOSE": str(int(close))}
    env["BENCH_RATE"] = str(rate / THREADS)
    connections = PACED_CONNECTIONS if rate else CONNECTIONS
    command = [wrk_binary(), "-t", str(THREADS), "-c", str(connections), "-d", f"{seconds}s"]
    command += ["--timeout", "5s", "-s", str(script), url + PATH]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"requests"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    figures = json.loads(lines[-1])
    errors = {k: figures[k] for k in ("connect", "read", "write", "status", "timeout")}
    if any(errors.values()):
        raise RuntimeError(f"{url}: answers other than 200 or socket errors: {errors}")
    return Load(
        rps=figures["requests"] / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        requests=figures["requests"],
    )


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk not found: apt-get install wrk (make bench does)")
    return found


def measure(workdir: Path, target: Service, *, rate: float = 0.0) -> Load:
    wrk(workdir, target.url, seconds=WARMUP, rate=rate)
    load = wrk(workdir, target.url, rate=rate)
    paced = f" (paced at {rate:,.0f}/s)" if rate else ""
    say(
        f"{target.name}{paced}: {load.rps:,.0f} requests/s, "
        f"p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms"
    )
    return load


# --- the gateway's own count ----------------------------------------------------------


@dataclass
class Published:
    """What the gateway says it counted and published (all its workers: any worker's
    ``/metrics`` adds up every worker's)."""

    answered: float = 0.0
    published: float = 0.0
    dropped: float = 0.0
    queued: float = 0.0


def published(target: Service, workers: int) -> Published:
    """The gateway's ``/metrics``, once each worker has written its publisher's state."""
    if workers > 1:
        time.sleep(METRICS_REFRESH + 0.5)
    host, _, port = target.url.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/metrics")
        found = samples(connection.getresponse().read().decode())
    finally:
        connection.close()
    return Published(
        answered=found.get("requests", 0.0),
        published=found.get("flowops_gateway_published_total", 0.0),
        dropped=found.get("flowops_gateway_publish_dropped_total", 0.0),
        queued=found.get("flowops_gateway_publish_queue_depth", 0.0),
    )


def samples(text: str) -> dict[str, float]:
    found: dict[str, float] = {"requests": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("flowops_gateway_requests_total{"):
            found["requests"] += float(value)
        elif name and not name.startswith("#"):
            found[name] = float(value)
    return found


# --- the run --------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    load: Load
    note: str = ""


def run(workdir: Path) -> None:
    with ExitStack() as stack:
        say("starting the upstream (nginx return 200), nginx proxy_pass, Tansu and Redis")
        upstream = stack.enter_context(nginx("upstream", NGINX_UPSTREAM, workdir))
        port = int(upstream.url.rpartition(":")[2])
        broker = EmbeddedBroker(port=free_port())
        broker.start()
        stack.callback(broker.stop)
        redis_url = stack.enter_context(redis(workdir))
        direct = Row("(a) upstream directly: nginx return 200", measure(workdir, upstream))
        with nginx("proxy", NGINX_PROXY, workdir, upstream=port) as proxy:
            via_nginx = Row("(b) nginx proxy_pass", measure(workdir, proxy))
        plain: dict[bool, Row] = {}
        for uvloop in (False, True):
            with plain_proxy(workdir, upstream.url, uvloop=uvloop) as target:
                plain[uvloop] = Row(f"(d) {target.name}", measure(workdir, target))
        steps = [
            GatewaySetup(1, uvloop=False, store="memory"),
            GatewaySetup(1, uvloop=True, store="memory"),
            GatewaySetup(1, uvloop=True, store="shared"),
            *(GatewaySetup(n, uvloop=True, store="shared") for n in GATEWAY_WORKERS),
            GatewaySetup(GATEWAY_WORKERS[0], uvloop=True, store="redis"),
        ]
        measured = [measure_gateway(workdir, s, upstream.url, broker, redis_url) for s in steps]
        best = max(measured[2:], key=lambda row: row[1].load.rps)
        half = best[1].load.rps / 2
        with gateway(workdir, best[0], upstream.url, broker.bootstrap, redis_url) as target:
            gateway_half = measure(workdir, target, rate=half)
        upstream_half = measure(workdir, upstream, rate=half)
    report(direct, via_nginx, plain, measured, best, gateway_half, upstream_half, half)


def measure_gateway(
    workdir: Path, setup: GatewaySetup, upstream: str, broker: EmbeddedBroker, redis_url: str
) -> tuple[GatewaySetup, Row]:
    with gateway(workdir, setup, upstream, broker.bootstrap, redis_url) as target:
        load = measure(workdir, target)
        time.sleep(1.0)  # the publisher's last rounds
        counts = published(target, setup.workers)
    note = (
        f"{counts.answered:,.0f} answered, {counts.published:,.0f} published to Kafka, "
        f"{counts.dropped:,.0f} dropped, {counts.queued:,.0f} queued"
    )
    say(note)
    return setup, Row(f"(c) {setup.name}", load, note)


def report(
    direct: Row,
    via_nginx: Row,
    plain: dict[bool, Row],
    measured: list[tuple[GatewaySetup, Row]],
    best: tuple[GatewaySetup, Row],
    gateway_half: Load,
    upstream_half: Load,
    half: float,
) -> None:
    anchor, nginx_rps = plain[False].load.rps, via_nginx.load.rps
    print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, POST {len(BODY)}-byte JSON; ")
    print(f"{os.cpu_count()} cores shared by everything; load average {os.getloadavg()[0]:.2f}")
    print()
    print("| target | requests/s | p50 | p99 | / plain aiohttp | / nginx | note |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in [direct, via_nginx, plain[False], plain[True], *(r for _, r in measured)]:
        load = row.load
        print(
            f"| {row.name} | {load.rps:,.0f} | {load.p50_ms:.2f} ms | {load.p99_ms:.2f} ms "
            f"| {load.rps / anchor:.2f}x | {load.rps / nginx_rps:.1%} | {row.note} |"
        )
    rps = best[1].load.rps
    added = gateway_half.p99_ms - upstream_half.p99_ms
    print()
    print(f"Goals, for the best full gateway ({best[0].name}):")
    print(
        f"- / plain aiohttp proxy: {rps / anchor:.2f}x, goal >= {GOAL_VS_PLAIN:g}x: "
        f"{verdict(rps / anchor >= GOAL_VS_PLAIN)}"
    )
    print(
        f"- / nginx proxy_pass: {rps / nginx_rps:.1%}, goal >= {GOAL_VS_NGINX:.0%}: "
        f"{verdict(rps / nginx_rps >= GOAL_VS_NGINX)}"
    )
    print(
        f"- added p99 at half its peak ({half:,.0f}/s asked; gateway {gateway_half.rps:,.0f}/s "
        f"p50 {gateway_half.p50_ms:.2f} ms p99 {gateway_half.p99_ms:.2f} ms, upstream "
        f"{upstream_half.rps:,.0f}/s p99 {upstream_half.p99_ms:.2f} ms): {added:.2f} ms, "
        f"goal < {GOAL_ADDED_P99_MS:g} ms: {verdict(added < GOAL_ADDED_P99_MS)}"
    )
    print()
    print("Steps (each against the setup it changes one thing of):")
    print()
    print("| step | requests/s | gain |")
    print("| --- | ---: | ---: |")
    print(
        f"| plain aiohttp proxy: asyncio -> uvloop | {plain[True].load.rps:,.0f} "
        f"| {plain[True].load.rps / anchor - 1:+.0%} |"
    )
    for setup, row in measured:
        before = _changed_from(setup, measured)
        if before is None:
            print(f"| {setup.name} | {row.load.rps:,.0f} | |")
            continue
        gain = row.load.rps / before[1].load.rps - 1
        print(f"| {_step(before[0], setup)} | {row.load.rps:,.0f} | {gain:+.0%} |")


def _changed_from(
    setup: GatewaySetup, measured: list[tuple[GatewaySetup, Row]]
) -> tuple[GatewaySetup, Row] | None:
    """The measured setup before ``setup`` that differs from it in one thing, if any."""
    earlier = measured[: [s for s, _ in measured].index(setup)]
    for other, row in reversed(earlier):
        differences = (
            (other.workers != setup.workers)
            + (other.uvloop != setup.uvloop)
            + (other.store != setup.store)
        )
        if differences == 1:
            return other, row
    return None


def _step(before: GatewaySetup, after: GatewaySetup) -> str:
    if before.workers != after.workers:
        change = f"{before.workers} -> {after.workers} workers"
    elif before.uvloop != after.uvloop:
        change = "asyncio -> uvloop"
    else:
        change = f"{before.store} -> {after.store} limits"
    return f"gateway, {change} ({after.name.removeprefix('FlowOps gateway, ')})"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="flowops-bench-gateway-") as workdir:
        run(Path(workdir))


if __name__ == "__main__":
    usage(__doc__)
    main()
