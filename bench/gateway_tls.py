"""What TLS termination costs the gateway a request, beside what it costs nginx, one run.

The same upstream (nginx ``return 200``) and wrk load as ``bench/gateway.py`` (POST of a
one-row JSON body, every answer a 200), four proxies in front of it, each one process:

- the gateway (``flowops gateway --no-access-log``, one worker on uvloop, one route,
  nothing else on) over HTTP, then with ``gateway.tls``;
- nginx ``proxy_pass`` (``worker_processes 1``, ``keepalive`` to the upstream) over HTTP,
  then with ``listen ... ssl`` and nginx's default protocols and ciphers.

Both terminate TLS with the same certificate (ECDSA P-256, made here by the ``openssl``
CLI) and negotiate TLS 1.3 with wrk (OpenSSL 3 on both sides). Each is loaded twice:

- **keep-alive**: ``CONNECTIONS`` connections kept open, so TLS costs its record layer
  (AES-GCM both ways) and nothing else;
- **a connection a request**: ``Connection: close`` on every request, so each one pays
  a TCP connection and, with TLS, a handshake (wrk's; whether it resumes sessions is
  its own affair);
- **full handshakes** (HTTPS only): ``openssl s_time -new -www PATH``, one connection
  at a time, each a full TLS 1.3 handshake (no resumption) and one ``GET``; its TLS cost
  is taken against the HTTP figure of a connection a request.

For each, the serving process's CPU time (user and system, ``/proc/<pid>/stat``; nginx's
one worker) over the measured run divided by the requests answered, and the TLS cost a
request: the TLS figure less the HTTP figure of the same server. Progress goes to
stderr, the table to stdout.
"""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml
from _harness import usage
from gateway import NGINX_COMMON, NGINX_UPSTREAM, PATH, Service, nginx, nginx_binary, say, wrk
from gateway_features import cpu_seconds

from flowops.broker import free_port

SECONDS = 3  # each measured wrk run, after a 1 s warm-up
MODES = ("keep-alive", "a connection a request", "full handshakes")
START_TIMEOUT = 30.0

NGINX_TLS_PROXY = """worker_processes 1;
{common}
http {{
    access_log off;
    keepalive_requests 10000000;
    upstream model {{
        server 127.0.0.1:{upstream};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port}{ssl};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and its key."""
    cert, key = workdir / "bench.pem", workdir / "bench.key"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"]
    command += ["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=bench"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


@contextmanager
def started(
    name: str, command: list[str], workdir: Path, url: str, cafile: Path | None
) -> Iterator[Service]:
    """Start ``command``; ready when ``url`` answers (https: verified against ``cafile``)."""
    log = workdir / f"{name.replace(' ', '-')}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    running = Service(name, proc, log, url)
    try:
        wait_ready(running, cafile)
        yield running
    finally:
        running.stop()


def wait_ready(running: Service, cafile: Path | None) -> None:
    scheme, _, rest = running.url.partition("://")
    host, _, port = rest.partition(":")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if running.proc.poll() is not None:
            raise RuntimeError(f"{running.name} exited:\n{running.tail()}")
        if scheme == "https":
            context = ssl.create_default_context(cafile=cafile)
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, int(port), timeout=5, context=context
            )
        else:
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            connection.request("POST", PATH, body=b"{}")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{running.name} did not answer in {START_TIMEOUT:g} s")
        time.sleep(0.1)


@contextmanager
def gateway(workdir: Path, upstream: str, tls: tuple[Path, Path] | None) -> Iterator[Service]:
    port = free_port()
    section: dict[str, object] = {
        "listen": f"127.0.0.1:{port}",
        "routes": [
            {"name": "bench", "prefix": "/models/bench", "upstreams": [upstream], "publish": False}
        ],
        "publish": {"enabled": False},
    }
    if tls is not None:
        section["tls"] = {"cert_file": str(tls[0]), "key_file": str(tls[1])}
    config = workdir / f"tls-{port}.yaml"
    config.write_text(yaml.safe_dump({"gateway": section}))
    command = [sys.executable, "-m", "flowops", "gateway", "--config", str(config)]
    command += ["--no-access-log"]
    scheme = "https" if tls is not None else "http"
    name = f"gateway {scheme}"
    url = f"{scheme}://127.0.0.1:{port}"
    with started(name, command, workdir, url, tls and tls[0]) as running:
        yield running


@contextmanager
def nginx_proxy(workdir: Path, upstream: str, tls: tuple[Path, Path] | None) -> Iterator[Service]:
    scheme = "https" if tls is not None else "http"
    home = workdir / f"nginx-{scheme}"
    (home / "logs").mkdir(parents=True)
    home.chmod(0o755)
    port = free_port()
    cert, key = tls if tls is not None else (workdir / "none.pem", workdir / "none.key")
    text = NGINX_TLS_PROXY.format(
        common=NGINX_COMMON.format(dir=home),
        port=port,
        upstream=upstream.rpartition(":")[2],
        ssl=" ssl" if tls is not None else "",
        cert=cert,
        key=key,
    )
    if tls is None:
        text = "\n".join(line for line in text.splitlines() if "ssl_certificate" not in line)
    (home / "nginx.conf").write_text(text)
    command = [nginx_binary(), "-p", str(home), "-c", str(home / "nginx.conf")]
    url = f"{scheme}://127.0.0.1:{port}"
    with started(f"nginx {scheme}", command, workdir, url, tls and tls[0]) as running:
        yield running


def worker_pid(target: Service) -> int:
    """nginx's one worker (the master only supervises), or the gateway's process."""
    children = Path(f"/proc/{target.proc.pid}/task/{target.proc.pid}/children")
    pids = children.read_text().split() if children.exists() else []
    return int(pids[0]) if target.name.startswith("nginx") and pids else target.proc.pid


def cost(workdir: Path, target: Service, mode: str) -> tuple[float, float]:
    """Requests a second, and CPU microseconds a request (user and system)."""
    close = mode != MODES[0]
    pid = worker_pid(target)
    if mode == MODES[2]:
        user, system = cpu_seconds(pid)
        requests = s_time(target.url)
        rps = requests / SECONDS
    else:
        wrk(workdir, target.url, seconds=1, close=close)
        user, system = cpu_seconds(pid)
        load = wrk(workdir, target.url, seconds=SECONDS, close=close)
        requests, rps = load.requests, load.rps
    user_after, system_after = cpu_seconds(pid)
    figures = (rps, (user_after - user + system_after - system) * 1e6 / requests)
    say(f"{target.name}, {mode}: {figures[0]:,.0f}/s, {figures[1]:.1f} us CPU a request")
    return figures


def s_time(url: str) -> int:
    """Full handshakes and a GET each, one at a time, for SECONDS: how many were made."""
    address = url.removeprefix("https://")
    command = ["openssl", "s_time", "-connect", address, "-new", "-www", PATH]
    done = subprocess.run(
        [*command, "-time", str(SECONDS)], capture_output=True, text=True, timeout=SECONDS + 30
    )
    lines = [line for line in done.stdout.splitlines() if "connections in" in line]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"openssl s_time failed:\n{done.stdout}\n{done.stderr}")
    return int(lines[0].split()[0])


def run(workdir: Path) -> None:
    tls = certificate(workdir)
    results: dict[tuple[str, str, str], tuple[float, float]] = {}
    with ExitStack() as stack:
        upstream = stack.enter_context(nginx("upstream", NGINX_UPSTREAM, workdir))
        for server, make in (("FlowOps gateway", gateway), ("nginx", nginx_proxy)):
            for scheme, pair in (("http", None), ("https", tls)):
                with make(workdir, upstream.url, pair) as target:
                    for mode in MODES if pair is not None else MODES[:2]:
                        results[server, scheme, mode] = cost(workdir, target, mode)
    print("One process each; CPU of the serving process over a 3 s wrk run (-t2 -c64), a request:")
    print()
    print("| server | connections | HTTP | HTTPS | TLS cost a request | HTTPS requests/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for server in ("FlowOps gateway", "nginx"):
        for mode in MODES:
            plain = results[server, "http", MODES[1] if mode == MODES[2] else mode]
            secure = results[server, "https", mode]
            print(
                f"| {server} | {mode} | {plain[1]:.1f} us | {secure[1]:.1f} us "
                f"| {secure[1] - plain[1]:+.1f} us | {secure[0]:,.0f} |"
            )


def main() -> None:
    started_at = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flowops-bench-tls-") as workdir:
        run(Path(workdir))
    say(f"done in {time.monotonic() - started_at:.0f} s")


if __name__ == "__main__":
    usage(__doc__)
    main()
