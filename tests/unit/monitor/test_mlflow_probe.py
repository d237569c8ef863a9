"""flowops.monitor.probes.mlflow against a fake tracking server (an aiohttp app that answers
as MLflow 3 does, its bodies copied from a real ``mlflow server``); the real server, its
database taken away, and stopped, are in tests/integration/test_monitor_mlflow.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from flowops.broker import free_port
from flowops.monitor.checks import CheckResult
from flowops.monitor.probes.mlflow import MlflowProbe, MlflowTargetSettings

VERSION_2 = {
    "name": "churn",
    "version": "2",
    "current_stage": "Production",
    "source": "mlflow-artifacts:/0/04bf49c9/artifacts/model",
    "run_id": "04bf49c9",
    "status": "READY",
}
VERSION_1 = VERSION_2 | {"version": "1", "current_stage": "None", "aliases": ["champion"]}
NO_MODEL = {
    "error_code": "RESOURCE_DOES_NOT_EXIST",
    "message": "Registered Model with name=nomodel not found",
}
NO_ALIAS = {
    "error_code": "INVALID_PARAMETER_VALUE",
    "message": "Registered model alias nope not found.",
}
DB_GONE = {
    "error_code": "TEMPORARILY_UNAVAILABLE",
    "message": "(sqlite3.OperationalError) unable to open database file\n(Background on this "
    "error at: https://sqlalche.me/e/21/e3q8)",
}


@dataclass
class FakeMlflow:
    """What the fake server answers; tests change it before probing."""

    backend: tuple[int, Any] = (200, {"experiments": [{"experiment_id": "0"}]})
    versions: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"churn": [VERSION_1, VERSION_2]}
    )
    token: str | None = None
    delay: float = 0.0
    seen: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/health", _text("OK"))
        app.router.add_get("/version", _text("3.17.2"))
        app.router.add_post("/api/2.0/mlflow/experiments/search", self._search)
        app.router.add_get("/api/2.0/mlflow/registered-models/get", self._model)
        app.router.add_get("/api/2.0/mlflow/registered-models/alias", self._alias)
        app.router.add_post("/api/2.0/mlflow/registered-models/get-latest-versions", self._stage)
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.seen.append(request.headers.get("Authorization", ""))
        await asyncio.sleep(self.delay)
        if self.token is not None and request.headers.get("Authorization") != self.token:
            return web.json_response({"error_code": "UNAUTHENTICATED"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _search(self, request: web.Request) -> web.StreamResponse:
        assert await request.json() == {"max_results": 1}
        status, body = self.backend
        if isinstance(body, str):
            return web.Response(text=body, status=status, content_type="text/html")
        return web.json_response(body, status=status)

    async def _model(self, request: web.Request) -> web.StreamResponse:
        name = request.query["name"]
        if name not in self.versions:
            return web.json_response(NO_MODEL, status=404)
        model = {"name": name, "latest_versions": self.versions[name]}
        return web.json_response({"registered_model": model})

    async def _alias(self, request: web.Request) -> web.StreamResponse:
        name, alias = request.query["name"], request.query["alias"]
        if name not in self.versions:
            return web.json_response(NO_MODEL, status=404)
        for version in self.versions[name]:
            if alias in version.get("aliases", []):
                return web.json_response({"model_version": version})
        return web.json_response(NO_ALIAS, status=400)

    async def _stage(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["name"] not in self.versions:
            return web.json_response(NO_MODEL, status=404)
        stages = [stage.lower() for stage in body["stages"]]
        found = [v for v in self.versions[body["name"]] if v["current_stage"].lower() in stages]
        return web.json_response({"model_versions": found} if found else {})


def _text(body: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body)

    return handler


@pytest.fixture
def fake() -> FakeMlflow:
    return FakeMlflow()


@pytest_asyncio.fixture
async def url(fake: FakeMlflow) -> AsyncIterator[str]:
    async with TestServer(fake.app()) as server:
        yield str(server.make_url("")).rstrip("/")


async def probe(url: str, **settings: Any) -> dict[str, CheckResult]:
    """Run a probe of ``url`` once; its results by check (and model URI)."""
    async with aiohttp.ClientSession() as session:
        mlflow = MlflowProbe(MlflowTargetSettings(url=url, **settings), session)
        results = await mlflow.run()
    return {result.check + result.target.partition(" ")[2]: result for result in results}


@pytest.mark.asyncio
async def test_a_healthy_server_passes_every_check(url: str) -> None:
    models = [{"name": "churn", "alias": "champion"}, {"name": "churn", "stage": "production"}]
    results = await probe(url, models=[*models, {"name": "churn"}])

    assert {check: r.success for check, r in results.items()} == {
        "mlflow.health": True,
        "mlflow.version": True,
        "mlflow.backend": True,
        "mlflow.modelmodels:/churn@champion": True,
        "mlflow.modelmodels:/churn/production": True,
        "mlflow.modelmodels:/churn": True,
    }
    assert results["mlflow.version"].detail == "MLflow 3.17.2"
    assert results["mlflow.modelmodels:/churn@champion"].values == {"version": 1.0}
    assert results["mlflow.modelmodels:/churn/production"].values == {"version": 2.0}
    assert results["mlflow.modelmodels:/churn"].detail == "models:/churn is version 2 (READY)"
    assert results["mlflow.modelmodels:/churn"].target == f"{url} models:/churn"
    assert all(r.duration_seconds >= 0 for r in results.values())


@pytest.mark.asyncio
async def test_the_target_is_the_name_when_given(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        mlflow = MlflowProbe(MlflowTargetSettings(url=url, name="prod", timeout=2), session)
        results = await mlflow.run()

    assert (mlflow.kind, mlflow.target, mlflow.timeout) == ("mlflow", "prod", 2.0)
    assert {r.target for r in results} == {"prod"}


@pytest.mark.asyncio
async def test_a_backend_store_that_fails_fails_only_the_deep_check(
    fake: FakeMlflow, url: str
) -> None:
    fake.backend = (503, DB_GONE)
    results = await probe(url)

    assert results["mlflow.health"].success
    backend = results["mlflow.backend"]
    assert not backend.success
    assert backend.detail.startswith(
        "POST /api/2.0/mlflow/experiments/search: HTTP 503: (sqlite3.OperationalError) "
        "unable to open database file (Background"
    )
    assert "cannot query its backend store" in backend.detail
    assert "--backend-store-uri" in backend.detail


@pytest.mark.asyncio
async def test_something_else_than_mlflow_is_named(fake: FakeMlflow, url: str) -> None:
    fake.backend = (200, "<html>a login page</html>")
    results = await probe(url)

    assert not results["mlflow.backend"].success
    assert (
        "did not answer JSON; is this an MLflow tracking server" in results["mlflow.backend"].detail
    )


@pytest.mark.parametrize(
    ("model", "detail"),
    [
        (
            {"name": "nomodel"},
            "no registered model 'nomodel' on {url}; register it, or fix monitor.mlflow[].models",
        ),
        (
            {"name": "nomodel", "alias": "champion"},
            "no registered model 'nomodel' on {url}; register it, or fix monitor.mlflow[].models",
        ),
        (
            {"name": "nomodel", "stage": "Production"},
            "no registered model 'nomodel' on {url}; register it, or fix monitor.mlflow[].models",
        ),
        (
            {"name": "churn", "alias": "nope"},
            "registered model 'churn' has no alias 'nope'; point it at a version (MlflowClient()"
            ".set_registered_model_alias('churn', 'nope', version)), or fix "
            "monitor.mlflow[].models",
        ),
        (
            {"name": "churn", "stage": "Staging"},
            "registered model 'churn' has no version in stage 'Staging'; register or transition "
            "one, or fix monitor.mlflow[].models",
        ),
        (
            {"name": "empty"},
            "registered model 'empty' has no version at all; register or transition one, or fix "
            "monitor.mlflow[].models",
        ),
    ],
)
@pytest.mark.asyncio
async def test_a_model_without_the_expected_version_fails(
    fake: FakeMlflow, url: str, model: dict[str, str], detail: str
) -> None:
    fake.versions["empty"] = []
    results = await probe(url, models=[model])
    (check,) = (r for r in results.values() if r.check == "mlflow.model")

    assert not check.success
    assert check.detail == detail.format(url=url)
    assert check.values == {}


@pytest.mark.asyncio
async def test_a_version_not_ready_fails_with_its_status(fake: FakeMlflow, url: str) -> None:
    failed = VERSION_2 | {"status": "FAILED_REGISTRATION", "status_message": "copy failed"}
    fake.versions["churn"] = [VERSION_1, failed]
    results = await probe(url, models=[{"name": "churn", "stage": "Production"}])
    check = results["mlflow.modelmodels:/churn/Production"]

    assert not check.success
    assert check.detail == (
        "models:/churn/Production is version 2, whose registration is FAILED_REGISTRATION "
        "(copy failed); register it again"
    )
    assert check.values == {"version": 2.0}


@pytest.mark.asyncio
async def test_the_token_comes_from_the_named_variable(
    fake: FakeMlflow, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.token = "Bearer s3cret"
    monkeypatch.setenv("PROD_MLFLOW_TOKEN", "s3cret")
    results = await probe(url, token_env="PROD_MLFLOW_TOKEN")

    assert all(r.success for r in results.values())


@pytest.mark.asyncio
async def test_mlflow_own_variables_are_the_default_credentials(
    fake: FakeMlflow, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ops")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    await probe(url)

    assert set(fake.seen) == {"Basic b3BzOnB3"}


@pytest.mark.asyncio
async def test_a_refusal_says_which_credentials_to_set(
    fake: FakeMlflow, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.token = "Bearer s3cret"
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    results = await probe(url, token_env="PROD_MLFLOW_TOKEN")

    assert not results["mlflow.health"].success
    assert results["mlflow.health"].detail == (
        'GET /health: HTTP 401: {"error_code": "UNAUTHENTICATED"} '
        "(set PROD_MLFLOW_TOKEN, or MLFLOW_TRACKING_USERNAME and _PASSWORD)"
    )


@pytest.mark.asyncio
async def test_a_slow_server_fails_with_the_timeout(fake: FakeMlflow, url: str) -> None:
    fake.delay = 5.0
    results = await probe(url, timeout=0.2, models=[{"name": "churn"}])

    assert not any(r.success for r in results.values())
    assert results["mlflow.health"].detail == (
        f"GET /health: no answer from {url} in 0.2 s; is the server overloaded or the "
        "network slow? (raise monitor.mlflow[].timeout if it is merely slow)"
    )


@pytest.mark.asyncio
async def test_no_server_is_connection_refused_on_every_check() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    results = await probe(url, models=[{"name": "churn", "alias": "champion"}])

    assert len(results) == 4
    for result in results.values():
        assert not result.success
        assert result.detail == (
            f"cannot reach {url} (Connection refused); is `mlflow server` running there, and "
            "is monitor.mlflow[].url right?"
        )


@pytest.mark.parametrize(
    ("values", "loc"),
    [
        ({"url": "127.0.0.1:5000"}, ("url",)),
        ({"url": "http://m", "timeout": 0}, ("timeout",)),
        ({"url": "http://m", "tracking_uri": "http://m"}, ("tracking_uri",)),
        ({"url": "http://m", "models": [{"name": "a", "stage": "S", "alias": "b"}]}, ("models", 0)),
        ({"url": "http://m", "models": [{"name": "a"}, {"name": "a"}]}, ()),
        ({"url": "http://m", "models": [{"name": ""}]}, ("models", 0, "name")),
    ],
)
def test_bad_settings_are_refused(values: dict[str, Any], loc: tuple[str | int, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        MlflowTargetSettings.model_validate(values)

    assert caught.value.errors()[0]["loc"] == loc


def test_settings_defaults() -> None:
    settings = MlflowTargetSettings(url="https://mlflow.example/")

    assert settings.url == "https://mlflow.example"
    assert (settings.name, settings.timeout, settings.models, settings.token_env) == (
        None,
        5.0,
        [],
        None,
    )
