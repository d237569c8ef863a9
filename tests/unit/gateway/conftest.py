"""The gateway's unit tests: the listener's and the deadlines' on both event loops the
gateway may run on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """asyncio and uvloop for the listener's and the deadlines' tests (uvloop's transports
    and timers are not asyncio's classes, which one bug of the listener showed); asyncio
    alone for the others."""
    if item.path.name in ("test_listener.py", "test_deadline.py"):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
