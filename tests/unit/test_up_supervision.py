"""How `flowops up` says a child ended (flowops/up.py): stopped, killed, or already dead.

The restarts themselves run under a real `flowops up` in tests/integration/test_up.py.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from flowops.config import load_settings
from flowops.process import Child
from flowops.up import LocalStack, UpOptions


def stop_line(child: Child, workdir: Path) -> str:
    lines: list[str] = []
    options = UpOptions(workdir=workdir)
    stack = LocalStack(load_settings(), options, say=lines.append, show=lambda alert: None)
    asyncio.run(stack._stop_child(child))
    (line,) = lines
    return line


def test_a_child_that_was_dead_before_the_stop_is_not_called_killed(tmp_path: Path) -> None:
    child = Child("stream worker", [sys.executable, "-c", "raise SystemExit(3)"])
    child.start()
    assert child.wait(10) == 3
    assert stop_line(child, tmp_path) == "stream worker: was not running (exit code 3)"


def test_a_child_that_ignores_sigterm_is_said_to_be_killed(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    child = Child("gateway", [sys.executable, "-c", code], stop_timeout=0.5)
    child.start()
    while "1" not in child.log_tail():
        assert child.wait(0.05) is None
    assert stop_line(child, tmp_path) == "gateway: stopped (killed: it did not stop in 0.5 s)"


def test_a_child_that_stops_on_sigterm_is_stopped(tmp_path: Path) -> None:
    child = Child("monitor", [sys.executable, "-c", "import time; time.sleep(60)"])
    child.start()
    assert stop_line(child, tmp_path) == "monitor: stopped"
