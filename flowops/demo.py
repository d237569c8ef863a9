"""The demo's credit model: applicants' data, and live traffic that drifts on cue.

Both demos use it: ``examples/sample_data.py`` writes two CSV files from
:func:`applicants` (``make demo``'s batch half), and ``flowops up --demo`` publishes a
reference profile of the :data:`REFERENCE` period and sends :class:`DemoTraffic` as HTTP
requests (:class:`DemoClient`) to the gateway, in front of the demo model server
(:mod:`flowops.demo_model`), with incomes moving up at a known second (:data:`INCOME_SHIFT`).

>>> import numpy as np
>>> columns = applicants(np.random.default_rng(0), 5, REFERENCE)
>>> sorted(columns)
['age', 'channel', 'debt_ratio', 'income', 'region']
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Self, TypeAlias

import aiohttp
import numpy as np
import orjson
from numpy.typing import NDArray

if TYPE_CHECKING:  # the model server imports this module: it starts without scipy
    from flowops.drift import Profile
    from flowops.events import FeatureValue

__all__ = [
    "CHANNELS",
    "CURRENT",
    "FEATURES",
    "INCOME_SHIFT",
    "MAX_REQUEST_ROWS",
    "MODEL",
    "REFERENCE",
    "REGIONS",
    "REGION_SHARES",
    "VERSION",
    "DemoClient",
    "DemoTraffic",
    "Period",
    "Record",
    "Send",
    "applicants",
    "reference_profile",
    "request_rows",
]

MODEL: Final = "credit-demo"
VERSION: Final = "1"
REGIONS: Final = ("north", "south", "east", "west")
REGION_SHARES: Final = (0.30, 0.25, 0.25, 0.20)
CHANNELS: Final = ("web", "branch", "partner", "phone")
FEATURES: Final = ("age", "income", "debt_ratio", "region", "channel")
"""The model's inputs, in the order of its array rows (``instances``, ``dataframe_split``)."""
MAX_REQUEST_ROWS: Final = 2_000


@dataclass(frozen=True)
class Period:
    """What a period's applicants look like where periods differ."""

    income_median: float
    channel_shares: tuple[float, float, float, float]


REFERENCE: Final = Period(52_000.0, (0.45, 0.30, 0.15, 0.10))
CURRENT: Final = Period(62_400.0, (0.62, 0.20, 0.10, 0.08))
"""The batch demo's current data: incomes ~20% up, more applications on the web.

Both shifts pass the effect-size floors (income: KS D about 0.16, PSI about 0.16;
channel: PSI about 0.12, Cohen's w about 0.34); a smaller one would be significant at
this size and still not be drift."""
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
    from flowops.drift import Profile

    columns = applicants(np.random.default_rng(seed), rows, REFERENCE)
    return Profile.from_columns(
        {name: _column(values) for name, values in columns.items()}, model=MODEL
    )


Record: TypeAlias = "dict[str, FeatureValue]"
"""One applicant's features, as a row of a ``dataframe_records`` request."""
Send: TypeAlias = "Callable[[list[Record]], Awaitable[str | None]]"
"""Sends one request's rows; answers None, or what went wrong (it does not raise for that)."""


class DemoTraffic:
    """The demo model's traffic: ``rate`` rows a second in requests of at most
    ``rows_per_request`` rows, ``concurrency`` requests in flight at most, incomes
    shifting to :data:`INCOME_SHIFT` after ``shift_after`` seconds.

    :meth:`run` sends until cancelled. ``rows`` counts the rows of answered requests,
    ``failed`` those of failed ones (``last_error`` says why); ``shifted_at`` is the
    time (Unix seconds) the first drifted row was sent, None before.
    """

    TICK: Final = 0.1

    def __init__(
        self,
        rate: int,
        shift_after: float,
        *,
        seed: int = 11,
        rows_per_request: int | None = None,
        concurrency: int = 16,
    ) -> None:
        self.rate = rate
        self.shift_after = shift_after
        self.rows_per_request = rows_per_request or request_rows(rate)
        self.concurrency = concurrency
        self.rows = 0
        self.failed = 0
        self.requests = 0
        self.last_error: str | None = None
        self.shifted_at: float | None = None
        self._made = 0
        self._rng = np.random.default_rng(seed)

    async def run(self, send: Send) -> None:
        """Send on a fixed clock (a slow tick is caught up, not dropped) until cancelled;
        raises what ``send`` raises."""
        start = time.monotonic()
        shift_row = int(self.shift_after * self.rate)
        slots = asyncio.Semaphore(self.concurrency)
        async with asyncio.TaskGroup() as group:
            while True:
                due = int((time.monotonic() - start) * self.rate)
                for end in (min(due, shift_row), due):  # rows due before the shift, then after
                    while end > self._made:
                        if self._made >= shift_row and self.shifted_at is None:
                            self.shifted_at = time.time()
                        records = self.records(min(end - self._made, self.rows_per_request))
                        self._made += len(records)
                        await slots.acquire()
                        group.create_task(self._send(send, records, slots))
                await asyncio.sleep(self.TICK)

    async def _send(self, send: Send, records: list[Record], slots: asyncio.Semaphore) -> None:
        try:
            error = await send(records)
        finally:
            slots.release()
        self.requests += 1
        if error is None:
            self.rows += len(records)
        else:
            self.failed += len(records)
            self.last_error = error

    def records(self, rows: int) -> list[Record]:
        """``rows`` applicants of now, drifted if the shift has happened."""
        period = REFERENCE if self.shifted_at is None else INCOME_SHIFT
        columns = applicants(self._rng, rows, period)
        columns["income"] = columns["income"].round(2)
        listed = [columns[name].tolist() for name in FEATURES]
        return [dict(zip(FEATURES, values, strict=True)) for values in zip(*listed, strict=True)]


def request_rows(rate: int) -> int:
    """Rows in one demo request: 100, more above 2,000 rows a second (about 20 requests a
    second), 2,000 at most.

    >>> request_rows(2_000), request_rows(10_000), request_rows(200_000)
    (100, 500, 2000)
    """
    return min(max(100, rate // 20), MAX_REQUEST_ROWS)


class DemoClient:
    """Posts rows to the demo model's URL (``.../invocations``, through the gateway) as
    MLflow ``dataframe_records``; :meth:`send` is a :data:`Send`.

    Use it as an async context manager (one connection pool); ``timeout`` bounds each
    request in seconds.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, connections: int = 16) -> None:
        self.url = url
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, rows: list[Record]) -> str | None:
        """None when the answer is a 2xx with one prediction per row, else what went wrong."""
        assert self._session is not None, "use DemoClient in `async with`"
        body = orjson.dumps({"dataframe_records": rows})
        headers = {"Content-Type": "application/json"}
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                answer = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__} {exc}".strip()
        if not 200 <= response.status < 300:
            return f"HTTP {response.status} {answer[:200].decode(errors='replace')}".strip()
        try:
            predictions = orjson.loads(answer)["predictions"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return "the answer holds no predictions"
        if len(predictions) != len(rows):
            return f"{len(predictions)} predictions for {len(rows)} rows"
        return None


def _column(values: NDArray[np.generic]) -> NDArray[np.float64] | list[str]:
    """A numeric column as float64, a text column as a list of Python strings."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    return [str(value) for value in values]
