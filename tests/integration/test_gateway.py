"""The gateway in front of real model servers on loopback, and a real broker for traffic.

They run :class:`flowops.gateway.app.Gateway` in the test's event loop;
``test_gateway_cli.py`` runs ``flowops gateway`` as a process.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from gateway_servers import ModelServer, model_servers, running_gateway

from flowops.events import (
    Topics,
    TrafficRow,
    decode_traffic_many,
    describe_topics,
    ensure_topics,
)
from flowops.gateway.auth import hash_api_key

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NO_PUBLISH = {"enabled": False}
ADMIN_KEY = "admin-key-for-tests-only"
KEY_A, KEY_B = "team-a-key-0123456789", "team-b-key-0123456789"


def route(servers: list[ModelServer], **extra: Any) -> dict[str, Any]:
    return {
        "name": "iris",
        "prefix": "/models/iris",
        "upstreams": [server.url for server in servers],
        **extra,
    }


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, **kw: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    async with session.post(url, data=orjson.dumps(body), headers=headers, **kw) as response:
        payload = orjson.loads(await response.read() or b"{}")
        return response.status, payload, dict(response.headers)


async def test_round_robin_spreads_requests_evenly_and_forwards_headers() -> None:
    async with (
        model_servers(2) as servers,
        running_gateway({"routes": [route(servers)], "publish": NO_PUBLISH}) as base,
        aiohttp.ClientSession() as session,
    ):
        answers = [
            await post(
                session,
                f"{base}/models/iris/invocations?x=1",
                {"instances": [[1, 2]]},
                headers={
                    "X-Request-ID": f"r-{i}",
                    "Connection": "keep-alive, X-Secret-Hop",
                    "X-Secret-Hop": "1",
                },
            )
            for i in range(40)
        ]
    assert {status for status, _, _ in answers} == {200}
    assert [len(server.seen) for server in servers] == [20, 20]
    _, body, headers = answers[0]
    assert body == {"predictions": [3.0]}
    assert headers["X-Request-ID"] == "r-0"
    assert "Keep-Alive" not in headers  # hop-by-hop, dropped on the way back
    seen = servers[0].seen[0]
    assert seen["path"] == "/models/iris/invocations?x=1"  # forwarded unchanged
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["headers"]["X-Forwarded-Proto"] == "http"
    assert seen["headers"]["X-Request-ID"] in {"r-0", "r-1"}
    assert "X-Secret-Hop" not in seen["headers"]  # named by Connection: hop-by-hop


async def test_strip_prefix_and_a_404_for_paths_no_route_serves() -> None:
    async with (
        model_servers(1) as servers,
        running_gateway(
            {"routes": [route(servers, strip_prefix=True)], "publish": NO_PUBLISH}
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        status, _, _ = await post(session, f"{base}/models/iris/invocations", {"a": 1})
        missing, body, _ = await post(session, f"{base}/models/other", {"a": 1})
    assert status == 200
    assert servers[0].seen[0]["path"] == "/invocations"
    assert missing == 404
    assert body["error"] == "no_route"


async def test_a_dead_upstream_costs_no_client_error_on_a_retryable_route() -> None:
    async with (
        model_servers(2) as servers,
        running_gateway(
            {"routes": [route(servers, retryable=True)], "publish": NO_PUBLISH}
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        statuses = []
        for i in range(60):
            if i == 20:
                await servers[1].stop()  # killed under load
            status, _, _ = await post(
                session, f"{base}/models/iris/invocations", {"instances": [[i]]}
            )
            statuses.append(status)
    assert statuses == [200] * 60
    assert len(servers[0].seen) > 30


async def test_every_upstream_down_is_a_quick_503_with_a_json_body() -> None:
    async with (
        model_servers(2) as servers,
        running_gateway(
            {"routes": [route(servers, retryable=True)], "publish": NO_PUBLISH}
        ) as base,
    ):
        for server in servers:
            await server.stop()
        async with aiohttp.ClientSession() as session:
            answers = [await post(session, f"{base}/models/iris/x", {"a": 1}) for _ in range(12)]
            async with session.get(f"{base}/readyz") as ready:
                readiness = ready.status, orjson.loads(await ready.read())
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {502, 503}
    assert statuses[-1] == 503  # by then the pool has ejected both
    assert answers[-1][1]["error"] == "no_upstream"
    assert readiness == (503, {"status": "unready", "routes_without_upstream": ["iris"]})


async def test_a_failing_upstream_status_is_retried_elsewhere() -> None:
    async with (
        model_servers(2) as servers,
        running_gateway({"routes": [route(servers)], "publish": NO_PUBLISH}) as base,
    ):
        servers[0].status = 503
        async with aiohttp.ClientSession() as session:
            answers = []
            for _ in range(10):
                async with session.get(f"{base}/models/iris/info") as response:  # idempotent
                    answers.append((response.status, response.headers.get("X-Upstream")))
    assert answers == [(200, "m1")] * 10


async def test_bodies_over_the_limit_get_413() -> None:
    async with (
        model_servers(1) as servers,
        running_gateway(
            {"routes": [route(servers)], "publish": NO_PUBLISH, "max_body_bytes": 100}
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        big, body, _ = await post(session, f"{base}/models/iris/x", {"pad": "x" * 200})
        small, _, _ = await post(session, f"{base}/models/iris/x", {"pad": "x"})
    assert (big, body["error"], small) == (413, "body_too_large", 200)
    assert len(servers[0].seen) == 1


async def test_own_endpoints_and_an_authenticated_admin_view() -> None:
    auth = {"api_keys": [{"name": "ops", "sha256": hash_api_key(ADMIN_KEY)}]}
    async with (
        model_servers(1) as servers,
        running_gateway(
            {
                "routes": [route(servers)],
                "publish": NO_PUBLISH,
                "auth": auth,
                "admin_identities": ["key:ops"],
            }
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        await post(session, f"{base}/models/iris/x", {"a": 1})
        async with session.get(f"{base}/healthz") as health:
            assert health.status == 200
        async with session.get(f"{base}/metrics") as metrics:
            text = await metrics.text()
        async with session.get(f"{base}/admin/upstreams") as anonymous:
            assert anonymous.status == 401
        async with session.get(f"{base}/admin/upstreams", headers={"X-API-Key": "wrong"}) as wrong:
            assert wrong.status == 401
        async with session.get(
            f"{base}/admin/upstreams", headers={"X-API-Key": ADMIN_KEY}
        ) as admin:
            view = orjson.loads(await admin.read())
    assert 'flowops_gateway_requests_total{route="iris",status="200"' in text
    assert 'flowops_gateway_upstream_available{route="iris"' in text
    assert view["routes"]["iris"][0]["url"] == servers[0].url
    assert view["routes"]["iris"][0]["available"] is True
    assert ADMIN_KEY not in text


async def test_auth_on_a_route_401_then_403_then_through() -> None:
    auth = {
        "api_keys": [
            {"name": "team-a", "sha256": hash_api_key(KEY_A), "routes": ["iris"]},
            {
                "name": "team-b",
                "sha256": hash_api_key(KEY_B),
                "routes": ["other"],
            },
        ]
    }
    async with (
        model_servers(1) as servers,
        running_gateway(
            {"routes": [route(servers, auth=True)], "publish": NO_PUBLISH, "auth": auth}
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        none, _, none_headers = await post(session, f"{base}/models/iris/x", {"a": 1})
        other, _, _ = await post(
            session,
            f"{base}/models/iris/x",
            {"a": 1},
            headers={"X-API-Key": KEY_B},
        )
        mine, _, _ = await post(
            session,
            f"{base}/models/iris/x",
            {"a": 1},
            headers={"X-API-Key": KEY_A},
        )
    assert (none, other, mine) == (401, 403, 200)
    assert "WWW-Authenticate" in none_headers
    assert "X-API-Key" not in servers[0].seen[0]["headers"]  # credentials stay at the gateway


async def test_rate_limit_answers_429_with_its_headers() -> None:
    async with (
        model_servers(1) as servers,
        running_gateway(
            {"routes": [route(servers, rate_limit={"rate": 1, "burst": 3})], "publish": NO_PUBLISH}
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        answers = [await post(session, f"{base}/models/iris/x", {"a": 1}) for _ in range(5)]
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 200, 200, 429, 429]
    refused = answers[3][2]
    assert int(refused["Retry-After"]) >= 1
    assert refused["RateLimit-Remaining"] == "0"


async def test_traffic_events_reach_kafka(broker: str) -> None:
    model = f"iris-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker)
    async with (
        model_servers(1) as servers,
        running_gateway(
            {
                "routes": [route(servers, model=model, features=["sepal", "petal"])],
                "publish": {"linger_ms": 10},
            },
            kafka={"bootstrap": broker},
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        for i in range(5):
            await post(
                session,
                f"{base}/models/iris/invocations",
                {"instances": [[i, 1.5], [i, 2.5]]},
                headers={"X-Request-ID": f"{model}-{i}"},
            )
        await post(session, f"{base}/models/iris/invocations", "not json at all")
    rows = await traffic_of(broker, model, expected=11)
    parsed = [row for row in rows if row.parse_error is None]
    assert len(parsed) == 10
    assert parsed[0].features == {"sepal": 0.0, "petal": 1.5}
    assert parsed[0].prediction == 1.5
    assert parsed[0].request_id == f"{model}-0"
    assert parsed[0].status == 200
    unparsable = [row for row in rows if row.parse_error is not None]
    assert len(unparsable) == 1
    assert "not" in unparsable[0].parse_error or "JSON" in unparsable[0].parse_error


async def traffic_of(
    bootstrap: str, model: str, expected: int, timeout: float = 30.0
) -> list[TrafficRow]:
    """The traffic rows of ``model`` on the topic, once ``expected`` have arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    rows: list[TrafficRow] = []
    try:
        count = (await describe_topics(bootstrap, [Topics.TRAFFIC]))[Topics.TRAFFIC].partitions
        tps = [TopicPartition(Topics.TRAFFIC, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(rows) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            messages = [m for part in batches.values() for m in part if m.key == model.encode()]
            for batch in decode_traffic_many([m.value for m in messages]).batches:
                rows.extend(batch.to_rows())
    finally:
        await consumer.stop()
    assert len(rows) >= expected, f"only {len(rows)} of {expected} rows of {model} arrived"
    return rows
