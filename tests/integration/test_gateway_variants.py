"""Variant weights at run time on the real gateway, with real model servers on loopback:
``/admin/routes`` (who may, what it refuses, path tricks), the weights a change gives
every later request, and the variant policy acting on an alert published on the real
broker, with its event on ``flowops.gateway.events`` and the operator's restore."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from gateway_servers import ModelServer, model_servers, raw_exchange, running_gateway, statuses
from helpers import until
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from flowops.broker import EmbeddedBroker, free_port
from flowops.config import load_settings
from flowops.events import (
    DriftAlert,
    EventProducer,
    Topics,
    VariantWeightEvent,
    describe_topics,
    ensure_topics,
)
from flowops.gateway.app import Gateway
from flowops.gateway.auth import hash_api_key
from flowops.gateway.http.listener import Listener
from flowops.gateway.proxy import VARIANT_HEADER

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NO_PUBLISH = {"enabled": False}
ADMIN_KEY = "admin-key-for-tests-only"
USER_KEY = "user-key-for-tests-only0"
ADMIN = {"X-API-Key": ADMIN_KEY}
AUTH = {
    "api_keys": [
        {"name": "ops", "sha256": hash_api_key(ADMIN_KEY)},
        {"name": "user", "sha256": hash_api_key(USER_KEY)},
    ]
}


def split_route(a: ModelServer, b: ModelServer, **extra: Any) -> dict[str, Any]:
    return {
        "name": "credit",
        "prefix": "/models/credit",
        "variants": [
            {"name": "champion", "version": "1", "weight": 1, "upstreams": [a.url]},
            {"name": "challenger", "version": "2", "weight": 1, "upstreams": [b.url]},
        ],
        **extra,
    }


def gateway_section(*routes: dict[str, Any], publish: Any = NO_PUBLISH) -> dict[str, Any]:
    return {
        "routes": list(routes),
        "publish": publish,
        "auth": AUTH,
        "admin_identities": ["key:ops"],
    }


async def predict(session: aiohttp.ClientSession, base: str, count: int) -> list[str | None]:
    """The variant that answered each of ``count`` requests (all must be 200)."""
    variants = []
    for _ in range(count):
        async with session.post(f"{base}/models/credit/predict", json={"x": 1}) as response:
            await response.read()
            assert response.status == 200
            variants.append(response.headers.get(VARIANT_HEADER))
    return variants


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    body: Any = None,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    payload = data if data is not None else None if body is None else orjson.dumps(body)
    async with session.request(method, url, data=payload, headers=headers) as response:
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None, dict(response.headers)


async def weights(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    status, view, _ = await call(session, "GET", f"{base}/admin/routes", headers=ADMIN)
    assert status == 200
    variants = view["routes"]["credit"]["variants"]
    return {name: variant["weight"] for name, variant in variants.items()}


async def weight_metrics(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """``flowops_gateway_variant_weight`` of route credit, by variant, from /metrics."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    return {
        sample.labels["variant"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "flowops_gateway_variant_weight" and sample.labels["route"] == "credit"
    }


async def test_an_operator_sets_a_variant_aside_and_restores_it() -> None:
    async with (
        model_servers(2) as (a, b),
        running_gateway(gateway_section(split_route(a, b))) as base,
        aiohttp.ClientSession() as session,
    ):
        assert set(await predict(session, base, 40)) == {"champion", "challenger"}
        url = f"{base}/admin/routes/credit/variants/challenger"
        status, change, _ = await call(
            session, "PUT", url, {"weight": 0, "reason": "latency regression"}, ADMIN
        )
        assert status == 200
        assert (change["old"], change["new"], change["by"]) == (1.0, 0.0, "key:ops")
        seen_by_b = len(b.seen)
        assert set(await predict(session, base, 100)) == {"champion"}
        assert len(b.seen) == seen_by_b  # not one request reached it
        assert await weight_metrics(session, base) == {"champion": 1.0, "challenger": 0.0}

        _, view, _ = await call(session, "GET", f"{base}/admin/routes", headers=ADMIN)
        challenger = view["routes"]["credit"]["variants"]["challenger"]
        assert challenger["configured_weight"] == 1.0
        assert challenger["weight"] == 0.0
        assert challenger["last_change"]["by"] == "key:ops"
        assert challenger["last_change"]["reason"] == "latency regression"

        # the champion alone may not go: 409, and nothing changed
        status, refused, _ = await call(
            session,
            "PUT",
            f"{base}/admin/routes/credit/variants/champion",
            {"weight": 0, "reason": "x"},
            ADMIN,
        )
        assert (status, refused["error"]) == (409, "no_weight_left")
        assert await weights(session, base) == {"champion": 1.0, "challenger": 0.0}

        status, restored, _ = await call(
            session, "POST", f"{base}/admin/routes/credit/restore", {"reason": "fixed"}, ADMIN
        )
        assert status == 200
        assert [(c["variant"], c["new"]) for c in restored["changes"]] == [("challenger", 1.0)]
        assert "challenger" in await predict(session, base, 60)
        assert len(b.seen) > seen_by_b


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        (
            "PUT",
            "/admin/routes/nope/variants/b",
            {"weight": 1, "reason": "r"},
            404,
            "unknown_route",
        ),
        ("PUT", "/admin/routes/credit/variants/nope", {"weight": 1, "reason": "r"}, 404, None),
        ("PUT", "/admin/routes/iris/variants/x", {"weight": 1, "reason": "r"}, 404, "no_variants"),
        ("PUT", "/admin/routes/credit/variants/challenger", {"weight": 1}, 400, "bad_reason"),
        ("PUT", "/admin/routes/credit/variants/challenger", {"reason": "r"}, 400, "bad_weight"),
        (
            "PUT",
            "/admin/routes/credit/variants/challenger",
            {"weight": "0", "reason": "r"},
            400,
            None,
        ),
        (
            "PUT",
            "/admin/routes/credit/variants/challenger",
            {"weight": -1, "reason": "r"},
            400,
            None,
        ),
        ("PUT", "/admin/routes/credit/variants/challenger", [1], 400, "bad_json"),
        ("PUT", "/admin/routes/credit/variants/challenger", b"{weight: 0", 400, "bad_json"),
        ("PUT", "/admin/routes/credit/variants/challenger", b"x" * 9000, 413, None),
        ("DELETE", "/admin/routes/credit/variants/challenger", None, 405, None),
        ("PUT", "/admin/routes", {"weight": 0, "reason": "r"}, 405, None),
        ("PUT", "/admin/routes/credit/variants/challenger/more", {"weight": 0}, 404, None),
    ],
)
async def test_bad_admin_requests_get_a_4xx_and_change_nothing(
    method: str, path: str, body: Any, status: int, code: str | None
) -> None:
    iris = {"name": "iris", "prefix": "/models/iris", "upstreams": ["http://127.0.0.1:9"]}
    async with (
        model_servers(2) as (a, b),
        running_gateway(gateway_section(split_route(a, b), iris)) as base,
        aiohttp.ClientSession() as session,
    ):
        data = body if isinstance(body, bytes) else None
        json_body = None if isinstance(body, bytes) else body
        answer, refused, headers = await call(
            session, method, base + path, json_body, ADMIN, data=data
        )
        assert answer == status
        if code is not None:
            assert refused["error"] == code
        if status == 405:
            assert headers["Allow"]
        assert await weights(session, base) == {"champion": 1.0, "challenger": 1.0}


async def test_only_admins_change_weights_whatever_the_path_says() -> None:
    async with (
        model_servers(2) as (a, b),
        running_gateway(gateway_section(split_route(a, b))) as base,
        aiohttp.ClientSession() as session,
    ):
        change = {"weight": 0, "reason": "attack"}
        paths = [
            "/admin/routes/credit/variants/challenger",
            "/models/credit/../../admin/routes/credit/variants/challenger",
            "/models/credit/%2e%2e/%2e%2e/admin/routes/credit/variants/challenger",
            "//admin//routes/credit/variants/challenger",
        ]
        for path in paths:
            # aiohttp would resolve the dots itself: the raw target goes as written
            url = URL(base + path, encoded=True)
            for headers, expected in (({}, 401), ({"X-API-Key": "wrong"}, 401)):
                status, _, _ = await call(session, "PUT", url, change, headers)
                assert (path, status) == (path, expected)
            status, _, _ = await call(session, "PUT", url, change, {"X-API-Key": USER_KEY})
            assert (path, status) == (path, 403)
        assert await weights(session, base) == {"champion": 1.0, "challenger": 1.0}

        port = int(base.rsplit(":", 1)[1])
        for target in (
            "/admin/routes/credit%2fvariants%2fchallenger",
            "/admin/routes/credit/variants/challenger%00",
            "/admin/routes/credit/variants/..;/champion",
            "/admin/routes/credit\\variants\\challenger",
        ):
            body = orjson.dumps(change)
            request = (
                f"PUT {target} HTTP/1.1\r\nHost: x\r\nX-API-Key: {ADMIN_KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode() + body
            assert statuses(await raw_exchange(port, request)) == [400], target
        assert await weights(session, base) == {"champion": 1.0, "challenger": 1.0}

        # dot segments are resolved before the match: this names the champion
        url = URL(f"{base}/admin/routes/credit/variants/challenger/../champion", encoded=True)
        status, made, _ = await call(session, "PUT", url, {"weight": 5, "reason": "r"}, ADMIN)
        assert (status, made["variant"]) == (200, "champion")
        assert await weights(session, base) == {"champion": 5.0, "challenger": 1.0}


# -- the policy, with the real broker ------------------------------------------------


async def published_events(bootstrap: str, model: str, wanted: int) -> list[VariantWeightEvent]:
    """The events of ``model`` on flowops.gateway.events, once ``wanted`` have arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    events: list[VariantWeightEvent] = []
    try:
        await until(lambda: describe_topics(bootstrap, [Topics.GATEWAY]), "the events topic")
        count = (await describe_topics(bootstrap, [Topics.GATEWAY]))[Topics.GATEWAY].partitions
        tps = [TopicPartition(Topics.GATEWAY, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def arrived() -> bool:
            batches = await consumer.getmany(timeout_ms=300)
            for part in batches.values():
                decoded = [VariantWeightEvent.from_json(m.value) for m in part]
                events.extend(event for event in decoded if event.model == model)
            return len(events) >= wanted

        await until(arrived, f"{wanted} gateway events")
    finally:
        await consumer.stop()
    return events


def drift_alert(model: str, version: str, alert_id: str, **fields: Any) -> DriftAlert:
    values: dict[str, Any] = {
        "alert_id": alert_id,
        "model": model,
        "version": version,
        "feature": "age",
        "test": "ks",
        "statistic": 0.4,
        "pvalue": 0.0001,
        "threshold": 0.05,
        "window_start": 0.0,
        "window_end": 60.0,
        "window_index": 0,
        "n_reference": 1000,
        "n_current": 500,
        "severity": "critical",
        "reference": "profile",
        "detected_at": time.time(),
        **fields,
    }
    return DriftAlert(**values)


async def test_an_alert_on_a_variants_version_takes_it_out_until_the_operator_restores(
    broker: str,
) -> None:
    await ensure_topics(broker, 3)
    model = f"credit-{uuid.uuid4().hex[:8]}"  # the broker is the session's: a model of its own
    async with model_servers(4) as (a, b, c, d):
        credit = split_route(a, b, model=model, variant_policy={"alerts": ["drift"]})
        canary = {  # the same model (same partition): an alert to it marks the end of a test
            "name": "canary",
            "prefix": "/models/canary",
            "model": model,
            "variants": [
                {"name": "p", "version": "8", "weight": 1, "upstreams": [c.url]},
                {"name": "q", "version": "9", "weight": 1, "upstreams": [d.url]},
            ],
            "variant_policy": {},
        }
        section = gateway_section(credit, canary, publish={"linger_ms": 0})
        async with (
            running_gateway(section, kafka={"bootstrap": broker}) as base,
            aiohttp.ClientSession() as session,
            EventProducer(broker, source="/tests/alerts") as producer,
        ):

            async def policy_state() -> bool:
                _, view, _ = await call(session, "GET", f"{base}/admin/routes", headers=ADMIN)
                return bool(view["policy"]["state"] == "watching")

            await until(policy_state, "the policy reading the alerts")
            assert set(await predict(session, base, 40)) == {"champion", "challenger"}

            alert = drift_alert(model, "2", f"a-{uuid.uuid4().hex}")
            await producer.publish(alert)
            await producer.flush()

            async def challenger_out() -> bool:
                return (await weights(session, base))["challenger"] == 0.0

            await until(challenger_out, "the challenger set aside")
            seen_by_b = len(b.seen)
            assert set(await predict(session, base, 100)) == {"champion"}
            assert len(b.seen) == seen_by_b

            (event,) = await published_events(broker, model, 1)
            assert (event.route, event.variant, event.action) == ("credit", "challenger", "policy")
            assert (event.old_weight, event.new_weight, event.by) == (1.0, 0.0, "policy")
            assert event.alert_id == alert.alert_id
            assert alert.alert_id in event.reason
            assert (event.model, event.version) == (model, "2")

            status, _, _ = await call(
                session, "POST", f"{base}/admin/routes/credit/restore", {"reason": "ok"}, ADMIN
            )
            assert status == 200
            assert "challenger" in await predict(session, base, 60)

            # the same alert again, then one for the canary's q: once q is out, the old
            # alert was read before it (same key, same partition) and changed nothing
            await producer.publish(alert)
            await producer.publish(drift_alert(model, "9", f"m-{uuid.uuid4().hex}"))
            await producer.flush()

            async def marker_read() -> bool:
                _, view, _ = await call(session, "GET", f"{base}/admin/routes", headers=ADMIN)
                return view["routes"]["canary"]["variants"]["q"]["weight"] == 0.0

            await until(marker_read, "the marker alert acted on")
            assert await weights(session, base) == {"champion": 1.0, "challenger": 1.0}
            events = await published_events(broker, model, 3)
            assert [(e.route, e.variant, e.action) for e in events] == [
                ("credit", "challenger", "policy"),
                ("credit", "challenger", "restore"),
                ("canary", "q", "policy"),
            ]


# -- several workers ------------------------------------------------------------------


async def test_a_change_through_one_worker_holds_in_every_worker(tmp_path: Path) -> None:
    """``workers: 2`` as a real process; each request on a new connection, so the kernel
    spreads them over both workers (their pids, from /healthz, say so)."""
    async with model_servers(2) as (a, b):
        port = free_port()
        section = {**gateway_section(split_route(a, b)), "listen": f"127.0.0.1:{port}"}
        settings = {
            "kafka": {"bootstrap": f"127.0.0.1:{free_port()}"},  # none: events queue
            "gateway": {**section, "workers": 2},
        }
        config = tmp_path / "flowops.yaml"
        config.write_text(yaml.safe_dump(settings))
        gateway = subprocess.Popen(
            [sys.executable, "-m", "flowops", "gateway", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            connector = aiohttp.TCPConnector(force_close=True)  # a connection a request
            async with aiohttp.ClientSession(connector=connector) as session:

                async def ready() -> bool:
                    assert gateway.poll() is None, "the gateway exited"
                    try:
                        status, _, _ = await call(session, "GET", f"{base}/readyz")
                    except aiohttp.ClientError:
                        return False
                    return status == 200

                await until(ready, "the gateway's two workers")
                status, _, _ = await call(
                    session,
                    "PUT",
                    f"{base}/admin/routes/credit/variants/challenger",
                    {"weight": 0, "reason": "both workers"},
                    ADMIN,
                )
                assert status == 200
                seen_by_b = len(b.seen)
                pids, variants = set(), []
                for _ in range(60):
                    _, health, _ = await call(session, "GET", f"{base}/healthz")
                    pids.add(health["pid"])
                    variants.extend(await predict(session, base, 1))
                # and every worker reads the same weights back
                views = [await weights(session, base) for _ in range(10)]

                async def both_workers_say_zero() -> bool:
                    found = await weight_metrics(session, base)
                    return found == {"champion": 1.0, "challenger": 0.0}

                await until(both_workers_say_zero, "the weight gauge of every worker at 0")
        finally:
            gateway.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(gateway.wait, 60)
            err = gateway.communicate()[1]
    assert len(pids) == 2, "the requests did not reach both workers"
    assert set(variants) == {"champion"}
    assert len(b.seen) == seen_by_b
    assert views == [{"champion": 1.0, "challenger": 0.0}] * 10
    assert code == 0, err
    assert err.count("variant weight: route credit variant challenger 1 -> 0 by key:ops") == 1


async def test_a_routes_reload_keeps_the_weights_set_at_run_time() -> None:
    """SIGHUP's reload (``Gateway.reload_routes``) builds the routes anew; a variant set
    aside stays aside while it exists, whatever its configured weight became."""
    async with model_servers(2) as (a, b):
        port = free_port()
        section = {**gateway_section(split_route(a, b)), "listen": f"127.0.0.1:{port}"}
        app = Gateway(load_settings(overrides={"gateway": section}))
        await app.start()
        listener = Listener(app.handle, limits=app.gateway.limits)
        base = f"http://127.0.0.1:{port}"
        try:
            sock = socket.create_server(("127.0.0.1", port))
            sock.setblocking(False)
            await listener.start(sock)
            async with aiohttp.ClientSession() as session:
                status, _, _ = await call(
                    session,
                    "PUT",
                    f"{base}/admin/routes/credit/variants/challenger",
                    {"weight": 0, "reason": "before the reload"},
                    ADMIN,
                )
                assert status == 200
                reloaded = split_route(a, b)
                reloaded["variants"][1]["weight"] = 5  # the route's settings changed
                await app.reload_routes(
                    load_settings(overrides={"gateway": {**section, "routes": [reloaded]}})
                )
                seen_by_b = len(b.seen)
                assert set(await predict(session, base, 60)) == {"champion"}
                assert len(b.seen) == seen_by_b
                status, _, _ = await call(
                    session, "POST", f"{base}/admin/routes/credit/restore", {"reason": "r"}, ADMIN
                )
                assert status == 200
                # restored to the weight configured now: 5 to 1
                assert (await weights(session, base)) == {"champion": 1.0, "challenger": 5.0}
                assert "challenger" in await predict(session, base, 30)
        finally:
            await listener.stop(timeout=5.0)
            await app.stop()


async def test_the_policy_waits_for_kafka_and_acts_once_it_is_there(tmp_path: Path) -> None:
    """A gateway started before its broker serves at once, says the policy is waiting,
    and reads the alerts once the broker is up."""
    kafka_port = free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    model = f"credit-{uuid.uuid4().hex[:8]}"
    async with model_servers(2) as (a, b):
        credit = split_route(a, b, model=model, variant_policy={})
        section = gateway_section(credit, publish={"linger_ms": 0})
        async with (
            running_gateway(section, kafka={"bootstrap": bootstrap}) as base,
            aiohttp.ClientSession() as session,
        ):

            async def policy_state() -> str:
                _, view, _ = await call(session, "GET", f"{base}/admin/routes", headers=ADMIN)
                state: str = view["policy"]["state"]
                return state

            await until(lambda: _is(policy_state(), "waiting"), "the policy waiting for Kafka")
            assert set(await predict(session, base, 20)) == {"champion", "challenger"}
            with EmbeddedBroker(port=kafka_port, log=tmp_path / "tansu.log"):
                await until(lambda: _is(policy_state(), "watching"), "the policy reading alerts")
                async with EventProducer(bootstrap, source="/tests/alerts") as producer:
                    await producer.publish(drift_alert(model, "2", f"a-{uuid.uuid4().hex}"))
                    await producer.flush()

                async def challenger_out() -> bool:
                    return (await weights(session, base))["challenger"] == 0.0

                await until(challenger_out, "the challenger set aside")
                assert set(await predict(session, base, 40)) == {"champion"}


async def _is(state: Any, wanted: str) -> bool:
    return bool(await state == wanted)
