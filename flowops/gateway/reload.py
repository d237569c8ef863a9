"""Files re-read when they change: secrets rotated without a restart.

A :class:`FileWatcher` looks at a few files every ``interval`` seconds and calls its
``reload`` coroutine when any of them has changed and then stayed the same for one more
look (a writer that writes in steps is not read half-way). A file's identity is where it
resolves to and that file's device, inode, size and modification time, so each of these
is seen:

* a file rewritten in place, or replaced by a rename (``mv new current``);
* a Kubernetes Secret or ConfigMap volume: ``api-keys.yaml`` links to
  ``..data/api-keys.yaml`` and the kubelet swaps the ``..data`` link to a new directory
  in one rename; the file's own path and its link never change, the inode behind them
  does.

A ``reload`` that raises keeps what was loaded before: the watcher logs one line naming
the files and the reason, and tries again at the next change, not at every look.

Polling rather than inotify: a few ``stat`` calls every couple of seconds cost nothing
next to a request, need no dependency, and see symlink swaps in any directory (inotify
must watch the right directory and misses changes in a directory it did not watch),
while the kubelet itself takes up to a minute to publish a new Secret.

>>> ReloadSettings().interval
2.0
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FileWatcher", "ReloadSettings", "fingerprint"]

log = logging.getLogger("flowops.gateway")

Fingerprint = tuple[str, int, int, int, int] | None


class ReloadSettings(BaseModel):
    """``gateway.reload``: whether and how often credential files are looked at."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="re-read credential files when they change")
    interval: float = Field(2.0, gt=0, le=3600, description="seconds between two looks")


def fingerprint(path: Path) -> Fingerprint:
    """What identifies the file's content now (None when it cannot be read)."""
    try:
        real = os.path.realpath(path)
        stat = os.stat(real)
    except OSError:
        return None
    return real, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class FileWatcher:
    """Calls ``reload`` when one of ``paths`` changes (see the module's docstring)."""

    def __init__(
        self,
        what: str,
        paths: Sequence[Path],
        reload: Callable[[], Awaitable[None]],
        *,
        interval: float = 2.0,
    ) -> None:
        self.what = what
        self.paths = tuple(paths)
        self.interval = interval
        self._reload = reload
        self._loaded = self._now()
        self._pending: tuple[Fingerprint, ...] | None = None
        self._task: asyncio.Task[None] | None = None

    def _now(self) -> tuple[Fingerprint, ...]:
        return tuple(fingerprint(path) for path in self.paths)

    def start(self) -> None:
        """Look every ``interval`` seconds, in a task, until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"reload {self.what}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> bool:
        """One look: True when a reload was tried (whether or not it succeeded)."""
        now = self._now()
        if now == self._loaded:
            self._pending = None
            return False
        if now != self._pending:  # changed since the last look: wait until it settles
            self._pending = now
            return False
        self._loaded, self._pending = now, None
        names = ", ".join(str(path) for path in self.paths)
        try:
            await self._reload()
        except Exception as exc:  # any reason at all: the previous settings stay
            log.warning("%s: %s changed; kept the previous ones: %s", self.what, names, exc)
        else:
            log.info("%s: reloaded from %s", self.what, names)
        return True
