"""The agent: every ``interval``, run every probe at once, each within its timeout, and
hand the round to the metrics, the alert rules and the health events.

A probe that overruns its timeout, or fails in a way it did not foresee, is a failed
check of its kind for its target (the round never waits on it longer, and never stops):

>>> import asyncio
>>> class Hanging:
...     kind, target, timeout = "model_server", "http://127.0.0.1:9", 0.01
...     async def run(self):
...         await asyncio.sleep(10)
>>> (result,) = asyncio.run(run_probes([Hanging()]))
>>> result.success, result.detail
(False, 'no answer within 1.01 s')

Rounds start on a fixed beat (``interval`` apart, not ``interval`` after the last round
ended), and a round that overruns the beat makes the next one start at once, never two
at a time. What listens to rounds (:class:`RoundListener`: alert rules, health events)
is called in order after the metrics; its failure is logged, never the agent's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flowops.monitor import checks
from flowops.monitor.checks import CheckResult, Probe, Stopwatch
from flowops.monitor.metrics import MonitorMetrics

__all__ = ["Agent", "Round", "RoundListener", "run_probes"]

log = logging.getLogger("flowops.monitor")


@dataclass(frozen=True)
class Round:
    """One round's results, and when it started (seconds since the epoch)."""

    started_at: float
    results: list[CheckResult]

    @property
    def healthy(self) -> bool:
        """Whether every check passed."""
        return all(result.success for result in self.results)

    def as_json(self) -> dict[str, object]:
        """``{"healthy", "checked_at", "checks": [...]}``: ``/status`` and ``--once -o json``."""
        return {
            "healthy": self.healthy,
            "checked_at": self.started_at,
            "checks": [result.as_json() for result in self.results],
        }


class RoundListener(Protocol):
    """Something told about every round (alert rules, health events)."""

    async def on_round(self, round_: Round) -> None: ...


async def run_probes(probes: Sequence[Probe]) -> list[CheckResult]:
    """Every probe at once; their results in the probes' order."""
    found = await asyncio.gather(*(_run_one(probe) for probe in probes))
    return [result for results in found for result in results]


async def _run_one(probe: Probe) -> Sequence[CheckResult]:
    watch = Stopwatch()
    try:
        async with asyncio.timeout(probe.timeout + checks.TIMEOUT_GRACE):
            return await probe.run()
    except TimeoutError:
        detail = f"no answer within {probe.timeout + checks.TIMEOUT_GRACE:g} s"
    except Exception as exc:  # a probe's bug must not end the round: record it, go on
        log.exception("probe %s %s failed unexpectedly", probe.kind, probe.target)
        detail = f"the probe failed: {type(exc).__name__}: {exc}"
    return [CheckResult(probe.kind, probe.target, False, watch.elapsed(), detail)]


@dataclass
class Agent:
    """Runs rounds of ``probes`` every ``interval`` seconds until stopped."""

    probes: Sequence[Probe]
    interval: float
    metrics: MonitorMetrics = field(default_factory=MonitorMetrics)
    listeners: list[RoundListener] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    last: Round | None = None

    async def round(self) -> Round:
        """Run every probe once and tell the metrics and the listeners."""
        started = self.clock()
        results = await run_probes(self.probes)
        done = Round(started, results)
        self.last = done
        self.metrics.round(results)
        for listener in self.listeners:
            try:
                await listener.on_round(done)
            except Exception:  # an alert receiver's bug must not stop probing
                log.exception("after the round: %s failed", type(listener).__name__)
        return done

    async def run(self, stop: asyncio.Event, on_round: Callable[[Round], Awaitable[None]]) -> None:
        """Rounds on a fixed beat until ``stop`` is set; ``on_round`` after each."""
        loop = asyncio.get_running_loop()
        beat = loop.time()
        while not stop.is_set():
            await on_round(await self.round())
            beat += self.interval
            now = loop.time()
            if beat < now:  # the round overran the beat: start the next one at once
                beat = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=beat - now)
