"""flowops.mlflow: artifact URLs (checked against MLflow's own resolver), paths, and how
each kind of answer becomes an error, against a small HTTP stand-in of the REST API.
The real ``mlflow server`` is in tests/integration/test_mlflow_server.py."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

from flowops.broker import free_port
from flowops.config import MlflowSettings
from flowops.errors import ConfigError, InputError, MlflowError
from flowops.mlflow import MlflowClient, artifact_url

RUN = {
    "run_id": "r1",
    "experiment_id": "0",
    "artifact_uri": "mlflow-artifacts:/0/r1/artifacts",
    "status": "RUNNING",
    "lifecycle_stage": "active",
}


@pytest.mark.parametrize(
    ("tracking", "artifacts"),
    [
        ("http://127.0.0.1:5000", "mlflow-artifacts:/0/r1/artifacts"),
        ("http://127.0.0.1:5000/", "mlflow-artifacts:/0/r1/artifacts/"),
        ("https://mlflow.example/prefix", "mlflow-artifacts:/7/r2/artifacts"),
        ("https://mlflow.example/prefix", "mlflow-artifacts://art.example:8080/7/r2/artifacts"),
    ],
)
def test_artifact_url_is_where_mlflow_itself_writes(tracking: str, artifacts: str) -> None:
    root = MlflowArtifactsRepository.resolve_uri(artifacts, tracking)
    assert artifact_url(tracking, artifacts, "flowops/profile.json") == (
        f"{root}/flowops/profile.json"
    )


def test_artifact_url_quotes_the_path_and_keeps_http_locations() -> None:
    assert (
        artifact_url("http://m:5000", "http://art:9000/base/artifacts", "a b/p#1.json")
        == "http://art:9000/base/artifacts/a%20b/p%231.json"
    )


@pytest.mark.parametrize(
    "location",
    ["s3://bucket/0/r1/artifacts", "gs://b/x", "/srv/mlruns/0/r1/artifacts", "file:///srv/x"],
)
def test_stores_written_by_the_mlflow_client_only_are_refused(location: str) -> None:
    with pytest.raises(ValueError, match="FlowOps cannot write to") as caught:
        artifact_url("http://m:5000", location, "p.json")
    assert location in str(caught.value)


def test_a_store_uri_is_shown_without_its_credentials() -> None:
    with pytest.raises(ValueError, match=r"s3://bucket/x, which") as caught:
        artifact_url("http://m:5000", "s3://key:secret@bucket/x", "p.json")
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("path", ["", "/abs.json", "../up.json", "a/../../b", "a//b", "./a"])
def test_artifact_paths_must_be_plain_relative_paths(path: str) -> None:
    with pytest.raises(InputError, match="not a relative artifact path"):
        artifact_url("http://m:5000", RUN["artifact_uri"], path)


def test_a_tracking_uri_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"mlflow.tracking_uri: .*'sqlite:///mlflow.db'"):
        MlflowClient("sqlite:///mlflow.db")


def test_no_tracking_uri_says_where_to_set_one() -> None:
    with pytest.raises(ConfigError, match=r"--mlflow-uri, mlflow\.tracking_uri"):
        MlflowClient.from_settings(MlflowSettings(tracking_uri=None))


# -- against an HTTP stand-in ------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes


@dataclass
class StandIn:
    """Answers each (method, path) with the reply set for it; records what it was sent."""

    url: str
    replies: dict[tuple[str, str], Reply] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    def reply(self, method: str, path: str, status: int, body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.replies[(method, path)] = Reply(status, data)


@pytest.fixture
def server() -> Iterator[StandIn]:
    port = free_port()
    stand_in = StandIn(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size) if size else b""
            stand_in.requests.append((self.command, self.path, dict(self.headers), body))
            path = self.path.partition("?")[0]
            reply = stand_in.replies.get((self.command, path), Reply(404, b"{}"))
            self.send_response(reply.status)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_PUT = _answer  # noqa: N815  (the names http.server calls)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


RUNS_GET = "/api/2.0/mlflow/runs/get"
PUT_PATH = "/api/2.0/mlflow-artifacts/artifacts/0/r1/artifacts/flowops/profile.json"


def test_log_artifact_puts_the_bytes_where_the_run_keeps_its_artifacts(server: StandIn) -> None:
    server.reply("GET", RUNS_GET, 200, {"run": {"info": RUN}})
    server.reply("PUT", PUT_PATH, 200, b"")

    uri = MlflowClient(server.url).log_artifact("r1", "flowops/profile.json", b'{"a": 1}\n')

    assert uri == "mlflow-artifacts:/0/r1/artifacts/flowops/profile.json"
    method, path, headers, body = server.requests[-1]
    assert (method, path, body) == ("PUT", PUT_PATH, b'{"a": 1}\n')
    assert headers["Content-Type"] == "application/json"
    assert server.requests[0][1] == f"{RUNS_GET}?run_id=r1"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"MLFLOW_TRACKING_TOKEN": "t0k"}, "Bearer t0k"),
        (
            {"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_PASSWORD": "pw"},
            "Basic " + base64.b64encode(b"ann:pw").decode(),
        ),
        ({}, None),
    ],
)
def test_credentials_come_from_mlflows_variables(
    server: StandIn,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, str],
    expected: str | None,
) -> None:
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    server.reply("GET", RUNS_GET, 200, {"run": {"info": RUN}})

    MlflowClient.from_settings(MlflowSettings(tracking_uri=server.url)).get_run("r1")

    assert server.requests[0][2].get("Authorization") == expected


def test_an_unknown_run_is_an_input_error(server: StandIn) -> None:
    message = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run with id=x not found"}
    server.reply("GET", RUNS_GET, 404, message)
    with pytest.raises(InputError, match=r"^no MLflow run 'x' on http://127\.0\.0\.1:\d+$"):
        MlflowClient(server.url).get_run("x")


def test_a_deleted_run_takes_no_artifacts(server: StandIn) -> None:
    server.reply("GET", RUNS_GET, 200, {"run": {"info": RUN | {"lifecycle_stage": "deleted"}}})
    with pytest.raises(InputError, match="is deleted"):
        MlflowClient(server.url).log_artifact("r1", "p.json", b"{}")
    assert [request[0] for request in server.requests] == ["GET"]


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (500, {"error_code": "INTERNAL_ERROR", "message": "db locked"}, "HTTP 500: db locked"),
        (401, b"Unauthorized", "HTTP 401: Unauthorized .*MLFLOW_TRACKING_TOKEN"),
        (403, {"message": "no"}, "HTTP 403: no .*MLFLOW_TRACKING_USERNAME"),
    ],
)
def test_refusals_are_mlflow_errors_with_the_status(
    server: StandIn, status: int, body: Any, match: str
) -> None:
    server.reply("GET", RUNS_GET, status, body)
    with pytest.raises(MlflowError, match=match) as caught:
        MlflowClient(server.url).get_run("r1")
    assert caught.value.status == status
    assert caught.value.exit_code == 3


def test_an_answer_that_is_not_mlflows_says_so(server: StandIn) -> None:
    server.reply("GET", RUNS_GET, 200, b"<html>a login page</html>")
    with pytest.raises(MlflowError, match="did not answer JSON; is this an MLflow"):
        MlflowClient(server.url).get_run("r1")


def test_a_failed_upload_is_an_mlflow_error(server: StandIn) -> None:
    server.reply("GET", RUNS_GET, 200, {"run": {"info": RUN}})
    server.reply("PUT", PUT_PATH, 503, {"message": "artifact store unavailable"})
    with pytest.raises(MlflowError, match=r"PUT /api/2.0/mlflow-artifacts/.*: HTTP 503"):
        MlflowClient(server.url).log_artifact("r1", "flowops/profile.json", b"{}")


def test_a_run_whose_store_flowops_cannot_write_to_is_refused_before_any_upload(
    server: StandIn,
) -> None:
    server.reply("GET", RUNS_GET, 200, {"run": {"info": RUN | {"artifact_uri": "s3://b/r1"}}})
    with pytest.raises(MlflowError, match=r"run r1: its artifacts are kept at s3://b/r1"):
        MlflowClient(server.url).log_artifact("r1", "p.json", b"{}")
    assert [request[0] for request in server.requests] == ["GET"]


def test_no_server_is_an_mlflow_error_without_status() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MlflowError, match="cannot reach the MLflow tracking server") as caught:
        MlflowClient(url, timeout=5).health()
    assert caught.value.status is None
    assert caught.value.target == url
