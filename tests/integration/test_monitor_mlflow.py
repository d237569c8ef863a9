"""The MLflow probe against a real ``mlflow server`` (SQLite backend store) of its own,
since the test takes it apart: healthy, with a registered model under an alias and in a
stage; then its database made unreachable (the deep check fails while ``/health`` still
says OK); the database back; then the server stopped (connection refused).

The server runs with ``MLFLOW_SQLALCHEMYSTORE_POOLCLASS=NullPool``: with its default pool it
keeps SQLite connections open on the database file, which a rename does not reach; without
one every request connects anew, as it must after a database server went away.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flowops.broker import free_port
from flowops.monitor.checks import CheckResult
from flowops.monitor.probes.mlflow import MlflowProbe, MlflowTargetSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

START_TIMEOUT = 180.0  # as tests/integration/conftest.py: about 15 s, longer on a cold cache


@dataclass
class Server:
    url: str
    database_dir: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL to what is left."""
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        for _ in range(300):  # uvicorn workers still shutting down
            if not _signal_group(self.proc.pid, 0):
                return
            time.sleep(0.1)
        _signal_group(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("mlflow-monitor")
    database_dir = root / "db"
    database_dir.mkdir()
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--serve-artifacts"]
    command += ["--backend-store-uri", f"sqlite:///{database_dir / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    env = os.environ | {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_SQLALCHEMYSTORE_POOLCLASS": "NullPool",  # see the module's docstring
    }
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
    running = Server(f"http://127.0.0.1:{port}", database_dir, proc)
    try:
        _wait_until_healthy(running, log)
        yield running
    finally:
        running.stop()


def _wait_until_healthy(server: Server, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"mlflow server exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"mlflow server did not start:\n{log.read_text(errors='replace')}")


def _signal_group(group: int, signum: int) -> bool:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def rest(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def register_churn(url: str) -> None:
    """Model ``churn``: version 1 under alias ``champion``, version 2 in Production."""
    run = rest(url, "runs/create", {"experiment_id": "0"})["run"]["info"]
    rest(url, "registered-models/create", {"name": "churn"})
    for _ in range(2):
        source = {"source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]}
        rest(url, "model-versions/create", {"name": "churn"} | source)
    rest(url, "registered-models/alias", {"name": "churn", "alias": "champion", "version": "1"})
    transition = {"name": "churn", "version": "2", "stage": "Production"}
    rest(url, "model-versions/transition-stage", transition | {"archive_existing_versions": False})


async def probe(url: str) -> dict[str, CheckResult]:
    models = [
        {"name": "churn", "alias": "champion"},
        {"name": "churn", "stage": "Production"},
        {"name": "fraud"},
    ]
    settings = MlflowTargetSettings(url=url, timeout=10, models=models)
    async with aiohttp.ClientSession() as session:
        results = await MlflowProbe(settings, session).run()
    return {f"{r.check} {r.target.partition(' ')[2]}".strip(): r for r in results}


async def test_healthy_then_database_gone_then_back_then_stopped(server: Server) -> None:
    register_churn(server.url)
    healthy = await probe(server.url)

    assert {check: r.success for check, r in healthy.items()} == {
        "mlflow.health": True,
        "mlflow.version": True,
        "mlflow.backend": True,
        "mlflow.model models:/churn@champion": True,
        "mlflow.model models:/churn/Production": True,
        "mlflow.model models:/fraud": False,
    }
    assert healthy["mlflow.version"].detail.startswith("MLflow 3.")
    assert healthy["mlflow.model models:/churn@champion"].values == {"version": 1.0}
    assert healthy["mlflow.model models:/churn/Production"].values == {"version": 2.0}
    assert healthy["mlflow.model models:/fraud"].detail == (
        f"no registered model 'fraud' on {server.url}; register it, or fix monitor.mlflow[].models"
    )

    hidden = server.database_dir.with_name("db-away")
    server.database_dir.rename(hidden)
    try:
        no_database = await probe(server.url)
    finally:
        hidden.rename(server.database_dir)

    assert no_database["mlflow.health"].success  # /health does not look at the database
    assert no_database["mlflow.version"].success
    backend = no_database["mlflow.backend"]
    assert not backend.success
    assert backend.detail.startswith("POST /api/2.0/mlflow/experiments/search: HTTP 503: ")
    assert "unable to open database file" in backend.detail
    assert backend.detail.endswith(
        "the server is up but cannot query its backend store: check the database of its "
        "--backend-store-uri (reachable, credentials, disk space, migrations)"
    )
    assert not no_database["mlflow.model models:/churn@champion"].success

    assert (await probe(server.url))["mlflow.backend"].success  # the database is back

    server.stop()
    stopped = await probe(server.url)

    assert len(stopped) == 6
    for result in stopped.values():
        assert not result.success
        assert result.detail == (
            f"cannot reach {server.url} (Connection refused); is `mlflow server` running there, "
            "and is monitor.mlflow[].url right?"
        )
