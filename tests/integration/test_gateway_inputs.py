"""Inputs as users send them, through the gateway to a real broker: ``text/csv`` bodies
and JSON with ``NaN`` (Python's ``json.dumps``) become traffic rows on Kafka.

The upstream reads its bodies as MLflow's scoring server does (a CSV with a header; JSON
by Python's parser, which takes ``NaN``) and answers one prediction per row.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from gateway_servers import running_gateway
from test_gateway import traffic_of

from flowops.broker import free_port
from flowops.events import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def _invocations(request: web.Request) -> web.Response:
    body = (await request.read()).decode()
    if request.content_type == "text/csv":
        rows = list(csv.DictReader(io.StringIO(body)))
    else:
        rows = json.loads(body)["dataframe_records"]
    return web.json_response({"predictions": [len(row) for row in rows]})


@asynccontextmanager
async def mlflow_like() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/invocations", _invocations)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_csv_bodies_and_nan_tokens_become_rows(broker: str) -> None:
    model = f"credit-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker)
    route = {"name": "credit", "prefix": "/models/credit", "model": model, "strip_prefix": True}
    async with (
        mlflow_like() as upstream,
        running_gateway(
            {"routes": [{**route, "upstreams": [upstream]}], "publish": {"linger_ms": 10}},
            kafka={"bootstrap": broker},
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        url = f"{base}/models/credit/invocations"
        csv_body = "age,region\n41,north\n,south\n"
        async with session.post(url, data=csv_body, headers={"Content-Type": "text/csv"}) as r:
            assert (r.status, await r.json()) == (200, {"predictions": [2, 2]})
        records = {"dataframe_records": [{"age": float("nan"), "region": "east"}]}
        nan_body = json.dumps(records)  # writes NaN, as a naive client does
        assert "NaN" in nan_body
        headers = {"Content-Type": "application/json"}
        async with session.post(url, data=nan_body, headers=headers) as r:
            assert r.status == 200
    rows = await traffic_of(broker, model, expected=3)
    by_region = {row.features["region"]: row for row in rows}
    assert {name: row.features["age"] for name, row in by_region.items()} == {
        "north": 41,
        "south": None,
        "east": None,
    }
    assert all(row.parse_error is None and row.prediction == 2 for row in rows)
