"""A real ``redis-server`` (the Debian package) for the tests, as a process of their own.

It listens on 127.0.0.1 on a free port, keeps nothing on disk (``--save ""
--appendonly no``), and is stopped by its pid: SIGTERM, then SIGKILL if it lingers.
:meth:`RedisServer.stop` and :meth:`RedisServer.start` may be called again to take the
same server down and bring it back on the same port, as an outage would::

    with RedisServer(tmp_path) as server:
        url = server.url        # redis://127.0.0.1:<port>/0
        server.stop()           # an outage
        server.start()          # back, empty
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from flowops.broker import free_port

REDIS_BIN = "/usr/bin/redis-server"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class RedisServer:
    """One ``redis-server`` process on a free port of 127.0.0.1, in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        binary = shutil.which("redis-server") or REDIS_BIN
        if not Path(binary).exists():
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        with self.log.open("ab") as out:  # its log goes to stdout; the child keeps a copy
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self._wait_until_answering()

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after a while; nothing if it is not running."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def _wait_until_answering(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}):\n{self._tail()}")
            if self._pong():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}:\n{self._tail()}")

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
