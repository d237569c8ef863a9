"""A/B splits, shadow traffic and routing by model name, through the real gateway to
real model servers on loopback, and the variant recorded in traffic events on a real
broker."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest
from gateway_servers import ModelServer, model_servers, running_gateway
from helpers import until
from test_gateway import traffic_of

from flowops.events import ensure_topics
from flowops.gateway.proxy import VARIANT_HEADER

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NO_PUBLISH = {"enabled": False}


def split_route(a: ModelServer, b: ModelServer, **extra: Any) -> dict[str, Any]:
    return {
        "name": "credit",
        "prefix": "/models/credit",
        "variants": [
            {"name": "champion", "version": "1", "weight": 3, "upstreams": [a.url]},
            {"name": "challenger", "version": "2", "weight": 1, "upstreams": [b.url]},
        ],
        **extra,
    }


async def call(
    session: aiohttp.ClientSession, url: str, body: Any = None, **headers: str
) -> tuple[int, str | None, str | None]:
    """Status, the variant header and the upstream that answered."""
    data = orjson.dumps(body if body is not None else {"instances": [[1.0, 2.0]]})
    async with session.post(url, data=data, headers=headers) as response:
        await response.read()
        return (
            response.status,
            response.headers.get(VARIANT_HEADER),
            response.headers.get("X-Upstream"),
        )


async def test_a_weighted_split_sends_each_variant_its_share() -> None:
    async with (
        model_servers(2) as (a, b),
        running_gateway({"routes": [split_route(a, b)], "publish": NO_PUBLISH}) as base,
        aiohttp.ClientSession() as session,
    ):
        answers = [await call(session, f"{base}/models/credit/predict") for _ in range(800)]

    assert {status for status, _, _ in answers} == {200}
    # the header names the variant, and that variant's server answered
    assert {(variant, upstream) for _, variant, upstream in answers} == {
        ("champion", "m0"),
        ("challenger", "m1"),
    }
    share = Counter(variant for _, variant, _ in answers)["champion"] / len(answers)
    # 3:1 drawn per request: 0.75 +- 0.06 is more than 3.9 standard deviations (0.0153)
    assert 0.69 < share < 0.81


async def test_a_sticky_split_keeps_each_caller_on_one_variant() -> None:
    async with (
        model_servers(2) as (a, b),
        running_gateway(
            {"routes": [split_route(a, b, sticky="header:X-User")], "publish": NO_PUBLISH}
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        seen: dict[str, set[str | None]] = {}
        for user in range(200):
            for _ in range(3):
                _, variant, _ = await call(
                    session, f"{base}/models/credit/predict", **{"X-User": f"user-{user}"}
                )
                seen.setdefault(f"user-{user}", set()).add(variant)

    assert all(len(variants) == 1 for variants in seen.values())
    champions = sum(variants == {"champion"} for variants in seen.values())
    assert 120 < champions < 180  # 150 expected of 200 callers, sd 6.1


async def test_a_shadow_gets_copies_and_never_touches_the_client() -> None:
    async with model_servers(3) as (a, b, shadow):
        routes = [
            {
                "name": "iris",
                "prefix": "/models/iris",
                "upstreams": [a.url],
                "shadow": {"version": "2", "upstreams": [shadow.url]},
            },
            {
                "name": "slow",
                "prefix": "/models/slow",
                "upstreams": [b.url],
                "shadow": {"upstreams": [shadow.url], "timeout": 0.2},
            },
        ]
        async with (
            running_gateway({"routes": routes, "publish": NO_PUBLISH}) as base,
            aiohttp.ClientSession() as session,
        ):

            async def counted(route: str, outcomes: list[str], expected: int) -> bool:
                text = await (await session.get(f"{base}/metrics")).text()
                found = {
                    line.split("{", 1)[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("flowops_gateway_shadow_requests_total{")
                }
                total = sum(found.get(f'outcome="{o}",route="{route}"', 0.0) for o in outcomes)
                return total == expected

            answers = [await call(session, f"{base}/models/iris/predict") for _ in range(20)]
            assert {(status, upstream) for status, _, upstream in answers} == {(200, "m0")}
            await until(lambda: len(shadow.seen) == 20, "20 copies at the shadow")
            assert [seen["body"] for seen in shadow.seen] == [seen["body"] for seen in a.seen]
            # the same request id on both sides: the events can be paired
            ids = [seen["headers"]["X-Request-ID"] for seen in a.seen]
            assert [seen["headers"]["X-Request-ID"] for seen in shadow.seen] == ids

            shadow.status = 500  # a broken candidate: its breaker opens, the client sees none
            answers = [await call(session, f"{base}/models/iris/predict") for _ in range(20)]
            assert {(status, upstream) for status, _, upstream in answers} == {(200, "m0")}
            failed = ["5xx", "no_upstream"]
            await until(lambda: counted("iris", failed, 20), "20 failed copies counted")
            assert await counted("iris", ["2xx"], 20)

            shadow.status, shadow.delay = 200, 5.0  # a hanging candidate: the client waits not
            answers = [await call(session, f"{base}/models/slow/predict") for _ in range(5)]
            assert {(status, upstream) for status, _, upstream in answers} == {(200, "m1")}
            late = ["timeout", "no_upstream"]
            await until(lambda: counted("slow", late, 5), "5 late copies counted")


async def test_routes_sharing_a_prefix_are_chosen_by_the_model_named() -> None:
    async with model_servers(3) as (iris, credit, fallback):
        shared = {"prefix": "/invocations"}
        routes = [
            {"name": "iris", **shared, "match_model": "iris", "upstreams": [iris.url]},
            {"name": "credit", **shared, "match_model": "credit", "upstreams": [credit.url]},
        ]
        by_header = {"routes": routes, "model_from": "header:X-Model", "publish": NO_PUBLISH}
        async with (
            running_gateway(by_header) as base,
            aiohttp.ClientSession() as session,
        ):
            url = f"{base}/invocations"
            assert (await call(session, url, **{"X-Model": "iris"}))[2] == "m0"
            assert (await call(session, url, **{"X-Model": "credit"}))[2] == "m1"
            async with session.post(url, data=b"{}", headers={"X-Model": "other"}) as response:
                assert response.status == 404
                assert "for model 'other'" in (await response.json())["reason"]

        catch_all = {"name": "any", **shared, "upstreams": [fallback.url]}
        by_body = {"routes": [*routes, catch_all], "model_from": "body:model"}
        async with (
            running_gateway({**by_body, "publish": NO_PUBLISH}) as base,
            aiohttp.ClientSession() as session,
        ):
            url = f"{base}/invocations"
            body = {"model": "credit", "instances": [[1.0]]}
            assert (await call(session, url, body))[2] == "m1"
            assert (await call(session, url, {"instances": [[1.0]]}))[2] == "m2"  # none named
            assert (await call(session, url, {"model": "iris"}))[2] == "m0"


async def test_traffic_events_record_the_variant_and_the_shadow(broker: str) -> None:
    await ensure_topics(broker)
    model = f"ab-{uuid.uuid4().hex[:8]}"
    async with model_servers(3) as (a, b, shadow):
        route = split_route(a, b, model=model, shadow={"version": "3", "upstreams": [shadow.url]})
        publish = {"linger_ms": 5}
        async with (
            running_gateway(
                {"routes": [route], "publish": publish}, kafka={"bootstrap": broker}
            ) as base,
            aiohttp.ClientSession() as session,
        ):
            answers = [
                await call(
                    session, f"{base}/models/credit", {"x": float(i)}, **{"X-Request-ID": f"r{i}"}
                )
                for i in range(40)
            ]
            await until(lambda: len(shadow.seen) == 40, "40 copies at the shadow")
            rows = await traffic_of(broker, model, expected=80)

    variant_of = {f"r{i}": variant for i, (_, variant, _) in enumerate(answers)}
    served = [row for row in rows if row.variant != "shadow"]
    shadowed = [row for row in rows if row.variant == "shadow"]
    assert sorted(row.request_id for row in served) == sorted(variant_of)
    assert all(row.variant == variant_of[row.request_id] for row in served)
    assert {(row.variant, row.version) for row in served} <= {
        ("champion", "1"),
        ("challenger", "2"),
    }
    assert sorted(row.request_id for row in shadowed) == sorted(variant_of)
    assert {row.version for row in shadowed} == {"3"}
    assert all(row.features == {"x": float(row.request_id[1:])} for row in rows)
