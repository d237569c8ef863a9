"""flowops.gateway.health: the rise/fall thresholds, the settings, and how verdicts reach
the pool (no network: real upstream servers are in
tests/integration/test_gateway_health.py)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from flowops.gateway.health import HealthChecker, HealthCheckSettings, HealthTracker
from flowops.gateway.upstreams import Pool, UpstreamEvent


def verdicts(results: str, healthy: int = 2, unhealthy: int = 3) -> str:
    """Feed ``+`` (success) and ``-`` (failure); ``H``/``U`` where the verdict changes."""
    tracker = HealthTracker(healthy_threshold=healthy, unhealthy_threshold=unhealthy)
    marks = {True: "H", False: "U", None: "."}
    return "".join(marks[tracker.record(result == "+")] for result in results)


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ("+", "H"),  # the first result decides at once
        ("-", "U"),
        ("+--+---", "H.....U"),  # one odd result changes nothing; three in a row do
        ("---+-++", "U.....H"),  # the run of successes starts again after a failure
        ("++++", "H..."),
    ],
)
def test_rise_and_fall(results: str, expected: str) -> None:
    assert verdicts(results) == expected


def test_thresholds_of_one_follow_every_result() -> None:
    assert verdicts("+-+-", healthy=1, unhealthy=1) == "HUHU"


def test_defaults_run_no_checks() -> None:
    settings = HealthCheckSettings()

    assert not settings.enabled
    assert (settings.interval, settings.timeout) == (5.0, 2.0)
    assert (settings.healthy_threshold, settings.unhealthy_threshold) == (2, 3)
    assert HealthCheckSettings(path="/v2/health/ready").enabled


@pytest.mark.parametrize(
    ("values", "loc"),
    [
        ({"path": "health"}, ("path",)),
        ({"interval": 0}, ("interval",)),
        ({"interval": 1, "timeout": 2}, ("timeout",)),
        ({"healthy_threshold": 0}, ("healthy_threshold",)),
        ({"unhealthy_threshold": 0}, ("unhealthy_threshold",)),
        ({"url": "/health"}, ("url",)),
    ],
)
def test_invalid_settings_name_their_key(values: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        HealthCheckSettings.model_validate(values)

    assert caught.value.errors()[0]["loc"] == loc


@pytest.mark.asyncio
async def test_verdict_changes_reach_the_pool_once() -> None:
    events: list[UpstreamEvent] = []
    pool = Pool("iris", ["http://a:1", "http://b:1"], on_event=events.append)
    a, b = pool.upstreams
    settings = HealthCheckSettings(path="/health", healthy_threshold=2, unhealthy_threshold=2)
    async with aiohttp.ClientSession() as session:
        checker = HealthChecker(pool, settings, session)

        for ok, detail in [(True, "HTTP 200"), (False, "HTTP 503"), (False, "HTTP 503")]:
            checker.record(a, ok, detail)
        checker.record(b, True, "HTTP 200")

    assert pool.available() == [b]
    assert events == [
        UpstreamEvent("iris", "http://a:1", "healthy", "HTTP 200"),
        UpstreamEvent("iris", "http://a:1", "unhealthy", "HTTP 503"),
        UpstreamEvent("iris", "http://b:1", "healthy", "HTTP 200"),
    ]


@pytest.mark.asyncio
async def test_without_a_path_start_does_nothing() -> None:
    pool = Pool("iris", ["http://a:1"])
    async with aiohttp.ClientSession() as session:
        checker = HealthChecker(pool, HealthCheckSettings(), session)

        checker.start()

        assert not checker.running
        await checker.stop()  # and stopping a checker that never ran is fine
