"""flowops.quality.join: labels joined to predictions in either order, max_delay, counts,
the memory budget (its estimate checked against tracemalloc), spilling to disk, and the
store found again after the process's state is dropped (a checkpoint, then SIGKILL)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowops.quality.join import JoinCounts, LabelJoin, entry_bytes

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def join(tmp_path: Path) -> Iterator[LabelJoin]:
    join = LabelJoin(tmp_path / "join.db", max_delay=100.0)
    yield join
    join.close()


def test_a_label_after_its_prediction_joins(join: LabelJoin) -> None:
    assert join.add_prediction("m", "r", 0.7, 10.0, version="2", variant="b") == []
    [joined] = join.add_label("m", "r", 1, 60.0)
    assert (joined.model, joined.request_id, joined.version, joined.variant) == ("m", "r", "2", "b")
    assert (joined.prediction, joined.label, joined.predicted_at, joined.labelled_at) == (
        0.7,
        1,
        10.0,
        60.0,
    )
    assert join.pending() == (0, 0)
    assert join.memory_bytes == 0


def test_a_label_before_its_prediction_joins(join: LabelJoin) -> None:
    assert join.add_label("m", "r", "spam", 60.0, version="4") == []
    assert join.pending() == (0, 1)
    [joined] = join.add_prediction("m", "r", "ham", 10.0)
    assert (joined.prediction, joined.label, joined.version) == ("ham", "spam", "4")
    assert join.counts == JoinCounts(joined=1)


def test_the_key_is_model_and_request_id(join: LabelJoin) -> None:
    join.add_prediction("a", "r", 1, 10.0)
    assert join.add_label("b", "r", 1, 11.0) == []
    assert join.pending() == (1, 1)


def test_a_label_past_max_delay_is_counted_not_joined(join: LabelJoin) -> None:
    join.add_prediction("m", "r", 0.5, 10.0)
    assert join.add_label("m", "r", 1, 10.0 + 100.5) == []
    assert join.counts == JoinCounts(late=1)
    assert join.pending() == (0, 0)


def test_what_waits_past_max_delay_expires_and_is_counted(join: LabelJoin) -> None:
    join.add_prediction("m", "old", 0.5, 10.0)
    join.add_label("m", "orphan", 1, 20.0)
    join.add_prediction("m", "new", 0.5, 105.0)
    assert join.expire() == JoinCounts()  # watermark 105: nothing older than 5
    join.add_prediction("m", "newer", 0.5, 115.0)
    assert join.expire() == JoinCounts(unlabelled=1)
    join.add_prediction("m", "newest", 0.5, 125.0)
    assert join.expire() == JoinCounts(unlabelled=1, unmatched=1)
    assert join.pending() == (3, 0)


def test_beyond_the_memory_budget_entries_go_to_disk_and_still_join(tmp_path: Path) -> None:
    one = entry_bytes("r-000", (0.0, None, None, 0.5))
    join = LabelJoin(tmp_path / "j.db", memory_budget=10 * one)
    for i in range(30):
        join.add_prediction("m", f"r-{i:03d}", 0.5, float(i))
    assert join.pending() == (30, 0)
    assert join.spilled() == (20, 0)
    assert join.memory_bytes <= join.memory_budget
    joined = [j for i in range(30) for j in join.add_label("m", f"r-{i:03d}", i % 2, 50.0 + i)]
    assert [j.request_id for j in joined] == [f"r-{i:03d}" for i in range(30)]
    assert [j.label for j in joined] == [i % 2 for i in range(30)]
    assert join.pending() == (0, 0)
    join.close()


def test_spilled_entries_expire_too(tmp_path: Path) -> None:
    join = LabelJoin(tmp_path / "j.db", max_delay=10.0, memory_budget=0)
    join.add_prediction("m", "a", 1, 0.0)
    join.add_label("m", "b", 1, 1.0)
    join.add_prediction("m", "c", 1, 50.0)
    assert join.spilled() == (2, 1)
    assert join.memory_bytes == 0
    assert join.expire() == JoinCounts(unlabelled=1, unmatched=1)
    assert join.spilled() == (1, 0)
    join.close()


def test_a_checkpoint_survives_the_state_being_dropped(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    one = entry_bytes("r-000", (0.0, "1", None, 0.5))
    join = LabelJoin(path, memory_budget=5 * one)
    for i in range(12):
        join.add_prediction("m", f"r-{i:03d}", i / 10, float(i), version="1")
    join.add_label("m", "early", 1, 3.0)
    join.add_label("m", "r-000", 1, 5.0)  # joins: no longer pending
    join.checkpoint()
    join.add_prediction("m", "after-checkpoint", 0.1, 13.0)  # not checkpointed: dropped
    join.close()
    del join
    gc.collect()

    again = LabelJoin(path, memory_budget=5 * one)
    assert again.pending() == (11, 1)
    assert again.counts == JoinCounts(joined=1)
    assert again.watermark == 11.0
    joined = [j for i in range(1, 12) for j in again.add_label("m", f"r-{i:03d}", 0, 20.0)]
    assert [(j.prediction, j.version) for j in joined] == [(i / 10, "1") for i in range(1, 12)]
    assert [j.label for j in again.add_prediction("m", "early", 0.9, 2.0)] == [1]
    assert again.add_label("m", "after-checkpoint", 1, 20.0) == []
    again.close()


def test_kill_9_after_a_checkpoint_loses_no_pending_prediction(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        from flowops.quality.join import LabelJoin
        join = LabelJoin({str(path)!r}, memory_budget=20_000)
        for i in range(500):
            join.add_prediction("m", f"r-{{i}}", i, float(i))
        join.checkpoint()
        for i in range(500, 600):  # mid-join, after the checkpoint
            join.add_prediction("m", f"r-{{i}}", i, float(i))
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    again = LabelJoin(path)
    assert again.pending() == (500, 0)
    found = [j.prediction for i in range(500) for j in again.add_label("m", f"r-{i}", 1, 600.0)]
    assert found == list(range(500))
    again.close()


def test_the_memory_estimate_is_what_tracemalloc_measures() -> None:
    """The budget is only as good as the estimate: within a fifth of the measured bytes.

    The ids and predictions are made inside the traced region, as a worker's decoder
    makes them for each record."""
    join = LabelJoin(":memory:", memory_budget=2**40)
    rows = 50_000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(rows):
            join.add_prediction("credit", f"req-{i:012d}", i / rows, 1.0e9 + i, version="3")
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.8 < join.memory_bytes / measured < 1.25, (join.memory_bytes / rows, measured / rows)
    join.close()


def test_max_delay_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_delay must be positive"):
        LabelJoin(":memory:", max_delay=0)


def test_batches_of_traffic_and_labels_join_and_shadows_keep_apart(join: LabelJoin) -> None:
    from flowops.events.labels import LabelBatch
    from flowops.events.traffic import TrafficBatch, TrafficRow

    traffic = TrafficBatch.from_rows(
        [
            TrafficRow("m", "3", "a", 10.0, {"x": 1}, 0.9, 5.0, 200, variant="blue"),
            TrafficRow("m", "3", "a", 10.0, {"x": 1}, 0.1, 6.0, 200, variant="shadow"),
            TrafficRow("m", "3", "b", 11.0, {"x": 2}, None, 6.0, 503, variant="blue"),
            TrafficRow("m", "3", "c", 12.0, {"x": 3}, 0.4, 6.0, 200, variant="green"),
        ]
    )
    labels = LabelBatch("m", None, ["a", "b", "c"], [1, 0, 0], np.array([50.0, 51.0, 52.0]))
    assert join.add_traffic(traffic) == []
    joined = join.add_labels(labels)
    assert [(j.request_id, j.variant, j.prediction, j.label, j.version) for j in joined] == [
        ("a", "blue", 0.9, 1, "3"),
        ("c", "green", 0.4, 0, "3"),
    ]
    assert join.pending() == (0, 1)  # b's label: its request failed, no prediction

    with LabelJoin(":memory:") as shadows:
        shadows.add_labels(labels)
        [shadow] = shadows.add_traffic(traffic, shadow=True)
    assert (shadow.request_id, shadow.variant, shadow.prediction) == ("a", "shadow", 0.1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(list(range(16))),
    budget_entries=st.integers(min_value=0, max_value=10),
    restart_at=st.integers(min_value=0, max_value=16),
)
def test_any_order_any_budget_joins_each_request_once(
    tmp_path: Path, order: list[int], budget_entries: int, restart_at: int
) -> None:
    """Eight requests' predictions (events 0-7) and labels (8-15) in any order, with any
    memory budget, and a checkpoint then a restart at any step: each request joins once,
    with its own prediction and label, and nothing stays pending."""
    path = tmp_path / f"j-{uuid.uuid4().hex}.db"
    budget = budget_entries * entry_bytes("r-0", (0.0, None, None, 0))
    join = LabelJoin(path, memory_budget=budget)
    joined = []
    for step, event in enumerate(order):
        if step == restart_at:
            join.checkpoint()
            join.close()
            join = LabelJoin(path, memory_budget=budget)
        request = f"r-{event % 8}"
        if event < 8:
            joined += join.add_prediction("m", request, event, 1.0 + event)
        else:
            joined += join.add_label("m", request, event, 50.0 + event)
    assert sorted((j.request_id, j.prediction, j.label) for j in joined) == [
        (f"r-{i}", i, i + 8) for i in range(8)
    ]
    assert join.pending() == (0, 0)
    assert join.counts == JoinCounts(joined=8)
    join.close()
