"""Deadlines for the request path at the cost of one timer, not one a request.

``asyncio.timeout`` arms a timer of the event loop for each use and cancels it at the
end; on uvloop that pair, with the context manager around it, costs about 4.5 us, some
5% of a gateway request. :class:`Deadlines` keeps the deadlines of a process in slots of
:data:`TICK` seconds (a timing wheel) and runs one timer, at the next slot's end, only
while a deadline is pending: entering and leaving a deadline is a set insertion and a
removal. A deadline fires at the first slot boundary at or after it (never early, at
most one tick late), exactly as ``asyncio.timeout`` does when it fires: the task is
cancelled, and the block raises :class:`TimeoutError` in its place; a cancellation from
elsewhere stays a cancellation.

>>> import asyncio
>>> async def demo():
...     deadlines = Deadlines()
...     async with deadlines.after(1.0):
...         await asyncio.sleep(0)  # done in time
...     try:
...         async with deadlines.after(0.02):
...             await asyncio.sleep(5)
...     except TimeoutError:
...         return "timed out"
>>> asyncio.run(demo())
'timed out'
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType
from typing import Final

__all__ = ["TICK", "Deadline", "Deadlines"]

TICK: Final = 0.01
"""Seconds a slot spans: how late a deadline may fire, at most (plus the loop's delay)."""


class Deadlines:
    """The pending deadlines of one event loop; :meth:`after` makes one."""

    def __init__(self, tick: float = TICK) -> None:
        self.tick = tick
        self._slots: dict[int, set[Deadline]] = {}
        self._swept = 0  # every slot up to this one has fired
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def after(self, seconds: float) -> Deadline:
        """An async context manager: the block raises TimeoutError after ``seconds``
        (at once, at its first wait, when ``seconds`` is not above 0)."""
        return Deadline(self, seconds)

    @property
    def pending(self) -> int:
        """Deadlines entered and not yet left or fired."""
        return sum(len(slot) for slot in self._slots.values())

    def _add(self, deadline: Deadline, when: float) -> None:
        loop = self._loop
        assert loop is not None
        slot = math.ceil(when / self.tick)
        deadline.slot = slot
        found = self._slots.get(slot)
        if found is None:
            self._slots[slot] = {deadline}
        else:
            found.add(deadline)
        if self._timer is None:
            self._swept = max(self._swept, math.floor(loop.time() / self.tick))
            self._arm(loop)

    def _remove(self, deadline: Deadline) -> None:
        found = self._slots.get(deadline.slot)
        if found is not None:
            found.discard(deadline)
            if not found:
                del self._slots[deadline.slot]

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_at((self._swept + 1) * self.tick, self._sweep)

    def _sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        self._timer = None
        now = math.floor(loop.time() / self.tick)
        for slot in range(self._swept + 1, now + 1):
            for deadline in self._slots.pop(slot, ()):
                deadline._fire()
        self._swept = max(self._swept, now)
        if self._slots:
            self._arm(loop)


class Deadline:
    """One deadline over an ``async with`` block; made by :meth:`Deadlines.after`."""

    __slots__ = ("_cancelling", "_owner", "_seconds", "_task", "fired", "slot")

    def __init__(self, owner: Deadlines, seconds: float) -> None:
        self._owner = owner
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self.fired = False
        self.slot = 0

    async def __aenter__(self) -> Deadline:
        owner = self._owner
        loop = owner._loop
        if loop is None:
            loop = owner._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline is for a task's block")
        self._task = task
        self._cancelling = task.cancelling()
        if self._seconds <= 0:
            self._fire()
        else:
            owner._add(self, loop.time() + self._seconds)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.fired:
            self._owner._remove(self)
            return
        assert self._task is not None
        # as asyncio.timeout: ours was the cancellation, unless another came as well
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def _fire(self) -> None:
        assert self._task is not None
        self.fired = True
        self._task.cancel()
