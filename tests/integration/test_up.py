"""``flowops up`` as a process: the embedded broker, a worker, the demo, Ctrl-C.

Each run gets free ports and a workdir of its own; every ``flowops up`` started is
stopped by its pid (SIGINT, then SIGKILL), and its children's pids, read from its
progress lines, must be gone afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from flowops.broker import free_port

pytestmark = pytest.mark.integration

START_TIMEOUT = 120.0  # broker, topics, a worker joining its group
STOP_TIMEOUT = 60.0  # the worker's bounded stop (20 s) and the broker's (5 s), with room
_PID = re.compile(r"(broker: ready|worker: started) \(pid (\d+)\)")


@dataclass
class Up:
    """A running ``flowops up`` with its stdout lines (alerts) and stderr (progress)."""

    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            reader = threading.Thread(target=_collect, args=(stream, lines), daemon=True)
            reader.start()
            self.readers.append(reader)

    def close(self) -> None:
        """Stop it if it runs; read its output to the end and close the pipes."""
        if self.proc.poll() is None:
            self.stop()
        for reader in self.readers:
            reader.join(STOP_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.stdout)]

    def progress(self) -> str:
        return "".join(self.stderr)

    def children(self) -> dict[str, int]:
        """The pids ``flowops up`` said it started: broker and worker."""
        return {m.group(1).split(":")[0]: int(m.group(2)) for m in _PID.finditer(self.progress())}

    def wait_for(self, what: str, probe: Any, timeout: float = START_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"flowops up exited while waiting for {what}:\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def stop(self) -> int:
        """SIGINT, as Ctrl-C; SIGKILL if it has not stopped in time."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
            raise AssertionError(f"flowops up did not stop on SIGINT:\n{self.log()}") from None

    def log(self) -> str:
        stdout = "".join(self.stdout)[-2000:]
        return f"--- stderr:\n{self.progress()[-4000:]}\n--- stdout:\n{stdout}"


def _collect(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@pytest.fixture
def run_up(tmp_path: Path) -> Iterator[Any]:
    """Start ``flowops up`` with arguments; every one started is stopped at teardown."""
    started: list[Up] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Up:
        command = [sys.executable, "-m", "flowops", "up", "-o", "json"]
        command += ["--metrics-port", str(free_port()), "--workdir", str(tmp_path / "up")]
        up = Up(
            subprocess.Popen(
                [*command, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        )
        started.append(up)
        return up

    yield start
    for up in started:
        up.close()


def income_alerts(up: Up) -> list[dict[str, Any]]:
    return [a for a in up.alerts() if a["feature"] == "income" and a["test"] in ("ks", "psi")]


def assert_gone(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"the {name} (pid {pid}) is still running"


def test_demo_alerts_on_income_and_ctrl_c_stops_every_child(run_up: Any) -> None:
    up = run_up("--demo", "--broker-port", str(free_port()), "--shift-after", "4")
    found = up.wait_for("income alerts", lambda: income_alerts(up))
    pids = up.children()
    assert set(pids) == {"broker", "worker"}

    assert up.stop() == 0
    assert_gone(pids)
    assert {a["test"] for a in income_alerts(up)} >= {"ks"}
    assert all(a["model"] == "credit-demo" and a["reference"] == "profile" for a in found)
    progress = up.progress()
    assert "demo: drift in income detected" in progress
    assert "stream worker: stopped\n" in progress  # on SIGTERM, not killed
    assert progress.rstrip().splitlines()[-1].startswith("flowops up: ")
    assert "Traceback" not in progress


def test_up_on_an_existing_kafka_stops_after_its_duration(run_up: Any, broker: str) -> None:
    app = f"up-{uuid.uuid4().hex[:8]}"  # a group of its own on the shared broker
    up = run_up(
        "--demo",
        "--bootstrap",
        broker,
        "--duration",
        "25",
        "--shift-after",
        "3",
        env={"FLOWOPS_STREAMS__APP_ID": app},
    )
    assert up.proc.wait(START_TIMEOUT) == 0, up.log()
    progress = up.progress()
    assert f"kafka: using {broker} (broker.embedded is false)" in progress
    assert "broker: ready" not in progress
    assert income_alerts(up), up.log()
    assert_gone(up.children())


def test_a_worker_that_dies_stops_up_with_its_log(run_up: Any) -> None:
    up = run_up("--broker-port", str(free_port()))
    up.wait_for("the worker", lambda: "worker: ready" in up.progress())
    pids = up.children()
    os.kill(pids["worker"], signal.SIGKILL)

    assert up.proc.wait(STOP_TIMEOUT) == 3
    assert_gone(pids)
    assert "flowops: error: stream worker: exited with code -9; its log ends:" in up.progress()
    assert "Traceback" not in up.progress()


def test_a_taken_broker_port_is_a_clear_error(run_up: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        up = run_up("--broker-port", str(taken.getsockname()[1]))
        assert up.proc.wait(STOP_TIMEOUT) == 3
    assert "is already in use" in up.progress()
    assert "--broker-port" in up.progress()
    assert up.children() == {}
