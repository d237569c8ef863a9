"""A circuit breaker per upstream: stop sending requests to an upstream that keeps failing.

The breaker has three states::

    closed ──(failure_threshold consecutive failures)──> open
    open ──(cool_down seconds pass)──> half_open
    half_open ──(a trial succeeds)──> closed
    half_open ──(a trial fails)──> open            (for another cool_down)

While **closed** every request goes through and a success resets the failure count.
While **open** none does: the pool skips the upstream, and when every upstream of a route
is open the client gets a 503 at once instead of waiting for timeouts. Once the
cool-down has passed the breaker is **half-open**: it lets ``half_open_requests`` trial
requests through at a time, and the first verdict decides.

The breaker counts *consecutive* failures rather than a failure ratio over a window. A
ratio needs a minimum request volume to mean anything and then reacts late on a busy
upstream and never on a quiet one; a run of failures in a row is what a dead or wedged
model server produces, it reads the same at 1 and at 10,000 requests a second, and it
is exact to test. (A sick upstream that fails one request in three is the outlier
detector's and the retry budget's business, not the breaker's.)

Requests overlap, so a result can arrive after the state it was admitted in has ended:
a request sent while closed may fail after the breaker opened, or succeed during a later
half-open period it was no trial of. :meth:`CircuitBreaker.admit` hands out the
breaker's *epoch* (a counter bumped on every transition) and :meth:`~CircuitBreaker.record`
ignores results from an older epoch, so only the requests a state admitted decide it.

Time comes from an injected ``clock`` (seconds, monotonic), so tests move it by hand:

>>> now = [0.0]
>>> breaker = CircuitBreaker(BreakerSettings(failure_threshold=2, cool_down=5.0),
...                          clock=lambda: now[0])
>>> for _ in range(2):
...     breaker.record(breaker.admit(), success=False)
>>> breaker.state, breaker.allows()
('open', False)
>>> now[0] = 5.0
>>> breaker.state, breaker.allows()
('half_open', True)
>>> trial = breaker.admit()
>>> breaker.allows()          # one trial at a time (half_open_requests=1)
False
>>> breaker.record(trial, success=True)
>>> breaker.state
'closed'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BreakerSettings", "BreakerState", "CircuitBreaker", "Transition"]

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]
"""Where a breaker stands; also the value of the breaker-state metric's label."""

Transition: TypeAlias = Callable[[BreakerState, BreakerState], None]
"""Called with ``(old, new)`` on every change of state."""


class BreakerSettings(BaseModel):
    """The circuit breaker each upstream of a route gets (``routes[].breaker``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: never open (requests always go through)")
    failure_threshold: int = Field(
        5,
        ge=1,
        le=10_000,
        description="consecutive failures (5xx, connect errors, timeouts) that open it",
    )
    cool_down: float = Field(
        10.0, gt=0, le=3600, description="seconds it stays open before trial requests"
    )
    half_open_requests: int = Field(
        1, ge=1, le=1000, description="trial requests let through at a time when half-open"
    )


class CircuitBreaker:
    """One upstream's breaker; see the module docstring for the states and the epochs."""

    __slots__ = (
        "_clock",
        "_epoch",
        "_failures",
        "_on_transition",
        "_opened_at",
        "_settings",
        "_state",
        "_trials",
    )

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Transition | None = None,
    ) -> None:
        self._settings = settings or BreakerSettings()
        self._clock = clock
        self._on_transition = on_transition
        self._state: BreakerState = "closed"
        self._epoch = 0
        self._failures = 0
        self._trials = 0
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        """The state now: an open breaker whose cool-down has passed reads half-open."""
        if self._state == "open" and self._clock() - self._opened_at >= self._settings.cool_down:
            self._move("half_open")
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row counted while closed (0 after any success)."""
        return self._failures

    def allows(self) -> bool:
        """Whether a request may go to the upstream now (no side effect but the clock).

        Always true when the breaker is disabled or closed; when half-open, true while
        fewer than ``half_open_requests`` trials are in flight.
        """
        if not self._settings.enabled or self._state == "closed":
            return True
        state = self.state
        return state == "half_open" and self._trials < self._settings.half_open_requests

    def admit(self) -> int:
        """Count a request that goes to the upstream now; returns the epoch to record with.

        When half-open the request is a trial and takes one of the trial slots until its
        result is recorded or released.
        """
        if self.state == "half_open":
            self._trials += 1
        return self._epoch

    def record(self, epoch: int, *, success: bool) -> None:
        """The verdict on a request admitted in ``epoch``; older epochs are ignored."""
        if epoch != self._epoch or not self._settings.enabled:
            return
        if self._state == "closed":
            self._record_closed(success)
        elif self._state == "half_open":
            self._trials -= 1
            self._move("closed" if success else "open")

    def release(self, epoch: int) -> None:
        """A request admitted in ``epoch`` ended with no verdict (the client went away).

        It frees its trial slot if it was a trial and changes nothing else.
        """
        if epoch == self._epoch and self._state == "half_open":
            self._trials -= 1

    def _record_closed(self, success: bool) -> None:
        if success:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self._settings.failure_threshold:
            self._move("open")

    def _move(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._failures = 0
        self._trials = 0
        if new == "open":
            self._opened_at = self._clock()
        if self._on_transition is not None:
            self._on_transition(old, new)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._state} failures={self._failures} epoch={self._epoch}>"
