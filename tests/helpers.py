"""Pollers every test directory imports (pytest puts ``tests/`` on the path:
``pythonpath`` in pyproject.toml).

A test that waits for something to happen in the background polls for it with a
generous bound rather than sleeping a fixed time and asserting: under load a state
change takes longer, never so long as the bound, and a test waits only as long as it
has to. The bound fails the test with what was awaited, never measures it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["WAIT", "until", "until_sync"]

WAIT = 60.0
"""Seconds a background condition may take at most (tests expect well under a few)."""


async def until(
    condition: Callable[[], Any | Awaitable[Any]],
    what: str = "the condition",
    *,
    timeout: float = WAIT,
    interval: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Poll ``condition`` (a function or a coroutine function) until it gives a truthy
    value, and return that value; after ``timeout`` seconds fail naming ``what`` (and
    ``detail()``, such as a log's tail, when given).

    ``interval`` 0 yields to the event loop between polls: for conditions that only
    the loop's other tasks can change.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            said = f":\n{detail()}" if detail is not None else ""
            raise AssertionError(f"not within {timeout:g} s: {what}{said}")
        await asyncio.sleep(interval)


def until_sync(
    condition: Callable[[], Any],
    what: str = "the condition",
    *,
    timeout: float = WAIT,
    interval: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> Any:
    """:func:`until` for tests without an event loop: blocks between polls."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            said = f":\n{detail()}" if detail is not None else ""
            raise AssertionError(f"not within {timeout:g} s: {what}{said}")
        time.sleep(interval)
    return found
