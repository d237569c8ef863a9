"""What each gateway feature costs: CPU time a request, one worker, features added one
at a time, beside the plain aiohttp proxy's, in one run.

``bench/gateway.py`` answers "how fast is the whole gateway"; this answers "where does its
time go", so the next step is chosen by figures. The same upstream (nginx ``return 200``)
and wrk load as ``bench/gateway.py`` (POST of a one-row JSON body, every answer a 200);
the gateway is ``flowops gateway --no-access-log``, one worker on uvloop, with:

1. **proxy**: one route, nothing else on (metrics are always counted);
2. **+ publish**: every request's traffic event published to an embedded Tansu broker;
3. **+ rate limit**: a 100,000/s limit in the memory store;
4. **+ API key**: a key required (``auth: true``): the whole gateway of ``bench/gateway.py``.

For each, the gateway process's CPU time (user and system, from ``/proc/<pid>/stat``)
over the measured run, divided by the requests answered: the figure that does not depend
on what else the 2 cores were doing, unlike requests a second. The plain aiohttp proxy
(``bench/plain_proxy.py``, asyncio) is measured the same way: the anchor.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml
from _harness import usage
from gateway import (  # bench/gateway.py: Python puts the script's directory on the path
    API_KEY,
    NGINX_UPSTREAM,
    WARMUP,
    Service,
    nginx,
    plain_proxy,
    say,
    service,
    wrk,
)

from flowops.broker import EmbeddedBroker, free_port
from flowops.gateway.auth import hash_api_key

STEPS = ("proxy", "+ publish", "+ rate limit", "+ API key")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


@contextmanager
def gateway(workdir: Path, step: int, upstream: str, bootstrap: str) -> Iterator[Service]:
    """The gateway with the first ``step`` + 1 features of :data:`STEPS` on."""
    port = free_port()
    route: dict[str, object] = {
        "name": "bench",
        "prefix": "/models/bench",
        "upstreams": [upstream],
        "publish": step >= 1,
    }
    if step >= 2:
        route["rate_limit"] = {"rate": 100_000, "burst": 100_000}
    if step >= 3:
        route["auth"] = True
    settings = {
        "kafka": {"bootstrap": bootstrap},
        "gateway": {
            "listen": f"127.0.0.1:{port}",
            "auth": {"api_keys": [{"name": "bench", "sha256": hash_api_key(API_KEY)}]},
            "routes": [route],
        },
    }
    config = workdir / f"features-{port}.yaml"
    config.write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-m", "flowops", "gateway", "--config", str(config)]
    command += ["--no-access-log"]
    url = f"http://127.0.0.1:{port}"
    with service(f"gateway {STEPS[step]}", command, workdir, url, "/healthz") as running:
        yield running


def cost(workdir: Path, target: Service) -> tuple[float, float, float]:
    """Requests a second, and user and system CPU microseconds a request."""
    wrk(workdir, target.url, seconds=WARMUP)
    user, system = cpu_seconds(target.proc.pid)
    load = wrk(workdir, target.url)
    user_after, system_after = cpu_seconds(target.proc.pid)
    per = 1e6 / load.requests
    figures = (load.rps, (user_after - user) * per, (system_after - system) * per)
    say(f"{target.name}: {figures[0]:,.0f}/s, {figures[1]:.1f} + {figures[2]:.1f} us CPU")
    return figures


def run(workdir: Path) -> None:
    with ExitStack() as stack:
        upstream = stack.enter_context(nginx("upstream", NGINX_UPSTREAM, workdir))
        broker = EmbeddedBroker(port=free_port())
        broker.start()
        stack.callback(broker.stop)
        with plain_proxy(workdir, upstream.url, uvloop=False) as plain:
            anchor = cost(workdir, plain)
        rows = []
        for step in range(len(STEPS)):
            with gateway(workdir, step, upstream.url, broker.bootstrap) as target:
                rows.append((STEPS[step], cost(workdir, target)))
    print("One worker, uvloop; CPU of the serving process over a 5 s wrk run, a request:")
    print()
    print("| gateway | requests/s | user | system | CPU a request | added | / plain aiohttp's |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    plain_cpu = anchor[1] + anchor[2]
    print(
        f"| plain aiohttp proxy (anchor) | {anchor[0]:,.0f} | {anchor[1]:.1f} us "
        f"| {anchor[2]:.1f} us | {plain_cpu:.1f} us | | 1.00x |"
    )
    previous = None
    for name, (rps, user, system) in rows:
        total = user + system
        added = "" if previous is None else f"{total - previous:+.1f} us"
        print(
            f"| {name} | {rps:,.0f} | {user:.1f} us | {system:.1f} us | {total:.1f} us "
            f"| {added} | {total / plain_cpu:.2f}x |"
        )
        previous = total


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flowops-bench-features-") as workdir:
        run(Path(workdir))
    say(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    usage(__doc__)
    main()
