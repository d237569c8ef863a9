"""``flowops.demo``: the demo's applicants, its traffic on a clock, and its HTTP client."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from flowops import demo
from flowops.broker import free_port
from flowops.demo_model import create_app, score


def median(records: list[demo.Record], name: str) -> float:
    return float(np.median([float(row[name]) for row in records]))  # type: ignore[arg-type]


def test_records_have_every_feature_and_the_shift_moves_only_income() -> None:
    traffic = demo.DemoTraffic(rate=1_000, shift_after=0)
    before = traffic.records(5_000)
    traffic.shifted_at = 1.0
    after = traffic.records(5_000)
    assert len(before) == len(after) == 5_000
    assert all(tuple(row) == demo.FEATURES for row in before)
    assert {type(before[0][name]) for name in demo.FEATURES} == {int, float, str}
    assert median(after, "income") / median(before, "income") == pytest.approx(60 / 52, rel=0.03)
    assert median(after, "age") == pytest.approx(median(before, "age"), abs=1)


class Tagged(demo.DemoTraffic):
    """Demo traffic whose rows say whether they were made after the shift."""

    def records(self, rows: int) -> list[demo.Record]:
        shifted = "after" if self.shifted_at is not None else "before"
        return [{**row, "period": shifted} for row in super().records(rows)]


class Recorder:
    """A ``send`` that keeps what it got, fails every ``fail_every``-th request, and stops
    the traffic once it has seen ``enough`` requests."""

    def __init__(self, enough: int, fail_every: int = 0) -> None:
        self.enough = enough
        self.fail_every = fail_every
        self.requests: list[list[demo.Record]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.done = asyncio.Event()

    async def __call__(self, records: list[demo.Record]) -> str | None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.requests.append(records)
        fails = self.fail_every and len(self.requests) % self.fail_every == 0
        await asyncio.sleep(0)
        self.in_flight -= 1
        if len(self.requests) >= self.enough:
            self.done.set()
        return "HTTP 503 down" if fails else None


async def run_until(traffic: demo.DemoTraffic, recorder: Recorder) -> None:
    sender = asyncio.create_task(traffic.run(recorder))
    done = asyncio.create_task(recorder.done.wait())
    await asyncio.wait([sender, done], return_when="FIRST_COMPLETED")
    sender.cancel()
    done.cancel()
    await asyncio.gather(sender, done, return_exceptions=True)
    assert not sender.done() or sender.cancelled(), sender.exception()


@pytest.mark.asyncio
async def test_run_sends_requests_of_bounded_rows_and_counts_them() -> None:
    traffic = demo.DemoTraffic(rate=50_000, shift_after=0.1, rows_per_request=700, concurrency=3)
    recorder = Recorder(enough=40, fail_every=4)
    await run_until(traffic, recorder)

    sizes = [len(records) for records in recorder.requests]
    assert max(sizes) == 700
    assert traffic.requests == len(sizes)
    assert traffic.rows + traffic.failed == sum(sizes)
    assert traffic.failed == sum(sizes[3::4])
    assert traffic.last_error == "HTTP 503 down"
    assert recorder.most_in_flight <= 3


@pytest.mark.asyncio
async def test_the_shift_falls_between_two_requests() -> None:
    traffic = Tagged(rate=20_000, shift_after=0.15, rows_per_request=1_000)
    recorder = Recorder(enough=10)
    await run_until(traffic, recorder)

    assert traffic.shifted_at is not None
    periods = [{row["period"] for row in records} for records in recorder.requests]
    assert all(len(period) == 1 for period in periods)  # no request spans the shift
    before = [len(r) for r, p in zip(recorder.requests, periods, strict=True) if "before" in p]
    assert sum(before) == int(0.15 * 20_000)  # exactly the rows due before the shift


def test_requests_grow_with_the_rate() -> None:
    assert demo.DemoTraffic(2_000, 1).rows_per_request == 100
    assert demo.DemoTraffic(40_000, 1).rows_per_request == 2_000
    assert demo.DemoTraffic(40_000, 1, rows_per_request=50).rows_per_request == 50


# -- the client, against the demo model's app ----------------------------------------------


@pytest.mark.asyncio
async def test_the_client_posts_dataframe_records_and_checks_the_answer() -> None:
    rows = demo.DemoTraffic(100, 1).records(3)
    async with TestServer(create_app()) as server:
        url = str(server.make_url("/invocations"))
        async with demo.DemoClient(url) as client:
            assert await client.send(rows) is None
            bad: list[Any] = [{"age": 30}]
            answer = await client.send(bad)
    assert answer is not None
    assert answer.startswith("HTTP 400 ")
    assert "missing feature 'income'" in answer
    assert [score(row) for row in rows]  # the model scores what the client sends


@pytest.mark.asyncio
async def test_an_unreachable_url_is_an_answer_not_an_exception() -> None:
    async with demo.DemoClient(f"http://127.0.0.1:{free_port()}/invocations") as client:
        answer = await client.send(demo.DemoTraffic(100, 1).records(1))
    assert answer is not None
    assert answer.startswith("ClientConnectorError")
