"""Shared pieces of the benchmarks: timing by best of N, and the comparison table.

Every benchmark measures FlowOps and its anchor in the same run on the same machine and
prints both with their ratio; the goal each issue set is printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


def usage(doc: str | None) -> None:
    """``--help`` prints the benchmark's docstring (what it measures, against what); any
    other argument is refused, as these benchmarks take none."""
    argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """The fastest of ``repeat`` wall-clock runs of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def median_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """The median of ``repeat`` wall-clock runs of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class Comparison:
    """One line of a benchmark: our time beside the anchor's, and the goal."""

    name: str
    ours: float
    anchor: float
    anchor_name: str
    goal: float  # the speed-up (anchor / ours) the issue asks for
    note: str = ""

    @property
    def speedup(self) -> float:
        return self.anchor / self.ours

    def row(self) -> str:
        verdict = "met" if self.speedup >= self.goal else "NOT met"
        return (
            f"| {self.name} | {self.ours * 1e3:.2f} ms | {self.anchor_name}: "
            f"{self.anchor * 1e3:.2f} ms | {self.speedup:.1f}x | >= {self.goal:g}x {verdict} "
            f"| {self.note} |"
        )


def print_table(rows: list[Comparison]) -> None:
    print("| benchmark | FlowOps | anchor | speed-up | goal | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row.row())
