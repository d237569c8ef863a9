"""ModelMonitor: window tests, ADWIN, the first-window reference, state, duplicates."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from flowops.drift import ADWIN, Finding, ModelMonitor, MonitorStats, Profile, WindowSpec, compare
from flowops.drift import detector as detector_module
from flowops.drift.finding import WindowVerdict
from flowops.drift.report import CORRECTIONS
from flowops.drift.rules import Rules
from flowops.errors import InputError

CATEGORIES = ["a", "b", "c", "d"]
SHARES = [0.4, 0.3, 0.2, 0.1]
Columns = dict[str, Any]


def columns(rng: np.random.Generator, n: int) -> Columns:
    """Five standard normal features and two categorical ones."""
    data: Columns = {f"x{i}": rng.normal(size=n) for i in range(5)}
    data.update({f"c{i}": rng.choice(CATEGORIES, n, p=SHARES).tolist() for i in range(2)})
    return data


def feed(
    monitor: ModelMonitor, ts: NDArray[np.float64], data: Mapping[str, Sequence[Any]], size: int
) -> list[Finding]:
    """Add the stream in batches of ``size`` rows; every finding."""
    found: list[Finding] = []
    for start in range(0, ts.size, size):
        batch = {name: column[start : start + size] for name, column in data.items()}
        found += monitor.add(ts[start : start + size], batch)
    return found


def keys(findings: list[Finding]) -> list[tuple[str, str, int]]:
    return sorted((f.feature, f.test, f.window_index) for f in findings)


def window_keys(findings: list[Finding]) -> list[tuple[str, str, int]]:
    """The features' window-test findings (not ADWIN's, not the windows' verdicts)."""
    return keys([f for f in findings if f.test not in ("adwin", "verdict")])


def verdict_windows(findings: list[Finding]) -> list[int]:
    """The windows whose verdict was that the model drifted."""
    return sorted(f.window_index for f in findings if f.test == "verdict")


@pytest.fixture(scope="module")
def seeded() -> tuple[Profile, Columns]:
    """A profile and a 16,000-row stream from the same distribution (seed 0)."""
    rng = np.random.default_rng(0)
    return Profile.from_columns(columns(rng, 20_000)), columns(rng, 16_000)


# -- window tests ----------------------------------------------------------------------


def test_drift_in_one_numeric_feature_is_found_for_it_alone(
    seeded: tuple[Profile, Columns],
) -> None:
    profile, data = seeded
    data = {**data, "x2": data["x2"] + np.where(np.arange(16_000) >= 8_000, 0.4, 0.0)}
    monitor = ModelMonitor("credit", "3", WindowSpec("count", 2_000), profile)
    found = feed(monitor, np.arange(16_000.0), data, 1_000)
    assert keys(found) == [
        *[("dataset", "verdict", k) for k in (4, 5, 6, 7)],
        ("x2", "adwin", 8191),
        *[("x2", test, k) for test in ("ks", "psi") for k in (4, 5, 6, 7)],
    ]
    assert all(f.reference == "profile" and f.model == "credit" for f in found)
    verdicts = {f.window_verdict for f in found if f.test != "adwin"}
    assert [(v.drift, v.drifted_names, v.compared_features) for v in verdicts] == [
        (True, ("x2",), 7)
    ]
    assert monitor.stats.windows_closed == 8


def test_drift_in_one_categorical_feature_is_found_for_it_alone(
    seeded: tuple[Profile, Columns],
) -> None:
    profile, data = seeded
    rng = np.random.default_rng(1)
    shifted = rng.choice(CATEGORIES, 8_000, p=[0.2, 0.3, 0.2, 0.3]).tolist()
    data = {**data, "c1": data["c1"][:8_000] + shifted}
    monitor = ModelMonitor("credit", "3", WindowSpec("count", 2_000), profile)
    found = feed(monitor, np.arange(16_000.0), data, 1_000)
    assert window_keys(found) == [("c1", test, k) for test in ("chi2", "psi") for k in (4, 5, 6, 7)]
    assert verdict_windows(found) == [4, 5, 6, 7]


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_findings_name_the_features_compare_finds_drifting(
    seeded: tuple[Profile, Columns], correction: str
) -> None:
    """Per window: the features with findings are compare's drifting ones, and a
    feature's smallest finding p-value is compare's adjusted p-value."""
    profile, data = seeded
    ramp = np.linspace(0.0, 0.6, 16_000)
    data = {**data, "x1": data["x1"] + ramp, "x4": data["x4"] * (1 + ramp)}
    monitor = ModelMonitor("m", "1", WindowSpec("count", 2_000), profile, correction=correction)
    found = feed(monitor, np.arange(16_000.0), data, 4_000)
    drifting = seconds = 0
    for k in range(8):
        window = {name: column[2_000 * k : 2_000 * (k + 1)] for name, column in data.items()}
        report = compare(profile, window, correction=correction)
        mine = [f for f in found if f.window_index == k and f.test not in ("adwin", "verdict")]
        verdict = [f for f in found if f.window_index == k and f.test == "verdict"]
        assert len(verdict) == report.drift
        assert {f.feature for f in mine} == {f.feature for f in report.features if f.drift}
        drifted = {
            (f.feature, t.test, t.adjusted_pvalue)
            for f in report.features
            for t in f.tests
            if t.drift
        }
        assert {(f.feature, f.test, f.pvalue) for f in mine} == drifted
        drifting += sum(f.drift for f in report.features)
        for finding in mine:
            assert finding.pvalue == _as_if_best(report.features, finding, correction)
            seconds += finding.pvalue != report.features[_index(report, finding)].adjusted_pvalue
    assert drifting >= 3, "the stream must drift in some windows for this test to mean much"
    assert seconds >= 1, "some feature must have two significant tests of unequal p-value"


def _index(report: Any, finding: Finding) -> int:
    return [f.feature for f in report.features].index(finding.feature)


def _as_if_best(features: list[Any], finding: Finding, correction: str) -> float:
    """The adjusted p-value compare gives the feature were this test its most significant."""
    pvalues = [f.pvalue for f in features]
    i = [f.feature for f in features].index(finding.feature)
    raw = getattr(features[i], "psi_pvalue" if finding.test == "psi" else f"{finding.test}_pvalue")
    pvalues[i] = min(1.0, 2 * raw)
    return float(CORRECTIONS[correction](pvalues)[i])


def test_severity_follows_the_effect_size_not_the_p_value(seeded: tuple[Profile, Columns]) -> None:
    profile, data = seeded
    ramp = np.linspace(0.0, 0.9, 16_000)
    data = {**data, "x0": data["x0"] + ramp}
    monitor = ModelMonitor("m", "1", WindowSpec("count", 2_000), profile, alpha=0.01)
    found = [
        f
        for f in feed(monitor, np.arange(16_000.0), data, 2_000)
        if f.test not in ("adwin", "verdict")
    ]
    critical = {"psi": 0.25, "ks": 0.2}
    floor = {"psi": 0.1, "ks": 0.1}
    for finding in found:
        assert finding.pvalue is not None
        assert finding.threshold == 0.01
        assert finding.pvalue < 0.01
        assert finding.statistic >= floor[finding.test]
        expected = "critical" if finding.statistic >= critical[finding.test] else "warning"
        assert finding.severity == expected
    severities = {f.severity for f in found}
    assert severities == {"warning", "critical"}, "the ramp must cross both levels"
    assert all(f.pvalue is not None and f.pvalue < 1e-6 for f in found if f.severity == "warning")


# -- the first window as reference -----------------------------------------------------


def test_the_first_window_is_the_reference_until_a_profile_comes(
    seeded: tuple[Profile, Columns],
) -> None:
    profile, data = seeded
    data = {**data, "x3": data["x3"] + np.where(np.arange(16_000) >= 4_000, 1.0, 0.0)}
    monitor = ModelMonitor("credit", "3", WindowSpec("count", 2_000), adwin_delta=1e-12)
    ts = np.arange(16_000.0)

    assert feed(monitor, ts[:2_000], {k: v[:2_000] for k, v in data.items()}, 500) == []
    assert monitor.reference == "first_window"
    assert monitor.stats.last_psi == {}, "the first window is not tested against itself"
    first = {k: (np.asarray(v[:2_000]) if k[0] == "x" else v[:2_000]) for k, v in data.items()}
    assert monitor.profile == Profile.from_columns(first, model="credit")

    found = feed(monitor, ts[2_000:8_000], {k: v[2_000:8_000] for k, v in data.items()}, 500)
    assert window_keys(found) == [("x3", test, k) for test in ("ks", "psi") for k in (2, 3)]
    assert {(f.reference, f.n_reference) for f in found if f.test != "adwin"} == {
        ("first_window", 2_000)
    }

    monitor.set_profile(profile)
    found = feed(monitor, ts[8_000:10_000], {k: v[8_000:10_000] for k, v in data.items()}, 500)
    assert window_keys(found) == [("x3", "ks", 4), ("x3", "psi", 4)]
    assert {(f.reference, f.n_reference) for f in found} == {("profile", 20_000)}


def test_a_first_window_without_usable_values_is_not_the_reference() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 3))
    monitor.add(np.zeros(3), {"x": [None, math.nan, math.inf]})
    assert monitor.profile is None
    monitor.add(np.zeros(3), {"x": [1.0, 2.0, 3.0]})
    assert monitor.profile is not None
    assert monitor.profile.features["x"].n == 3
    assert monitor.stats.windows_closed == 2


def test_features_new_after_the_first_window_are_ignored_and_counted() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 2))
    monitor.add(np.zeros(2), {"x": [1.0, 2.0]})
    monitor.add(np.zeros(3), {"x": [1.0, 2.0, 3.0], "new": ["a", "b", "c"]})
    assert monitor.stats.ignored == {"new": 3}
    assert "new" not in monitor.to_state()["windows"]["open"]["features"]


# -- time and count windows ------------------------------------------------------------


def test_time_windows_close_at_their_boundaries_and_skip_empty_ones() -> None:
    rng = np.random.default_rng(2)
    profile = Profile.from_columns({"x": rng.normal(size=5_000)})
    monitor = ModelMonitor("m", "1", WindowSpec("time", 10.0), profile)
    ts = np.concatenate([np.linspace(0, 9.99, 50), np.linspace(10, 19.99, 50)])
    ts = np.concatenate([ts, np.linspace(50, 59.99, 50)])  # windows 2 to 4 stay empty
    found = monitor.add(ts, {"x": rng.normal(3, 1, ts.size)})
    assert {(f.window_index, f.window_start, f.window_end) for f in found} == {
        (0, 0.0, 10.0),
        (1, 10.0, 20.0),
    }
    assert monitor.stats.windows_closed == 2
    assert monitor.advance(59.99) == []
    closing = monitor.advance(60.0)
    assert {(f.test, f.window_index, f.window_start, f.window_end) for f in closing} == {
        ("psi", 5, 50.0, 60.0),
        ("ks", 5, 50.0, 60.0),
        ("verdict", 5, 50.0, 60.0),
    }
    assert monitor.stats.windows_closed == 3
    assert monitor.advance(1e9) == []


def test_rows_of_closed_time_windows_are_dropped_as_late() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("time", 10.0))
    monitor.add(np.array([1.0, 2.0, 12.0]), {"x": [1.0, 2.0, 3.0]})
    monitor.add(np.array([3.0, math.nan, 13.0]), {"x": [4.0, 5.0, 6.0]})
    assert (monitor.stats.rows, monitor.stats.late) == (6, 2)
    assert monitor.stats.windows_closed == 1
    assert monitor.to_state()["windows"]["open"]["features"]["x"]["raw"] == [3.0, 6.0]


def test_count_windows_give_the_same_findings_however_the_stream_is_batched(
    seeded: tuple[Profile, Columns],
) -> None:
    profile, data = seeded
    data = {name: column[:5_000] for name, column in data.items()}
    data["x0"] = data["x0"] + np.where(np.arange(5_000) >= 2_500, 1.0, 0.0)
    ts = np.arange(5_000.0)
    runs = {}
    for size in (1, 7, 999, 5_000):
        monitor = ModelMonitor("m", "1", WindowSpec("count", 1_000), profile, adwin_batch=300)
        runs[size] = feed(monitor, ts, data, size)
        assert monitor.stats.windows_closed == 5
    assert window_keys(runs[1]) == [("x0", t, k) for t in ("ks", "psi") for k in (2, 3, 4)]
    for size in (7, 999, 5_000):
        assert [f.alert_id for f in runs[size]] == [f.alert_id for f in runs[1]]
        tests = [f for f in runs[size] if f.test != "adwin"]
        assert tests == [f for f in runs[1] if f.test != "adwin"]


def test_a_batch_straddling_count_windows_is_split_at_the_boundaries() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 4))
    monitor.add(np.arange(3.0), {"x": [0.0, 1.0, 2.0]})
    monitor.add(np.arange(3.0, 9.0), {"x": [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]})
    assert monitor.stats.windows_closed == 2
    assert monitor.profile is not None
    assert monitor.profile.features["x"].to_dict()["sample"] == [0.0, 1.0, 2.0, 3.0]
    window = monitor.to_state()["windows"]["open"]
    assert (window["index"], window["first_row"], window["features"]["x"]["raw"]) == (
        2,
        8,
        [8.0],
    )


# -- ADWIN -----------------------------------------------------------------------------


def _adwin_expectations(values: NDArray[np.float64], delta: float) -> list[tuple[int, float]]:
    """ADWIN run directly, one value at a time: (index, |mean dropped - mean kept|)."""
    adwin, changes = ADWIN(delta), []
    for i, x in enumerate(values.tolist()):
        n, total = (
            (0, 0.0) if adwin.drift_detected else (adwin.width, adwin.estimation * adwin.width)
        )
        if adwin.update(x):
            kept, kept_total = adwin.width, adwin.estimation * adwin.width
            dropped = n + 1 - kept
            changes.append((i, abs((total + x - kept_total) / dropped - kept_total / kept)))
    return changes


@pytest.mark.parametrize("adwin_batch", [1, 50, 4096, 10**9])
def test_adwin_findings_match_adwin_run_directly(adwin_batch: int) -> None:
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, 3_000), rng.normal(1, 1, 2_000), rng.normal(-1, 1, 2_000)])
    column: list[float | None] = x.tolist()
    for i in range(0, x.size, 7):
        column[i] = None if i % 2 else math.nan
    finite = np.flatnonzero([value is not None and math.isfinite(value) for value in column])
    ts = 100.0 + np.arange(x.size) / 10
    monitor = ModelMonitor("m", "1", WindowSpec("count", 2_500), adwin_batch=adwin_batch)
    found = feed(monitor, ts, {"x": column}, 333) + monitor.advance(0.0)
    changes = [f for f in found if f.test == "adwin"]

    expected = _adwin_expectations(x[finite], 0.002)
    assert len(expected) == 2
    direct = ADWIN().update_many(x[finite]).tolist()
    assert [i for i, _ in expected] == direct
    assert [f.window_index for f in changes] == finite[direct].tolist()
    assert [f.statistic for f in changes] == pytest.approx([s for _, s in expected], rel=1e-9)
    for finding in changes:
        assert (finding.pvalue, finding.threshold, finding.severity) == (None, 0.002, "warning")
        assert finding.window_start == finding.window_end == ts[finding.window_index]
        assert finding.n_reference > 0
        assert finding.n_current > 0


def test_adwin_waits_for_a_batch_or_advance() -> None:
    values = np.concatenate([np.zeros(500), np.full(200, 5.0)])
    monitor = ModelMonitor("m", "1", WindowSpec("count", 10_000), adwin_batch=1_000)
    assert monitor.add(np.arange(700.0), {"x": values}) == []
    found = monitor.advance(0.0)
    assert [(f.test, f.window_index) for f in found] == [("adwin", 511)]
    # ADWIN drops 480 zeros and keeps 20 zeros and 12 fives: |0 - 60 / 32|
    assert (found[0].n_reference, found[0].n_current) == (480, 32)
    assert found[0].statistic == pytest.approx(1.875)
    eager = ModelMonitor("m", "1", WindowSpec("count", 10_000), adwin_batch=100)
    assert eager.add(np.arange(700.0), {"x": values}) == found


def test_adwin_runs_on_numeric_features_only() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 10_000), adwin_batch=1)
    found = monitor.add(np.arange(700.0), {"c": ["a"] * 500 + ["b"] * 200})
    assert found == []
    assert monitor.to_state()["adwin"] == {}


# -- bad values ------------------------------------------------------------------------


def test_unusable_values_are_counted_and_excluded_without_raising() -> None:
    profile = Profile.from_columns({"x": np.arange(100.0), "c": ["a", "b"] * 50})
    monitor = ModelMonitor("m", "1", WindowSpec("count", 10), profile, adwin_batch=1)
    x: list[Any] = [1.0, math.nan, math.inf, None, "7", True, 2.0, -math.inf, 3.0, 4.0]
    c: list[Any] = ["a", None, 3, "b", math.nan, "a", [1], "b", "a", "b"]
    monitor.add(np.arange(10.0), {"x": x, "c": c, "z": [1.0] * 10})
    assert monitor.stats.excluded == {"x": 6, "c": 4}
    monitor.add(np.arange(4.0), {"x": [1.0, 2.0, 3.0, 4.0]})  # c missing: 4 rows
    monitor.add(np.arange(6.0), {"c": ["a"] * 6})  # x missing: 6 rows
    assert monitor.stats.excluded == {"x": 12, "c": 8}
    assert monitor.stats.ignored == {"z": 10}
    assert (monitor.stats.rows, monitor.stats.windows_closed) == (20, 2)
    assert monitor.stats.last_psi.keys() == {"x", "c"}
    assert monitor.stats.last_ks_pvalue.keys() == {"x"}


def test_numpy_columns_are_taken_as_values() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 3))
    monitor.add(np.arange(3.0), {"x": np.array([1.0, np.nan, 3.0]), "c": np.array(["a", "b", "a"])})
    assert monitor.profile is not None
    assert monitor.profile.features["x"].to_dict()["sample"] == [1.0, 3.0]
    assert monitor.profile.features["c"].to_dict()["frequencies"] == {"a": 2, "b": 1}
    assert monitor.stats.excluded == {"x": 1}


@pytest.mark.parametrize(
    ("timestamps", "features", "message"),
    [
        (np.zeros(3), {"x": [1.0, 2.0]}, "column 'x': 2 values for 3 timestamps"),
        (np.zeros((2, 2)), {}, "1-D"),
        (["a", "b"], {}, "numbers"),
        (np.zeros(1), {"x": 1.5}, "a column must be a sequence"),
    ],
)
def test_a_malformed_batch_raises(timestamps: Any, features: Any, message: str) -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 10))
    with pytest.raises(InputError, match=message):
        monitor.add(timestamps, features)


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"correction": "holm"}, "correction"),
        ({"adwin_delta": 1.5}, "delta"),
        ({"adwin_batch": 0}, "adwin_batch"),
    ],
)
def test_bad_settings_raise(settings_: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        ModelMonitor("m", "1", WindowSpec("count", 10), **settings_)


# -- findings, ids, stats --------------------------------------------------------------


FINDING = Finding(
    "m", "1", "x", "psi", 0.3, 0.001, 0.05, 4, 0.0, 60.0, 100, 90, "warning", "profile"
)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "m2"},
        {"version": "2"},
        {"feature": "y"},
        {"test": "ks"},
        {"window_index": 5},
    ],
)
def test_alert_ids_differ_by_model_version_feature_test_and_window(change: dict[str, Any]) -> None:
    from dataclasses import replace

    assert replace(FINDING, **change).alert_id != FINDING.alert_id


def test_alert_ids_are_unambiguous_when_names_hold_separators() -> None:
    from dataclasses import replace

    first = replace(FINDING, model="a|b", version="c")
    assert replace(FINDING, model="a", version="b|c").alert_id != first.alert_id


def test_alert_ids_do_not_depend_on_the_figures() -> None:
    from dataclasses import replace

    other = replace(FINDING, statistic=9.0, pvalue=0.0, n_current=1, severity="critical")
    assert other.alert_id == FINDING.alert_id
    assert len(FINDING.alert_id) == 64


def test_a_finding_is_json_ready() -> None:
    data = json.loads(json.dumps(FINDING.to_dict(), allow_nan=False))
    assert data["alert_id"] == FINDING.alert_id
    assert Finding(**{k: v for k, v in data.items() if k != "alert_id"}) == FINDING


def test_stats_hold_the_last_window_figures_and_findings_by_test(
    seeded: tuple[Profile, Columns],
) -> None:
    profile, data = seeded
    data = {**data, "x2": data["x2"] + 0.5}
    monitor = ModelMonitor("m", "1", WindowSpec("count", 4_000), profile)
    found = feed(monitor, np.arange(16_000.0), data, 1_000)
    last = compare(profile, {name: column[12_000:] for name, column in data.items()})
    assert monitor.stats.last_psi == {f.feature: f.psi for f in last.features}
    assert monitor.stats.last_ks_pvalue == {
        f.feature: f.ks_pvalue for f in last.features if f.kind == "numeric"
    }
    by_test: dict[str, int] = {}
    for finding in found:
        by_test[finding.test] = by_test.get(finding.test, 0) + 1
    assert monitor.stats.findings == by_test
    assert (monitor.stats.rows, monitor.stats.windows_closed) == (16_000, 4)
    assert MonitorStats.from_dict(json.loads(json.dumps(monitor.stats.to_dict()))) == monitor.stats


# -- state and duplicates --------------------------------------------------------------


def _stream(n: int = 3_000) -> tuple[NDArray[np.float64], Columns]:
    """Two numeric features (one shifting, with gaps) and a categorical one with gaps."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    y = rng.normal(size=n) + np.where(np.arange(n) >= n // 2, 1.0, 0.0)
    c = rng.choice(["a", "b", "c"], n).tolist()
    for i in range(0, n, 11):
        c[i] = None
    column: list[float | None] = x.tolist()
    column[5::97] = [None] * len(column[5::97])
    return np.arange(n, dtype=np.float64) * 0.001, {"x": column, "y": y.tolist(), "c": c}


STREAM = _stream()
SPECS = [WindowSpec("count", 500), WindowSpec("time", 0.5)]


def _batches(cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [0, *sorted(set(cuts)), STREAM[0].size]
    return list(itertools.pairwise(bounds))


def _run(monitor: ModelMonitor, batches: list[tuple[int, int]]) -> list[Finding]:
    ts, data = STREAM
    found: list[Finding] = []
    for start, stop in batches:
        found += monitor.add(ts[start:stop], {k: v[start:stop] for k, v in data.items()})
    return found


@settings(max_examples=40, deadline=None, database=None)
@given(
    spec=st.sampled_from(SPECS),
    with_profile=st.booleans(),
    cuts=st.lists(st.integers(1, STREAM[0].size - 1), max_size=12),
    split=st.integers(0, 12),
)
def test_a_restored_monitor_finds_what_an_uninterrupted_one_finds(
    spec: WindowSpec, with_profile: bool, cuts: list[int], split: int
) -> None:
    profile = Profile.from_columns({"x": np.linspace(-2, 2, 500), "y": np.linspace(-2, 2, 500)})
    batches = _batches(cuts)
    split = min(split, len(batches))

    def fresh() -> ModelMonitor:
        return ModelMonitor("m", "1", spec, profile if with_profile else None, adwin_batch=64)

    whole = fresh()
    expected = _run(whole, batches)

    first = fresh()
    found = _run(first, batches[:split])
    state = json.loads(json.dumps(first.to_state(), allow_nan=False))
    restored = ModelMonitor.from_state(state)
    assert restored.to_state() == first.to_state()
    found += _run(restored, batches[split:])
    assert restored.to_state() == whole.to_state()

    expected += whole.advance(10.0)
    found += restored.advance(10.0)
    assert found == expected
    assert restored.to_state() == whole.to_state()
    assert {f.test for f in expected} >= {"adwin", "psi"}


def test_the_window_open_at_a_restore_closes_with_all_its_rows() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 500))
    _run(monitor, [(0, 1_250)])
    restored = ModelMonitor.from_state(json.loads(json.dumps(monitor.to_state())))
    _run(restored, [(1_250, 1_500)])
    assert restored.stats.windows_closed == 3
    assert restored.stats.rows == 1_500
    assert restored.to_state()["windows"]["open"] is None


def test_a_replay_after_a_restore_repeats_ids_that_mark_seen_then_drops() -> None:
    spec = WindowSpec("count", 500)
    monitor = ModelMonitor("m", "1", spec)
    _run(monitor, [(0, 1_400)])
    saved = json.loads(json.dumps(monitor.to_state()))
    emitted = _run(monitor, [(1_400, 3_000)])
    assert len(emitted) >= 3

    replayed = _run(ModelMonitor.from_state(saved), [(1_400, 3_000)])
    assert [f.alert_id for f in replayed] == [f.alert_id for f in emitted]

    deduplicating = ModelMonitor.from_state(saved)
    deduplicating.mark_seen(f.alert_id for f in emitted)
    assert _run(deduplicating, [(1_400, 3_000)]) == []
    assert deduplicating.stats.duplicates == len(emitted)
    assert deduplicating.stats.findings == saved["stats"]["findings"]


def test_a_monitor_never_emits_an_id_twice() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 500))
    found = _run(monitor, [(0, 3_000)])
    state = monitor.to_state()
    assert len(state["seen"]) == len(found) == len({f.alert_id for f in found})
    again = ModelMonitor.from_state(state)
    again.mark_seen(state["seen"])
    assert again.to_state()["seen"] == state["seen"]


def test_rows_replayed_into_closed_time_windows_are_dropped() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("time", 0.5))
    before = _run(monitor, [(0, 2_200)])
    restored = ModelMonitor.from_state(json.loads(json.dumps(monitor.to_state())))
    assert _run(restored, [(0, 2_000)]) == []
    assert restored.stats.late == 2_000
    assert restored.to_state()["windows"]["open"] == monitor.to_state()["windows"]["open"]
    assert before


def test_the_seen_ids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detector_module, "SEEN_IDS", 3)
    monitor = ModelMonitor("m", "1", WindowSpec("count", 5))
    monitor.mark_seen(["a", "b", "c", "d"])
    assert monitor.to_state()["seen"] == ["b", "c", "d"]


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"format": 99},
        {"format": 1, "model": "m"},
        {**ModelMonitor("m", "1", WindowSpec("count", 5)).to_state(), "kinds": 3},
        {**ModelMonitor("m", "1", WindowSpec("count", 5)).to_state(), "kinds": {"x": "text"}},
        [],
    ],
)
def test_from_state_rejects_what_is_not_a_monitor_state(state: Any) -> None:
    with pytest.raises(InputError):
        ModelMonitor.from_state(state)


def test_set_profile_drops_features_it_does_not_know_from_the_open_window() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 10))
    monitor.add(np.arange(3.0), {"x": [1.0, 2.0, 3.0], "old": ["a", "b", "c"]})
    monitor.set_profile(Profile.from_columns({"x": np.arange(50.0)}))
    monitor.add(np.arange(2.0), {"x": [1.0, 2.0], "old": ["a", "b"]})
    assert set(monitor.to_state()["windows"]["open"]["features"]) == {"x"}
    assert monitor.stats.ignored == {"old": 2}
    assert monitor.reference == "profile"


def test_a_monitors_partition_is_in_its_findings_and_its_state() -> None:
    plain = ModelMonitor("m", "1", WindowSpec("count", 500))
    kept = ModelMonitor("m", "1", WindowSpec("count", 500), partition=2)
    restored = ModelMonitor.from_state(json.loads(json.dumps(kept.to_state())))
    assert restored.partition == 2
    found = [_run(monitor, [(0, 3_000)]) for monitor in (plain, restored)]
    assert [f.window_index for f in found[0]] == [f.window_index for f in found[1]]
    assert {f.partition for f in found[0]} == {None}
    assert {f.partition for f in found[1]} == {2}
    assert {f.alert_id for f in found[0]}.isdisjoint(f.alert_id for f in found[1])


def test_without_window_tests_only_adwin_reports_and_the_state_keeps_the_spec() -> None:
    spec = WindowSpec("time", 60.0)
    monitor = ModelMonitor("m", "1", spec, window_tests=False, adwin_batch=100)
    rng = np.random.default_rng(2)
    ts = np.arange(4_000, dtype=np.float64)
    income = np.concatenate([rng.normal(50, 5, 2_000), rng.normal(70, 5, 2_000)])
    findings = monitor.add(ts, {"income": income})
    assert {f.test for f in findings} == {"adwin"}
    assert monitor.stats.windows_closed == 0
    restored = ModelMonitor.from_state(json.loads(json.dumps(monitor.to_state())))
    assert (restored.spec, restored.window_tests) == (spec, False)


def test_error_rate_windows_are_in_the_monitors_state() -> None:
    def feed(monitor: ModelMonitor, first: int, rate: float) -> list[str]:
        found = []
        for i in range(first, first + 5):
            failed = np.arange(200) < int(200 * rate)
            found += monitor.requests(np.full(200, float(i)), failed)
        return [f"{f.test}:{f.window_index}" for f in found]

    whole = ModelMonitor("m", "1", WindowSpec("count", 400), partition=3)
    half = ModelMonitor("m", "1", WindowSpec("count", 400), partition=3)
    assert feed(whole, 0, 0.01) == feed(half, 0, 0.01) == []
    restored = ModelMonitor.from_state(json.loads(json.dumps(half.to_state())))
    assert (
        feed(restored, 5, 0.4)
        == feed(whole, 5, 0.4)
        == [
            "error_rate:2",  # half its requests from before the jump
            "error_rate:3",
            "error_rate:4",
        ]
    )
    with pytest.raises(InputError, match="failure flags"):
        whole.requests(np.zeros(3), np.zeros(2, dtype=bool))


# -- the window's verdict --------------------------------------------------------------


@pytest.mark.parametrize(("rule", "drift"), [("any", True), ("share:0.5", False)])
def test_every_finding_of_a_window_carries_its_verdict(rule: str, drift: bool) -> None:
    """2 of 5 features drift: share 0.4, a drift by ``any`` and none by ``share:0.5``;
    the verdict's own finding comes once, after the features', only when it is drift."""
    rng = np.random.default_rng(11)
    names = ["a", "b", "c", "d", "e"]
    profile = Profile.from_columns({name: rng.normal(size=5_000) for name in names})
    monitor = ModelMonitor(
        "m", "1", WindowSpec("count", 2_000), profile, rules=Rules(verdict=rule), partition=2
    )
    rows = {name: rng.normal(1.0 if name in "ab" else 0.0, size=2_000) for name in names}
    found = [f for f in monitor.add(np.arange(2_000.0), rows) if f.test != "adwin"]
    assert {f.feature for f in found if f.test != "verdict"} == {"a", "b"}
    assert {f.window_verdict for f in found} == {WindowVerdict(drift, rule, 2, 5, 0.4, ("a", "b"))}
    verdicts = [f for f in found if f.test == "verdict"]
    assert len(verdicts) == drift
    if drift:
        assert found[-1] is verdicts[0]
        assert (verdicts[0].feature, verdicts[0].statistic, verdicts[0].threshold) == (
            "dataset",
            0.4,
            0.0,
        )
        assert {f.severity for f in found} == {"critical"}  # a 1 SD shift: PSI past 0.25
        assert verdicts[0].partition == 2
        assert verdicts[0].alert_id not in {f.alert_id for f in found[:-1]}
