"""The label join: rows joined a second on one core, and the bytes of a pending prediction.

Joins 100,000 predictions (16-character request ids, float scores, a version) to their
labels, labels read after the predictions and labels read first, with everything in
memory and with everything spilled to the SQLite store (a memory budget of 0), then a
checkpoint. The anchor is the least a join can do in Python: a dict of the same tuples,
set then popped. Beside it, ``decode_labels_many`` of one-row label messages: what
reading the labels costs before the join. Bytes: tracemalloc's measure of the pending
predictions beside the join's own estimate (what the budget counts), and the store's
file pages a spilled prediction.
"""

from __future__ import annotations

import gc
import tempfile
import tracemalloc
from pathlib import Path

from _harness import best_of, usage

from flowops.events.labels import LabelRow, decode_labels_many, encode_labels
from flowops.quality.join import LabelJoin

ROWS = 100_000
IDS = [f"req-{i:012d}" for i in range(ROWS)]
SCORES = [i / ROWS for i in range(ROWS)]


def join_rows(folder: Path, budget: int, labels_first: bool) -> None:
    path = folder / f"j-{budget}-{labels_first}.db"
    path.unlink(missing_ok=True)
    join = LabelJoin(path, memory_budget=budget)
    if labels_first:
        for i, request_id in enumerate(IDS):
            join.add_label("credit", request_id, i & 1, 1e9 + 3600 + i)
    for i, request_id in enumerate(IDS):
        join.add_prediction("credit", request_id, SCORES[i], 1e9 + i, version="3")
    if not labels_first:
        for i, request_id in enumerate(IDS):
            join.add_label("credit", request_id, i & 1, 1e9 + 3600 + i)
    assert join.counts.joined == ROWS, join.counts
    join.checkpoint()
    join.close()


def anchor() -> None:
    pending: dict[tuple[str, str], tuple[float, str, None, float]] = {}
    for i, request_id in enumerate(IDS):
        pending["credit", request_id] = (1e9 + i, "3", None, SCORES[i])
    for request_id in IDS:
        pending.pop(("credit", request_id))


def memory_bytes() -> tuple[float, float, float]:
    """Bytes a pending prediction: measured before a checkpoint (its key is also in the
    set of entries not yet on disk) and after one, and the join's estimate."""
    join = LabelJoin(":memory:", memory_budget=2**40)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(ROWS):
        join.add_prediction("credit", f"req-{i:012d}", i / ROWS, 1e9 + i, version="3")
    fresh = tracemalloc.get_traced_memory()[0] - before
    join.checkpoint()
    gc.collect()
    settled = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    estimate = join.memory_bytes / ROWS
    join.close()
    return fresh / ROWS, settled / ROWS, estimate


def disk_bytes(folder: Path) -> float:
    join = LabelJoin(folder / "disk.db", memory_budget=0)
    for i, request_id in enumerate(IDS):
        join.add_prediction("credit", request_id, SCORES[i], 1e9 + i, version="3")
    join.checkpoint()
    size = join.disk_bytes() / ROWS
    join.close()
    return size


def main() -> None:
    usage(__doc__)
    messages = [encode_labels(LabelRow("credit", r, 1, 1e9)) for r in IDS]
    rates = {"dict set + pop (anchor)": best_of(anchor, 3)}
    rates["decode_labels_many, one-row messages"] = best_of(lambda: decode_labels_many(messages), 3)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for budget, where in ((2**40, "memory"), (0, "disk")):
            for first in (False, True):
                order = "labels first" if first else "predictions first"
                rates[f"LabelJoin, {where}, {order}"] = best_of(
                    lambda b=budget, f=first: join_rows(folder, b, f), 3
                )
        on_disk = disk_bytes(folder)
    anchor_rate = ROWS / rates["dict set + pop (anchor)"]
    print("| what | rows/s | x anchor |\n| --- | ---: | ---: |")
    for what, seconds in rates.items():
        rate = ROWS / seconds
        print(f"| {what} | {rate:,.0f} | {rate / anchor_rate:.2f} |")
    fresh, settled, estimate = memory_bytes()
    print(
        f"\npending prediction in memory: {fresh:.0f} B measured before a checkpoint, "
        f"{settled:.0f} B after (tracemalloc), {estimate:.0f} B estimated (what the "
        "budget counts)"
    )
    print(f"pending prediction on disk: {on_disk:.0f} B of SQLite pages")


if __name__ == "__main__":
    main()
