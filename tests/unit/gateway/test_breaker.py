"""flowops.gateway.policies.breaker: the states of a circuit breaker and what moves it between
them, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flowops.gateway.policies.breaker import BreakerSettings, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def make(
    clock: Clock,
    transitions: list[tuple[BreakerState, BreakerState]] | None = None,
    **settings: Any,
) -> CircuitBreaker:
    values = {"failure_threshold": 3, "cool_down": 10.0} | settings
    on_transition = None if transitions is None else lambda old, new: transitions.append((old, new))
    return CircuitBreaker(BreakerSettings(**values), clock=clock, on_transition=on_transition)


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record(breaker.admit(), success=False)


def succeed(breaker: CircuitBreaker) -> None:
    breaker.record(breaker.admit(), success=True)


def state(breaker: CircuitBreaker) -> BreakerState:
    """The state now (a call, so that a type checker does not carry a narrowing over)."""
    return breaker.state


def test_closed_until_the_threshold_of_failures_in_a_row() -> None:
    breaker = make(Clock())

    fail(breaker, 2)
    succeed(breaker)  # resets the run
    fail(breaker, 2)

    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 2
    assert breaker.allows()
    fail(breaker)
    assert state(breaker) == "open"
    assert not breaker.allows()


def test_the_full_cycle_through_every_state() -> None:
    clock = Clock()
    transitions: list[tuple[BreakerState, BreakerState]] = []
    breaker = make(clock, transitions)

    fail(breaker, 3)
    clock.now += 9.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert state(breaker) == "half_open"
    fail(breaker)  # the trial fails: open again, for a whole cool-down
    clock.now += 9.9
    assert not breaker.allows()
    clock.now += 0.1
    succeed(breaker)  # the next trial succeeds

    assert state(breaker) == "closed"
    assert transitions == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


@pytest.mark.parametrize("trials", [1, 3])
def test_half_open_lets_a_limited_number_of_trials_through(trials: int) -> None:
    clock = Clock()
    breaker = make(clock, half_open_requests=trials)
    fail(breaker, 3)
    clock.now += 10

    admitted = []
    while breaker.allows():
        admitted.append(breaker.admit())
        assert len(admitted) <= trials

    assert len(admitted) == trials
    breaker.release(admitted.pop())  # a trial the client gave up on frees its slot
    assert breaker.allows()


def test_the_first_trial_verdict_decides_and_later_ones_are_stale() -> None:
    clock = Clock()
    breaker = make(clock, half_open_requests=2)
    fail(breaker, 3)
    clock.now += 10
    first, second = breaker.admit(), breaker.admit()

    breaker.record(first, success=True)
    breaker.record(second, success=False)

    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 0


def test_results_from_before_a_transition_are_ignored() -> None:
    clock = Clock()
    breaker = make(clock)
    in_flight = [breaker.admit() for _ in range(5)]
    fail(breaker, 3)

    for epoch in in_flight[:2]:
        breaker.record(epoch, success=True)  # sent while closed, answered while open
    clock.now += 10
    for epoch in in_flight[2:]:
        breaker.record(epoch, success=True)  # ... or during a half-open they were no trial of

    assert breaker.state == "half_open"
    assert breaker.allows()


def test_a_release_outside_half_open_changes_nothing() -> None:
    breaker = make(Clock())
    fail(breaker, 2)

    breaker.release(breaker.admit())

    assert breaker.consecutive_failures == 2
    assert breaker.state == "closed"


def test_a_disabled_breaker_never_opens() -> None:
    breaker = make(Clock(), enabled=False)

    fail(breaker, 100)

    assert breaker.state == "closed"
    assert breaker.allows()


def test_defaults() -> None:
    settings = BreakerSettings()

    assert (settings.failure_threshold, settings.cool_down, settings.half_open_requests) == (
        5,
        10.0,
        1,
    )


@pytest.mark.parametrize(
    ("values", "loc"),
    [
        ({"failure_threshold": 0}, ("failure_threshold",)),
        ({"cool_down": 0}, ("cool_down",)),
        ({"half_open_requests": 0}, ("half_open_requests",)),
        ({"cooldown": 5}, ("cooldown",)),
    ],
)
def test_invalid_settings_name_their_key(values: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        BreakerSettings.model_validate(values)

    assert caught.value.errors()[0]["loc"] == loc
