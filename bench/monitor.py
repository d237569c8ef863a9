"""The monitoring agent's memory and CPU beside Debian's blackbox_exporter, one run.

Everything is started here on free ports of 127.0.0.1 and stopped by its pid (SIGTERM,
then SIGKILL after a timeout) whatever happens:

- **the targets**: ``TARGETS`` HTTP servers, one port each, in one aiohttp process (this
  script with ``--serve-targets``): ``GET /health`` answers 200 ``ok``. Both probers
  probe the same URLs, and the targets' own CPU is counted for neither;
- **the agent**: ``python -m flowops monitor --config FILE``, one ``model_servers`` entry
  per target (``protocol: http``, 5 s timeout), ``interval: 5``, alerts off (no
  receiver). Health events are off, since publishing to Kafka is not what the issue
  measures; with ``--health-events`` they are on, to a Tansu broker started here
  (``flowops.broker.EmbeddedBroker``, whose CPU is counted for neither). Its ``/metrics``
  is read once per interval, as Prometheus would scrape it;
- **the anchor**: Debian's ``prometheus-blackbox-exporter`` with one ``http_2xx`` module
  (``prober: http``, 5 s timeout, IPv4), driven by this script the way Prometheus drives
  it: every interval, one ``GET /probe?target=URL&module=http_2xx`` per target, all at
  once (as the agent starts its probes); every answer must say ``probe_success 1``.

When both are up, the window starts: for ``--duration`` seconds (default 60) each
process's RSS (``VmRSS`` of it and its children, from ``/proc/<pid>/status``) is sampled
every ``SAMPLE_SECONDS``, and its CPU (``utime + stime``, and its reaped children's,
from ``/proc/<pid>/stat``) is read at the window's start and end. Peak RSS is the larger
of the sampled peak and ``VmHWM`` (the kernel's high-water mark over the process's whole
life, start-up included). At the end the agent's ``/metrics`` must show one
``flowops_probe_success ... 1.0`` per target. This process's own CPU (the exporter's
driver, the scrapes) is counted for neither.

Goals (the issue's): the agent's peak RSS under 60 MB, its CPU within 3 times the
exporter's. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from flowops.broker import EmbeddedBroker

TARGETS = 100
INTERVAL = 5.0  # seconds between two rounds, for both probers
DURATION = 60.0
QUICK_DURATION = 15.0
SAMPLE_SECONDS = 0.2
PROBE_TIMEOUT = 5.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

GOAL_RSS_MB = 60.0
GOAL_CPU_RATIO = 3.0

EXPORTER = "prometheus-blackbox-exporter"
EXPORTER_CONFIG = {
    "modules": {
        "http_2xx": {
            "prober": "http",
            "timeout": f"{PROBE_TIMEOUT:g}s",
            "http": {"preferred_ip_protocol": "ip4"},
        }
    }
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def say(line: str) -> None:
    """A progress line, on stderr."""
    print(f"monitor: {line}", file=sys.stderr, flush=True)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports of 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --- the targets ----------------------------------------------------------------------


async def serve_targets(ports: Sequence[int]) -> None:
    """``GET /health`` answering 200 on every port, until SIGTERM."""

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for port in ports:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


# --- processes ------------------------------------------------------------------------


@contextmanager
def started(name: str, argv: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running in ``log``'s directory, its output to ``log``; stopped by its pid
    on the way out."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        yield process
    finally:
        stop(name, process)


def stop(name: str, process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        say(f"{name} (pid {process.pid}) ignored SIGTERM: killing it")
        process.kill()
        process.wait()


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``url`` answers 200; a RuntimeError if ``process`` ends first or too late."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} ended: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT:g} s")


# --- /proc ----------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s descendants, now."""
    found: list[int] = []
    try:
        task_dirs = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in task_dirs:
        try:
            kids = [int(kid) for kid in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *children(kid)]
    return found


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (0 once the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """``utime + stime`` of ``pid`` (and of its reaped children: ``cutime + cstime``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # after the command, which may hold spaces
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


@dataclass
class Usage:
    """One process (and its children) watched over the window."""

    name: str
    pid: int
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    peak_rss_kb: int = 0
    samples: list[int] = field(default_factory=list)

    def tree_cpu(self) -> float:
        return cpu_seconds(self.pid) + sum(
            cpu_seconds(kid, reaped=False) for kid in children(self.pid)
        )

    def start(self) -> None:
        self.cpu_start = self.tree_cpu()

    def sample(self) -> None:
        rss = status_kb(self.pid, "VmRSS")
        rss += sum(status_kb(kid, "VmRSS") for kid in children(self.pid))
        self.samples.append(rss)
        self.peak_rss_kb = max(self.peak_rss_kb, rss, status_kb(self.pid, "VmHWM"))

    def end(self) -> None:
        self.sample()
        self.cpu_end = self.tree_cpu()

    @property
    def cpu(self) -> float:
        return self.cpu_end - self.cpu_start

    @property
    def peak_mb(self) -> float:
        return self.peak_rss_kb / 1024


# --- the window -----------------------------------------------------------------------


@dataclass
class Probes:
    """What the probers reported over the window."""

    exporter_rounds: int = 0
    exporter_failed: list[str] = field(default_factory=list)
    exporter_seconds: list[float] = field(default_factory=list)
    agent_scrapes: int = 0
    agent_page: str = ""


async def probe_round(
    session: aiohttp.ClientSession, exporter: str, urls: Sequence[str], found: Probes
) -> None:
    """One ``/probe`` per target, all at once, as Prometheus sends them."""

    async def one(url: str) -> None:
        params = {"target": url, "module": "http_2xx"}
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": f"{PROBE_TIMEOUT:g}"}
        async with session.get(f"{exporter}/probe", params=params, headers=headers) as answer:
            text = await answer.text()
        lines = [line for line in text.splitlines() if line.startswith("probe_success ")]
        if answer.status != 200 or lines != ["probe_success 1"]:
            found.exporter_failed.append(f"{url}: {answer.status} {lines}")
        for line in text.splitlines():
            if line.startswith("probe_duration_seconds "):
                found.exporter_seconds.append(float(line.split()[1]))

    await asyncio.gather(*(one(url) for url in urls))
    found.exporter_rounds += 1


async def scrape(session: aiohttp.ClientSession, agent: str, found: Probes) -> None:
    """The agent's ``/metrics``, as Prometheus scrapes it once an interval."""
    async with session.get(f"{agent}/metrics") as answer:
        found.agent_page = await answer.text()
    found.agent_scrapes += 1


async def window(
    duration: float, watched: Sequence[Usage], exporter: str, agent: str, urls: Sequence[str]
) -> Probes:
    """``duration`` seconds: the exporter driven, the agent scraped, both sampled."""
    found = Probes()
    connector = aiohttp.TCPConnector(limit=len(urls) + 10)
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT + 5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        for usage in watched:
            usage.start()
        began = loop.time()
        tasks: list[asyncio.Task[None]] = []
        beat = began
        while (now := loop.time()) < began + duration:
            if now >= beat:
                tasks.append(asyncio.create_task(probe_round(session, exporter, urls, found)))
                tasks.append(asyncio.create_task(scrape(session, agent, found)))
                beat += INTERVAL
            for usage in watched:
                usage.sample()
            await asyncio.sleep(SAMPLE_SECONDS)
        await asyncio.gather(*tasks)
        for usage in watched:
            usage.end()
        await scrape(session, agent, found)  # the last round's page, out of the window
    return found


def agent_successes(page: str) -> int:
    """How many targets the agent's page shows as passing."""
    return sum(
        1
        for line in page.splitlines()
        if line.startswith("flowops_probe_success{") and line.endswith(" 1.0")
    )


# --- the run --------------------------------------------------------------------------


def agent_config(ports: Sequence[int], listen: str, bootstrap: str | None) -> dict[str, object]:
    """The agent's settings: one plain HTTP model server per target; health events to
    ``bootstrap`` if given, else none."""
    return {
        "kafka": {"bootstrap": bootstrap or "127.0.0.1:9"},
        "monitor": {
            "listen": listen,
            "interval": INTERVAL,
            "model_servers": [
                {
                    "name": f"target-{i:03d}",
                    "url": f"http://127.0.0.1:{port}/health",
                    "protocol": "http",
                    "timeout": PROBE_TIMEOUT,
                }
                for i, port in enumerate(ports)
            ],
            "health_events": {"enabled": bootstrap is not None},
            "alerts": {"enabled": False},
        },
    }


@dataclass
class Result:
    agent: Usage
    exporter: Usage
    probes: Probes
    targets: int
    duration: float
    agent_start_cpu: float
    health_events: bool


def run(duration: float, targets: int, health_events: bool) -> Result:
    """Start everything, watch the window, stop everything."""
    binary = shutil.which(EXPORTER)
    if binary is None:
        raise SystemExit(f"{EXPORTER} is not installed: apt-get install -y {EXPORTER}")
    *target_ports, agent_port, exporter_port = free_ports(targets + 2)
    urls = [f"http://127.0.0.1:{port}/health" for port in target_ports]
    agent_url = f"http://127.0.0.1:{agent_port}"
    exporter_url = f"http://127.0.0.1:{exporter_port}"
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        bootstrap = None
        if health_events:
            broker = stack.enter_context(EmbeddedBroker(free_ports(1)[0], log=work / "broker.log"))
            bootstrap = broker.bootstrap
            say(f"health events to the broker at {bootstrap}")
        listen = f"127.0.0.1:{agent_port}"
        (work / "agent.yaml").write_text(
            yaml.safe_dump(agent_config(target_ports, listen, bootstrap))
        )
        (work / "blackbox.yml").write_text(yaml.safe_dump(EXPORTER_CONFIG))
        ports = ",".join(map(str, target_ports))
        serve = [sys.executable, __file__, "--serve-targets", ports]
        server = stack.enter_context(started("targets", serve, work / "targets.log"))
        wait_for(urls[-1], server, work / "targets.log")
        say(f"{targets} targets on 127.0.0.1:{target_ports[0]}..{target_ports[-1]}")
        exporter_argv = [
            binary,
            f"--config.file={work / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{exporter_port}",
            "--log.level=warn",
        ]
        exporter = stack.enter_context(started("exporter", exporter_argv, work / "exporter.log"))
        agent_argv = [
            sys.executable,
            "-m",
            "flowops",
            "monitor",
            "--config",
            str(work / "agent.yaml"),
        ]
        agent = stack.enter_context(started("agent", agent_argv, work / "agent.log"))
        wait_for(f"{exporter_url}/metrics", exporter, work / "exporter.log")
        wait_for(f"{agent_url}/healthz", agent, work / "agent.log")
        agent_start_cpu = cpu_seconds(agent.pid)
        say(f"agent pid {agent.pid}, exporter pid {exporter.pid}: {duration:g} s window")
        watched = [Usage("agent", agent.pid), Usage("exporter", exporter.pid)]
        probes = asyncio.run(window(duration, watched, exporter_url, agent_url, urls))
        for process, log in ((agent, "agent.log"), (exporter, "exporter.log")):
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} ended: {(work / log).read_text()[-2000:]}")
    return Result(*watched, probes, targets, duration, agent_start_cpu, health_events)


# --- the table ------------------------------------------------------------------------


def report(result: Result) -> bool:
    """Print the table; whether both probers probed every target."""
    agent, exporter, probes = result.agent, result.exporter, result.probes
    passing = agent_successes(probes.agent_page)
    probed = passing == result.targets and not probes.exporter_failed
    ratio = agent.cpu / exporter.cpu if exporter.cpu else float("inf")
    rss_verdict = "met" if agent.peak_mb < GOAL_RSS_MB else "NOT met"
    cpu_verdict = "met" if ratio <= GOAL_CPU_RATIO else "NOT met"
    seconds = result.duration
    events = "on, to an embedded broker" if result.health_events else "off"
    print(
        f"{result.targets} HTTP targets every {INTERVAL:g} s for {seconds:g} s; "
        f"the agent's health events {events}, alerts off"
    )
    print()
    print("| process | peak RSS | CPU | CPU % of one core | probes checked |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        f"| FlowOps agent | {agent.peak_mb:.1f} MB | {agent.cpu:.2f} s | "
        f"{100 * agent.cpu / seconds:.2f} % | {passing} of {result.targets} passing on "
        f"/metrics, {probes.agent_scrapes} scrapes |"
    )
    exporter_checked = probes.exporter_rounds * result.targets - len(probes.exporter_failed)
    print(
        f"| blackbox_exporter | {exporter.peak_mb:.1f} MB | {exporter.cpu:.2f} s | "
        f"{100 * exporter.cpu / seconds:.2f} % | {exporter_checked} of "
        f"{probes.exporter_rounds * result.targets} probes probe_success 1 |"
    )
    print()
    print("| measure | FlowOps | anchor | ours / anchor | goal |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        f"| CPU over the window | {agent.cpu:.2f} s | blackbox_exporter: {exporter.cpu:.2f} s "
        f"| {ratio:.2f}x | <= {GOAL_CPU_RATIO:g}x {cpu_verdict} |"
    )
    print(
        f"| peak RSS | {agent.peak_mb:.1f} MB | blackbox_exporter: {exporter.peak_mb:.1f} MB "
        f"| {agent.peak_mb / exporter.peak_mb:.2f}x | < {GOAL_RSS_MB:g} MB {rss_verdict} "
        f"({agent.peak_mb / GOAL_RSS_MB:.2f} of the goal) |"
    )
    print()
    print(
        f"agent start-up CPU (before the window): {result.agent_start_cpu:.2f} s; "
        f"RSS at the window's end: agent {agent.samples[-1] / 1024:.1f} MB, "
        f"exporter {exporter.samples[-1] / 1024:.1f} MB"
    )
    if probes.exporter_failed:
        say(f"exporter probes failed: {probes.exporter_failed[:5]}")
    if passing != result.targets:
        say(f"the agent's page shows {passing} of {result.targets} passing")
    return probed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds watched")
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {QUICK_DURATION:g} s, same targets"
    )
    parser.add_argument(
        "--health-events",
        action="store_true",
        help="the agent publishes health events, to a Tansu broker started here",
    )
    parser.add_argument("--targets", type=int, default=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--serve-targets", metavar="PORTS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_targets:
        asyncio.run(serve_targets([int(port) for port in args.serve_targets.split(",")]))
        return 0
    duration = QUICK_DURATION if args.quick else args.duration
    return 0 if report(run(duration, args.targets, args.health_events)) else 1


if __name__ == "__main__":
    sys.exit(main())
