"""When the proxy tries a request again, and how retries are kept from multiplying an outage.

A failed try is retried only when all of these hold (:meth:`RetryPolicy.should_retry`):

1. it failed in a retriable way: no connection could be made (``connect_error``), or
   the upstream answered with one of ``statuses`` (502, 503, 504 by default). A per-try
   ``timeout`` counts as the 504 the client would get and a ``reset`` connection as the
   502, so they are retried when those statuses are listed;
2. fewer than ``max_retries`` retries were made;
3. repeating the request is safe: the method is idempotent (GET, HEAD, OPTIONS, PUT,
   DELETE, TRACE) or the route is marked ``retryable``. A ``connect_error`` is the
   exception: no byte of the request reached the upstream, so it is retried whatever
   the method (a POST to a model server that just died goes to the next one);
4. the backoff still fits in the time the request has left (``remaining``);
5. the route's :class:`RetryBudget` has a retry to spend.

The budget is Finagle's: retries may add at most ``budget_ratio`` (20%) to the requests
of the last ``budget_window`` seconds, plus a reserve of ``budget_min_per_second`` per
second of the window so that a quiet route can still retry. When every upstream fails,
each request is then tried about 1.2 times, not ``1 + max_retries`` times: retries
cannot turn an outage into a retry storm against the upstreams that are left.

The proxy tries a different upstream for each retry (``pool.pick(exclude=tried)``),
sleeps the returned :attr:`RetryDecision.delay` (exponential backoff with full jitter),
and enforces the per-try and total timeouts itself.

>>> now = [0.0]
>>> policy = RetryPolicy(RetrySettings(max_retries=1), clock=lambda: now[0])
>>> policy.on_request()
>>> decision = policy.should_retry(method="GET", attempt=1, outcome="http_error", status=503)
>>> decision.retry, decision.reason, 0 <= decision.delay <= 0.025
(True, 'retry', True)
>>> policy.should_retry(method="POST", attempt=1, outcome="http_error", status=503).reason
'method'
>>> policy.should_retry(method="POST", attempt=1, outcome="connect_error").retry
True
>>> policy.should_retry(method="GET", attempt=2, outcome="connect_error").reason
'attempts'
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from flowops.gateway.upstreams import Outcome

__all__ = [
    "IDEMPOTENT_METHODS",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "RetryReason",
    "RetrySettings",
]

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods RFC 9110 calls idempotent: sending them twice does what sending them once does."""

RetryReason: TypeAlias = Literal["retry", "outcome", "attempts", "method", "deadline", "budget"]
"""Why a decision was taken: ``retry``, or which rule said no (fit for a metric label)."""

_BUDGET_SLOTS: Final = 10
_OUTCOME_STATUS: Final[dict[Outcome, int]] = {"timeout": 504, "reset": 502}


class RetrySettings(BaseModel):
    """Retries of a route (``routes[].retry``); the route's ``retryable`` allows any method."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(2, ge=0, le=10, description="retries after the first try; 0: none")
    statuses: list[int] = Field(
        default_factory=lambda: [502, 503, 504],
        description="upstream statuses that are retried",
    )
    budget_ratio: float = Field(
        0.2, ge=0, le=1, description="retries allowed per request of the budget window"
    )
    budget_min_per_second: float = Field(
        10.0, ge=0, le=100_000, description="retries per second allowed whatever the traffic"
    )
    budget_window: float = Field(
        10.0, gt=0, le=600, description="seconds of recent requests the budget counts"
    )
    backoff_base: float = Field(
        0.025, ge=0, le=60, description="seconds: the first retry waits up to this long"
    )
    backoff_max: float = Field(
        0.25, ge=0, le=600, description="seconds a retry waits at most (the cap doubles up to)"
    )

    @field_validator("statuses")
    @classmethod
    def _check_statuses(cls, value: list[int]) -> list[int]:
        wrong = [status for status in value if not 400 <= status <= 599]
        if wrong:
            raise ValueError(f"retried statuses are 4xx or 5xx, got {wrong}")
        return sorted(set(value))

    @field_validator("backoff_max")
    @classmethod
    def _not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("backoff_base")
        if base is not None and value < base:
            raise ValueError(f"must be at least backoff_base ({base})")
        return value


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to retry, why, and how long to wait first (seconds)."""

    retry: bool
    reason: RetryReason
    delay: float = 0.0

    def __bool__(self) -> bool:
        return self.retry


class RetryBudget:
    """Retries allowed as a share of recent requests, plus a small reserve per second.

    Counts live in ``_BUDGET_SLOTS`` slots of ``window / _BUDGET_SLOTS`` seconds; a slot
    older than the window is emptied before it is reused.

    >>> now = [0.0]
    >>> budget = RetryBudget(ratio=0.5, min_per_second=0, window=10, clock=lambda: now[0])
    >>> for _ in range(4):
    ...     budget.deposit()
    >>> [budget.try_withdraw() for _ in range(3)]
    [True, True, False]
    >>> now[0] = 11.0            # those requests left the window
    >>> budget.try_withdraw()
    False
    """

    def __init__(
        self,
        *,
        ratio: float,
        min_per_second: float,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.reserve = min_per_second * window
        self._clock = clock
        self._width = window / _BUDGET_SLOTS
        self._slot_ids = [-1] * _BUDGET_SLOTS
        self._current = -1  # the slot id of the last call: nothing to empty within it
        self._requests = [0] * _BUDGET_SLOTS
        self._retries = [0] * _BUDGET_SLOTS

    def deposit(self) -> None:
        """Count one request (a first try, not a retry)."""
        self._requests[self._slot()] += 1

    def try_withdraw(self) -> bool:
        """Spend one retry if the budget has one; False leaves the budget unchanged."""
        slot = self._slot()
        if self.balance() < 1.0:
            return False
        self._retries[slot] += 1
        return True

    def balance(self) -> float:
        """Retries the budget would allow now."""
        self._slot()
        return self.reserve + self.ratio * sum(self._requests) - sum(self._retries)

    def _slot(self) -> int:
        """The current slot's position, emptying every slot that left the window."""
        current = int(self._clock() // self._width)
        if current == self._current:
            return current % _BUDGET_SLOTS
        self._current = current
        for position, slot_id in enumerate(self._slot_ids):
            if slot_id <= current - _BUDGET_SLOTS:
                self._slot_ids[position] = -1
                self._requests[position] = self._retries[position] = 0
        position = current % _BUDGET_SLOTS
        if self._slot_ids[position] != current:
            self._slot_ids[position] = current
            self._requests[position] = self._retries[position] = 0
        return position


class RetryPolicy:
    """A route's retry rules and budget; see the module docstring for the rules.

    ``retryable`` is the route's flag: its requests may be repeated whatever the method.
    """

    def __init__(
        self,
        settings: RetrySettings | None = None,
        *,
        retryable: bool = False,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings = settings or RetrySettings()
        self.retryable = retryable
        self.budget = RetryBudget(
            ratio=settings.budget_ratio,
            min_per_second=settings.budget_min_per_second,
            window=settings.budget_window,
            clock=clock,
        )
        self._statuses = frozenset(settings.statuses)
        self._rng = rng or random.Random()

    def on_request(self) -> None:
        """Count a client request in the budget; call once per request, not per try."""
        self.budget.deposit()

    def should_retry(
        self,
        *,
        method: str,
        attempt: int,
        outcome: Outcome,
        status: int | None = None,
        remaining: float | None = None,
    ) -> RetryDecision:
        """Decide on a retry after try number ``attempt`` (1 for the first) failed.

        ``status`` is the upstream's status when it answered; ``remaining`` the seconds
        left before the request's total timeout (None: no limit). A yes spends a retry
        from the budget, so ask once per failed try.
        """
        if not self._retriable(outcome, status):
            return RetryDecision(False, "outcome")
        if attempt > self.settings.max_retries:
            return RetryDecision(False, "attempts")
        if outcome != "connect_error" and not self.allows_method(method):
            return RetryDecision(False, "method")
        delay = self.backoff(attempt)
        if remaining is not None and delay >= remaining:
            return RetryDecision(False, "deadline")
        if not self.budget.try_withdraw():
            return RetryDecision(False, "budget")
        return RetryDecision(True, "retry", delay)

    def allows_method(self, method: str) -> bool:
        """Whether a request with ``method`` may be sent again on this route."""
        return self.retryable or method.upper() in IDEMPOTENT_METHODS

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt``: full jitter under a doubling cap."""
        settings = self.settings
        cap = min(settings.backoff_max, settings.backoff_base * 2.0 ** min(attempt - 1, 30))
        return self._rng.uniform(0.0, cap)

    def _retriable(self, outcome: Outcome, status: int | None) -> bool:
        if outcome == "connect_error":
            return True
        if status is None:
            status = _OUTCOME_STATUS.get(outcome)
        return status is not None and status in self._statuses
