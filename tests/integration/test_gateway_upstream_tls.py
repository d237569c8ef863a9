"""The gateway's upstream TLS against a real TLS model server: its CA, a client
certificate (mTLS) and the hostname check, per upstream (``routes[].upstreams[].tls``)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gateway_servers import running_gateway
from helpers import until
from tls_certs import Authority, Pair
from volumes import publish_secret_volume

from flowops.broker import free_port
from flowops.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@asynccontextmanager
async def tls_upstream(
    server: Pair, client_ca: Path | None
) -> AsyncIterator[tuple[int, list[str]]]:
    """An aiohttp server on TLS with ``server``'s certificate, requiring a client
    certificate from ``client_ca`` when given; yields its port and the client names seen."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    seen: list[str] = []

    async def predict(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(item[0] for item in peer["subject"]) if peer else {}
        seen.append(subject.get("commonName", "-"))
        return web.json_response({"predictions": [1]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", predict)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        yield port, seen
    finally:
        await runner.cleanup()


async def status_through(upstream: dict[str, Any]) -> int:
    gateway = {
        "routes": [
            {"name": "m", "prefix": "/m", "upstreams": [upstream], "retry": {"max_retries": 0}}
        ],
        "publish": {"enabled": False},
    }
    async with (
        running_gateway(gateway) as base,
        aiohttp.ClientSession() as session,
        session.post(f"{base}/m/predict", json={"instances": [[1]]}) as response,
    ):
        await response.read()
        return response.status


async def test_mutual_tls_with_the_routes_ca_and_client_certificate(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    server = ca.issue("model-server", hosts=["127.0.0.1", "localhost"])
    client = ca.issue("flowops-gateway", client=True)
    async with tls_upstream(server, client_ca=ca.cert) as (port, seen):
        tls = {"ca_file": str(ca.cert), "cert_file": str(client.cert), "key_file": str(client.key)}
        proved = await status_through({"url": f"https://localhost:{port}", "tls": tls})
        anonymous = await status_through(
            {"url": f"https://localhost:{port}", "tls": {"ca_file": str(ca.cert)}}
        )
    assert (proved, anonymous) == (200, 502)
    assert seen == ["flowops-gateway"]  # the request without a certificate never arrived


async def test_an_upstream_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    ours, theirs = Authority(tmp_path, "ours"), Authority(tmp_path, "theirs")
    server = theirs.issue("model-server", hosts=["127.0.0.1"])
    async with tls_upstream(server, client_ca=None) as (port, seen):
        status = await status_through(
            {"url": f"https://127.0.0.1:{port}", "tls": {"ca_file": str(ours.cert)}}
        )
    assert status == 502
    assert seen == []


async def test_the_hostname_is_checked_unless_the_route_says_not_to(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    server = ca.issue("model-server", hosts=["other.test"])
    async with tls_upstream(server, client_ca=None) as (port, seen):
        url = f"https://127.0.0.1:{port}"
        checked = await status_through({"url": url, "tls": {"ca_file": str(ca.cert)}})
        unchecked = await status_through(
            {"url": url, "tls": {"ca_file": str(ca.cert), "check_hostname": False}}
        )
    assert (checked, unchecked) == (502, 200)
    assert seen == ["-"]


async def test_an_unreadable_tls_file_stops_the_start_naming_its_key(tmp_path: Path) -> None:
    upstream = {"url": "https://127.0.0.1:1", "tls": {"ca_file": str(tmp_path / "missing.pem")}}
    with pytest.raises(ConfigError) as refused:
        async with running_gateway(
            {
                "routes": [{"name": "m", "prefix": "/m", "upstreams": [upstream]}],
                "publish": {"enabled": False},
            }
        ):
            pass
    assert refused.value.key == "gateway.routes.0.upstreams.0.tls.ca_file"


async def test_a_rotated_client_certificate_is_used_without_a_restart(tmp_path: Path) -> None:
    servers, old_clients, new_clients = (
        Authority(tmp_path, "servers"),
        Authority(tmp_path, "old-clients"),
        Authority(tmp_path, "new-clients"),
    )
    server = servers.issue("model-server", hosts=["127.0.0.1"])
    old, new = (
        old_clients.issue("gateway-old", client=True),
        new_clients.issue("gateway-new", client=True),
    )
    volume = tmp_path / "client-tls"
    publish_secret_volume(
        volume, {"tls.crt": old.cert.read_text(), "tls.key": old.key.read_text()}, 1
    )
    tls = {
        "ca_file": str(servers.cert),
        "cert_file": str(volume / "tls.crt"),
        "key_file": str(volume / "tls.key"),
    }
    async with tls_upstream(server, client_ca=new_clients.cert) as (port, seen):
        gateway = {
            "routes": [
                {
                    "name": "m",
                    "prefix": "/m",
                    "upstreams": [{"url": f"https://127.0.0.1:{port}", "tls": tls}],
                    "retry": {"max_retries": 0},
                }
            ],
            "reload": {"interval": 0.05},
            "publish": {"enabled": False},
        }
        async with running_gateway(gateway) as base, aiohttp.ClientSession() as session:

            async def status() -> int:
                async with session.post(f"{base}/m/predict", json={"instances": [[1]]}) as response:
                    await response.read()
                    return response.status

            before = await status()
            publish_secret_volume(
                volume, {"tls.crt": new.cert.read_text(), "tls.key": new.key.read_text()}, 2
            )
            await until(lambda: _ok(status()), "the new client certificate is used")
    assert before == 502  # the server trusts only the new clients' CA
    assert seen[-1] == "gateway-new"


async def _ok(status: Awaitable[int]) -> bool:
    return await status == 200
