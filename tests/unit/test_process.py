"""``flowops.process.Child``: started in its own session, logged, stopped within a bound."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from helpers import until_sync

from flowops.process import Child

IGNORES_SIGTERM = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(60)
"""


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_for_log(child: Child, text: str) -> None:
    until_sync(lambda: text in child.log_tail(), repr(text), interval=0.02, detail=child.log_tail)


def test_output_goes_to_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"
    child = Child("printer", python("print('one'); print('\\x1b[31mtwo\\x1b[0m')"), log=log)
    child.start()
    assert child.wait(10) == 0
    assert log.read_text() == "one\n\x1b[31mtwo\x1b[0m\n"
    assert child.log_tail() == "one\ntwo"  # colours removed
    assert child.log_tail(lines=1) == "two"
    assert child.stop() == 0


def test_a_child_runs_in_a_session_of_its_own() -> None:
    child = Child("sleeper", python("import time; time.sleep(60)"))
    child.start()
    try:
        assert child.pid is not None
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        assert child.stop() == -signal.SIGTERM
    assert not child.running
    assert child.pid is None


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    child = Child("stubborn", python(IGNORES_SIGTERM), stop_timeout=0.5)
    child.start()
    wait_for_log(child, "ignoring SIGTERM")
    assert child.stop() == -signal.SIGKILL
    assert child.returncode == -signal.SIGKILL
    assert child.killed


def test_a_child_killed_from_outside_was_not_killed_by_stop() -> None:
    """`flowops up` tells a child that died from one it had to kill by this flag."""
    child = Child("victim", python("import time; time.sleep(60)"))
    child.start()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL
    assert child.stop() == -signal.SIGKILL
    assert not child.killed


def test_a_restart_runs_the_command_again_and_keeps_the_earlier_log(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    child = Child("again", python("import os; print(os.getpid())"), log=log)
    child.start()
    assert child.wait(10) == 0
    first = child.log_tail()
    child.restart()
    assert child.wait(10) == 0
    assert child.log_tail().splitlines() == [first, child.log_tail(lines=1)]
    assert first != child.log_tail(lines=1)
    child.stop()


def test_stop_is_safe_twice_and_after_the_child_ended() -> None:
    child = Child("quick", python("raise SystemExit(4)"))
    assert child.stop() is None  # never started
    child.start()
    assert child.wait(10) == 4
    assert child.stop() == 4
    assert child.stop() == 4


def test_a_command_that_cannot_run_raises_oserror(tmp_path: Path) -> None:
    child = Child("missing", [str(tmp_path / "no-such-program")])
    with pytest.raises(FileNotFoundError, match="no-such-program"):
        child.start()
    assert not child.running
