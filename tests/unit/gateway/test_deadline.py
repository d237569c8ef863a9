"""Deadlines: what fires and what does not, cancellation kept apart from timing out, and
nothing left pending. Run on asyncio's loop and uvloop's (the conftest's hook)."""

from __future__ import annotations

import asyncio

import pytest

from flowops.gateway.http.deadline import TICK, Deadlines

pytestmark = pytest.mark.asyncio


async def test_a_block_done_in_time_is_left_alone_and_leaves_nothing() -> None:
    deadlines = Deadlines()
    for _ in range(100):
        async with deadlines.after(5.0):
            await asyncio.sleep(0)
    assert deadlines.pending == 0
    await asyncio.sleep(2 * TICK)  # the timer sweeps nothing and is not re-armed
    assert deadlines._timer is None


async def test_a_late_block_times_out_never_before_its_deadline() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with deadlines.after(0.05):
            await asyncio.sleep(10)
    assert loop.time() - started >= 0.05
    assert deadlines.pending == 0


async def test_only_the_expired_deadlines_fire() -> None:
    deadlines = Deadlines()

    async def wait(seconds: float, work: float) -> str:
        try:
            async with deadlines.after(seconds):
                await asyncio.sleep(work)
        except TimeoutError:
            return "timeout"
        return "done"

    outcomes = await asyncio.gather(
        wait(0.03, 10), wait(5.0, 0.08), wait(0.06, 10), wait(5.0, 0.0), wait(0.03, 0.0)
    )
    assert list(outcomes) == ["timeout", "done", "timeout", "done", "done"]
    assert deadlines.pending == 0


async def test_no_time_at_all_times_out_at_the_first_wait() -> None:
    deadlines = Deadlines()
    for budget in (0.0, -1.0):
        with pytest.raises(TimeoutError):
            async with deadlines.after(budget):
                await asyncio.sleep(0)


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines()
    entered = asyncio.Event()

    async def wait() -> None:
        async with deadlines.after(5.0):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(wait())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.pending == 0


async def test_a_task_goes_on_after_its_timeout_uncancelled() -> None:
    """As with asyncio.timeout: after the TimeoutError the task is not left cancelling."""
    deadlines = Deadlines()
    with pytest.raises(TimeoutError):
        async with deadlines.after(0.02):
            await asyncio.sleep(10)
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation pending


async def test_the_timer_runs_only_while_a_deadline_is_pending() -> None:
    deadlines = Deadlines()
    assert deadlines._timer is None
    async with deadlines.after(1.0):
        assert deadlines._timer is not None
        await asyncio.sleep(0)
    await asyncio.sleep(3 * TICK)
    assert deadlines._timer is None
