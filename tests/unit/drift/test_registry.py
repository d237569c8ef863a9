"""The window-test registry: every test from values and from counts, floors and verdicts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import spatial, stats

from flowops.config import load_settings
from flowops.drift.chisq import cohens_w
from flowops.drift.grid import GRID_CELLS
from flowops.drift.js import js_distance
from flowops.drift.profile import CategoricalProfile, NumericProfile, Profile
from flowops.drift.registry import ALERT_TESTS, DEFAULT_TESTS, WINDOW_TESTS, check_tests
from flowops.drift.report import compare, compare_counts, prepare
from flowops.drift.rules import Rules, rules_from_settings
from flowops.drift.window_test import Baseline, Current
from flowops.drift.window_tests import VERDICT_TEST
from flowops.errors import ConfigError, InputError

NUMERIC = [name for name, test in WINDOW_TESTS.items() if "numeric" in test.kinds]
CATEGORICAL = [name for name, test in WINDOW_TESTS.items() if "categorical" in test.kinds]


@pytest.fixture(scope="module")
def numeric() -> Baseline:
    rng = np.random.default_rng(11)
    return Baseline(NumericProfile.from_values(rng.gamma(2.0, 3.0, 50_000)))


@pytest.fixture(scope="module")
def categorical() -> Baseline:
    return Baseline(CategoricalProfile.from_values(["a"] * 500 + ["b"] * 300 + ["c"] * 200))


def test_the_table_names_each_test_once_and_alerts_add_adwin() -> None:
    assert all(name == test.name for name, test in WINDOW_TESTS.items())
    assert set(ALERT_TESTS) == {*WINDOW_TESTS, "adwin", "error_rate", VERDICT_TEST}
    assert {name for names in DEFAULT_TESTS.values() for name in names} == {"psi", "ks", "chi2"}
    for test in WINDOW_TESTS.values():
        assert 0 < test.min_effect < test.critical_effect


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_numeric_tests_agree_from_values_and_from_grid_counts(
    numeric: Baseline, name: str, shift: float
) -> None:
    rng = np.random.default_rng(int(shift * 10))
    values = rng.gamma(2.0, 3.0, 20_000) + shift * 4.2
    test = WINDOW_TESTS[name]
    raw = test.run(numeric, Current(values=values), fast=False)
    counted = test.run(numeric, Current(grid_counts=numeric.grid_counts(values)), fast=False)
    if test.exact_from_counts:
        assert counted.effect == pytest.approx(raw.effect, rel=1e-12, abs=1e-15)
    elif name == "ks":
        assert abs(counted.effect - raw.effect) <= 1.0 / GRID_CELLS + 1e-4  # + the sketch's
    else:
        assert counted.effect == pytest.approx(raw.effect, rel=0.02, abs=0.002)
    assert (counted.pvalue < 1e-6) == (raw.pvalue < 1e-6)


@pytest.mark.parametrize("name", CATEGORICAL)
def test_categorical_tests_run_from_counts(categorical: Baseline, name: str) -> None:
    result = WINDOW_TESTS[name].run(categorical, Current(categories={"a": 50, "b": 50}), fast=True)
    assert result.effect > 0
    assert 0 <= result.pvalue < 0.05


def test_js_distance_is_scipys() -> None:
    p, q = np.array([10, 20, 30, 0]), np.array([5, 25, 25, 5])
    assert js_distance(p, q) == pytest.approx(
        spatial.distance.jensenshannon(p / p.sum(), q / q.sum(), base=2), rel=1e-12
    )


def test_wasserstein_is_scipys_over_the_reference_sd(numeric: Baseline) -> None:
    values = np.random.default_rng(3).normal(5, 2, 3_000)
    result = WINDOW_TESTS["wasserstein"].run(numeric, Current(values=values), fast=True)
    sample = numeric.reference.sorted
    expected = stats.wasserstein_distance(sample, values) / numeric.numeric.std
    assert result.effect == pytest.approx(expected, rel=1e-12)


def test_cohens_w_is_about_the_square_root_of_psi_for_small_shifts() -> None:
    reference = {"a": 40_000, "b": 30_000, "c": 30_000}
    current = {"a": 43_000, "b": 28_000, "c": 29_000}
    psi = WINDOW_TESTS["psi"].run(
        Baseline(CategoricalProfile(100_000, reference, 0)),
        Current(categories=current),
        fast=True,
    )
    assert cohens_w(reference, current) == pytest.approx(math.sqrt(psi.statistic), rel=0.05)


def test_a_selected_test_runs_and_is_reported() -> None:
    rng = np.random.default_rng(4)
    profile = Profile.from_columns({"x": rng.normal(size=5_000), "c": ["a", "b"] * 500})
    rules = Rules(tests={"numeric": ("wasserstein", "js"), "categorical": ("js",)})
    report = compare(profile, {"x": rng.normal(1, size=2_000), "c": ["a", "b"] * 100}, rules=rules)
    x, c = report.features
    assert [t.test for t in x.tests] == ["wasserstein", "js"]
    assert [t.test for t in c.tests] == ["js"]
    assert x.drift
    assert x.severity == "critical"
    assert not c.drift
    assert math.isnan(x.psi)
    assert x.ks_statistic is None
    assert x.test("wasserstein") is not None


def test_an_effect_below_its_floor_is_not_drift_however_significant() -> None:
    rng = np.random.default_rng(5)
    profile = Profile.from_columns({"x": rng.normal(size=200_000)})
    current = {"x": rng.normal(0.05, size=200_000)}
    report = compare(profile, current)
    assert report.features[0].adjusted_pvalue < 1e-10, "significant"
    assert not report.drift
    floors = Rules(min_effect={"ks": 0.0, "psi": 0.0})
    assert compare(profile, current, rules=floors).features[0].severity == "warning"


def test_the_verdict_rule_counts_the_share_of_drifted_features() -> None:
    rng = np.random.default_rng(6)
    columns = {f"x{i}": rng.normal(size=4_000) for i in range(4)}
    profile = Profile.from_columns(columns)
    current = {f"x{i}": rng.normal(1.0 if i == 0 else 0.0, size=2_000) for i in range(4)}
    by_any = compare(profile, current)
    by_half = compare(profile, current, rules=Rules(verdict="share:0.5"))
    assert (by_any.drift, by_any.drifted, by_any.drifted_share) == (True, 1, 0.25)
    assert (by_half.drift, by_half.to_dict()["verdict"]) == (False, "share:0.5")


def test_compare_counts_matches_compare_for_the_exact_tests() -> None:
    rng = np.random.default_rng(7)
    profile = Profile.from_columns({"x": rng.normal(size=8_000), "c": ["a", "b", "b"] * 1_000})
    values, labels = rng.normal(0.5, size=3_000), ["a", "b"] * 600
    grid = Baseline(profile.features["x"]).grid_counts(values)
    counted = compare_counts(
        profile,
        {"x": Current(grid_counts=grid), "c": Current(categories={"a": 600, "b": 600})},
    )
    direct = compare(profile, {"x": values, "c": labels})
    for one, other in zip(counted.features, direct.features, strict=True):
        assert one.psi == pytest.approx(other.psi, rel=1e-12)
        assert (one.drift, one.severity) == (other.drift, other.severity)


@pytest.mark.parametrize(
    ("bad", "message"),
    [(["nope"], "unknown test 'nope'"), (["chi2"], "does not apply"), ([], "non-empty")],
)
def test_bad_test_lists_are_named(bad: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_tests(bad, "numeric")
    settings = load_settings(None, {"drift": {"tests": {"numeric": bad}}}).drift
    with pytest.raises(ConfigError, match=r"drift\.tests\.numeric"):
        rules_from_settings(settings)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"verdict": "share:1.5"}, "drift.verdict"),
        ({"verdict": "most"}, "drift.verdict"),
        ({"min_effect": {"kss": 0.1}}, "drift.min_effect"),
        ({"critical_effect": {"psi": -1}}, "drift.critical_effect"),
    ],
)
def test_bad_rules_in_the_config_name_their_key(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        rules_from_settings(load_settings(None, {"drift": overrides}).drift)


def test_a_features_own_tests_must_fit_its_kind() -> None:
    profile = Profile.from_columns({"c": ["a", "b"] * 10})
    with pytest.raises(InputError, match="does not apply") as caught:
        compare(profile, {"c": ["a"] * 5}, rules=Rules(feature_tests={"c": ("ks",)}))
    assert caught.value.column == "c"


def test_prepared_baselines_give_the_same_report_and_stale_ones_are_ignored() -> None:
    rng = np.random.default_rng(14)
    profile = Profile.from_columns({"x": rng.normal(size=3_000), "c": ["a", "b", "b"] * 100})
    other = Profile.from_columns({"x": rng.normal(5, size=3_000), "c": ["z"] * 10})
    window = {"x": rng.normal(0.5, size=1_000), "c": ["a", "b"] * 50}
    plain = compare(profile, window)
    assert compare(profile, window, baselines=prepare(profile)) == plain
    assert compare(profile, window, baselines=prepare(other)) == plain


def test_the_configs_defaults_and_descriptions_follow_the_registry() -> None:
    """config.py cannot import the registry (numpy): it repeats it, and this holds it."""
    from flowops.config import DriftSettings

    settings = load_settings(None).drift
    assert settings.tests == {kind: list(names) for kind, names in DEFAULT_TESTS.items()}
    fields = DriftSettings.model_fields
    for name, test in WINDOW_TESTS.items():
        assert f"{name} {test.min_effect:g}" in (fields["min_effect"].description or "")
        assert f"{name} {test.critical_effect:g}" in (fields["critical_effect"].description or "")


def test_counts_on_another_grid_are_refused(numeric: Baseline) -> None:
    with pytest.raises(InputError, match="another grid"):
        WINDOW_TESTS["ks"].run(numeric, Current(grid_counts=np.ones(7, dtype=np.int64)), fast=True)
