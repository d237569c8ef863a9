"""``streams.monitors.Partition``: records in, findings and rejects out, offsets kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pytest

from flowops.drift import Finding, ModelMonitor, Profile, WindowSpec
from flowops.drift.partial import Prepared
from streams.monitors import Partition


@dataclass(frozen=True)
class Rec:
    offset: int
    value: bytes | None
    topic: str = "flowops.traffic"
    partition: int = 0
    key: bytes | None = b"m"


def row(model: str = "m", *, ts: float = 1.0, x: object = 1.0, version: str = "1") -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "model": model,
            "version": version,
            "request_id": "r",
            "timestamp": ts,
            "features": {"x": x},
            "prediction": 0,
            "latency_ms": 1.0,
            "status": 200,
        }
    )


def counting(size: int = 10) -> Partition:
    return Partition(
        0, lambda model, version: ModelMonitor(model, version, WindowSpec("count", size))
    )


def records(values: list[bytes | None], start: int = 0) -> list[Rec]:
    return [Rec(start + i, value) for i, value in enumerate(values)]


def test_one_row_messages_go_to_one_monitor_per_model_version() -> None:
    part = counting()
    outcome = part.process(records([row("a"), row("b"), row("a"), row("a", version="2")]))
    assert (outcome.rows, outcome.rejects) == (4, [])
    assert {key: t.monitor.stats.rows for key, t in part.monitors.items()} == {
        ("a", "1"): 2,
        ("b", "1"): 1,
        ("a", "2"): 1,
    }
    assert part.next_offset == 4


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"{", "bad_json"),
        (None, "bad_json"),
        (b'{"schema_version": 9}', "schema_version"),
        (row(x=[1]), "wrong_type"),
    ],
)
def test_a_bad_record_is_rejected_and_the_rest_processed(value: bytes | None, code: str) -> None:
    part = counting()
    outcome = part.process(records([row(), value, row()]))
    assert outcome.rows == 2
    [reject] = outcome.rejects
    assert (reject.code, reject.offset, reject.value) == (code, 1, value)
    assert str(reject.error)


def test_records_already_processed_are_skipped() -> None:
    part = counting()
    part.process(records([row(), row()]))
    outcome = part.process(records([row(), row(), row()]))  # offsets 0..2 again
    assert outcome.rows == 1
    assert part.monitors["m", "1"].monitor.stats.rows == 3


def test_a_count_window_closes_with_its_findings() -> None:
    part = counting(size=100)
    rng = np.random.default_rng(0)
    values = [row(x=float(v)) for v in rng.normal(0, 1, 100)]
    values += [row(x=float(v)) for v in rng.normal(5, 1, 100)]
    outcome = part.process(records(values))
    assert {(f.feature, f.test, f.window_index) for f in outcome.findings} >= {
        ("x", "ks", 1),
        ("x", "psi", 1),
    }


def test_one_models_windows_on_two_partitions_alert_under_two_ids() -> None:
    """A foreign partitioner may put one model on two partitions: each partition's window
    1 is a window of its own, and both windows' alerts must reach the topic."""
    rng = np.random.default_rng(0)
    values = [row(x=float(v)) for v in rng.normal(0, 1, 100)]
    values += [row(x=float(v)) for v in rng.normal(5, 1, 100)]
    found = []
    for number in (0, 1):
        part = Partition(
            number, lambda model, version: ModelMonitor(model, version, WindowSpec("count", 100))
        )
        found.append(part.process(records(values)).findings)
    windows = [
        {(f.feature, f.test, f.window_index) for f in fs if f.test != "adwin"} for fs in found
    ]
    assert windows[0] == windows[1] == {("x", "ks", 1), ("x", "psi", 1), ("dataset", "verdict", 1)}
    assert {f.partition for f in found[0]} == {0}
    assert {f.partition for f in found[1]} == {1}  # ADWIN's too: they say which stream
    ids = [{f.alert_id for f in fs} for fs in found]
    assert ids[0].isdisjoint(ids[1])


def test_a_restored_monitor_takes_its_partition() -> None:
    saved = ModelMonitor("a", "1", WindowSpec("count", 10))  # a state from before partitions
    part = Partition(3, lambda model, version: saved, monitors={("a", "1"): (saved, 0)})
    assert part.monitors["a", "1"].monitor.partition == 3


def test_replayed_rows_a_restored_monitor_holds_are_not_counted_twice() -> None:
    saved = ModelMonitor("a", "1", WindowSpec("count", 10))
    saved.add(np.array([1.0, 1.0]), {"x": [1.0, 2.0]})  # offsets 0 and 2 (b was at 1, 3)
    part = Partition(
        0,
        lambda model, version: ModelMonitor(model, version, WindowSpec("count", 10)),
        next_offset=None,  # no position saved: everything is read again
        monitors={("a", "1"): (saved, 3)},
    )
    outcome = part.process(records([row("a"), row("b"), row("a"), row("b"), row("a")]))
    assert outcome.rows == 3  # b's two rows and a's row at offset 4
    assert part.monitors["a", "1"].monitor.stats.rows == 3
    assert part.monitors["b", "1"].monitor.stats.rows == 2


def test_time_windows_close_by_the_clock_only_once_caught_up() -> None:
    part = Partition(
        0,
        lambda model, version: ModelMonitor(model, version, WindowSpec("time", 10.0)),
        next_offset=0,
        catch_up=3,
    )
    part.confirm_end(3)
    part.process(records([row(ts=1.0), row(ts=2.0)]))
    part.advance(now=100.0)
    monitor = part.monitors["m", "1"].monitor
    assert monitor.stats.windows_closed == 0  # offset 2 not read yet
    part.process(records([row(ts=3.0)], start=2))
    part.advance(now=100.0)
    assert monitor.stats.windows_closed == 1


def test_a_short_end_offset_waits_for_the_fetchs_high_watermark() -> None:
    """Tansu 0.6 gives the base offset of the last record batch + 1 as the end."""
    part = Partition(
        0,
        lambda model, version: ModelMonitor(model, version, WindowSpec("time", 10.0)),
        next_offset=0,
        catch_up=2,  # the broker's answer; the partition holds 4 records
    )
    part.process(records([row(ts=1.0), row(ts=2.0)]))
    part.advance(now=100.0)
    assert not part.caught_up  # no fetch has said where the end is yet
    part.confirm_end(None)  # a fetch without an answer for this partition
    assert not part.caught_up
    part.confirm_end(4)
    part.confirm_end(99)  # the first answer counts
    part.advance(now=100.0)
    monitor = part.monitors["m", "1"].monitor
    assert monitor.stats.windows_closed == 0  # offsets 2 and 3 not read yet
    part.process(records([row(ts=3.0), row(ts=4.0)], start=2))
    part.advance(now=100.0)
    assert part.caught_up
    assert monitor.stats.windows_closed == 1


def test_an_empty_partition_is_caught_up_at_once() -> None:
    part = Partition(
        0, lambda model, version: ModelMonitor(model, version, WindowSpec("time", 10.0)), catch_up=0
    )
    assert part.caught_up


def test_take_dirty_hands_over_changed_monitors_once() -> None:
    part = counting()
    part.process(records([row("a"), row("b")]))
    part.advance(now=0.0)
    assert sorted(key for key, _ in part.take_dirty()) == [("a", "1"), ("b", "1")]
    assert part.take_dirty() == []
    part.mark_dirty([("a", "1")])
    assert [key for key, _ in part.take_dirty()] == [("a", "1")]


def test_a_new_profile_reaches_the_model_versions_it_is_for() -> None:
    part = counting()
    part.process(records([row("a"), row("a", version="2"), row("b")]))
    part.take_dirty()
    profile = Profile.from_columns({"x": np.arange(100.0)}, model="a")
    part.apply_profile("a", "2", object(), profile)
    assert [key for key, _ in part.take_dirty()] == [("a", "2")]
    token = object()
    part.apply_profile("a", None, token, profile)
    part.apply_profile("a", None, token, profile)  # the same value again: nothing to do
    assert sorted(key for key, _ in part.take_dirty()) == [("a", "1"), ("a", "2")]
    assert part.monitors["a", "1"].monitor.reference == "profile"


def test_a_monitor_that_fails_rejects_its_records_and_the_others_go_on() -> None:
    def factory(model: str, version: str) -> ModelMonitor:
        monitor = ModelMonitor(model, version, WindowSpec("count", 10))
        if model == "broken":
            monitor.add = _explode  # type: ignore[method-assign]
        return monitor

    part = Partition(0, factory)
    outcome = part.process(records([row("broken"), row("ok"), row("broken")]))
    assert outcome.rows == 1
    assert [(r.offset, r.code) for r in outcome.rejects] == [(0, "exception"), (2, "exception")]


def _explode(*args: object) -> list[object]:
    raise RuntimeError("boom")


def unparsable(model: str = "m", *, ts: float = 1.0) -> bytes:
    message = orjson.loads(row(model, ts=ts))
    return orjson.dumps(message | {"features": {}, "parse_error": "the body is not JSON"})


def test_unparsable_rows_are_counted_and_kept_from_the_monitors() -> None:
    part = counting()
    outcome = part.process(records([row("a"), unparsable("a"), unparsable("a"), row("a")]))
    assert (outcome.rows, outcome.unparsable, outcome.rejects) == (2, {"a": 2}, [])
    assert part.monitors["a", "1"].monitor.stats.rows == 2
    assert part.next_offset == 4


def test_a_model_with_only_unparsable_rows_counts_requests_but_no_rows() -> None:
    part = counting()
    outcome = part.process(records([unparsable("b"), row("a")]))
    assert (outcome.rows, outcome.unparsable) == (1, {"b": 1})
    assert outcome.requests == {"a": 1, "b": 1}
    assert {key: t.monitor.stats.rows for key, t in part.monitors.items()} == {
        ("a", "1"): 1,
        ("b", "1"): 0,  # its monitor keeps the error-rate windows, and no drift data
    }


def failing(model: str = "m", *, ts: float = 1.0, x: object = 99.0, status: int = 500) -> bytes:
    message = orjson.loads(row(model, ts=ts, x=x))
    return orjson.dumps(message | {"status": status, "prediction": {"error": "boom"}})


def test_only_answered_requests_reach_the_windows() -> None:
    part = counting(size=3)
    values = [row(x=1.0), failing(status=400), row(x=2.0), failing(status=503), row(x=3.0)]
    outcome = part.process(records(values))
    assert (outcome.rows, outcome.requests, outcome.rejected_requests) == (3, {"m": 5}, {"m": 2})
    monitor = part.monitors["m", "1"].monitor
    assert monitor.stats.rows == 3
    assert monitor.stats.windows_closed == 1  # three answered rows: 99 never got in
    assert monitor.profile is not None
    assert monitor.profile.features["x"].max == 3.0  # type: ignore[union-attr]


def _requests(part: Partition, start: int, n: int, failed_every: int) -> list[Finding]:
    values = [
        failing(ts=float(i)) if i % failed_every == 0 else row(ts=float(i), x=float(i % 7))
        for i in range(start, start + n)
    ]
    return part.process(records(values, start=start)).findings


def test_a_jump_in_the_error_rate_is_a_finding_of_its_own() -> None:
    part = counting(size=200)
    calm = _requests(part, 0, 1_000, failed_every=50)  # 2 % failing
    assert [f for f in calm if f.test == "error_rate"] == []
    jumped = _requests(part, 1_000, 400, failed_every=3)  # a third failing
    errors = [f for f in jumped if f.test == "error_rate"]
    assert [(f.feature, f.window_index, f.partition, f.severity) for f in errors] == [
        ("requests", 5, 0, "critical"),
        ("requests", 6, 0, "critical"),
    ]
    assert errors[0].statistic == sum(i % 3 == 0 for i in range(1_000, 1_200)) / 200
    assert len({f.alert_id for f in errors}) == 2


def test_predictions_are_columns_when_the_reference_has_them() -> None:
    profile = Profile.from_columns({"x": np.arange(100.0), "prediction": np.arange(100.0) / 100})
    part = Partition(
        0, lambda model, version: ModelMonitor(model, version, WindowSpec("count", 50), profile)
    )
    part.process(records([row(x=float(i)) for i in range(50)]))
    monitor = part.monitors["m", "1"].monitor
    assert monitor.stats.windows_closed == 1
    assert monitor.stats.ignored == {}  # prediction is the reference's, not ignored
    plain = Partition(
        0,
        lambda model, version: ModelMonitor(
            model, version, WindowSpec("count", 50), Profile.from_columns({"x": np.arange(9.0)})
        ),
    )
    plain.process(records([row(x=float(i)) for i in range(50)]))
    assert plain.monitors["m", "1"].monitor.stats.ignored == {}  # and not read at all


def test_a_batch_message_with_unparsable_rows_adds_the_others() -> None:
    message = {
        "schema_version": 1,
        "model": "m",
        "version": "1",
        "batch": {
            "request_id": ["a", "b", "c"],
            "timestamp": [1.0, 2.0, 3.0],
            "features": {"x": [1.0, None, 3.0]},
            "prediction": [0, None, 1],
            "latency_ms": [1.0, 1.0, 1.0],
            "status": [200, 200, 200],
            "variant": ["a", "b", "a"],
            "parse_error": [None, "not JSON", None],
        },
    }
    part = counting()
    outcome = part.process(records([orjson.dumps(message)]))
    assert (outcome.rows, outcome.unparsable) == (2, {"m": 1})
    stats = part.monitors["m", "1"].monitor.stats
    assert (stats.rows, dict(stats.excluded)) == (2, {})


def test_a_flush_begun_before_a_crash_is_made_again_to_its_end() -> None:
    """Restored at position 2 with a flush of offsets [4, 7) begun: rows 2, 3 were sent to
    the merge stage before, rows 4 to 6 are reduced again and flushed at 7, exactly."""
    prepared = Prepared.from_profile(Profile.from_columns({"x": np.arange(100.0)}))
    part = Partition(
        0,
        lambda model, version: ModelMonitor(
            model, version, WindowSpec("time", 10.0), window_tests=False
        ),
        next_offset=2,
        merging=lambda model, version: (prepared, 10.0),
        flush=(4, 7),
    )
    recs = records([row(ts=float(i)) for i in range(2, 10)], start=2)
    pieces = part.segments(recs)
    assert [[r.offset for r in piece] for piece in pieces] == [[2, 3], [4, 5, 6], [7, 8, 9]]
    part.process(pieces[0])
    assert not part.cut_due
    part.process(pieces[1])
    assert part.cut_due
    [flush] = part.reducer.flush(part.next_offset)
    assert (flush.start, flush.end, [p.rows for p in flush.partials]) == (4, 7, [3])
    part.process(pieces[2])
    [after] = part.reducer.flush(part.next_offset)
    assert (after.start, after.end, [p.rows for p in after.partials]) == (7, 10, [3])
    assert part.monitors["m", "1"].monitor.stats.rows == 8  # ADWIN sees every row once


def test_a_completed_flush_is_not_made_again() -> None:
    part = Partition(
        0, lambda m, v: ModelMonitor(m, v, WindowSpec("count", 10)), next_offset=9, flush=(4, 7)
    )
    assert (part.reduce_from, part.cut_at, part.reducer.start) == (9, None, 9)


def test_while_a_flush_is_made_again_the_position_stays_at_its_start() -> None:
    part = Partition(
        0, lambda m, v: ModelMonitor(m, v, WindowSpec("count", 10)), next_offset=2, flush=(4, 7)
    )
    part.process(records([row(), row(), row(), row()], start=2))  # offsets 2 to 5
    assert (part.next_offset, part.position, part.cut_due) == (6, 4, False)
    part.process(records([row()], start=6))
    assert part.cut_due
    part.cut_at = None  # flushed
    assert part.position == 7


def test_a_merged_models_requests_go_to_the_partials_not_the_monitor() -> None:
    prepared = Prepared.from_profile(Profile.from_columns({"x": np.arange(100.0)}))
    part = Partition(
        0,
        lambda model, version: ModelMonitor(
            model, version, WindowSpec("time", 10.0), window_tests=False
        ),
        merging=lambda model, version: (prepared, 10.0),
    )
    values = [row(ts=1.0), failing(ts=2.0), row(ts=3.0), failing(ts=12.0, status=404)]
    outcome = part.process(records(values))
    assert (outcome.rows, outcome.requests) == (2, {"m": 4})
    [flush] = part.reducer.flush(part.next_offset)
    counted = [(p.window, p.rows, p.requests, p.failed) for p in flush.partials]
    assert counted == [(0, 2, 3, 1), (1, 0, 1, 1)]
    assert part.monitors["m", "1"].monitor.to_state()["error_rate"]["open"] == []
