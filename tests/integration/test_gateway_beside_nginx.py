"""The same bytes to the gateway and to nginx, each in front of a recording model server:
the table "Conformance (RFC 9112)" of docs/gateway.md, kept true.

Each case says what each answers; where they differ (HTTP/0.9, a header line over its
cap), docs/gateway.md says why. Neither may pass a refused request to its upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from gateway_servers import ModelServer, model_servers, serving_gateway
from helpers import until

from flowops.broker import free_port

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
error_log {home}/error.log;
pid {home}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_header_timeout 1s;
    client_body_timeout 1s;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass {upstream}; }}
    }}
}}
"""

HTTP_09 = "an HTTP/0.9 answer (a body, no status line)"
CASES: dict[str, tuple[bytes, int | str, int | str]] = {
    # name: (bytes, the gateway's status, nginx's status)
    "no-host": (b"GET /models/iris/x HTTP/1.1\r\n\r\n", 400, 400),
    "two-hosts": (b"GET /models/iris/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 400),
    "bad-host": (b"GET /models/iris/x HTTP/1.1\r\nHost: a b\r\n\r\n", 400, 400),
    "1.0-chunked": (
        b"POST /models/iris/x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        400,
        400,
    ),
    "http-0.9": (b"GET /models/iris/x\r\n\r\n", 400, HTTP_09),  # nginx serves it
    "http-2.0": (b"GET /models/iris/x HTTP/2.0\r\nHost: a\r\n\r\n", 505, 505),
    "gzip-chunked": (
        b"POST /models/iris/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        501,
        501,
    ),
    "bad-chunk": (
        b"POST /models/iris/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n",
        400,
        400,
    ),
    "length-and-chunked": (
        b"POST /models/iris/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
        400,
    ),
    "connect": (b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", 400, 400),
    "long-target": (b"GET /models/iris/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, 414),
    "long-header": (
        b"GET /models/iris/x HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
        431,  # RFC 6585's status for it
        400,  # nginx's "Request Header Or Cookie Too Large"
    ),
    "stalled-head": (b"GET /models/iris/x HTTP/1.1\r\nHost: a\r\n", 408, 0),  # nginx: the close
    "stalled-body": (
        b"POST /models/iris/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab",
        408,
        0,
    ),
}
TIMEOUTS = {"head_timeout": 1.0, "body_timeout": 1.0}  # nginx's are set to 1 s too


@asynccontextmanager
async def nginx(home: Path, upstream: str) -> AsyncIterator[str]:
    """nginx in the foreground, one process, proxying to ``upstream``; its base URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is not installed (the Makefile's DEBIAN list installs it)")
    port = free_port()
    config = home / "nginx.conf"
    config.write_text(NGINX_CONF.format(home=home, port=port, upstream=upstream))
    process = subprocess.Popen(
        [binary, "-p", str(home), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await until(lambda: _accepts(port), "nginx accepting")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


async def status_of(base: str, data: bytes) -> int | str:
    """The status of the first answer to ``data`` (0: none before the close)."""
    host, _, port = base.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not line:
        return 0
    return int(line.split()[1]) if line.startswith(b"HTTP/1.") else HTTP_09


async def test_the_gateway_and_nginx_answer_the_same_bytes_as_documented(
    tmp_path: Path,
) -> None:
    async with model_servers(2) as (for_gateway, for_nginx):
        route = {"name": "iris", "prefix": "/models/iris", "upstreams": [for_gateway.url]}
        settings = {"routes": [route], "publish": {"enabled": False}, "limits": TIMEOUTS}
        async with serving_gateway(settings) as (gateway, _), nginx(tmp_path, for_nginx.url) as ngx:
            answers = {
                name: (await status_of(gateway, data), await status_of(ngx, data))
                for name, (data, _, _) in CASES.items()
            }
    assert answers == {name: (ours, theirs) for name, (_, ours, theirs) in CASES.items()}
    assert reached(for_gateway) == []
    assert reached(for_nginx) == ["/models/iris/x"]  # the HTTP/0.9 request, served


def reached(server: ModelServer) -> list[str]:
    return [seen["path"] for seen in server.seen]
