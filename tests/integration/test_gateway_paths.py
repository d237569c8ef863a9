"""One path for everything, tried as an attacker would: raw bytes on real sockets, a
gateway with two routes, an API key allowed route ``a`` only, and recording upstreams
that say exactly what reached them (flowops/gateway/target.py, proxy.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from gateway_servers import RecordingUpstream, raw_exchange, running_gateway, statuses

from flowops.gateway.auth import hash_api_key

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

KEY_A = "key-for-route-a-only-0123"


@asynccontextmanager
async def two_routes(
    **route_a: Any,
) -> AsyncIterator[tuple[int, RecordingUpstream, RecordingUpstream]]:
    """Routes a (/models/a) and b (/models/b) behind auth; KEY_A may use a only."""
    a, b = RecordingUpstream("a"), RecordingUpstream("b")
    await a.start()
    await b.start()
    gateway = {
        "routes": [
            {"name": "a", "prefix": "/models/a", "upstreams": [a.url], "auth": True, **route_a},
            {"name": "b", "prefix": "/models/b", "upstreams": [b.url], "auth": True},
        ],
        "auth": {"api_keys": [{"name": "team-a", "sha256": hash_api_key(KEY_A), "routes": ["a"]}]},
        "publish": {"enabled": False},
    }
    try:
        async with running_gateway(gateway) as base:
            yield int(base.rpartition(":")[2]), a, b
    finally:
        await a.stop()
        await b.stop()


def get(target: str, *, extra: str = "") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: gw.test\r\nX-API-Key: {KEY_A}\r\n{extra}"
        "Connection: close\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    "target",
    [
        "/models/a/../b/x",
        "/models/a/%2e%2e/b/x",
        "/models/a/%2E./b/x",
        "/models/a/./../b/x",
        "/models/a/x/../../b/x",
        "/models/a//..//b/x",
    ],
)
async def test_a_key_for_route_a_cannot_reach_b_through_dot_segments(target: str) -> None:
    async with two_routes() as (port, a, b):
        answer = await raw_exchange(port, get(target))
        ordinary = await raw_exchange(port, get("/models/a/x"))  # still serving the key
    assert statuses(answer) == [403]  # routed and authorised as b, the route it names
    assert b"forbidden_route" in answer
    assert statuses(ordinary) == [200]
    assert [r.target for r in a.seen] == ["/models/a/x"]
    assert b.seen == []


@pytest.mark.parametrize(
    "target",
    [
        "/models/a%2f..%2fb/x",
        "/models/a/..%2fb/x",
        "/models/a/..%5cb/x",
        "/models/a\\..\\b",
        "/models/a/..;/b/x",
        "/models/a#/../b/x",
    ],
)
async def test_ambiguous_spellings_are_refused_before_routing(target: str) -> None:
    async with two_routes() as (port, a, b):
        answer = await raw_exchange(port, get(target))
    assert statuses(answer) == [400]
    assert b"bad_target" in answer
    assert (a.seen, b.seen) == ([], [])


async def test_the_upstream_gets_the_path_that_was_routed_and_authorised() -> None:
    async with two_routes() as (port, a, b):
        answer = await raw_exchange(port, get("/models/a/x/../y/%2e/z?q=/../b"))
    assert statuses(answer) == [200]
    assert [(r.method, r.target) for r in a.seen] == [("GET", "/models/a/y/z?q=/../b")]
    assert b.seen == []


async def test_strip_prefix_strips_the_normalised_path() -> None:
    async with two_routes(strip_prefix=True) as (port, a, b):
        crossing = await raw_exchange(port, get("/models/a/%2e%2e/%2e%2e/models/b/x"))
        inside = await raw_exchange(port, get("/models/a/v1/../v2/infer"))
        climbing = await raw_exchange(port, get("/models/a/.."))
    assert statuses(crossing) == [403]
    assert statuses(inside) == [200]
    assert statuses(climbing) == [404]  # /models/: no route, not a's upstream's "/.."
    assert [r.target for r in a.seen] == ["/v2/infer"]
    assert b.seen == []


async def test_an_absolute_target_is_forwarded_as_its_path_and_its_host_checked() -> None:
    async with two_routes() as (port, a, b):
        absolute = await raw_exchange(port, get("http://gw.test/models/a/../a/x"))
        other_host = await raw_exchange(port, get("http://evil.test/models/a/x"))
    assert statuses(absolute) == [200]
    assert statuses(other_host) == [400]
    assert [r.target for r in a.seen] == ["/models/a/x"]
    assert b.seen == []


async def test_connect_and_the_asterisk_form_are_not_forwarded_on_a_catch_all_route() -> None:
    upstream = RecordingUpstream("all")
    await upstream.start()
    gateway = {
        "routes": [{"name": "all", "prefix": "/", "upstreams": [upstream.url]}],
        "publish": {"enabled": False},
    }
    try:
        async with running_gateway(gateway) as base:
            port = int(base.rpartition(":")[2])
            connect = await raw_exchange(
                port, b"CONNECT internal.test:22 HTTP/1.1\r\nHost: internal.test:22\r\n\r\n"
            )
            asterisk = await raw_exchange(
                port, b"OPTIONS * HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"
            )
            ordinary = await raw_exchange(port, get("/anything/./else"))
    finally:
        await upstream.stop()
    assert statuses(connect) == [400]  # the listener's answer, as nginx's
    assert statuses(asterisk) == [400]
    assert statuses(ordinary) == [200]
    assert [r.target for r in upstream.seen] == ["/anything/else"]


async def test_a_model_named_by_header_must_be_the_one_the_path_names() -> None:
    iris, credit = RecordingUpstream("iris"), RecordingUpstream("credit")
    await iris.start()
    await credit.start()
    gateway = {
        "model_from": "header:X-Model",
        "routes": [
            {
                "name": "iris",
                "prefix": "/",
                "match_model": "iris",
                "upstreams": [iris.url],
                "auth": True,
            },
            {
                "name": "credit",
                "prefix": "/",
                "match_model": "credit",
                "upstreams": [credit.url],
                "auth": True,
            },
        ],
        "auth": {
            "api_keys": [{"name": "iris-only", "sha256": hash_api_key(KEY_A), "routes": ["iris"]}]
        },
        "publish": {"enabled": False},
    }

    def post(path: str, model: str) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: gw.test\r\nX-API-Key: {KEY_A}\r\nX-Model: {model}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        ).encode()

    try:
        async with running_gateway(gateway) as base:
            port = int(base.rpartition(":")[2])
            v1 = await raw_exchange(port, post("/v1/models/credit:predict", "iris"))
            v2 = await raw_exchange(port, post("/v2/models/credit/infer", "iris"))
            hidden = await raw_exchange(port, post("/v2/models/iris/../credit/infer", "iris"))
            agreeing = await raw_exchange(port, post("/v1/models/iris:predict", "iris"))
    finally:
        await iris.stop()
        await credit.stop()
    assert [statuses(answer) for answer in (v1, v2, hidden)] == [[400], [400], [400]]
    assert b"model_mismatch" in v1
    assert statuses(agreeing) == [200]
    assert [r.target for r in iris.seen] == ["/v1/models/iris:predict"]
    assert credit.seen == []


async def test_a_model_named_in_the_body_must_be_the_one_the_path_names() -> None:
    iris, credit = RecordingUpstream("iris"), RecordingUpstream("credit")
    await iris.start()
    await credit.start()
    routes = [
        {"name": "iris", "prefix": "/", "match_model": "iris", "upstreams": [iris.url]},
        {"name": "credit", "prefix": "/", "match_model": "credit", "upstreams": [credit.url]},
    ]
    gateway = {"model_from": "body:model", "routes": routes, "publish": {"enabled": False}}

    def post(path: str, body: bytes) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n"
        return f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body

    try:
        async with running_gateway(gateway) as base:
            port = int(base.rpartition(":")[2])
            crossing = await raw_exchange(
                port, post("/v2/models/credit/infer", b'{"model":"iris"}')
            )
            agreeing = await raw_exchange(port, post("/v2/models/iris/infer", b'{"model":"iris"}'))
    finally:
        await iris.stop()
        await credit.stop()
    assert (statuses(crossing), statuses(agreeing)) == ([400], [200])
    assert [r.target for r in iris.seen] == ["/v2/models/iris/infer"]
    assert credit.seen == []
