"""Both stages of merged windows without a broker: reducers per partition, one merger.

The property: a model's rows spread over any number of partitions, read in any batches,
flushed in any interleaving (each partition's flushes in order), with replayed flushes
and the merger's state saved and restored on the way, close the same windows with the
same counts and the same alert ids as the same rows on one partition.
"""

from __future__ import annotations

import itertools
import random as stdlib_random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flowops.drift import Profile
from flowops.drift.partial import Prepared, WindowPartial, window_findings
from flowops.drift.rules import ErrorRateLevels
from flowops.events.partials import Flush, decode_flush, encode_flush
from streams.merge import MergedWindow, Merger, ModelMerger
from streams.reduce import PartitionReducer

SIZE, GRACE = 10.0, 15.0
_RNG = np.random.default_rng(8)
PROFILE = Profile.from_columns(
    {"x": _RNG.normal(0, 1, 3_000), "c": list(_RNG.choice(["a", "b", "c"], 3_000))}
)
PREPARED = Prepared.from_profile(PROFILE)


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(0, 60, n))
    x = rng.normal(0, 1, n) + (ts > 30) * 1.5  # windows 3 to 5 drift
    c = list(rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]))
    return ts, x, [None if i % 17 == 0 else v for i, v in enumerate(c)]


def _flushes(
    ts: np.ndarray,
    x: np.ndarray,
    c: list[str | None],
    rows: list[int],
    source: int,
    cuts: int,
    rng: stdlib_random.Random,
) -> list[Flush | tuple[int, float]]:
    """One partition's flushes and watermarks (sent after each batch, as the reader does):
    its rows read in batches cut at random places."""
    reducer = PartitionReducer(source, start=0)
    points = sorted({0, len(rows), *(rng.randrange(len(rows) + 1) for _ in range(cuts))})
    flushes: list[Flush | tuple[int, float]] = []
    for a, b in itertools.pairwise(points):
        picked = np.array(rows[a:b], dtype=np.intp)
        if picked.size:
            reducer.add(
                PREPARED, SIZE, "m", "1", ts[picked], {"x": x[picked], "c": [c[i] for i in picked]}
            )
        flushes += [*reducer.flush(b), (source, reducer.watermark)]
    flushes += [*reducer.flush(len(rows), clock=1e9), (source, reducer.watermark)]  # caught up
    return flushes


def _merge(
    flushes: list[Flush | tuple[int, float]], partitions: int, rng: stdlib_random.Random | None
) -> list[MergedWindow]:
    merger, closed = Merger(partitions, grace=GRACE), []
    for flush in flushes:
        if isinstance(flush, tuple):
            closed += merger.watermark(*flush)
            continue
        flush = decode_flush(encode_flush(flush))  # as the topic carries it
        closed += merger.add(flush)
        if rng is not None and rng.random() < 0.2:  # a replayed flush
            closed += merger.add(flush)
        if rng is not None and rng.random() < 0.2:  # the table restored from its changelog
            merger.models["m"] = ModelMerger.from_state(merger.models["m"].to_state())
    model = merger.models["m"]
    assert (model.late_rows, model.mismatched_rows, model.open_windows) == (0, 0, [])
    return closed


def _interleave(
    per_source: list[list[Flush | tuple[int, float]]], rng: stdlib_random.Random
) -> list[Flush | tuple[int, float]]:
    """All partitions' messages in a random interleaving, each partition's in its order."""
    queues = [list(reversed(messages)) for messages in per_source]
    mixed = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        mixed.append(queue.pop())
    return mixed


def _summary(window: MergedWindow) -> tuple[object, ...]:
    p: WindowPartial = window.partial
    numeric = {n: (v.cells.tolist(), v.missing, v.low, v.high) for n, v in p.numeric.items()}
    categorical = {n: (v.counts, v.missing) for n, v in p.categorical.items()}
    return (
        window.version,
        window.window,
        window.start,
        window.end,
        p.rows,
        p.first,
        p.last,
        numeric,
        categorical,
    )


def _ids(windows: list[MergedWindow]) -> list[str]:
    return sorted(
        f.alert_id
        for w in windows
        for f in window_findings(PREPARED, w.partial, start=w.start, end=w.end)
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(0, 12), st.integers(0, 2**32 - 1))
def test_any_spread_over_partitions_closes_the_same_windows(
    partitions: int, cuts: int, seed: int
) -> None:
    rng = stdlib_random.Random(seed)
    ts, x, c = _rows(600, seed)
    whole = _merge(_flushes(ts, x, c, list(range(600)), 0, cuts, rng), 1, None)
    owner = [rng.randrange(partitions) for _ in range(600)]
    per_source = [
        _flushes(ts, x, c, [i for i in range(600) if owner[i] == p], p, cuts, rng)
        for p in range(partitions)
        if p in owner
    ]
    spread = _merge(_interleave(per_source, rng), len(per_source), rng)

    assert [_summary(w) for w in spread] == [_summary(w) for w in whole]
    assert [w.window for w in whole] == [0, 1, 2, 3, 4, 5]
    assert _ids(spread) == _ids(whole)
    assert {
        f.window_index
        for w in whole
        for f in window_findings(PREPARED, w.partial, start=w.start, end=w.end)
    } >= {4, 5}


def test_a_window_closes_only_when_every_partition_is_past_it() -> None:
    reducers = [PartitionReducer(p, start=0) for p in (0, 1, 2)]
    merger = Merger(3, grace=1.0)
    reducers[0].add(PREPARED, SIZE, "m", "1", np.array([1.0, 25.0]), {"x": [0.0, 1.0]})
    reducers[1].add(PREPARED, SIZE, "m", "1", np.array([2.0]), {"x": [0.5]})
    assert merger.add(reducers[0].flush(1)[0]) == []  # 0 is past window 0; 1, 2 unheard
    assert merger.add(reducers[1].flush(1)[0]) == []  # 1 is at 2.0
    assert merger.watermark(2, 100.0) == []  # 2 carries none of the model's rows: idle
    assert merger.models["m"].open_windows == [("1", 0), ("1", 2)]
    reducers[1].flush(1, clock=11.0)  # caught up: the clock is its watermark
    [closed] = merger.watermark(1, reducers[1].watermark)
    assert (closed.window, closed.partial.rows, closed.sources) == (0, 2, (0, 1))


def test_rows_of_a_closed_window_are_late_and_go_nowhere() -> None:
    merger = Merger(2, grace=0.0)
    merger.watermark(1, 0.0)
    early = PartitionReducer(0, start=0)
    early.add(PREPARED, SIZE, "m", "1", np.array([1.0, 11.0, 21.0]), {"x": [0.0, 0.0, 0.0]})
    assert merger.add(early.flush(3)[0]) == []
    assert [w.window for w in merger.watermark(1, 20.0)] == [0, 1]
    slow = PartitionReducer(1, start=0)  # rows of windows 0 and 1, and of the open window 2
    slow.add(PREPARED, SIZE, "m", "1", np.array([5.0, 15.0, 16.0, 22.0]), {"x": [1.0] * 4})
    assert merger.add(slow.flush(4)[0]) == []
    model = merger.models["m"]
    assert model.late_rows == 3
    assert model.open_windows == [("1", 2)]
    assert merger.watermark(0, 40.0) == []  # partition 1 is at 22
    [window2] = merger.watermark(1, 30.0)
    assert (window2.window, window2.partial.rows, window2.sources) == (2, 2, (0, 1))


def test_a_replayed_flush_is_dropped_and_the_next_one_merged() -> None:
    reducer = PartitionReducer(0, start=10)
    reducer.add(PREPARED, SIZE, "m", "1", np.array([1.0, 2.0]), {"x": [0.0, 1.0]})
    [first] = reducer.flush(12)
    replay = PartitionReducer(0, start=10)  # a restarted reader, from the saved start
    replay.add(PREPARED, SIZE, "m", "1", np.array([1.0, 2.0]), {"x": [0.0, 1.0]})
    [again] = replay.flush(12)
    replay.add(PREPARED, SIZE, "m", "1", np.array([3.0]), {"x": [2.0]})
    [after] = replay.flush(13)
    merger = Merger(1, grace=0.0)
    for flush in (first, again, after):
        merger.add(flush)
    model = merger.models["m"]
    assert (model.replays, model.merged_to) == (1, {0: 13})
    [window] = merger.watermark(0, 10.0)
    assert window.partial.rows == 3


def _requests(reducer: PartitionReducer, window: int, total: int, failed: int) -> None:
    ts = window * SIZE + np.linspace(0.1, 9.9, total)
    reducer.requests(PREPARED, SIZE, "m", "1", ts, np.arange(total) < failed)


def test_the_error_rate_is_the_merged_windows_and_survives_a_restore() -> None:
    """Two partitions each carry half of every window's requests: the merged windows'
    error rate jumps where the model's does, though each half alone is too small to test."""
    reducers = [PartitionReducer(p, start=0) for p in (0, 1)]
    merger = Merger(2, grace=0.0)
    for window, failed in enumerate([1, 1, 1, 30]):  # in each half of 60 requests
        for reducer in reducers:
            _requests(reducer, window, 60, failed)
    closed = [window for r in reducers for flush in r.flush(1) for window in merger.add(flush)]
    assert [(w.window, w.partial.requests, w.partial.failed) for w in closed] == [
        (0, 120, 2),
        (1, 120, 2),
        (2, 120, 2),
    ]
    assert [w.jump for w in closed] == [None, None, None]
    restored = ModelMerger.from_state(merger.models["m"].to_state())
    assert restored.rates["1"].to_state() == merger.models["m"].rates["1"].to_state()
    [window3] = restored.close(45.0)
    assert window3.jump is not None
    assert (window3.jump.window_index, window3.jump.rate) == (3, 0.5)
    assert (window3.jump.n_current, window3.jump.n_baseline, window3.partial.rows) == (120, 360, 0)


def test_the_merged_error_rate_follows_the_configured_levels() -> None:
    """Windows of 120 requests: at the default min_requests of 100 a jump alerts; a
    merger (new, or restored from the same state) told 200 tests none of them."""
    strict = ErrorRateLevels(min_requests=200)
    for levels, jumps in [(None, [3]), (strict, [])]:
        reducers = [PartitionReducer(p, start=0) for p in (0, 1)]
        merger = Merger(2, grace=0.0, error_rate=levels)
        for window, failed in enumerate([1, 1, 1, 30]):
            for reducer in reducers:
                _requests(reducer, window, 60, failed)
        closed = [w for r in reducers for flush in r.flush(1) for w in merger.add(flush)]
        restored = ModelMerger.from_state(merger.models["m"].to_state(), error_rate=levels)
        closed += restored.close(45.0)
        assert [w.window for w in closed if w.jump is not None] == jumps
