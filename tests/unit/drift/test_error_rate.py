"""ErrorRate: a jump in a model's error rate against its recent windows (pure logic)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from flowops.config import load_settings
from flowops.drift.error_rate import ErrorRate, ErrorRateJump, ErrorRateWindows, error_counts
from flowops.drift.finding import Finding
from flowops.drift.rules import ErrorRateLevels, rules_from_settings
from flowops.drift.window import WindowSpec
from flowops.errors import ConfigError, InputError
from flowops.events import TrafficBatch, TrafficRow


def feed(rates: ErrorRate, windows: list[tuple[int, int]]) -> list[ErrorRateJump]:
    found = []
    for index, (total, errors) in enumerate(windows):
        jump = rates.close(index, float(index), float(index + 1), total=total, errors=errors)
        if jump is not None:
            found.append(jump)
    return found


def test_thirty_percent_of_requests_failing_is_a_critical_jump() -> None:
    rng = np.random.default_rng(1)
    windows = [(2_000, int(rng.binomial(2_000, 0.01))) for _ in range(10)]
    windows += [(2_000, int(rng.binomial(2_000, 0.31))) for _ in range(3)]
    found = feed(ErrorRate(), windows)
    assert [jump.window_index for jump in found] == [10, 11, 12]
    first = found[0]
    assert first.severity == "critical"
    assert first.jump == pytest.approx(first.rate - first.baseline_rate)
    assert 0.25 < first.jump < 0.35
    assert first.n_baseline == 20_000


def test_a_rate_that_stays_high_becomes_the_level_and_stops_alerting() -> None:
    windows = [(1_000, 10)] * 5 + [(1_000, 300)] * 12
    found = feed(ErrorRate(ErrorRateLevels(history=5)), windows)
    # window 9 still has one 1% window in its history (level 24.2%: +5.8 points);
    # from window 10 on the history is all 30%
    assert [jump.window_index for jump in found] == [5, 6, 7, 8, 9]
    # each 30% window replaces a 1% one in the level: +29, +23.2, +17.4, +11.6, +5.8 points
    assert [round(jump.jump, 3) for jump in found] == [0.29, 0.232, 0.174, 0.116, 0.058]
    assert [jump.severity for jump in found] == ["critical"] * 2 + ["warning"] * 3


def test_a_significant_but_small_rise_is_no_alert() -> None:
    """+1 point at 100,000 requests a window: certain (z about 8), under the 5-point floor."""
    windows = [(100_000, 1_000)] * 5 + [(100_000, 2_000)]
    assert feed(ErrorRate(), windows) == []
    assert [j.severity for j in feed(ErrorRate(ErrorRateLevels(min_increase=0.005)), windows)] == [
        "warning"
    ]


def test_a_large_rise_on_few_requests_is_no_alert() -> None:
    """2 of 100 then 10 of 100 (+8 points): z about 2.6, p 0.005, not below alpha 0.001."""
    assert feed(ErrorRate(), [(100, 2), (100, 10)]) == []


def test_small_windows_are_neither_tested_nor_kept() -> None:
    rates = ErrorRate(ErrorRateLevels(min_requests=100))
    assert rates.close(0, 0.0, 1.0, total=99, errors=99) is None
    assert rates.to_state() == {"windows": []}


def test_false_alarms_stay_at_or_below_alpha_with_no_jump() -> None:
    rng = np.random.default_rng(2)
    rates = ErrorRate(ErrorRateLevels(alpha=0.05, min_increase=0.0, history=5))
    windows = [(500, int(rng.binomial(500, 0.05))) for _ in range(600)]
    alarms = len(feed(rates, windows))
    tested = len(windows) - 1
    assert stats.binomtest(alarms, tested, 0.05, alternative="greater").pvalue > 0.01


def test_state_round_trip_gives_the_same_jumps() -> None:
    windows = [(1_000, 10)] * 6 + [(1_000, 250)]
    whole = feed(ErrorRate(), windows)
    first = ErrorRate()
    feed(first, windows[:4])
    second = ErrorRate()
    second.load_state(first.to_state())
    rest = [
        second.close(i, float(i), float(i + 1), total=total, errors=errors)
        for i, (total, errors) in enumerate(windows[4:], start=4)
    ]
    assert [jump for jump in rest if jump is not None] == whole


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"min_increase": 0.3, "critical_increase": 0.2}, "critical_increase"),
        ({"min_increase": -0.1}, "min_increase"),
        ({"critical_increase": 1.5}, "critical_increase"),
        ({"history": 0}, "history"),
        ({"history": 2.5}, "history"),
        ({"min_requests": 0}, "min_requests"),
    ],
)
def test_bad_levels_are_refused_naming_the_level(kwargs: dict[str, float], named: str) -> None:
    with pytest.raises(InputError, match=f"^{named}: expected"):
        ErrorRateLevels(**kwargs)  # type: ignore[arg-type]


def test_levels_decide_the_jumps() -> None:
    """The same windows judged by other levels: a 3-point rise alerts once min_increase is
    0.02, and a 12-point one is critical once critical_increase is 0.1."""
    windows = [(2_000, 20)] * 5 + [(2_000, 80), (2_000, 20), (2_000, 260)]
    assert [j.window_index for j in feed(ErrorRate(), windows)] == [7]
    assert feed(ErrorRate(), windows)[0].severity == "warning"
    loose = ErrorRate(ErrorRateLevels(min_increase=0.02, critical_increase=0.1))
    assert [(j.window_index, j.severity) for j in feed(loose, windows)] == [
        (5, "warning"),
        (7, "critical"),
    ]
    few = ErrorRate(ErrorRateLevels(min_requests=5_000))
    assert feed(few, windows) == []


def test_new_levels_keep_the_newest_windows_of_the_history() -> None:
    rates = ErrorRate(ErrorRateLevels(history=5))
    feed(rates, [(1_000, e) for e in range(10, 15)])
    rates.levels = ErrorRateLevels(history=2)
    assert rates.to_state() == {"windows": [[1_000, 13], [1_000, 14]]}


def test_bad_counts_are_refused() -> None:
    with pytest.raises(InputError, match="errors must lie"):
        ErrorRate().close(0, 0.0, 1.0, total=10, errors=11)


def test_failed_requests_stay_out_of_the_data_and_count_as_errors() -> None:
    """30% of requests rejected: the features keep only the answered rows."""
    rows = [
        TrafficRow("m", "1", f"r{i}", float(i), {"x": float(i)}, 0.5, 1.0, 200)
        if i % 10 >= 3
        else TrafficRow("m", "1", f"r{i}", float(i), {"x": "bad"}, {"error": "no"}, 1.0, 400)
        for i in range(100)
    ]
    rows[5] = TrafficRow("m", "1", "r5", 5.0, {}, None, 1.0, 200, parse_error="not JSON")
    batch = TrafficBatch.from_rows(rows)
    answered = batch.answered()
    assert answered.rows == 69
    assert all(isinstance(value, float) for value in answered.features["x"])
    assert set(answered.status.tolist()) == {200}
    assert error_counts(batch.status, batch.parse_errors) == (100, 31)


def _time_windows() -> ErrorRateWindows:
    return ErrorRateWindows("m", "1", WindowSpec("time", 10.0), partition=2)


def _second(windows: ErrorRateWindows, second: int, failing: int) -> list[Finding]:
    """100 requests at ``second`` (plus a fraction), ``failing`` of them failed."""
    return windows.add(second + np.linspace(0, 0.9, 100), np.arange(100) < failing)


def test_time_windows_close_on_a_later_request_or_the_clock() -> None:
    windows = _time_windows()
    for second in range(30):
        assert _second(windows, second, failing=2) == []
    assert windows.add(np.array([31.0]), np.array([True])) == []
    found = [f for s in range(40, 50) for f in _second(windows, s, failing=40)]
    assert found == []  # window 4 is open until something passes its end
    [jump] = windows.advance(50.0)
    assert (jump.window_index, jump.window_start, jump.window_end) == (4, 40.0, 50.0)
    assert (jump.statistic, jump.n_current, jump.partition) == (0.4, 1_000, 2)
    assert jump.n_reference == 3_000  # windows 0-2; window 3's lone request is below min_rows
    assert windows.advance(60.0) == []


def test_requests_of_a_closed_window_or_without_a_time_are_late() -> None:
    windows = _time_windows()
    _second(windows, 0, failing=0)
    _second(windows, 12, failing=0)  # window 0 closes
    windows.add(np.array([5.0, np.nan, 15.0]), np.array([True, True, False]))
    assert windows.late == 2


def test_a_restored_state_makes_the_same_findings() -> None:
    whole, first = _time_windows(), _time_windows()
    for second in range(35):
        _second(whole, second, failing=1)
        _second(first, second, failing=1)
    restored = _time_windows()
    restored.load_state(json.loads(json.dumps(first.to_state())))
    later = [f for s in range(35, 60) for f in _second(whole, s, failing=30)]
    again = [f for s in range(35, 60) for f in _second(restored, s, failing=30)]
    assert later == again
    assert [f.window_index for f in later] == [3, 4]


def test_the_drift_error_rate_settings_are_the_rules_levels() -> None:
    drift = {"alpha": 0.01, "min_increase": 0.02, "critical_increase": 0.1, "history": 4}
    settings = load_settings(None, {"drift": {"error_rate": {**drift, "min_requests": 50}}})
    levels = rules_from_settings(settings.drift).error_rate
    assert levels == ErrorRateLevels(0.01, 0.02, 0.1, 4, 50)
    assert rules_from_settings(load_settings(None).drift).error_rate == ErrorRateLevels()


@pytest.mark.parametrize(
    ("error_rate", "key"),
    [
        ({"alpha": 1.0}, "alpha"),
        ({"min_increase": 1.2}, "min_increase"),
        ({"min_increase": 0.3}, "critical_increase"),  # above the default critical 0.2
        ({"critical_increase": 0.01}, "critical_increase"),
        ({"history": 0}, "history"),
        ({"min_requests": "many"}, "min_requests"),
        ({"min_jump": 0.1}, "min_jump"),
    ],
)
def test_a_bad_error_rate_setting_stops_loading_naming_its_key(
    error_rate: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^config: drift\.error_rate\.{key}: "):
        load_settings(None, {"drift": {"error_rate": error_rate}})


def test_rules_from_a_section_built_without_checks_still_name_the_key() -> None:
    section = load_settings(None).drift.model_copy(
        update={"error_rate": SimpleNamespace(**{**vars(ErrorRateLevels()), "history": -1})}
    )
    with pytest.raises(ConfigError, match=r"drift\.error_rate\.history: expected a whole"):
        rules_from_settings(section)
