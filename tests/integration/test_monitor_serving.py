"""The model-server probe against real HTTP servers on free ports of 127.0.0.1.

* KServe v2: a small server of the test's own speaking the v2 REST protocol (health,
  model readiness, inference with ``inputs``/``outputs`` tensors) that the test makes
  not ready, drops a model from, slows down or stops;
* MLflow: :mod:`flowops.demo_model`, a scoring server answering as ``mlflow models serve``
  (``/ping``, ``/invocations``);
* a plain URL: the gateway tests' model server (``/health``, predictions for any path).

The servers run in the test's event loop and stop when their runner is closed; no
process is started. Nothing here measures time: the slow server sleeps a whole second
against a 50 ms budget, and the hanging one never answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from gateway_servers import ModelServer

from flowops.broker import free_port
from flowops.demo_model import create_app
from flowops.monitor.checks import CheckResult
from flowops.monitor.probes.serving import ModelServerProbe, ModelServerSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

KSERVE_CHECKS = ["model_server.live", "model_server.ready", "model_server.model_ready"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.1, 4.4, 1.4]]
KSERVE_PAYLOAD = {
    "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": IRIS_ROWS}]
}
APPLICANTS = [
    {"age": 41, "income": 52_000, "debt_ratio": 0.3, "region": "north", "channel": "web"},
    {"age": 29, "income": 31_000, "debt_ratio": 0.6, "region": "south", "channel": "phone"},
]


@dataclass
class KServeServer:
    """A KServe v2 REST server: ``models`` maps a name to whether it is ready (absent:
    not loaded); each prediction is one number per input row."""

    models: dict[str, bool] = field(default_factory=lambda: {"iris": True})
    live: bool = True
    ready: bool = True
    delay: float = 0.0
    hang: bool = False
    port: int = field(default_factory=free_port)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v2/health/live", self._live)
        app.router.add_get("/v2/health/ready", self._ready)
        app.router.add_get("/v2/models/{name}/ready", self._model_ready)
        app.router.add_post("/v2/models/{name}/infer", self._infer)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _live(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.sleep(3600)  # cancelled when the client gives up or at cleanup
        return web.json_response({"live": self.live}, status=200 if self.live else 503)

    async def _ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)

    async def _model_ready(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.models:
            missing = {"error": f"Model with name {name} does not exist."}
            return web.json_response(missing, status=404)
        ready = self.models[name]
        return web.json_response({"name": name, "ready": ready}, status=200 if ready else 503)

    async def _infer(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not self.models.get(name):
            return web.json_response({"error": f"Model with name {name} is not ready."}, status=404)
        body = await request.json()
        rows = body["inputs"][0]["data"]
        if self.delay:
            await asyncio.sleep(self.delay)
        output = {"name": "predict", "shape": [len(rows), 1], "datatype": "FP32"}
        output["data"] = [round(sum(row), 3) for row in rows]
        return web.json_response({"model_name": name, "outputs": [output]})


@pytest_asyncio.fixture
async def kserve() -> AsyncIterator[KServeServer]:
    server = KServeServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def mlflow() -> AsyncIterator[str]:
    """The demo model, an MLflow scoring server; yields its URL."""
    port = free_port()
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def plain() -> AsyncIterator[ModelServer]:
    server = ModelServer("plain")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def probe(session: aiohttp.ClientSession, **settings: Any) -> dict[str, CheckResult]:
    found = ModelServerProbe(ModelServerSettings(name="iris", **settings), session)
    async with asyncio.timeout(found.timeout):  # the agent's bound on a run
        results = await found.run()
    assert {result.target for result in results} == {"iris"}
    return {result.check: result for result in results}


def canary(**expect: Any) -> dict[str, Any]:
    return {"payload": KSERVE_PAYLOAD, **expect}


# -- KServe v2 ---------------------------------------------------------------------------


async def test_kserve_all_checks_pass(kserve: KServeServer, session: aiohttp.ClientSession) -> None:
    found = await probe(
        session,
        url=kserve.url,
        protocol="kserve_v2",
        canary=canary(expect_shape=[2, 1], latency_budget_ms=60_000),
    )

    assert list(found) == [*KSERVE_CHECKS, "model_server.canary"]
    assert all(result.success for result in found.values()), found
    assert found["model_server.live"].detail == f"200 from GET {kserve.url}/v2/health/live"
    assert found["model_server.canary"].detail.startswith("200 in ")
    assert found["model_server.canary"].detail.endswith(" ms, shape [2, 1]")


async def test_kserve_not_ready(kserve: KServeServer, session: aiohttp.ClientSession) -> None:
    kserve.ready = False

    found = await probe(session, url=kserve.url, protocol="kserve_v2")

    assert [found[check].success for check in KSERVE_CHECKS] == [True, False, True]
    assert found["model_server.ready"].detail == (
        'not ready: 503 ({"ready": false}); it is still loading or a dependency is down, '
        "so requests sent now fail"
    )


async def test_kserve_model_not_loaded(
    kserve: KServeServer, session: aiohttp.ClientSession
) -> None:
    found = await probe(
        session, url=kserve.url, protocol="kserve_v2", model="fraud", canary=canary()
    )

    assert [found[check].success for check in KSERVE_CHECKS] == [True, True, False]
    assert found["model_server.model_ready"].detail.startswith(
        "model 'fraud' is not loaded (404) ("
    )
    assert "check the model name" in found["model_server.model_ready"].detail
    assert not found["model_server.canary"].success
    assert found["model_server.canary"].detail.startswith("answered 404, expected 200: ")


async def test_kserve_model_still_loading(
    kserve: KServeServer, session: aiohttp.ClientSession
) -> None:
    kserve.models["iris"] = False

    found = await probe(session, url=kserve.url, protocol="kserve_v2")

    assert found["model_server.model_ready"].detail.startswith("model 'iris' is not ready: 503")


async def test_kserve_canary_of_the_wrong_shape(
    kserve: KServeServer, session: aiohttp.ClientSession
) -> None:
    found = await probe(
        session, url=kserve.url, protocol="kserve_v2", canary=canary(expect_shape=[3, 1])
    )

    assert all(found[check].success for check in KSERVE_CHECKS)
    assert not found["model_server.canary"].success
    assert found["model_server.canary"].detail.startswith(
        "predictions of shape [2, 1], expected [3, 1]: "
    )


async def test_kserve_canary_over_its_latency_budget(
    kserve: KServeServer, session: aiohttp.ClientSession
) -> None:
    kserve.delay = 1.0  # twenty times the budget

    found = await probe(
        session,
        url=kserve.url,
        protocol="kserve_v2",
        timeout=30,
        canary=canary(expect_shape=[-1, 1], latency_budget_ms=50),
    )

    result = found["model_server.canary"]
    assert not result.success
    assert result.detail.startswith("answered in ")
    assert " ms, over its 50 ms budget: " in result.detail


async def test_a_stopped_server_is_refused_and_the_rest_not_checked(
    kserve: KServeServer, session: aiohttp.ClientSession
) -> None:
    await kserve.stop()

    found = await probe(session, url=kserve.url, protocol="kserve_v2", canary=canary())

    refused = (
        f"cannot connect to 127.0.0.1:{kserve.port}: connection refused; "
        "is the server running there?"
    )
    assert found["model_server.live"].detail == refused
    for check in ["model_server.ready", "model_server.model_ready", "model_server.canary"]:
        assert found[check].detail == f"not checked: {refused}"
    assert not any(result.success for result in found.values())


async def test_a_hanging_server_fails_at_the_timeout(
    kserve: KServeServer, session: aiohttp.ClientSession
) -> None:
    kserve.hang = True

    found = await probe(session, url=kserve.url, protocol="kserve_v2", timeout=0.3)

    assert found["model_server.live"].detail == (
        f"no answer from {kserve.url}/v2/health/live within 0.3 s: the server is hung or overloaded"
    )
    assert found["model_server.ready"].detail.startswith("not checked: no answer from ")


# -- MLflow scoring server ---------------------------------------------------------------


async def test_mlflow_ping_and_canary(mlflow: str, session: aiohttp.ClientSession) -> None:
    payload = {"dataframe_records": APPLICANTS}

    found = await probe(
        session,
        url=mlflow,
        protocol="mlflow",
        canary={"payload": payload, "expect_shape": [2], "latency_budget_ms": 60_000},
    )

    assert list(found) == ["model_server.ready", "model_server.canary"]
    assert found["model_server.ready"].success
    assert found["model_server.ready"].detail == f"200 from GET {mlflow}/ping"
    assert found["model_server.canary"].success, found["model_server.canary"]


async def test_mlflow_canary_from_a_file_of_the_wrong_shape(
    mlflow: str, session: aiohttp.ClientSession, tmp_path: Any
) -> None:
    sample = tmp_path / "sample.json"
    sample.write_text('{"dataframe_records": [{"age": 30, "income": 1, "debt_ratio": 0.1}]}')

    found = await probe(
        session, url=mlflow, protocol="mlflow", canary={"payload": sample, "expect_shape": [2]}
    )

    assert not found["model_server.canary"].success
    assert found["model_server.canary"].detail.startswith("predictions of shape [1], expected [2]")


async def test_mlflow_canary_the_model_cannot_read(
    mlflow: str, session: aiohttp.ClientSession
) -> None:
    found = await probe(session, url=mlflow, protocol="mlflow", canary={"payload": {"x": 1}})

    assert not found["model_server.canary"].success
    assert found["model_server.canary"].detail.startswith(
        'answered 400, expected 200: {"error_code":"BAD_REQUEST"'
    )


# -- a plain URL -------------------------------------------------------------------------


async def test_a_plain_url_up_then_failing(
    plain: ModelServer, session: aiohttp.ClientSession
) -> None:
    settings = {"url": f"{plain.url}/health", "protocol": "http"}
    settings["canary"] = {"payload": {"instances": [[1, 2], [3, 4]]}, "path": "/predict"}

    up = await probe(session, **settings)
    plain.status = 503
    down = await probe(session, **settings)

    assert up["model_server.ready"].success
    assert up["model_server.canary"].success, up["model_server.canary"]
    assert plain.seen[0]["path"] == "/predict"
    assert not down["model_server.ready"].success
    assert down["model_server.ready"].detail.startswith("not ready: 503 (ok); ")
    assert down["model_server.canary"].detail.startswith("answered 503, expected 200: ")
