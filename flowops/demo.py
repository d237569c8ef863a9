"""The demo's credit model: applicants' data, and live traffic that drifts on cue.

Both demos use it: ``examples/sample_data.py`` writes two CSV files from
:func:`applicants` (``make demo``'s batch half), and ``flowops up --demo`` publishes a
reference profile of the :data:`REFERENCE` period and sends :class:`DemoTraffic` to the
stream worker, with incomes moving up at a known second (:data:`INCOME_SHIFT`).

>>> import numpy as np
>>> columns = applicants(np.random.default_rng(0), 5, REFERENCE)
>>> sorted(columns)
['age', 'channel', 'debt_ratio', 'income', 'region']
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from flowops.drift import Profile
from flowops.events import FeatureValue, TrafficBatch, TrafficProducer

__all__ = [
    "CURRENT",
    "INCOME_SHIFT",
    "MODEL",
    "REFERENCE",
    "DemoTraffic",
    "Period",
    "applicants",
    "reference_profile",
]

MODEL: Final = "credit-demo"
VERSION: Final = "1"
REGIONS: Final = ("north", "south", "east", "west")
REGION_SHARES: Final = (0.30, 0.25, 0.25, 0.20)
CHANNELS: Final = ("web", "branch", "partner", "phone")


@dataclass(frozen=True)
class Period:
    """What a period's applicants look like where periods differ."""

    income_median: float
    channel_shares: tuple[float, float, float, float]


REFERENCE: Final = Period(52_000.0, (0.45, 0.30, 0.15, 0.10))
CURRENT: Final = Period(56_000.0, (0.52, 0.25, 0.13, 0.10))
"""The batch demo's current data: incomes ~8% up, more applications on the web."""
INCOME_SHIFT: Final = Period(60_000.0, REFERENCE.channel_shares)
"""The stream demo after its shift: incomes ~15% up, everything else as before."""


def applicants(rng: np.random.Generator, rows: int, period: Period) -> dict[str, NDArray[Any]]:
    """``rows`` applications: age, income, debt_ratio (numbers), region, channel (text).

    age, debt_ratio and region never drift; income and channel follow ``period``.
    """
    age = np.clip(np.rint(rng.normal(41, 12, rows)), 18, 90).astype(np.int64)
    income = rng.lognormal(np.log(period.income_median), 0.45, rows)
    debt_ratio = rng.beta(2.0, 5.0, rows)
    region = rng.choice(REGIONS, rows, p=REGION_SHARES)
    channel = rng.choice(CHANNELS, rows, p=period.channel_shares)
    return {
        "age": age,
        "income": income,
        "debt_ratio": debt_ratio,
        "region": region,
        "channel": channel,
    }


def reference_profile(rows: int = 20_000, seed: int = 7) -> Profile:
    """The profile the stream demo compares its traffic with."""
    columns = applicants(np.random.default_rng(seed), rows, REFERENCE)
    return Profile.from_columns(
        {name: _column(values) for name, values in columns.items()}, model=MODEL
    )


class DemoTraffic:
    """Sends the demo model's traffic: ``rate`` rows a second, ten columnar messages a
    second, incomes shifting to :data:`INCOME_SHIFT` after ``shift_after`` seconds.

    :meth:`run` sends until cancelled; ``rows`` counts the rows sent, ``shifted_at``
    is the time (Unix seconds) of the first drifted row, None before.
    """

    TICK: Final = 0.1

    def __init__(self, rate: int, shift_after: float, *, seed: int = 11) -> None:
        self.rate = rate
        self.shift_after = shift_after
        self.rows = 0
        self.shifted_at: float | None = None
        self._rng = np.random.default_rng(seed)

    async def run(self, producer: TrafficProducer) -> None:
        """Send on a fixed clock (a slow tick is caught up, not dropped) until cancelled."""
        start = time.monotonic()
        shift_row = int(self.shift_after * self.rate)
        while True:
            due = int((time.monotonic() - start) * self.rate)
            for end in (min(due, shift_row), due):  # rows due before the shift, then after
                if end > self.rows:
                    if self.rows >= shift_row and self.shifted_at is None:
                        self.shifted_at = time.time()
                    await producer.send(self.batch(end - self.rows))
                    self.rows = end
            await asyncio.sleep(self.TICK)

    def batch(self, rows: int) -> TrafficBatch:
        """``rows`` requests of now, drifted if the shift has happened."""
        period = REFERENCE if self.shifted_at is None else INCOME_SHIFT
        columns = applicants(self._rng, rows, period)
        features: dict[str, list[FeatureValue]] = {
            name: _listed(_column(values)) for name, values in columns.items()
        }
        scores = 1 / (1 + np.exp(-(columns["debt_ratio"] * 6 - 2)))
        first = self.rows
        return TrafficBatch(
            model=MODEL,
            version=VERSION,
            request_ids=[f"demo-{first + i}" for i in range(rows)],
            timestamps=np.full(rows, time.time()),
            features=features,
            predictions=scores.round(4).tolist(),
            latency_ms=self._rng.gamma(4.0, 2.0, rows),
            status=np.full(rows, 200),
        )


def _column(values: NDArray[np.generic]) -> NDArray[np.float64] | list[str]:
    """A numeric column as float64, a text column as a list of Python strings."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    return [str(value) for value in values]


def _listed(column: NDArray[np.float64] | list[str]) -> list[FeatureValue]:
    return column.tolist() if isinstance(column, np.ndarray) else list(column)
