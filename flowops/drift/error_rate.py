"""A jump in a model's error rate against its recent level, window by window.

A request that the model server rejected (a status outside 2xx) or whose body could not
be read is no data for drift, but a rising share of them is news of its own: clients
sending what the model cannot take, or a model version failing. :class:`ErrorRate`
keeps the error counts of a model's last ``history`` windows and tests each closing
window against them with a one-sided two-proportion z-test (is this window's rate
higher than the pooled rate of the windows before?). As the window tests do, it needs
both significance and size: a jump is reported when the p-value is below ``alpha`` and
the rate rose by at least ``min_jump`` (5 percentage points by default; 0.1% more errors
at a million requests is certain and harmless), and it is ``"critical"`` from
``critical_jump`` (20 points: a fifth more of the calls failing) on.

The window that jumped joins the history like any other, so a rate that stays high
becomes the new level after ``history`` windows and stops alerting; the alert is for the
change. Windows with fewer than ``min_rows`` requests are neither tested nor kept.

>>> rates = ErrorRate(history=3)
>>> [rates.close(i, float(i), float(i + 1), total=1_000, errors=10) for i in range(3)]
[None, None, None]
>>> jump = rates.close(3, 3.0, 4.0, total=1_000, errors=310)
>>> round(jump.jump, 2), jump.severity, jump.pvalue < 1e-12, jump.n_baseline
(0.3, 'critical', True, 3000)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from flowops.drift.rules import Severity
from flowops.errors import InputError

__all__ = ["TEST", "ErrorRate", "ErrorRateJump", "error_counts"]

TEST: Final = "error_rate"
"""The test name an error-rate alert carries."""


@dataclass(frozen=True)
class ErrorRateJump:
    """One window whose error rate jumped above its recent level."""

    window_index: int
    window_start: float
    window_end: float
    rate: float  # the window's share of failed requests
    baseline_rate: float  # the pooled share over the windows before it
    jump: float  # rate - baseline_rate
    pvalue: float  # one-sided two-proportion z-test
    n_current: int  # the window's requests
    n_baseline: int  # the requests of the windows before it
    severity: Severity


class ErrorRate:
    """A model's error rate, window by window, against its last ``history`` windows."""

    def __init__(
        self,
        *,
        alpha: float = 0.001,
        min_jump: float = 0.05,
        critical_jump: float = 0.2,
        history: int = 10,
        min_rows: int = 100,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise InputError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
        if not 0.0 <= min_jump <= critical_jump <= 1.0:
            raise InputError("need 0 <= min_jump <= critical_jump <= 1")
        if history < 1 or min_rows < 1:
            raise InputError("history and min_rows must be positive")
        self.alpha, self.min_jump, self.critical_jump = alpha, min_jump, critical_jump
        self.min_rows = min_rows
        self._windows: deque[tuple[int, int]] = deque(maxlen=history)  # (total, errors)

    def close(
        self, index: int, start: float, end: float, *, total: int, errors: int
    ) -> ErrorRateJump | None:
        """Test a closed window's ``errors`` of ``total`` requests, then remember it."""
        if not 0 <= errors <= total:
            raise InputError(f"errors must lie in [0, total], got {errors} of {total}")
        if total < self.min_rows:
            return None
        found = self._test(index, start, end, total, errors)
        self._windows.append((total, errors))
        return found

    def _test(
        self, index: int, start: float, end: float, total: int, errors: int
    ) -> ErrorRateJump | None:
        base_total = sum(n for n, _ in self._windows)
        if base_total == 0:
            return None
        base_errors = sum(e for _, e in self._windows)
        rate, base = errors / total, base_errors / base_total
        jump = rate - base
        if jump < self.min_jump:
            return None
        pvalue = _one_sided_pvalue(errors, total, base_errors, base_total)
        if pvalue >= self.alpha:
            return None
        severity: Severity = "critical" if jump >= self.critical_jump else "warning"
        return ErrorRateJump(
            index, start, end, rate, base, jump, pvalue, total, base_total, severity
        )

    def to_state(self) -> dict[str, Any]:
        """The remembered windows, JSON-safe."""
        return {"windows": [list(window) for window in self._windows]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the windows :meth:`to_state` gave."""
        self._windows.clear()
        self._windows.extend((int(n), int(e)) for n, e in state["windows"])


def error_counts(status: Any, parse_errors: Any = None) -> tuple[int, int]:
    """Requests and failed ones among status codes (and parse errors): not 2xx, or unread.

    >>> import numpy as np
    >>> error_counts(np.array([200, 201, 400, 503]), [None, "not JSON", None, None])
    (4, 3)
    """
    import numpy as np

    codes = np.asarray(status)
    failed = (codes < 200) | (codes >= 300)
    if parse_errors is not None:
        failed |= np.array([error is not None for error in parse_errors], dtype=bool)
    return int(codes.size), int(failed.sum())


def _one_sided_pvalue(errors: int, total: int, base_errors: int, base_total: int) -> float:
    """P(a rate this much higher | one common rate), by the pooled two-proportion z-test."""
    pooled = (errors + base_errors) / (total + base_total)
    if pooled in (0.0, 1.0):
        return 1.0
    spread = math.sqrt(pooled * (1 - pooled) * (1 / total + 1 / base_total))
    z = (errors / total - base_errors / base_total) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))
