"""Model servers: are they live, ready, is the model loaded, and does it answer a canary?

One :class:`ModelServerProbe` per entry of ``monitor.model_servers``; its checks depend on
the server's protocol:

=============  ===========================  ============================================
protocol       check                        request (2xx passes)
=============  ===========================  ============================================
``kserve_v2``  ``model_server.live``        ``GET /v2/health/live``
               ``model_server.ready``       ``GET /v2/health/ready``
               ``model_server.model_ready`` ``GET /v2/models/{model}/ready``
``mlflow``     ``model_server.ready``       ``GET /ping`` (MLflow's scoring server)
``http``       ``model_server.ready``       ``GET url``
any, optional  ``model_server.canary``      ``POST`` the sample payload: the status, the
                                            predictions' shape and the latency
=============  ===========================  ============================================

The canary posts to ``/v2/models/{model}/infer`` (KServe v2), ``/invocations`` (MLflow),
or ``canary.path`` (resolved against ``url``, required for ``http``). The shape checked
is that of the first output's ``shape`` (KServe v2) or of the ``predictions`` array
(``{"predictions": [...]}`` or a bare array, as MLflow answers), ``-1`` matching any size,
as :mod:`flowops.formats` reads them.

Checks run in order within the probe's ``timeout``; once the server gives no answer at all
(connection refused, timeout), the checks after it are failed as not checked, so every run
reports the same checks.

>>> settings = ModelServerSettings(name="iris", url="http://127.0.0.1:9001", protocol="kserve_v2")
>>> settings.model_name
'iris'
>>> [check for check, _ in endpoints(settings)]
['model_server.live', 'model_server.ready', 'model_server.model_ready']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Self

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from yarl import URL

from flowops.formats import ServingProtocol, predictions_shape, shape_matches
from flowops.monitor.checks import CheckResult, Stopwatch
from flowops.monitor.probes.http import HttpAnswer, Unreachable, check_http_url, fetch

__all__ = [
    "CanarySettings",
    "ModelServerProbe",
    "ModelServerSettings",
    "canary_url",
    "endpoints",
    "judge_canary",
    "refusal",
]

_CANARY: Final = "model_server.canary"


class CanarySettings(BaseModel):
    """A sample inference the monitor sends each round, and what its answer must be."""

    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any] | list[Any] | Path = Field(
        description="the request body: JSON inline (a mapping or a list), or a JSON file's path"
    )
    path: str | None = Field(
        None,
        description="where to POST it, resolved against url; default: /v2/models/{model}/infer "
        "(kserve_v2), /invocations (mlflow); required for http",
    )
    expect_status: int = Field(200, ge=100, le=599, description="the HTTP status it must get")
    expect_shape: list[int] | None = Field(
        None, description="shape of the predictions (first output), -1 for any size; None: any"
    )
    latency_budget_ms: float | None = Field(
        None, gt=0, description="milliseconds the answer may take; None: no budget"
    )
    _body: bytes = PrivateAttr(b"")

    @model_validator(mode="after")
    def _load_payload(self) -> Self:
        payload = self.payload
        self._body = _read_json(payload) if isinstance(payload, Path) else orjson.dumps(payload)
        return self

    @property
    def body(self) -> bytes:
        """The payload as the bytes sent."""
        return self._body


def _read_json(path: Path) -> bytes:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the payload file {path}: {exc.strerror}") from None
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the payload file {path} is not JSON: {exc}") from None
    return text


class ModelServerSettings(BaseModel):
    """A model server the monitor checks (an entry of ``monitor.model_servers``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="how people name it: the checks' target")
    url: str = Field(description="its base URL (http://127.0.0.1:9001), or for http its URL")
    protocol: ServingProtocol = Field(
        "http", description="kserve_v2 (KServe v2 REST), mlflow (scoring server), http (GET url)"
    )
    model: str | None = Field(None, min_length=1, description="KServe model name; default: name")
    timeout: float = Field(5.0, gt=0, le=600, description="seconds all its checks may take")
    canary: CanarySettings | None = Field(None, description="a sample inference; None: none")

    _check_url = field_validator("url")(check_http_url)

    @model_validator(mode="after")
    def _canary_path(self) -> Self:
        if self.protocol == "http" and self.canary is not None and self.canary.path is None:
            raise ValueError("canary.path is required with protocol http (where to POST it)")
        return self

    @property
    def model_name(self) -> str:
        """The model's name on a KServe v2 server."""
        return self.model or self.name


def endpoints(settings: ModelServerSettings) -> list[tuple[str, str]]:
    """The (check, URL) pairs of the GET checks of ``settings``' protocol."""
    base = settings.url
    if settings.protocol == "kserve_v2":
        return [
            ("model_server.live", f"{base}/v2/health/live"),
            ("model_server.ready", f"{base}/v2/health/ready"),
            ("model_server.model_ready", f"{base}/v2/models/{settings.model_name}/ready"),
        ]
    if settings.protocol == "mlflow":
        return [("model_server.ready", f"{base}/ping")]
    return [("model_server.ready", base)]


def canary_url(settings: ModelServerSettings) -> str:
    """Where the canary is posted.

    >>> canary = {"payload": {}, "path": "/predict"}
    >>> canary_url(ModelServerSettings(name="m", url="http://h:8000/health", canary=canary))
    'http://h:8000/predict'
    """
    assert settings.canary is not None
    if settings.canary.path is not None:
        return str(URL(settings.url).join(URL(settings.canary.path)))
    if settings.protocol == "kserve_v2":
        return f"{settings.url}/v2/models/{settings.model_name}/infer"
    return f"{settings.url}/invocations"


class ModelServerProbe:
    """The checks of one model server; see the module's docstring."""

    kind: Final = "model_server"

    def __init__(self, settings: ModelServerSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session

    @property
    def target(self) -> str:
        return self.settings.name

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    async def run(self) -> Sequence[CheckResult]:
        watch = Stopwatch()
        results: list[CheckResult] = []
        skipped: str | None = None
        for check, url in endpoints(self.settings):
            if skipped is not None:
                results.append(self._result(check, False, 0.0, skipped))
                continue
            found = await self._fetch("GET", url, watch)
            if isinstance(found, Unreachable):
                skipped = f"not checked: {found.detail}"
                results.append(self._result(check, False, found.seconds, found.detail))
            else:
                results.append(self._judge(check, url, found))
        if self.settings.canary is not None:
            results.append(await self._canary(watch, skipped))
        return results

    async def _fetch(
        self, method: str, url: str, watch: Stopwatch, body: bytes | None = None
    ) -> HttpAnswer | Unreachable:
        left = self.settings.timeout - watch.elapsed()
        if left <= 0:
            detail = f"not checked: the checks before it took the whole {self.settings.timeout:g} s"
            return Unreachable(detail, 0.0)
        return await fetch(self._session, method, url, timeout=left, body=body)

    def _judge(self, check: str, url: str, found: HttpAnswer) -> CheckResult:
        if 200 <= found.status < 300:
            return self._result(check, True, found.seconds, f"{found.status} from GET {url}")
        return self._result(check, False, found.seconds, refusal(check, self.settings, found))

    async def _canary(self, watch: Stopwatch, skipped: str | None) -> CheckResult:
        if skipped is not None:
            return self._result(_CANARY, False, 0.0, skipped)
        canary = self.settings.canary
        assert canary is not None
        found = await self._fetch("POST", canary_url(self.settings), watch, canary.body)
        if isinstance(found, Unreachable):
            return self._result(_CANARY, False, found.seconds, found.detail)
        problem, summary = judge_canary(self.settings, found)
        if problem is not None:
            return self._result(_CANARY, False, found.seconds, problem)
        return self._result(_CANARY, True, found.seconds, summary)

    def _result(self, check: str, success: bool, seconds: float, detail: str) -> CheckResult:
        return CheckResult(check, self.target, success, seconds, detail)


def refusal(check: str, settings: ModelServerSettings, found: HttpAnswer) -> str:
    """What a non-2xx answer to ``check`` means, and where to look."""
    said = f" ({found.excerpt()})" if found.body.strip() else ""
    if check == "model_server.live":
        return f"not live: {found.status}{said}; the server is unhealthy, see its log or restart it"
    if check == "model_server.model_ready":
        model = settings.model_name
        if found.status == 404:
            return (
                f"model {model!r} is not loaded (404){said}: check the model name "
                "(model: or name:) against the models the server serves"
            )
        return f"model {model!r} is not ready: {found.status}{said}; it is loading or failed to"
    return (
        f"not ready: {found.status}{said}; it is still loading or a dependency is down, "
        "so requests sent now fail"
    )


def judge_canary(settings: ModelServerSettings, found: HttpAnswer) -> tuple[str | None, str]:
    """(the problem with a canary's answer or None, a summary of the answer)."""
    canary = settings.canary
    assert canary is not None
    millis = found.seconds * 1000
    if found.status != canary.expect_status:
        said = f": {found.excerpt()}" if found.body.strip() else ""
        return f"answered {found.status}, expected {canary.expect_status}{said}", ""
    shape: list[int] | None = None
    if canary.expect_shape is not None or settings.protocol != "http":
        shape = predictions_shape(settings.protocol, found.json())
        if shape is None:
            return f"the answer holds no predictions: {found.excerpt()}", ""
    if canary.expect_shape is not None and not shape_matches(shape or [], canary.expect_shape):
        return (
            f"predictions of shape {shape}, expected {canary.expect_shape}: the model's "
            "output changed, or it does not read the payload as before"
        ), ""
    budget = canary.latency_budget_ms
    if budget is not None and millis > budget:
        return (
            f"answered in {millis:.0f} ms, over its {budget:g} ms budget: the server is "
            "overloaded, cold, or waits on a slow dependency"
        ), ""
    shown = f", shape {shape}" if shape is not None else ""
    return None, f"{found.status} in {millis:.0f} ms{shown}"
