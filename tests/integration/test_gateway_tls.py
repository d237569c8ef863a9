"""TLS termination in the gateway's listener (``gateway.tls``), with real clients:
aiohttp and the ssl module verifying against a CA made for the test, ``openssl
s_client`` for the protocol versions; the certificate rotated under a running gateway
(a Kubernetes-style Secret volume); the head's limits over TLS and a client that stalls
in the handshake. Each test runs on asyncio's loop and on uvloop's (``conftest.py``):
their TLS transports are separate implementations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_servers import (
    RecordingUpstream,
    running_gateway,
    serving_gateway,
    statuses,
)
from helpers import until
from tls_certs import Authority, Pair
from volumes import publish_secret_volume

from flowops.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def tls_section(pair: Pair, **extra: Any) -> dict[str, Any]:
    return {"cert_file": str(pair.cert), "key_file": str(pair.key), **extra}


@asynccontextmanager
async def tls_gateway(
    tls: dict[str, Any], **gateway: Any
) -> AsyncIterator[tuple[str, int, RecordingUpstream]]:
    """A gateway terminating TLS with a route ``/m`` to a recording upstream; yields
    its base URL, its port and the upstream."""
    upstream = RecordingUpstream("m")
    await upstream.start()
    section = {
        "tls": tls,
        "routes": [{"name": "m", "prefix": "/m", "upstreams": [upstream.url]}],
        "publish": {"enabled": False},
        **gateway,
    }
    try:
        async with running_gateway(section) as base:
            yield base, int(base.rpartition(":")[2]), upstream
    finally:
        await upstream.stop()


def client_context(ca: Authority, client: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca.cert)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


async def served_by(port: int, ca: Authority) -> str:
    """The common name of the certificate a new connection is served with."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(ca), server_hostname="localhost"
    )
    try:
        peer = writer.get_extra_info("peercert")
        return str(dict(item[0] for item in peer["subject"])["commonName"])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def exchange(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> int:
    """One GET /m/x on an open connection; the answer's status."""
    writer.write(b"GET /m/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)
    return statuses(head)[0]


async def test_https_is_served_verified_and_forwarded_as_https(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    server = ca.issue("gateway", hosts=["127.0.0.1", "localhost"])
    async with (
        tls_gateway(tls_section(server)) as (base, port, upstream),
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            f"{base}/m/predict", json={"x": 1}, ssl=client_context(ca)
        ) as response:
            assert response.status == 200
        forwarded = upstream.header(0, "X-Forwarded-Proto")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # not our CA's: refused
            await session.get(f"{base}/m/x", ssl=ssl.create_default_context())
        plain = await plain_http(port)
    assert forwarded == ["https"]
    assert statuses(plain) == []  # HTTP on the TLS port: a TLS alert, no request served
    assert len(upstream.seen) == 1


async def plain_http(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /m/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        async with asyncio.timeout(30):
            with contextlib.suppress(ConnectionError):
                return await reader.read(-1)
        return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed")
async def test_tls_1_2_and_1_3_are_accepted_and_1_1_refused(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    server = ca.issue("gateway", hosts=["localhost"])
    async with tls_gateway(tls_section(server)) as (_, port, _):
        answers = {
            version: await s_client(port, ca, version) for version in ("tls1_1", "tls1_2", "tls1_3")
        }
    for version in ("tls1_2", "tls1_3"):
        text = answers[version]
        assert "Verify return code: 0 (ok)" in text, text
        assert "Cipher is (NONE)" not in text, text
        assert "Server certificate" in text, text
        assert f"Protocol  : TLSv1.{version[-1]}" in text or f", TLSv1.{version[-1]}," in text
    # the client offered TLS 1.1 (its own floor lowered): the server ends the handshake
    # without a certificate or a cipher (asyncio's and uvloop's TLS close without
    # flushing OpenSSL's protocol-version alert)
    refused = answers["tls1_1"]
    assert "no peer certificate available" in refused, refused
    assert "Cipher is (NONE)" in refused, refused


async def s_client(port: int, ca: Authority, version: str) -> str:
    """``openssl s_client`` at ``version`` only; its output (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        "localhost",
        "-CAfile",
        str(ca.cert),
        f"-{version}",
        "-cipher",
        "DEFAULT@SECLEVEL=0",  # let the client offer TLS 1.1: the server must refuse it
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        output, _ = await process.communicate()
    return output.decode("utf-8", "replace")


async def test_the_certificate_rotates_under_a_running_gateway(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = Authority(tmp_path)
    one, two, three = (ca.issue(name, hosts=["localhost"]) for name in ("one", "two", "three"))
    volume = tmp_path / "secret"

    def publish(cert: Pair, key: Pair, version: int) -> None:
        files = {"tls.crt": cert.cert.read_text(), "tls.key": key.key.read_text()}
        publish_secret_volume(volume, files, version)

    publish(one, one, 1)
    tls = {"cert_file": str(volume / "tls.crt"), "key_file": str(volume / "tls.key")}
    async with tls_gateway(tls, reload={"interval": 0.05}) as (_, port, _):
        assert await served_by(port, ca) == "one"
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(ca), server_hostname="localhost"
        )
        try:
            publish(two, two, 2)
            await until(lambda: _is(port, ca, "two"), "the new certificate")
            assert await exchange(writer, reader) == 200  # a connection made before still serves
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        with caplog.at_level(logging.WARNING, logger="flowops.gateway"):
            publish(three, two, 3)  # a certificate with another's key: unusable
            await until(lambda: "kept the previous ones" in caplog.text, "the line saying so")
        assert await served_by(port, ca) == "two"
    refusals = [r for r in caplog.records if "kept the previous ones" in r.getMessage()]
    assert len(refusals) == 1
    assert "gateway.tls" in refusals[0].getMessage()


async def _is(port: int, ca: Authority, name: str) -> bool:
    return await served_by(port, ca) == name


async def test_client_certificates_when_required(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    server = ca.issue("gateway", hosts=["127.0.0.1"])
    client = ca.issue("caller", client=True)
    tls = tls_section(server, ca_file=str(ca.cert), client_auth="required")
    async with tls_gateway(tls) as (base, _, upstream), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/m/x", ssl=client_context(ca, client)) as response:
            proved = response.status
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"{base}/m/x", ssl=client_context(ca)) as response:
                await response.read()
        seen = len(upstream.seen)
    assert proved == 200
    assert seen == 1  # the request without a certificate never reached the upstream


async def test_a_client_stalled_in_the_handshake_is_cut_and_frees_its_place(
    tmp_path: Path,
) -> None:
    """One connection a worker (``max_connections: 1``): a client that opens TCP and
    sends half a ClientHello holds it until the handshake's deadline (the head's), then
    the client waiting in the backlog is served."""
    ca = Authority(tmp_path)
    server = ca.issue("gateway", hosts=["127.0.0.1"])
    limits = {"head_timeout": 1.0, "max_connections": 1}
    async with tls_gateway(tls_section(server), limits=limits) as (base, port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"\x16\x03\x01\x02\x00\x01")  # a record header, then nothing
            async with aiohttp.ClientSession() as session:
                waiting = asyncio.create_task(session.get(f"{base}/m/x", ssl=client_context(ca)))
                cut = b"reset"
                async with asyncio.timeout(30):
                    with contextlib.suppress(ConnectionError):
                        cut = await reader.read(-1)
                async with asyncio.timeout(30):
                    response = await waiting
                    status = response.status
                    response.release()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    assert cut in (b"", b"reset")  # closed without an answer: there was no request
    assert status == 200


async def test_clients_stalled_in_handshakes_hold_up_no_one_else(tmp_path: Path) -> None:
    """Fifty connections stalled in their handshakes (the deadline far off): a client
    that completes its own is served meanwhile, and the stalled ones are not."""
    ca = Authority(tmp_path)
    server = ca.issue("gateway", hosts=["127.0.0.1"])
    async with tls_gateway(tls_section(server)) as (base, port, upstream):
        stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        try:
            for _, writer in stalled:
                writer.write(b"\x16\x03\x01\x02\x00\x01")  # half a ClientHello's header
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with asyncio.timeout(30):
                        response = await session.get(f"{base}/m/x", ssl=client_context(ca))
                    assert response.status == 200
                    response.release()
        finally:
            for _, writer in stalled:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        assert len(upstream.seen) == 3


async def test_a_slow_head_over_tls_gets_408(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    server = ca.issue("gateway", hosts=["127.0.0.1"])
    slow = {"head_timeout": 1.0}
    async with tls_gateway(tls_section(server), limits=slow) as (_, port, upstream):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(ca), server_hostname="127.0.0.1"
        )
        try:
            writer.write(b"GET /m/x HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            async with asyncio.timeout(30):
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    answer = await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        seen = len(upstream.seen)
    assert statuses(answer) == [408]
    assert seen == 0


async def test_a_head_over_its_cap_over_tls_gets_431(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    server = ca.issue("gateway", hosts=["127.0.0.1"])
    async with serving_gateway({"tls": tls_section(server), "publish": {"enabled": False}}) as (
        base,
        listener,
    ):
        port = int(base.rpartition(":")[2])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(ca), server_hostname="127.0.0.1"
        )
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000)
            async with asyncio.timeout(30):
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    answer = await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        await until(lambda: not listener.connections, "the connection's end")
    assert statuses(answer) == [431]


async def test_unusable_tls_files_stop_the_start_naming_the_key(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    one, two = ca.issue("one"), ca.issue("two")
    mismatched = {"cert_file": str(one.cert), "key_file": str(two.key)}
    with pytest.raises(ConfigError) as refused:
        async with running_gateway({"tls": mismatched, "publish": {"enabled": False}}):
            pass
    assert refused.value.key == "gateway.tls.cert_file"
    with pytest.raises(ConfigError) as no_ca:
        async with running_gateway(
            {"tls": tls_section(one, client_auth="required"), "publish": {"enabled": False}}
        ):
            pass
    assert no_ca.value.key == "gateway.tls"
