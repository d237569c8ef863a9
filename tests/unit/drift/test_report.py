"""flowops.drift.report: per-feature tests against a profile, corrected across features."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from flowops.drift.chisq import chi2_test
from flowops.drift.corrections import benjamini_hochberg, bonferroni
from flowops.drift.ks import ks_2samp
from flowops.drift.profile import CategoricalProfile, NumericProfile, Profile
from flowops.drift.psi import categorical_psi, psi_test
from flowops.drift.report import DriftReport, FeatureDrift, compare
from flowops.errors import EmptyInputError, InputError

FEATURE_KEYS = [
    "feature",
    "kind",
    "psi",
    "psi_pvalue",
    "ks_statistic",
    "ks_pvalue",
    "chi2_statistic",
    "chi2_pvalue",
    "pvalue",
    "adjusted_pvalue",
    "drift",
    "severity",
    "n_reference",
    "n_current",
    "excluded",
    "tests",
]
TEST_KEYS = [
    "test",
    "statistic",
    "pvalue",
    "adjusted_pvalue",
    "effect",
    "min_effect",
    "critical_effect",
    "drift",
    "severity",
]


def columns(seed: int, n: int, *, shift: float = 0.0, mix: float = 0.0) -> dict[str, Any]:
    """Two numeric and two categorical columns; ``shift`` moves ``income``, ``mix`` ``channel``."""
    rng = np.random.default_rng(seed)
    return {
        "age": rng.normal(40, 10, size=n).round(),
        "income": rng.lognormal(10 + shift, 0.5, size=n),
        "region": rng.choice(["north", "south", "east"], size=n).tolist(),
        "channel": rng.choice(
            ["web", "app", "shop"], size=n, p=[0.5 - mix, 0.3, 0.2 + mix]
        ).tolist(),
    }


@pytest.fixture(scope="module")
def profile() -> Profile:
    return Profile.from_columns(columns(0, 20_000), sample_size=5_000)


@pytest.fixture(scope="module")
def drifted(profile: Profile) -> DriftReport:
    return compare(profile, columns(1, 8_000, shift=0.25, mix=0.15))


def test_only_the_changed_features_drift(drifted: DriftReport) -> None:
    verdicts = {feature.feature: feature.drift for feature in drifted.features}

    assert verdicts == {"age": False, "income": True, "region": False, "channel": True}
    assert drifted.drift is True


def test_no_change_gives_no_drift(profile: Profile) -> None:
    report = compare(profile, columns(2, 8_000))

    assert report.drift is False
    assert all(feature.adjusted_pvalue > 0.05 for feature in report.features)


def test_feature_results_are_the_kernels_results(profile: Profile) -> None:
    current = columns(1, 8_000, shift=0.1, mix=0.05)
    report = compare(profile, current, correction="none")
    age, channel = report.features[0], report.features[3]
    numeric, categorical = profile.features["age"], profile.features["channel"]
    assert isinstance(numeric, NumericProfile)
    assert isinstance(categorical, CategoricalProfile)

    ks, psi = (
        ks_2samp(numeric.reference(), current["age"]),
        psi_test(numeric.reference(), current["age"]),
    )
    assert (age.ks_statistic, age.ks_pvalue, age.psi, age.psi_pvalue) == (*ks, *psi[:2])
    assert (age.chi2_statistic, age.chi2_pvalue) == (None, None)
    assert age.pvalue == min(1.0, 2 * min(ks.pvalue, psi.pvalue))
    counts = dict(zip(*np.unique(current["channel"], return_counts=True), strict=True))
    chi2 = chi2_test(categorical.frequencies, {k: int(v) for k, v in counts.items()})
    cpsi = categorical_psi(categorical.frequencies, {k: int(v) for k, v in counts.items()})
    assert (channel.chi2_statistic, channel.chi2_pvalue) == (chi2.statistic, chi2.pvalue)
    assert (channel.psi, channel.psi_pvalue) == (cpsi.statistic, cpsi.pvalue)
    assert (channel.ks_statistic, channel.ks_pvalue) == (None, None)
    assert channel.pvalue == min(1.0, 2 * min(chi2.pvalue, cpsi.pvalue))
    assert (age.n_reference, age.n_current, age.kind, channel.kind) == (
        20_000,
        8_000,
        "numeric",
        "categorical",
    )


@pytest.mark.parametrize(
    ("correction", "adjust"),
    [("bh", benjamini_hochberg), ("bonferroni", bonferroni), ("none", np.asarray)],
)
def test_correction_across_features(profile: Profile, correction: str, adjust: Any) -> None:
    report = compare(
        profile, columns(3, 3_000, shift=0.02, mix=0.02), correction=correction, alpha=0.2
    )

    pvalues = [feature.pvalue for feature in report.features]
    adjusted = [feature.adjusted_pvalue for feature in report.features]
    assert adjusted == adjust(pvalues).tolist()
    for feature in report.features:
        judged = [t.adjusted_pvalue < 0.2 and t.effect >= t.min_effect for t in feature.tests]
        assert [t.drift for t in feature.tests] == judged
        assert feature.drift == any(judged)
    best = [min(f.tests, key=lambda t: t.pvalue).adjusted_pvalue for f in report.features]
    assert best == adjusted, "the most significant test carries its feature's adjusted p"
    assert report.drift == any(f.drift for f in report.features)
    assert (report.alpha, report.correction) == (0.2, correction)


def test_the_combined_p_value_is_capped_at_1(profile: Profile) -> None:
    region = profile.features["region"]
    assert isinstance(region, CategoricalProfile)
    same = [name for name, count in region.frequencies.items() for _ in range(count)]

    report = compare(profile, {"region": same})

    assert (report.features[0].chi2_pvalue, report.features[0].psi_pvalue) == (1.0, 1.0)
    assert report.features[0].pvalue == 1.0


def test_nan_inf_and_missing_current_values_are_excluded_and_counted(profile: Profile) -> None:
    current = columns(4, 1_000)
    current["income"][:7] = [np.nan, np.inf, -np.inf, np.nan, np.nan, np.nan, np.inf]
    current["region"][:3] = [None, None, None]

    report = compare(profile, current, features=["income", "region"])

    counted = [(f.feature, f.n_current, f.excluded) for f in report.features]
    assert counted == [("income", 993, 7), ("region", 997, 3)]
    income = profile.features["income"]
    assert isinstance(income, NumericProfile)
    clean = current["income"][7:]
    assert report.features[0].ks_statistic == ks_2samp(income.reference(), clean).statistic


def test_to_dict_has_the_documented_keys_and_plain_values(drifted: DriftReport) -> None:
    data = drifted.to_dict()

    assert list(data) == [
        "features",
        "drift",
        "verdict",
        "drifted_features",
        "drifted_share",
        "alpha",
        "correction",
    ]
    assert [list(feature) for feature in data["features"]] == [FEATURE_KEYS] * 4
    assert (data["drift"], data["alpha"], data["correction"]) == (True, 0.05, "bh")
    assert (data["verdict"], data["drifted_features"], data["drifted_share"]) == ("any", 2, 0.5)
    for feature in data["features"]:
        assert [list(test) for test in feature["tests"]] == [TEST_KEYS] * 2
        values = [*feature.values(), *(v for test in feature["tests"] for v in test.values())]
        for value in values:
            assert type(value) in (str, float, int, bool, type(None), list)
    assert json.loads(json.dumps(data)) == data


def test_features_none_compares_the_profile_features_in_the_data(profile: Profile) -> None:
    current = columns(5, 500)
    del current["age"]
    current["unprofiled"] = np.arange(500.0)

    report = compare(profile, current)

    assert [f.feature for f in report.features] == ["income", "region", "channel"]


def test_requested_features_keep_their_order_once(profile: Profile) -> None:
    report = compare(profile, columns(5, 500), features=["channel", "age", "channel"])

    assert [f.feature for f in report.features] == ["channel", "age"]


@pytest.mark.parametrize(
    ("features", "current", "error", "message", "column"),
    [
        (["salary"], columns(6, 100), InputError, "no such feature in the profile", "salary"),
        (["age"], {"income": np.ones(3)}, InputError, "no such column in the data", "age"),
        (None, {"other": np.ones(3)}, InputError, "none of the profile's features", None),
        ([], columns(6, 100), InputError, "no features to compare", None),
        (["age"], {"age": np.array([np.nan, np.inf])}, EmptyInputError, "no usable", "age"),
        (["region"], {"region": [None, None]}, EmptyInputError, "no usable", "region"),
        (["age"], {"age": ["a", "b"]}, InputError, "the data has text", "age"),
        (["region"], {"region": np.array([1.0, 2.0])}, InputError, "must be strings", "region"),
    ],
)
def test_bad_requests_raise_naming_the_column(
    profile: Profile,
    features: list[str] | None,
    current: dict[str, Any],
    error: type[InputError],
    message: str,
    column: str | None,
) -> None:
    with pytest.raises(error, match=message) as caught:
        compare(profile, current, features=features)

    assert caught.value.column == column


@pytest.mark.parametrize(
    ("options", "message"),
    [({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"), ({"correction": "holm"}, "holm")],
)
def test_bad_options_raise(profile: Profile, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        compare(profile, columns(7, 100), **options)


def test_numeric_lists_with_none_are_accepted(profile: Profile) -> None:
    ages = columns(8, 300)["age"].tolist()

    report = compare(profile, {"age": [*ages, None]})

    age = profile.features["age"]
    assert isinstance(age, NumericProfile)
    assert (report.features[0].n_current, report.features[0].excluded) == (300, 1)
    assert report.features[0].ks_statistic == ks_2samp(age.reference(), ages).statistic


def test_feature_drift_is_a_frozen_record(drifted: DriftReport) -> None:
    feature = drifted.features[0]

    assert isinstance(feature, FeatureDrift)
    with pytest.raises(AttributeError):
        feature.drift = True  # type: ignore[misc]
