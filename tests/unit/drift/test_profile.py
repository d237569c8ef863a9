"""flowops.drift.profile: building profiles, their KS sample, and lossless JSON."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowops.drift.ks import ks_2samp
from flowops.drift.profile import CategoricalProfile, NumericProfile, Profile, category_counts
from flowops.drift.psi import psi_test
from flowops.drift.reference import Reference
from flowops.errors import EmptyInputError, InputError

finite = st.floats(allow_nan=False, allow_infinity=False)
moderate = st.floats(-1e9, 1e9) | st.integers(-5, 5).map(float)
names = st.text(min_size=1, max_size=8)


@st.composite
def numeric_profiles(draw: st.DrawFn) -> NumericProfile:
    """Any consistent numeric profile, with floats over the whole finite range."""
    sample = tuple(sorted(draw(st.lists(finite, min_size=1, max_size=12))))
    edges = tuple(sorted(draw(st.sets(finite, max_size=6))))
    counts = tuple(
        draw(st.lists(st.integers(0, 10**12), min_size=len(edges) + 1, max_size=len(edges) + 1))
    )
    n = max(sum(counts), len(sample))
    counts = (counts[0] + n - sum(counts), *counts[1:])
    mean, std, low, high = (draw(finite) for _ in range(4))
    return NumericProfile(
        n, sample, edges, counts, mean, std, low, high, draw(st.integers(0, 10**15))
    )


categorical_profiles = st.dictionaries(names, st.integers(1, 10**12), min_size=1).flatmap(
    lambda frequencies: st.builds(
        CategoricalProfile,
        st.just(sum(frequencies.values())),
        st.just(frequencies),
        st.integers(0, 10**6),
    )
)
profiles = st.builds(
    Profile,
    st.dictionaries(names, numeric_profiles() | categorical_profiles, max_size=3),
    st.integers(2, 100),
    st.integers(1, 10**6),
    model=st.none() | st.text(max_size=10),
)


@settings(max_examples=60, deadline=None, database=None)
@given(profile=profiles)
def test_json_round_trips_exactly(profile: Profile) -> None:
    text = profile.to_json()

    again = Profile.from_json(text)

    assert again == profile
    assert again.to_json() == text
    for name, feature in profile.features.items():
        assert again.features[name].to_dict() == feature.to_dict()  # -0.0 and all


@settings(max_examples=40, deadline=None, database=None)
@given(
    numbers=st.lists(
        moderate | st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=60
    ),
    labels=st.lists(st.none() | st.sampled_from(["a", "b", "ç", ""]), min_size=1, max_size=60),
    bins=st.integers(2, 12),
    sample_size=st.integers(1, 80),
)
def test_profiles_from_data_round_trip(
    numbers: list[float], labels: list[str | None], bins: int, sample_size: int
) -> None:
    columns: dict[str, Any] = {}
    if np.isfinite(numbers).any():
        columns["x"] = np.array(numbers)
    if any(label is not None for label in labels):
        columns["c"] = labels

    profile = Profile.from_columns(columns, bins=bins, sample_size=sample_size, model="m")

    assert Profile.from_json(profile.to_json()) == profile
    assert Profile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


@settings(max_examples=40, deadline=None, database=None)
@given(
    reference=st.lists(moderate, min_size=1, max_size=100),
    current=st.lists(moderate, min_size=1, max_size=100),
    bins=st.integers(2, 12),
)
def test_reference_of_a_full_profile_tests_like_the_raw_data(
    reference: list[float], current: list[float], bins: int
) -> None:
    profile = Profile.from_columns({"x": np.array(reference)}, bins=bins, sample_size=100)
    feature = profile.features["x"]
    assert isinstance(feature, NumericProfile)

    stored = Profile.from_json(profile.to_json()).features["x"]
    assert isinstance(stored, NumericProfile)
    for ref in (feature.reference(), stored.reference()):
        assert ks_2samp(ref, current) == ks_2samp(reference, current)
        assert psi_test(ref, current) == psi_test(reference, current, bins=bins)


@pytest.mark.parametrize(("n", "size"), [(1_000, 100), (10_001, 10_000), (50_000, 999)])
def test_large_columns_keep_evenly_spaced_order_statistics(n: int, size: int) -> None:
    values = np.random.default_rng(n).exponential(size=n)
    ordered = np.sort(values)

    feature = NumericProfile.from_values(values, sample_size=size)

    indices = [((2 * j + 1) * n) // (2 * size) for j in range(size)]
    assert feature.sample == tuple(ordered[indices].tolist())
    assert feature.n == n
    assert (feature.min, feature.max) == (ordered[0], ordered[-1])
    assert feature.reference().counts.tolist() == Reference(values).counts.tolist()


@pytest.mark.parametrize(("n", "size"), [(20_000, 1_000), (100_000, 500), (3_000, 50)])
def test_ks_against_a_sketch_is_within_half_a_step(n: int, size: int) -> None:
    rng = np.random.default_rng(size)
    values = rng.normal(size=n)
    current = rng.normal(0.05, 1.1, size=3_000)
    feature = NumericProfile.from_values(values, sample_size=size)

    sketched, exact = ks_2samp(feature.reference(), current), ks_2samp(values, current)

    # asymptotic regime: within 1/(2k); exact regime (n <= 10,000): plus 1/n for the expansion
    assert abs(sketched.statistic - exact.statistic) <= 1 / (2 * size) + 1 / n
    assert psi_test(feature.reference(), current) == psi_test(values, current)


def test_nan_inf_and_missing_values_are_excluded_and_counted() -> None:
    profile = Profile.from_columns(
        {
            "x": np.array([1.0, np.nan, 2.0, np.inf, -np.inf, 3.0]),
            "c": ["a", None, "b", "a", None],
        }
    )

    x, c = profile.features["x"], profile.features["c"]
    assert isinstance(x, NumericProfile)
    assert isinstance(c, CategoricalProfile)
    assert (x.n, x.excluded, x.sample) == (3, 3, (1.0, 2.0, 3.0))
    assert (c.n, c.excluded, c.frequencies) == (3, 2, {"a": 2, "b": 1})


def test_column_kinds_follow_their_types() -> None:
    profile = Profile.from_columns(
        {
            "floats": np.array([1.5, 2.5]),
            "ints": np.array([1, 2, 2]),
            "text": ["x", "y"],
            "text_array": np.array(["x", "y", "y"]),
        }
    )

    kinds = {name: feature.kind for name, feature in profile.features.items()}
    assert kinds == {
        "floats": "numeric",
        "ints": "numeric",
        "text": "categorical",
        "text_array": "categorical",
    }
    assert profile.features["text_array"] == CategoricalProfile(3, {"y": 2, "x": 1}, 0)


def test_moments_are_population_mean_and_std() -> None:
    values = np.random.default_rng(1).normal(5.0, 2.0, size=1_000)

    feature = NumericProfile.from_values(values)

    assert feature.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert feature.std == pytest.approx(np.std(values), rel=1e-12)


@pytest.mark.parametrize(
    "values", [[1.7e308, 1.7e308], [-1.7e308, 1.7e308, 0.0], [5e-324, 1e-323], [0.0, 0.0]]
)
def test_moments_do_not_overflow(values: list[float]) -> None:
    feature = NumericProfile.from_values(np.array(values), bins=2)

    assert feature.min <= feature.mean <= feature.max
    assert 0.0 <= feature.std <= feature.max / 2 - feature.min / 2
    assert Profile({"x": feature}, 2, 10).to_json()  # finite, so valid JSON


def test_to_dict_is_plain_json() -> None:
    profile = Profile.from_columns({"x": np.array([3.0, 1.0]), "c": ["k"]}, bins=2, model="credit")

    assert profile.to_dict() == {
        "version": 1,
        "model": "credit",
        "bins": 2,
        "sample_size": 10_000,
        "features": {
            "x": {
                "kind": "numeric",
                "n": 2,
                "excluded": 0,
                "mean": 2.0,
                "std": 1.0,
                "min": 1.0,
                "max": 3.0,
                "edges": [2.0],
                "counts": [1, 1],
                "sample": [1.0, 3.0],
            },
            "c": {"kind": "categorical", "n": 1, "excluded": 0, "frequencies": {"k": 1}},
        },
    }
    assert list(json.loads(profile.to_json())["features"]) == ["x", "c"]


def valid() -> dict[str, Any]:
    return Profile.from_columns({"x": np.array([3.0, 1.0, 2.0]), "c": ["k"]}, bins=2).to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
        (lambda d: d.pop("bins"), "missing key 'bins'"),
        (lambda d: d.update(version=2), "key 'version': unsupported profile version 2"),
        (lambda d: d.update(version="1"), "key 'version'"),
        (lambda d: d.update(version=True), "key 'version'"),
        (lambda d: d.update(model=3), "key 'model'"),
        (lambda d: d.update(bins=1), "bins must be an integer of at least 2"),
        (lambda d: d.update(sample_size=0), "sample_size must be a positive integer"),
        (lambda d: d.update(features=[]), "key 'features'"),
        (lambda d: d["features"].update(x=3), "column 'x': a feature profile must be an object"),
        (lambda d: d["features"]["x"].update(colour="red"), "column 'x': unknown key 'colour'"),
        (lambda d: d["features"]["x"].pop("sample"), "column 'x': missing key 'sample'"),
        (lambda d: d["features"]["x"].update(kind="text"), "column 'x': key 'kind'"),
        (lambda d: d["features"]["x"].update(n=-1), "column 'x': key 'n'"),
        (lambda d: d["features"]["x"].update(mean="2"), "column 'x': key 'mean'"),
        (lambda d: d["features"]["x"].update(edges=[1, "a"]), "column 'x': key 'edges'"),
        (lambda d: d["features"]["x"].update(counts=[1.0, 2.0]), "column 'x': key 'counts'"),
        (lambda d: d["features"]["x"].update(counts=[1, 1]), "column 'x': counts must be"),
        (lambda d: d["features"]["x"].update(sample=[3.0, 1.0]), "column 'x': .*not sorted"),
        (
            lambda d: d["features"]["c"].update(frequencies={"k": -1}),
            "column 'c': key 'frequencies'",
        ),
        (lambda d: d["features"]["c"].update(n=5), "column 'c': key 'frequencies'.*sum to n"),
        (lambda d: d["features"]["c"].update(excluded=None), "column 'c': key 'excluded'"),
    ],
)
def test_from_dict_names_the_bad_key(change: Any, message: str) -> None:
    data = valid()
    change(data)

    with pytest.raises(InputError, match=message):
        Profile.from_dict(data)


def test_from_dict_reads_integers_where_floats_are_stored() -> None:
    data = valid()
    data["features"]["x"].update(sample=[1, 2, 3], mean=2, min=1, max=3)

    feature = Profile.from_dict(data).features["x"]

    assert isinstance(feature, NumericProfile)
    assert feature.sample == (1.0, 2.0, 3.0)
    assert type(feature.mean) is float


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"profile"'])
def test_from_json_rejects_anything_but_a_profile_object(text: str) -> None:
    with pytest.raises(InputError, match=r"not JSON|must be a JSON object"):
        Profile.from_json(text)


@pytest.mark.parametrize(
    ("column", "error", "message"),
    [
        (np.array([np.nan, np.inf]), EmptyInputError, "column 'bad': no finite values"),
        ([None, None], EmptyInputError, "column 'bad': no values"),
        (["a", 3], InputError, "column 'bad': categorical values must be strings"),
        (np.array([], dtype=np.float64), EmptyInputError, "column 'bad'"),
    ],
)
def test_columns_without_usable_values_raise_naming_the_column(
    column: Any, error: type[InputError], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        Profile.from_columns({"good": np.array([1.0]), "bad": column})

    assert caught.value.column == "bad"


@pytest.mark.parametrize(("bins", "sample_size"), [(1, 10), (10, 0), (10, 2.5)])
def test_bad_settings_raise(bins: int, sample_size: int) -> None:
    with pytest.raises(InputError, match=r"bins|sample_size"):
        Profile.from_columns({"x": np.array([1.0])}, bins=bins, sample_size=sample_size)


def test_category_counts_skip_missing_values() -> None:
    assert category_counts(["b", None, "a", "b"]) == {"b": 2, "a": 1}
