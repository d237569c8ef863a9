"""Balancing through the real gateway, in front of real model servers on loopback.

Each policy of ``routes[].balancing`` spreads requests as its module says
(:mod:`flowops.gateway.upstreams`): ``weighted`` 3:1 exactly, in nginx's smooth order;
``least_request`` (two random choices) and ``ewma`` (peak latency) keep a concurrent
load off an upstream that answers slowly, where round robin would give it half; an
``ewma`` upstream that turns fast again is tried again. And an upstream stopped in the
middle of a concurrent load costs no client an error, for GETs on any route and for
POSTs on a ``retryable`` one.

``test_gateway.py`` covers round robin's even spread and a sequential load losing an
upstream; these add the other policies and concurrency. The model servers say who
answered in ``X-Upstream`` (m0, m1, ...). Nothing here measures time: tests count
answers, and wait by bounded polls.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import pytest
from gateway_load import Answer, Load, metric, request
from gateway_servers import ModelServer, model_servers, running_gateway
from helpers import until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NO_PUBLISH = {"enabled": False}
SLOW = 0.5  # seconds the slow upstream takes: hundreds of times a loopback answer
REQUESTS = 240


def route(servers: list[ModelServer], *, name: str = "iris", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "prefix": f"/models/{name}",
        "upstreams": [server.url for server in servers],
        **extra,
    }


def posting(base: str, name: str = "iris") -> Any:
    async def send(session: aiohttp.ClientSession, i: int) -> Answer:
        return await request(session, "POST", f"{base}/models/{name}/x", {"instances": [[i]]})

    return send


async def test_weighted_3_to_1_is_exact_and_interleaved() -> None:
    """Smooth weighted round robin: weights 3 and 1 give ``a a b a`` over and over."""
    async with model_servers(2) as (heavy, light):
        upstreams = [{"url": heavy.url, "weight": 3}, {"url": light.url, "weight": 1}]
        settings = {"routes": [route([], upstreams=upstreams, balancing="weighted")]}
        async with (
            running_gateway({**settings, "publish": NO_PUBLISH}) as base,
            aiohttp.ClientSession() as session,
        ):
            send = posting(base)
            answers = [await send(session, i) for i in range(REQUESTS)]
    assert {answer.status for answer in answers} == {200}
    assert [answer.upstream for answer in answers] == ["m0", "m0", "m1", "m0"] * (REQUESTS // 4)
    assert (len(heavy.seen), len(light.seen)) == (REQUESTS * 3 // 4, REQUESTS // 4)


async def test_weighted_spread_holds_under_concurrency() -> None:
    """Picks are made without an ``await`` between them: concurrency changes nothing."""
    async with model_servers(3) as servers:
        weights = [5, 2, 1]
        upstreams = [{"url": s.url, "weight": w} for s, w in zip(servers, weights, strict=True)]
        settings = {"routes": [route([], upstreams=upstreams, balancing="weighted")]}
        async with (
            running_gateway({**settings, "publish": NO_PUBLISH}) as base,
            Load(posting(base), workers=8, limit=REQUESTS) as load,
        ):
            await load.answered(REQUESTS)
    assert {answer.status for answer in load.answers} == {200}
    assert [len(s.seen) for s in servers] == [REQUESTS * w // sum(weights) for w in weights]


@pytest.mark.parametrize("policy", ["least_request", "ewma"])
async def test_a_slow_upstream_gets_little_of_a_concurrent_load(policy: str) -> None:
    """Round robin would send it a third; these policies send it under a tenth."""
    async with model_servers(3) as servers:
        slow = servers[0]
        slow.delay = SLOW
        settings = {"routes": [route(servers, balancing=policy)], "publish": NO_PUBLISH}
        async with (
            running_gateway(settings) as base,
            Load(posting(base), workers=8, limit=REQUESTS) as load,
        ):
            await load.answered(REQUESTS)
    assert {answer.status for answer in load.answers} == {200}
    by_upstream = Counter(answer.upstream for answer in load.answers)
    assert by_upstream["m0"] < REQUESTS / 10, by_upstream
    # the fast ones share the rest: two choices among equals tie, the first drawn wins
    assert min(by_upstream["m1"], by_upstream["m2"]) > REQUESTS / 4, by_upstream


async def test_least_request_spreads_an_idle_pool_by_weight() -> None:
    """Sequential requests find every upstream idle: the two draws decide, by weight."""
    async with model_servers(2) as (heavy, light):
        upstreams = [{"url": heavy.url, "weight": 3}, {"url": light.url, "weight": 1}]
        settings = {"routes": [route([], upstreams=upstreams, balancing="least_request")]}
        async with (
            running_gateway({**settings, "publish": NO_PUBLISH}) as base,
            aiohttp.ClientSession() as session,
        ):
            send = posting(base)
            answers = [await send(session, i) for i in range(400)]
    assert {answer.status for answer in answers} == {200}
    # a tie keeps the first drawn, drawn in proportion to weight: 3/4 expected, sd 2.2%
    assert 0.65 < len(heavy.seen) / 400 < 0.85, (len(heavy.seen), len(light.seen))


async def test_ewma_tries_a_slow_upstream_again_once_it_is_fast() -> None:
    """Its latency estimate decays while it gets nothing, so it gets a trial request,
    whose fast answer brings it back into the spread."""
    async with model_servers(2) as (slow, fast):
        slow.delay = SLOW
        balancing = {"policy": "ewma", "ewma_decay": 0.5}  # seconds: decays quickly
        settings = {"routes": [route([slow, fast], balancing=balancing)], "publish": NO_PUBLISH}
        async with running_gateway(settings) as base:
            async with Load(posting(base), workers=4, limit=120) as load:
                await load.answered(120, "a first load")
            assert Counter(a.upstream for a in load.answers)["m0"] < 12
            slow.delay = 0.0
            seen = len(slow.seen)
            async with Load(posting(base), workers=4, pause=0.01) as again:
                await until(lambda: len(slow.seen) > seen + 20, "the slow one used again")
    assert {answer.status for answer in [*load.answers, *again.answers]} == {200}


async def test_an_upstream_killed_under_a_concurrent_load_costs_no_client_error() -> None:
    """GETs on a plain route and POSTs on a retryable one, 8 clients each; one of the
    two model servers stops in the middle. Requests it had (or that meet its closed
    connections) are tried again on the other one."""
    async with model_servers(2) as servers:
        routes = [route(servers, name="iris"), route(servers, name="wine", retryable=True)]
        async with running_gateway({"routes": routes, "publish": NO_PUBLISH}) as base:

            async def get(session: aiohttp.ClientSession, i: int) -> Answer:
                return await request(session, "GET", f"{base}/models/iris/info?i={i}")

            async with (
                Load(get, workers=8, pause=0.005) as gets,
                Load(posting(base, "wine"), workers=8, pause=0.005) as posts,
            ):
                await until(lambda: len(gets.answers) + len(posts.answers) >= 200, "a load")
                await servers[1].stop()
                killed_at = len(gets.answers), len(posts.answers)
                await until(
                    lambda: (
                        min(len(gets.answers) - killed_at[0], len(posts.answers) - killed_at[1])
                        >= 200
                    ),
                    "200 more of each after the stop",
                )
            async with aiohttp.ClientSession() as session:
                retried = await metric(session, base, "flowops_gateway_retries_total")
                ejected = await metric(
                    session, base, "flowops_gateway_upstream_events_total", kind="ejected"
                )
    answers = [*gets.answers, *posts.answers]
    assert Counter(answer.status for answer in answers) == Counter({200: len(answers)})
    assert len(servers[1].seen) > 50  # it did take its share before
    # past the requests m1 still had when it stopped (8 clients a load), m0 answers all
    after = [*gets.answers[killed_at[0] + 8 :], *posts.answers[killed_at[1] + 8 :]]
    assert {answer.upstream for answer in after} == {"m0"}
    assert retried > 0  # the failures happened, and the clients saw none of them
    assert ejected == 2  # one per route: the passive outlier detection left it out
