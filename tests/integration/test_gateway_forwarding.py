"""Forwarding headers and the caller's address, tried with raw bytes on real sockets
against a recording upstream (flowops/gateway/forwarding.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from gateway_servers import RecordingUpstream, raw_exchange, running_gateway, statuses

from flowops.gateway.auth import hash_api_key

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

KEY = "key-for-the-forwarding-tests"


@asynccontextmanager
async def gateway_with(**gateway: Any) -> AsyncIterator[tuple[int, RecordingUpstream]]:
    upstream = RecordingUpstream("m")
    await upstream.start()
    settings = {
        "routes": [
            {
                "name": "m",
                "prefix": "/models/m",
                "upstreams": [upstream.url],
                "auth": True,
                "rate_limit": {"rate": 0.001, "burst": 1, "key": "client"},
            }
        ],
        "auth": {"api_keys": [{"name": "k", "sha256": hash_api_key(KEY)}]},
        "publish": {"enabled": False},
        **gateway,
    }
    try:
        async with running_gateway(settings) as base:
            yield int(base.rpartition(":")[2]), upstream
    finally:
        await upstream.stop()


def get(*headers: str) -> bytes:
    extra = "".join(f"{header}\r\n" for header in headers)
    return (
        f"GET /models/m/x HTTP/1.1\r\nHost: gw.test\r\nX-API-Key: {KEY}\r\n{extra}"
        "Connection: close\r\n\r\n"
    ).encode()


SPOOFED = (
    "X-Forwarded-For: 198.51.100.1",
    "Forwarded: for=198.51.100.1",
    "X-Real-IP: 198.51.100.1",
    f"X_Api_Key: {KEY}",
    "X_Forwarded_For: 198.51.100.1",
    "X_Real_IP: 198.51.100.1",
    "X_Custom: kept",
)


async def test_an_untrusted_client_cannot_name_its_address_nor_pass_underscore_twins() -> None:
    async with gateway_with() as (port, upstream):
        first = await raw_exchange(port, get(*SPOOFED))
        # another claimed address is the same caller: its one-token bucket is empty
        second = await raw_exchange(port, get("X-Forwarded-For: 198.51.100.2"))
    assert statuses(first) == [200]
    assert statuses(second) == [429]
    assert len(upstream.seen) == 1
    assert upstream.header(0, "X-Forwarded-For") == ["127.0.0.1"]
    assert upstream.header(0, "Forwarded") == ["for=127.0.0.1"]
    assert upstream.header(0, "X-Real-IP") == ["127.0.0.1"]
    names = {name.lower() for name, _ in upstream.seen[0].headers}
    assert not {"x_api_key", "x-api-key", "x_forwarded_for", "x_real_ip"} & names
    assert upstream.header(0, "X_Custom") == ["kept"]


async def test_a_trusted_proxy_names_the_client_and_its_headers_are_appended_to() -> None:
    async with gateway_with(trusted_proxies=["127.0.0.0/8"]) as (port, upstream):
        first = await raw_exchange(port, get("X-Forwarded-For: 198.51.100.1, 127.0.0.5"))
        # another client behind the same proxy has a bucket of its own
        second = await raw_exchange(port, get("X-Forwarded-For: 198.51.100.2"))
        again = await raw_exchange(port, get("X-Forwarded-For: 198.51.100.2"))
    assert [statuses(a) for a in (first, second, again)] == [[200], [200], [429]]
    assert upstream.header(0, "X-Forwarded-For") == ["198.51.100.1, 127.0.0.5, 127.0.0.1"]
    assert upstream.header(0, "X-Real-IP") == ["198.51.100.1"]
    assert upstream.header(1, "X-Real-IP") == ["198.51.100.2"]
