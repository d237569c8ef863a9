"""flowops.gateway.policies.retry: which failures are retried, the backoff, and the budget that
keeps retries from multiplying an outage (fake clock, seeded randomness)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from flowops.gateway.policies.retry import RetryBudget, RetryPolicy, RetrySettings
from flowops.gateway.upstreams import Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def policy(clock: Clock | None = None, retryable: bool = False, **settings: Any) -> RetryPolicy:
    return RetryPolicy(
        RetrySettings(**settings),
        retryable=retryable,
        clock=clock or Clock(),
        rng=random.Random(3),
    )


@pytest.mark.parametrize(
    ("outcome", "status", "retried"),
    [
        ("connect_error", None, True),
        ("http_error", 502, True),
        ("http_error", 503, True),
        ("http_error", 504, True),
        ("http_error", 500, False),
        ("timeout", None, True),  # the 504 the client would get
        ("reset", None, True),  # the 502 the client would get
        ("ok", 200, False),
        ("ok", 404, False),
        ("cancelled", None, False),
    ],
)
def test_what_is_retried(outcome: Outcome, status: int | None, retried: bool) -> None:
    decision = policy().should_retry(method="GET", attempt=1, outcome=outcome, status=status)

    assert decision.retry is retried
    assert bool(decision) is retried
    assert decision.reason == ("retry" if retried else "outcome")


def test_configured_statuses_replace_the_defaults() -> None:
    rules = policy(statuses=[429, 503])

    assert rules.should_retry(method="GET", attempt=1, outcome="ok", status=429).retry
    assert not rules.should_retry(method="GET", attempt=1, outcome="http_error", status=502)
    assert not rules.should_retry(method="GET", attempt=1, outcome="timeout")  # 504 not listed


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "get"])
def test_idempotent_methods_are_retried(method: str) -> None:
    assert policy().should_retry(method=method, attempt=1, outcome="http_error", status=503)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("outcome", ["http_error", "timeout", "reset"])
def test_other_methods_only_on_retryable_routes(method: str, outcome: Outcome) -> None:
    status = 503 if outcome == "http_error" else None

    refused = policy().should_retry(method=method, attempt=1, outcome=outcome, status=status)
    allowed = policy(retryable=True).should_retry(
        method=method, attempt=1, outcome=outcome, status=status
    )

    assert (refused.retry, refused.reason) == (False, "method")
    assert allowed.retry


def test_a_connect_error_is_retried_whatever_the_method() -> None:
    assert policy().should_retry(method="POST", attempt=1, outcome="connect_error")


def test_at_most_max_retries() -> None:
    rules = policy(max_retries=2)

    decisions = [
        rules.should_retry(method="GET", attempt=attempt, outcome="connect_error")
        for attempt in (1, 2, 3)
    ]

    assert [(d.retry, d.reason) for d in decisions] == [
        (True, "retry"),
        (True, "retry"),
        (False, "attempts"),
    ]
    assert not policy(max_retries=0).should_retry(method="GET", attempt=1, outcome="connect_error")


def test_backoff_is_jittered_under_a_doubling_cap() -> None:
    rules = policy(backoff_base=0.1, backoff_max=0.3)

    delays = {attempt: [rules.backoff(attempt) for _ in range(2000)] for attempt in (1, 2, 3, 9)}

    for attempt, cap in [(1, 0.1), (2, 0.2), (3, 0.3), (9, 0.3)]:
        assert min(delays[attempt]) >= 0
        assert max(delays[attempt]) <= cap
        assert max(delays[attempt]) > 0.9 * cap  # full jitter reaches the cap
        assert sum(delays[attempt]) / 2000 == pytest.approx(cap / 2, rel=0.1)


def test_no_retry_when_the_backoff_does_not_fit_the_time_left() -> None:
    rules = policy(backoff_base=0.1, backoff_max=0.1)
    before = rules.budget.balance()

    decision = rules.should_retry(method="GET", attempt=1, outcome="connect_error", remaining=0.0)

    assert (decision.retry, decision.reason) == (False, "deadline")
    assert rules.budget.balance() == before  # nothing spent
    ample = rules.should_retry(method="GET", attempt=1, outcome="connect_error", remaining=5.0)
    assert 0 <= ample.delay <= 0.1


def test_the_budget_bounds_retries_in_a_failure_storm() -> None:
    """1,000 requests a second for a minute, every try fails: retries stay near 20%."""
    clock = Clock()
    rules = policy(clock, max_retries=3, budget_ratio=0.2, budget_min_per_second=10)
    requests = retries = 0

    for tick in range(60_000):
        clock.now = tick / 1000
        rules.on_request()
        requests += 1
        attempt = 1
        while rules.should_retry(method="GET", attempt=attempt, outcome="http_error", status=503):
            retries += 1
            attempt += 1

    # in each 10 s window: 20% of its requests plus a reserve of 10 a second
    reserve_per_window = 10 * 10
    assert retries <= 0.2 * requests + 6 * reserve_per_window
    assert retries >= 0.2 * requests  # and the budget is used, not just refused
    assert retries / requests < 0.35  # vs 3.0 without a budget


def test_the_budget_is_exact_within_a_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_second=0, window=10, clock=clock)
    for _ in range(1000):
        budget.deposit()

    granted = sum(budget.try_withdraw() for _ in range(1000))

    assert granted == 200


def test_the_reserve_lets_a_quiet_route_retry() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, window=10, clock=clock)

    granted = sum(budget.try_withdraw() for _ in range(100))

    assert granted == 5


def test_requests_and_retries_leave_the_budget_with_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=1.0, min_per_second=0, window=10, clock=clock)
    for second in range(10):
        clock.now = second + 0.5
        budget.deposit()
    assert budget.balance() == 10
    budget.try_withdraw()

    clock.now = 10.5  # the request of second 0 has left the window
    assert budget.balance() == 8
    clock.now = 25.0
    assert budget.balance() == 0
    assert not budget.try_withdraw()


def test_a_refused_retry_spends_nothing() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_per_second=0, window=10, clock=clock)

    assert not budget.try_withdraw()
    assert budget.balance() == 0


def test_defaults() -> None:
    settings = RetrySettings()

    assert settings.statuses == [502, 503, 504]
    assert (settings.max_retries, settings.budget_ratio, settings.budget_min_per_second) == (
        2,
        0.2,
        10.0,
    )


@pytest.mark.parametrize(
    ("values", "loc"),
    [
        ({"statuses": [200]}, ("statuses",)),
        ({"statuses": ["x"]}, ("statuses", 0)),
        ({"max_retries": -1}, ("max_retries",)),
        ({"budget_ratio": 1.5}, ("budget_ratio",)),
        ({"budget_window": 0}, ("budget_window",)),
        ({"backoff_base": 1.0, "backoff_max": 0.5}, ("backoff_max",)),
        ({"retry_on": ["5xx"]}, ("retry_on",)),
    ],
)
def test_invalid_settings_name_their_key(values: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        RetrySettings.model_validate(values)

    assert caught.value.errors()[0]["loc"] == loc
