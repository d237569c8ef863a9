"""A small client of the MLflow tracking server's REST API, on the standard library.

FlowOps logs reference profiles to MLflow runs, and its monitor will probe the server;
neither needs the ``mlflow`` package (and its hundred dependencies), only a few REST
calls: ``GET /api/2.0/mlflow/runs/get`` for a run's ``artifact_uri``, and the tracking
server's artifact proxy (``/api/2.0/mlflow-artifacts/artifacts/<path>``) to write and read
artifacts::

    client = MlflowClient("http://127.0.0.1:5000")
    uri = client.log_artifact(run_id, "flowops/profile.json", data)
    client.download_artifact(run_id, "flowops/profile.json") == data

A run's artifacts can be written when its ``artifact_uri`` is ``mlflow-artifacts:`` (the
server proxies its artifact store: ``mlflow server --serve-artifacts``, the default since
MLflow 2) or ``http(s):``. Other stores (``s3:``, ``gs:``, a local path) are written by the
``mlflow`` client itself, with the store's own credentials; FlowOps says so and stops.

Credentials come from MLflow's own variables: ``MLFLOW_TRACKING_TOKEN`` (a bearer token),
or ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` (basic auth).

>>> artifact_url("http://127.0.0.1:5000", "mlflow-artifacts:/0/abc/artifacts", "flowops/p.json")
'http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/flowops/p.json'
"""

from __future__ import annotations

import base64
import os
import posixpath
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Final, Self

import orjson

from flowops.config import MlflowSettings
from flowops.errors import ConfigError, InputError, MlflowError

__all__ = [
    "ARTIFACT_PROXY",
    "ArtifactFile",
    "MlflowClient",
    "Run",
    "artifact_url",
]

ARTIFACT_PROXY: Final = "/api/2.0/mlflow-artifacts/artifacts"
"""Where a tracking server started with ``--serve-artifacts`` proxies its artifact store."""

_RUNS_GET: Final = "/api/2.0/mlflow/runs/get"
_ARTIFACTS_LIST: Final = "/api/2.0/mlflow/artifacts/list"
_WHERE_URI: Final = (
    "--mlflow-uri, mlflow.tracking_uri (FLOWOPS_MLFLOW__TRACKING_URI) or MLFLOW_TRACKING_URI"
)


@dataclass(frozen=True)
class Run:
    """What FlowOps needs of an MLflow run."""

    run_id: str
    experiment_id: str
    artifact_uri: str
    status: str
    lifecycle_stage: str


@dataclass(frozen=True)
class ArtifactFile:
    """One entry of a run's artifact listing; ``size`` is None for a directory."""

    path: str
    is_dir: bool
    size: int | None


class MlflowClient:
    """Runs and artifacts on an MLflow tracking server, over its REST API.

    Every failure is a :class:`~flowops.errors.MlflowError` (no answer, a refusal, a
    store FlowOps cannot write to) except a run that does not exist or is deleted, an
    :class:`~flowops.errors.InputError`.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        timeout: float = 10.0,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if not tracking_uri.startswith(("http://", "https://")):
            raise ConfigError(
                "mlflow.tracking_uri",
                f"FlowOps talks to a tracking server over HTTP; expected an http:// or "
                f"https:// URL, got {tracking_uri!r}",
            )
        self.tracking_uri = tracking_uri.rstrip("/")
        self.timeout = timeout
        self._authorization = _authorization(token, username, password)

    @classmethod
    def from_settings(cls, settings: MlflowSettings) -> Self:
        """A client of ``mlflow.tracking_uri``, with MLflow's credential variables."""
        if settings.tracking_uri is None:
            raise ConfigError("mlflow.tracking_uri", f"no tracking server: set {_WHERE_URI}")
        return cls(
            settings.tracking_uri,
            timeout=settings.timeout,
            token=os.environ.get("MLFLOW_TRACKING_TOKEN") or None,
            username=os.environ.get("MLFLOW_TRACKING_USERNAME") or None,
            password=os.environ.get("MLFLOW_TRACKING_PASSWORD") or None,
        )

    def health(self) -> None:
        """Return when the server answers ``GET /health`` with 200; else MlflowError."""
        self._request("GET", f"{self.tracking_uri}/health")

    def get_run(self, run_id: str) -> Run:
        """The run; InputError when the server has no such run."""
        query = urllib.parse.urlencode({"run_id": run_id})
        try:
            body = self._json("GET", f"{self.tracking_uri}{_RUNS_GET}?{query}")
        except MlflowError as exc:
            if exc.status == 404:
                raise InputError(f"no MLflow run {run_id!r} on {self.tracking_uri}") from None
            raise
        try:
            info = body["run"]["info"]
            return Run(
                run_id=str(info["run_id"]),
                experiment_id=str(info["experiment_id"]),
                artifact_uri=str(info["artifact_uri"]),
                status=str(info.get("status", "")),
                lifecycle_stage=str(info.get("lifecycle_stage", "active")),
            )
        except (KeyError, TypeError):
            raise self._error(f"unexpected answer to {_RUNS_GET}: {_short(body)}") from None

    def log_artifact(
        self, run_id: str, path: str, data: bytes, *, content_type: str = "application/json"
    ) -> str:
        """Write ``data`` as the run's artifact ``path``; return the artifact's URI."""
        run = self._live_run(run_id)
        url = self._artifact_url(run, path)
        self._request("PUT", url, data=data, content_type=content_type)
        return f"{run.artifact_uri.rstrip('/')}/{_checked_path(path)}"

    def download_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of the run's artifact ``path``."""
        return self._request("GET", self._artifact_url(self.get_run(run_id), path))

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactFile]:
        """The run's artifacts directly under ``path`` (the root when None)."""
        params = {"run_id": run_id} | ({"path": _checked_path(path)} if path else {})
        query = urllib.parse.urlencode(params)
        body = self._json("GET", f"{self.tracking_uri}{_ARTIFACTS_LIST}?{query}")
        return [
            ArtifactFile(str(f["path"]), bool(f.get("is_dir")), f.get("file_size"))
            for f in body.get("files", [])
        ]

    def _live_run(self, run_id: str) -> Run:
        run = self.get_run(run_id)
        if run.lifecycle_stage == "deleted":
            raise InputError(f"MLflow run {run_id!r} is deleted; restore it or choose another")
        return run

    def _artifact_url(self, run: Run, path: str) -> str:
        try:
            return artifact_url(self.tracking_uri, run.artifact_uri, path)
        except ValueError as exc:
            raise self._error(f"run {run.run_id}: {exc}") from None

    def _json(self, method: str, url: str) -> dict[str, Any]:
        body = self._request(method, url)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise self._error(f"{url} did not answer JSON; is this an MLflow tracking server?")
        return data

    def _request(
        self, method: str, url: str, *, data: bytes | None = None, content_type: str | None = None
    ) -> bytes:
        request = urllib.request.Request(url, data=data, method=method)
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        if self._authorization is not None:
            request.add_header("Authorization", self._authorization)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            raise self._http_error(method, url, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise self._error(
                f"cannot reach the MLflow tracking server ({reason}); is it running? "
                f"Set {_WHERE_URI}"
            ) from None

    def _http_error(self, method: str, url: str, exc: urllib.error.HTTPError) -> MlflowError:
        body = exc.read()
        try:
            detail = orjson.loads(body)
        except orjson.JSONDecodeError:
            detail = None
        message = detail.get("message") if isinstance(detail, dict) else None
        message = str(message) if message else (body.decode(errors="replace")[:200] or exc.reason)
        if exc.code in (401, 403):
            message += (
                " (set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD)"
            )
        where = urllib.parse.urlsplit(url).path
        return self._error(f"{method} {where}: HTTP {exc.code}: {message}", status=exc.code)

    def _error(self, reason: str, *, status: int | None = None) -> MlflowError:
        return MlflowError(self.tracking_uri, reason, status=status)


def artifact_url(tracking_uri: str, artifact_uri: str, path: str) -> str:
    """The URL that reads and writes artifact ``path`` of a run whose artifacts are at
    ``artifact_uri``, as MLflow's own client resolves it.

    ``mlflow-artifacts:/x`` is served by the tracking server (``mlflow-artifacts://host:port/x``
    by another one, same scheme); ``http(s)://...`` is used as it is. Anything else raises
    ValueError saying why FlowOps cannot write there.

    >>> artifact_url("https://m.example/mlflow", "mlflow-artifacts://art:8080/1/r/artifacts", "a b")
    'https://art:8080/mlflow/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a%20b'
    >>> artifact_url("http://m:5000", "s3://bucket/1/r/artifacts", "p.json")
    Traceback (most recent call last):
    ...
    ValueError: its artifacts are kept at s3://bucket/1/r/artifacts, which FlowOps cannot \
write to: it uploads through the tracking server, so the run's experiment needs an \
mlflow-artifacts: location (`mlflow server --serve-artifacts`, the default) or an http(s) one
    """
    relative = urllib.parse.quote(_checked_path(path), safe="/")
    location = urllib.parse.urlsplit(artifact_uri)
    if location.scheme in ("http", "https"):
        return f"{artifact_uri.rstrip('/')}/{relative}"
    if location.scheme != "mlflow-artifacts":
        raise ValueError(
            f"its artifacts are kept at {_without_userinfo(location)}, which FlowOps cannot "
            "write to: it uploads through the tracking server, so the run's experiment needs "
            "an mlflow-artifacts: location (`mlflow server --serve-artifacts`, the default) "
            "or an http(s) one"
        )
    tracking = urllib.parse.urlsplit(tracking_uri)
    route = re.sub(r"/{2,}", "/", f"/{tracking.path}/{ARTIFACT_PROXY}/{location.path}/{relative}")
    netloc = location.netloc or tracking.netloc
    return urllib.parse.urlunsplit((tracking.scheme, netloc, route, "", ""))


def _checked_path(path: str) -> str:
    """A relative artifact path without ``.``/``..`` parts; InputError otherwise."""
    normal = posixpath.normpath(path)
    if not path or path.startswith("/") or normal.startswith("..") or normal != path.strip("/"):
        raise InputError(f"not a relative artifact path: {path!r}")
    return normal


def _without_userinfo(location: urllib.parse.SplitResult) -> str:
    host = location.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((location.scheme, host, location.path, "", ""))


def _authorization(token: str | None, username: str | None, password: str | None) -> str | None:
    if token:
        return f"Bearer {token}"
    if username and password:
        pair = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return f"Basic {pair}"
    return None


def _short(body: object) -> str:
    return repr(body)[:200]
