"""Merged windows, stage by stage, beside the window tests on raw rows (same run, same data).

A model with 5 numeric and 2 categorical features, a profile of 20,000 rows, windows of
10,000 rows:

- **reduce, a row**: the reducing stage's CPU for rows as one-row batches arrive
  (``reduce_rows`` on one row, as a poll of one message would give) and as 1,000-row
  batches (a poll of many one-row messages is decoded into one batch per model version);
- **merge and test, a window**: the merging stage's CPU for a window that came as 40
  partials (4 partitions, 10 flushes each): the merges and ``window_findings`` on the
  merged counts; the anchor is the monitor's way, ``compare`` on the window's raw rows
  (what a per-partition window costs at its close).

Times are the best of 5; the merge stage's cost does not grow with the window's rows.
Both sides' window tests spend most of their time in KS's p-value (scipy's ``smirnov``,
about 15 ms a numeric feature at these sizes), not in merging.
"""

from __future__ import annotations

from functools import reduce

import numpy as np
from _harness import best_of, usage

from flowops.drift import Profile, compare
from flowops.drift.partial import Prepared, WindowPartial, reduce_rows, window_findings

ROWS = 10_000
NUMERIC = [f"x{i}" for i in range(5)]
CATEGORICAL = ["region", "plan"]


def _columns(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, object]:
    columns: dict[str, object] = {name: rng.normal(shift, 1, n) for name in NUMERIC}
    columns["region"] = list(rng.choice(["north", "south", "east", "west"], n))
    columns["plan"] = list(rng.choice(["free", "pro", "team"], n))
    return columns


def main() -> None:
    usage(__doc__)
    rng = np.random.default_rng(1)
    prepared = Prepared.from_profile(Profile.from_columns(_columns(rng, 20_000)))  # type: ignore[arg-type]
    window = _columns(rng, ROWS, shift=0.05)
    ts = np.zeros(ROWS)
    one_rows = [{name: [values[i]] for name, values in window.items()} for i in range(1_000)]  # type: ignore[index]

    def one_row_batches() -> None:
        for row in one_rows:
            reduce_rows(prepared, "m", "1", 0, ts[:1], row)

    def thousand_row_batches() -> None:
        for start in range(0, ROWS, 1_000):
            part = {k: v[start : start + 1_000] for k, v in window.items()}  # type: ignore[index]
            reduce_rows(prepared, "m", "1", 0, ts[:1_000], part)

    per_row_one = best_of(one_row_batches) / 1_000
    per_row_batch = best_of(thousand_row_batches) / ROWS
    parts = [
        reduce_rows(prepared, "m", "1", 0, ts[:250], {k: v[i : i + 250] for k, v in window.items()})  # type: ignore[index]
        for i in range(0, ROWS, 250)
    ]

    def merge_and_test() -> None:
        merged = reduce(WindowPartial.merge, parts)
        window_findings(prepared, merged, start=0.0, end=60.0)

    merge = best_of(merge_and_test)
    merges = best_of(lambda: reduce(WindowPartial.merge, parts))
    raw = best_of(lambda: compare(prepared.profile, window, ks_method="fast"))  # type: ignore[arg-type]
    print("| measure | merged windows | per-partition windows (raw rows) |")
    print("| --- | ---: | ---: |")
    print(f"| reduce, a row, one-row batches | {per_row_one * 1e6:.1f} us | |")
    print(f"| reduce, a row, 1,000-row batches | {per_row_batch * 1e6:.2f} us | |")
    print(f"| a {ROWS:,}-row window: its 40 merges | {merges * 1e3:.2f} ms | |")
    print(
        f"| a {ROWS:,}-row window: 40 merges + window tests vs compare on raw rows"
        f" | {merge * 1e3:.2f} ms | {raw * 1e3:.2f} ms |"
    )


if __name__ == "__main__":
    main()
