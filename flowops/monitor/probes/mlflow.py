"""The MLflow probe: is a tracking server up, does its backend store answer, and does
each model the team serves have a version where it is expected?

Checks, all made concurrently on the agent's shared ``aiohttp.ClientSession``:

``mlflow.health``
    ``GET /health`` answers 200. It does not touch the database, so it stays OK when
    the backend store is gone: that is what ``mlflow.backend`` is for.
``mlflow.version``
    ``GET /version``; the detail names the server's MLflow version.
``mlflow.backend``
    ``POST /api/2.0/mlflow/experiments/search`` with ``max_results: 1``: a query that
    reaches the backend store (``--backend-store-uri``).
``mlflow.model``
    One per configured model: the registered model has a version under the alias
    (``models:/churn@champion``), in the stage (``models:/churn/Production``), or at all
    (``models:/churn``), and that version is ``READY``. Its target is the server's
    followed by the model's URI; ``values["version"]`` is the version number.

Credentials: a bearer token from the variable named by ``token_env``, else MLflow's own
``MLFLOW_TRACKING_TOKEN``, or ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``.

>>> settings = MlflowTargetSettings(url="http://127.0.0.1:5000/", models=[{"name": "churn"}])
>>> settings.url, settings.timeout, settings.models[0].uri
('http://127.0.0.1:5000', 5.0, 'models:/churn')
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowops.mlflow import _authorization
from flowops.monitor.checks import CheckResult, Stopwatch

__all__ = ["MlflowModelSettings", "MlflowProbe", "MlflowTargetSettings"]


_EXPERIMENTS_SEARCH: Final = "/api/2.0/mlflow/experiments/search"
_MODEL_GET: Final = "/api/2.0/mlflow/registered-models/get"
_MODEL_ALIAS: Final = "/api/2.0/mlflow/registered-models/alias"
_LATEST_VERSIONS: Final = "/api/2.0/mlflow/registered-models/get-latest-versions"
_DETAIL_LIMIT: Final = 300


class MlflowModelSettings(BaseModel):
    """A registered model that should have a version under ``alias``, in ``stage``, or
    (neither given) at all."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the registered model's name")
    stage: str | None = Field(
        None, min_length=1, description="a stage that must hold a version (Production...)"
    )
    alias: str | None = Field(
        None, min_length=1, description="an alias that must point at a version (champion...)"
    )

    @model_validator(mode="after")
    def _one_selector(self) -> MlflowModelSettings:
        if self.stage is not None and self.alias is not None:
            raise ValueError("give a stage or an alias, not both")
        return self

    @property
    def uri(self) -> str:
        """MLflow's own name for what is checked: ``models:/name@alias``, ``models:/name/stage``."""
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        if self.stage is not None:
            return f"models:/{self.name}/{self.stage}"
        return f"models:/{self.name}"


class MlflowTargetSettings(BaseModel):
    """One tracking server the monitor probes (an item of ``monitor.mlflow``)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http(s) URL of the tracking server")
    name: str | None = Field(None, min_length=1, description="what people call it; default: url")
    timeout: float = Field(5.0, gt=0, le=600, description="seconds each request may take")
    models: list[MlflowModelSettings] = Field(
        default_factory=list, description="registered models that must have a version"
    )
    token_env: str | None = Field(
        None,
        min_length=1,
        description="environment variable holding a bearer token for this server; default: "
        "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _distinct_models(self) -> MlflowTargetSettings:
        uris = [model.uri for model in self.models]
        if len(set(uris)) != len(uris):
            raise ValueError(f"a model is listed twice: {sorted(uris)}")
        return self


@dataclass(frozen=True)
class _Outcome:
    success: bool
    detail: str
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def ok_json(self) -> Any:
        """The JSON of a 200 answer; None for any other."""
        return self.json() if self.status == 200 else None


class _NoAnswerError(Exception):
    """The request got no HTTP answer; the message is the check's detail."""


class MlflowProbe:
    """Probes one MLflow tracking server; see the module's docstring for its checks."""

    def __init__(self, settings: MlflowTargetSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session
        self._headers = _auth_headers(settings.token_env)
        self._request_timeout = aiohttp.ClientTimeout(total=settings.timeout)

    @property
    def kind(self) -> str:
        return "mlflow"

    @property
    def target(self) -> str:
        return self.settings.name or self.settings.url

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    async def run(self) -> list[CheckResult]:
        """Every check at once; a model check's target adds the model's URI."""
        checks = [
            self._check("mlflow.health", self.target, self._health),
            self._check("mlflow.version", self.target, self._version),
            self._check("mlflow.backend", self.target, self._backend),
        ]
        for model in self.settings.models:
            target = f"{self.target} {model.uri}"
            checks.append(self._check("mlflow.model", target, partial(self._model, model)))
        return list(await asyncio.gather(*checks))

    async def _check(
        self, check: str, target: str, work: Callable[[], Awaitable[_Outcome]]
    ) -> CheckResult:
        watch = Stopwatch()
        try:
            outcome = await work()
        except _NoAnswerError as exc:
            outcome = _Outcome(False, str(exc))
        return CheckResult(
            check, target, outcome.success, watch.elapsed(), outcome.detail, outcome.values
        )

    async def _health(self) -> _Outcome:
        answer = await self._request("GET", "/health")
        if answer.status != 200:
            return _Outcome(False, self._refusal("GET /health", answer))
        return _Outcome(True, answer.body.decode(errors="replace").strip()[:_DETAIL_LIMIT] or "OK")

    async def _version(self) -> _Outcome:
        answer = await self._request("GET", "/version")
        if answer.status != 200:
            return _Outcome(False, self._refusal("GET /version", answer))
        return _Outcome(True, f"MLflow {answer.body.decode(errors='replace').strip()[:50]}")

    async def _backend(self) -> _Outcome:
        answer = await self._request("POST", _EXPERIMENTS_SEARCH, json={"max_results": 1})
        if answer.status == 200 and isinstance(answer.json(), dict):
            return _Outcome(True, "the backend store answers (experiments/search)")
        if answer.status == 200:
            return _Outcome(False, f"{_EXPERIMENTS_SEARCH} did not answer JSON; {_IS_MLFLOW}")
        refusal = self._refusal(f"POST {_EXPERIMENTS_SEARCH}", answer)
        if answer.status >= 500:
            refusal += (
                "; the server is up but cannot query its backend store: check the database "
                "of its --backend-store-uri (reachable, credentials, disk space, migrations)"
            )
        return _Outcome(False, refusal)

    async def _model(self, model: MlflowModelSettings) -> _Outcome:
        answer, versions = await self._versions(model)
        if versions is None:
            return _Outcome(False, self._model_refusal(model, answer))
        return _model_outcome(model, versions)

    async def _versions(self, model: MlflowModelSettings) -> tuple[_Answer, list[Any] | None]:
        """The server's answer, and the versions it lists (None when it refused)."""
        if model.alias is not None:
            params = {"name": model.name, "alias": model.alias}
            answer = await self._request("GET", _MODEL_ALIAS, params=params)
            return answer, _listed(answer.ok_json(), "model_version")
        if model.stage is not None:
            body = {"name": model.name, "stages": [model.stage]}
            answer = await self._request("POST", _LATEST_VERSIONS, json=body)
            return answer, _listed(answer.ok_json(), "model_versions")
        answer = await self._request("GET", _MODEL_GET, params={"name": model.name})
        found = answer.ok_json()
        registered = found.get("registered_model") if isinstance(found, dict) else None
        return answer, _listed(registered, "latest_versions")

    def _model_refusal(self, model: MlflowModelSettings, answer: _Answer) -> str:
        code = _error_code(answer)
        if code == "RESOURCE_DOES_NOT_EXIST" or (code is None and answer.status == 404):
            return (
                f"no registered model {model.name!r} on {self.settings.url}; register it, or "
                "fix monitor.mlflow[].models"
            )
        if model.alias is not None and code == "INVALID_PARAMETER_VALUE":
            return (
                f"registered model {model.name!r} has no alias {model.alias!r}; point it at "
                f"a version (MlflowClient().set_registered_model_alias({model.name!r}, "
                f"{model.alias!r}, version)), or fix monitor.mlflow[].models"
            )
        return self._refusal(f"{model.uri}: the model registry", answer)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> _Answer:
        url = f"{self.settings.url}{path}"
        try:
            async with self._session.request(
                method,
                url,
                json=json,
                params=params,
                headers=self._headers,
                timeout=self._request_timeout,
            ) as response:
                return _Answer(response.status, await response.read())
        except aiohttp.ClientConnectorError as exc:
            raise _NoAnswerError(self._unreachable(exc)) from None
        except TimeoutError:
            raise _NoAnswerError(
                f"{method} {path}: no answer from {self.settings.url} in "
                f"{self.settings.timeout:g} s; is the server overloaded or the network slow? "
                "(raise monitor.mlflow[].timeout if it is merely slow)"
            ) from None
        except aiohttp.ClientError as exc:
            raise _NoAnswerError(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    def _unreachable(self, exc: aiohttp.ClientConnectorError) -> str:
        reason = exc.os_error.strerror or str(exc.os_error)
        if exc.os_error.errno is not None and exc.os_error.errno in errno.errorcode:
            reason = os.strerror(exc.os_error.errno)
        return (
            f"cannot reach {self.settings.url} ({reason}); is `mlflow server` running there, "
            "and is monitor.mlflow[].url right?"
        )

    def _refusal(self, what: str, answer: _Answer) -> str:
        message = f"{what}: HTTP {answer.status}: {_message(answer)}"
        if answer.status in (401, 403):
            variable = self.settings.token_env or "MLFLOW_TRACKING_TOKEN"
            message += f" (set {variable}, or MLFLOW_TRACKING_USERNAME and _PASSWORD)"
        elif answer.status == 404:
            message += f"; {_IS_MLFLOW}"
        return message


_IS_MLFLOW: Final = "is this an MLflow tracking server, and is monitor.mlflow[].url its root?"


def _listed(found: Any, key: str) -> list[Any] | None:
    """The versions under ``key`` of a JSON object (one version or a list); None otherwise."""
    if not isinstance(found, dict):
        return None
    versions = found.get(key, [])
    if isinstance(versions, dict):
        return [versions]
    return versions if isinstance(versions, list) else None


def _model_outcome(model: MlflowModelSettings, versions: list[Any]) -> _Outcome:
    """Success when the newest listed version is READY."""
    usable = [v for v in versions if isinstance(v, dict) and str(v.get("version", "")).isdigit()]
    if not usable:
        where = f"in stage {model.stage!r}" if model.stage is not None else "at all"
        return _Outcome(
            False,
            f"registered model {model.name!r} has no version {where}; register or transition "
            "one, or fix monitor.mlflow[].models",
        )
    newest = max(usable, key=lambda v: int(v["version"]))
    version = int(newest["version"])
    status = str(newest.get("status", "READY"))
    values = {"version": float(version)}
    if status != "READY":
        why = newest.get("status_message") or "no message"
        return _Outcome(
            False,
            f"{model.uri} is version {version}, whose registration is {status} ({why}); "
            "register it again",
            values,
        )
    return _Outcome(True, f"{model.uri} is version {version} (READY)", values)


def _error_code(answer: _Answer) -> str | None:
    found = answer.json()
    code = found.get("error_code") if isinstance(found, dict) else None
    return str(code) if code else None


def _message(answer: _Answer) -> str:
    found = answer.json()
    message = found.get("message") if isinstance(found, dict) else None
    text = str(message) if message else answer.body.decode(errors="replace").strip()
    return " ".join(text.split())[:_DETAIL_LIMIT] or "(empty answer)"


def _auth_headers(token_env: str | None) -> dict[str, str]:
    if token_env is not None:
        authorization = _authorization(os.environ.get(token_env) or None, None, None)
    else:
        authorization = _authorization(
            os.environ.get("MLFLOW_TRACKING_TOKEN") or None,
            os.environ.get("MLFLOW_TRACKING_USERNAME") or None,
            os.environ.get("MLFLOW_TRACKING_PASSWORD") or None,
        )
    return {} if authorization is None else {"Authorization": authorization}
