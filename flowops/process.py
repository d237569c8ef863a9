"""Child processes FlowOps starts and must stop: the embedded broker, stream workers.

A :class:`Child` runs in a session of its own, so a Ctrl-C in the terminal reaches
FlowOps alone, which then stops its children in order. Stopping is bounded: SIGTERM,
then SIGKILL after ``stop_timeout`` seconds (a Faust worker's shutdown can hang). The
child's output goes to a log file, whose tail goes into error messages.

>>> import sys
>>> child = Child("echo", [sys.executable, "-c", "print('hello')"])
>>> child.start()
>>> child.wait(10)
0
>>> child.log_tail()
'hello'
>>> child.stop()
0
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

__all__ = ["Child"]

_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")
_LOG_TAIL_LINES: Final = 15


class Child:
    """A process with a name (for messages), its command and its log.

    ``log`` is a file path, or None for a temporary file that goes away with
    :meth:`stop`. ``start`` raises OSError when the command cannot run.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        stop_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = Path(log) if log is not None else None
        self.env = dict(env) if env is not None else None
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.killed = False
        """Whether the last :meth:`stop` had to send SIGKILL."""

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once it has ended (negative: the signal that ended it)."""
        return self._process.poll() if self._process is not None else None

    def start(self) -> None:
        """Start the process; raises OSError when it cannot run."""
        self._open(truncate=True)

    def restart(self) -> None:
        """Start the process again after it ended, its output added to the same log (what
        it wrote before it died stays readable)."""
        self.stop()
        self._open(truncate=False)

    def _open(self, *, truncate: bool) -> None:
        self.killed = False
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("w+b" if truncate else "a+b")
        else:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        except OSError:
            self._close_log()
            raise

    def wait(self, timeout: float) -> int | None:
        """Its exit code once it ends within ``timeout`` seconds, else None."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout`` seconds; its exit code.

        Safe to call more than once, and on a child that has ended by itself.
        """
        process = self._process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                self.killed = True
                process.wait()
        self._close_log()
        return process.returncode if process is not None else None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines the child wrote, without terminal colours."""
        if self.log_path is not None and self.log_path.exists():
            text = self.log_path.read_bytes().decode(errors="replace")
        elif self._log is not None:
            self._log.flush()
            self._log.seek(0)
            text = self._log.read().decode(errors="replace")
        else:
            return ""
        return "\n".join(_ANSI.sub("", text).strip().splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
