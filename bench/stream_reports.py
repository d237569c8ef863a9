"""Reports behind alerts: what they cost the stream worker a window when nothing alerts,
beside the same run with reports off, and what an alerting window's page costs.

A model with 4 numeric features and 1 categorical one, a profile of 20,000 rows, windows
of 2,000 rows, traffic that does not drift (nothing alerts):

- **a single worker's windows**: the CPU (``time.process_time``) of
  ``streams.monitors.Partition`` reading 20,000 rows as 100-row traffic messages and
  closing their 10 windows, a window; with reports on the monitors keep their alerting
  windows (``keep_drifted``) and the agent's loop asks the writer whether pruning is due
  (``ReportWriter.prune_due``) after every poll, as ``streams/agents/traffic.py`` does;
- **a merged window**: the merge stage's judging of a closed 2,000-row window, before
  (``window_findings``) and now (``compare_partial`` and ``report_findings``, the report
  built only for a window with findings).

Rounds alternate off and on, 10 each; the goal is within 10 %. Then the cost of one
alerting window's page: drawing it from counts and writing it (temporary file, fsync,
rename), off the event loop in the worker.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _harness import usage

from flowops.config import ReportSettings
from flowops.drift import ModelMonitor, Profile, WindowSpec
from flowops.drift.partial import Prepared, compare_partial, reduce_rows, window_findings
from flowops.drift.window_tests import report_findings
from flowops.events import TrafficBatch, encode_traffic
from streams.monitors import Partition
from streams.reports import ReportWriter, WindowReport

ROWS = 20_000
WINDOW = 2_000
ROUNDS = 10
NUMERIC = [f"x{i}" for i in range(4)]


@dataclass(frozen=True)
class Rec:
    offset: int
    value: bytes
    topic: str = "flowops.traffic"
    partition: int = 0
    key: bytes | None = b"m"


def _columns(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, object]:
    columns: dict[str, object] = {name: rng.normal(shift, 1, n) for name in NUMERIC}
    columns["region"] = list(rng.choice(["north", "south", "east", "west"], n))
    return columns


def _records(rng: np.random.Generator) -> list[Rec]:
    columns = _columns(rng, ROWS)
    batch = TrafficBatch(
        model="m",
        version="1",
        request_ids=[f"r{i}" for i in range(ROWS)],
        timestamps=np.arange(ROWS, dtype=np.float64),
        features={k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in columns.items()},  # type: ignore[misc]
        predictions=[0.5] * ROWS,
        latency_ms=np.ones(ROWS),
        status=np.full(ROWS, 200),
    )
    return [
        Rec(i, encode_traffic(batch.slice(start, start + 100)))
        for i, start in enumerate(range(0, ROWS, 100))
    ]


def _partition_run(profile: Profile, records: list[Rec], writer: ReportWriter | None) -> float:
    """CPU seconds a window of one Partition reading every record, 20 a poll."""

    def factory(model: str, version: str) -> ModelMonitor:
        monitor = ModelMonitor(model, version, WindowSpec("count", WINDOW), profile)
        monitor.keep_drifted = writer is not None
        return monitor

    part = Partition(0, factory, next_offset=0)
    start = time.process_time()
    for first in range(0, len(records), 20):
        outcome = part.process(records[first : first + 20])
        outcome.findings += part.advance(-float("inf"))
        if writer is not None:
            if outcome.findings:  # nothing alerts here: never taken
                part.take_drifted()
            _drive(writer.prune_due())
    spent = time.process_time() - start
    windows = sum(t.monitor.stats.windows_closed for t in part.monitors.values())
    assert windows == ROWS // WINDOW, windows
    return spent / windows


def _drive(coroutine: object) -> None:
    """Run a coroutine that does not suspend (pruning not due) without a loop."""
    try:
        coroutine.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return
    raise AssertionError("prune_due suspended: pruning was due")


def _alternate(
    off: Callable[[], float], on: Callable[[], float]
) -> tuple[list[float], list[float]]:
    offs, ons = [], []
    for _ in range(ROUNDS):
        offs.append(off())
        ons.append(on())
    return offs, ons


def _merged(prepared: Prepared, rng: np.random.Generator) -> tuple[Callable[[], float], ...]:
    values = _columns(rng, WINDOW)
    partial = reduce_rows(prepared, "m", "1", 0, np.zeros(WINDOW), values)  # type: ignore[arg-type]

    def before() -> float:
        start = time.process_time()
        window_findings(prepared, partial, start=0.0, end=1.0)
        return time.process_time() - start

    def now() -> float:
        start = time.process_time()
        report = compare_partial(prepared, partial)
        found = report_findings(
            report, model="m", version="1", window=(0, 0.0, 1.0), reference="profile"
        )
        if found:  # nothing alerts here
            WindowReport.of_merged(
                partial, report.to_dict(), prepared.baselines, start=0.0, end=1.0
            )
        return time.process_time() - start

    return before, now


def _page_cost(prepared: Prepared, rng: np.random.Generator, folder: Path) -> tuple[float, int]:
    values = _columns(rng, WINDOW, shift=1.0)
    partial = reduce_rows(prepared, "m", "1", 0, np.zeros(WINDOW), values)  # type: ignore[arg-type]
    report = compare_partial(prepared, partial).to_dict()
    page = WindowReport.of_merged(partial, report, prepared.baselines, start=0.0, end=1.0)
    writer = ReportWriter(ReportSettings(dir=folder))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        link = writer.write_now([page])[page.key]
        times.append(time.perf_counter() - start)
    return min(times), Path(link).stat().st_size


def _row(name: str, offs: list[float], ons: list[float]) -> None:
    off, on = statistics.median(offs), statistics.median(ons)
    each = ", ".join(f"{a * 1e3:.2f}/{b * 1e3:.2f}" for a, b in zip(offs, ons, strict=True))
    print(f"| {name} | {off * 1e3:.2f} ms | {on * 1e3:.2f} ms | {on / off:.3f} | {each} |")


def main() -> None:
    usage(__doc__)
    rng = np.random.default_rng(1)
    profile = Profile.from_columns(_columns(rng, 20_000))  # type: ignore[arg-type]
    prepared = Prepared.from_profile(profile)
    records = _records(rng)
    with tempfile.TemporaryDirectory() as folder:
        writer = ReportWriter(ReportSettings(dir=Path(folder)))
        asyncio.run(writer.prune_due())  # the first look, done: later ones are not due
        _partition_run(profile, records, None)  # warm up
        offs, ons = _alternate(
            lambda: _partition_run(profile, records, None),
            lambda: _partition_run(profile, records, writer),
        )
        before, now = _merged(prepared, rng)
        merged_offs, merged_ons = _alternate(before, now)
        page_time, page_size = _page_cost(prepared, rng, Path(folder))
    print("| a window, nothing alerting | reports off | reports on | on / off | rounds (off/on) |")
    print("| --- | ---: | ---: | ---: | --- |")
    _row("single worker: read, window, test", offs, ons)
    _row("merged: judge a closed window", merged_offs, merged_ons)
    print("goal: on / off within 1.10")
    print(
        f"an alerting window's page (5 features, drawn from counts, written): "
        f"{page_time * 1e3:.1f} ms, {page_size / 1024:.0f} KiB"
    )


if __name__ == "__main__":
    main()
