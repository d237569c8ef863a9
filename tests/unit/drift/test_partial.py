"""Window partials: merge order, exact PSI and chi-square, KS within 1/K of the exact one."""

from __future__ import annotations

import itertools
import math
import random as stdlib_random
from functools import reduce

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowops.drift import Profile, compare
from flowops.drift.finding import ClosedWindow
from flowops.drift.grid import GRID_CELLS, Grid
from flowops.drift.ks import KS_TEST, ks_statistic
from flowops.drift.partial import (
    Prepared,
    WindowPartial,
    compare_partial,
    reduce_rows,
    window_findings,
)
from flowops.drift.profile import NumericProfile
from flowops.drift.rules import Rules
from flowops.drift.window_test import Baseline, Current
from flowops.drift.window_tests import WindowTests
from flowops.errors import InputError

_RNG = np.random.default_rng(11)
PROFILE = Profile.from_columns(
    {
        "income": _RNG.lognormal(10, 0.5, 30_000),  # more than the KS sample: a sketch
        "age": np.round(_RNG.normal(40, 12, 4_000)),  # ties
        "region": list(_RNG.choice(["north", "south", "east"], 2_000, p=[0.5, 0.3, 0.2])),
    }
)
PREPARED = Prepared.from_profile(PROFILE)

values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-(2**40), 2**40),
    st.sampled_from(["north", "south", "west", ""]),
    st.booleans(),
)
rows = st.lists(st.tuples(st.floats(0, 100), values, values, values), min_size=1, max_size=60)


def _partial(chunk: list[tuple[float, object, object, object]]) -> WindowPartial:
    ts = np.array([row[0] for row in chunk])
    columns = {
        "income": [row[1] for row in chunk],
        "age": [row[2] for row in chunk],
        "region": [row[3] for row in chunk],
    }
    return reduce_rows(PREPARED, "credit", "3", 5, ts, columns)


def _counts(partial: WindowPartial) -> tuple[object, ...]:
    """Everything in a partial that must not depend on the merge order."""
    numeric = {
        name: (c.cells.tolist(), c.missing, c.low, c.high) for name, c in partial.numeric.items()
    }
    categorical = {
        name: (list(c.counts.items()), c.missing) for name, c in partial.categorical.items()
    }
    return (
        partial.key,
        partial.rows,
        partial.first,
        partial.last,
        partial.ignored,
        numeric,
        categorical,
    )


@settings(max_examples=60, deadline=None)
@given(rows, st.lists(st.integers(0, 59), max_size=6), st.randoms(use_true_random=False))
def test_any_split_and_merge_order_gives_the_same_counts(
    data: list[tuple[float, object, object, object]], cuts: list[int], random: stdlib_random.Random
) -> None:
    whole = _partial(data)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    parts = [_partial(data[a:b]) for a, b in itertools.pairwise(bounds)]
    random.shuffle(parts)
    while len(parts) > 1:  # merge neighbours in a random tree order
        i = random.randrange(len(parts) - 1)
        parts[i : i + 2] = [parts[i].merge(parts[i + 1])]
    assert _counts(parts[0]) == _counts(whole)
    for name, counts in whole.numeric.items():
        assert parts[0].numeric[name].total == pytest.approx(counts.total, rel=1e-9, abs=1e-6)


def test_counts_add_up_to_the_rows() -> None:
    partial = reduce_rows(
        PREPARED,
        "credit",
        "3",
        0,
        np.array([1.0, math.nan, 3.0]),
        {"income": [1e4, None, math.inf], "region": ["north", 7, None], "other": [1, 2, 3]},
    )
    income, age, region = (
        partial.numeric["income"],
        partial.numeric["age"],
        partial.categorical["region"],
    )
    assert (income.n, income.missing, income.low, income.high) == (1, 2, 1e4, 1e4)
    assert (age.n, age.missing) == (0, 3)  # absent from the batch: missing
    assert (region.counts, region.missing) == ({"north": 1}, 2)
    assert (partial.rows, partial.first, partial.last, partial.ignored) == (3, 1.0, 3.0, 3)


def test_partials_of_different_windows_or_references_do_not_merge() -> None:
    one = reduce_rows(PREPARED, "credit", "3", 0, np.zeros(1), {"age": [1.0]})
    other_window = reduce_rows(PREPARED, "credit", "3", 1, np.zeros(1), {"age": [1.0]})
    another = Prepared.from_profile(Profile.from_columns({"age": np.arange(50.0)}))
    other_reference = reduce_rows(another, "credit", "3", 0, np.zeros(1), {"age": [1.0]})
    for other in (other_window, other_reference):
        with pytest.raises(InputError, match="cannot merge"):
            one.merge(other)
    with pytest.raises(InputError, match="another reference"):
        compare_partial(PREPARED, other_reference)


EVERY_TEST = Rules(
    tests={"numeric": ("psi", "ks", "js", "wasserstein"), "categorical": ("psi", "chi2", "js")}
)


@pytest.mark.parametrize("rules", [None, EVERY_TEST], ids=["defaults", "every-test"])
@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3])
def test_window_tests_on_counts_match_the_raw_rows(shift: float, rules: Rules | None) -> None:
    rng = np.random.default_rng(int(shift * 100))
    n = 6_000
    columns = {
        "income": rng.lognormal(10 + shift, 0.5, n),
        "age": np.round(rng.normal(40 + 10 * shift, 12, n)),
        "region": list(rng.choice(["north", "south", "east", "west"], n, p=[0.45, 0.3, 0.2, 0.05])),
    }
    parts = [
        reduce_rows(
            PREPARED,
            "m",
            "1",
            0,
            np.zeros(1_000),
            {k: v[i : i + 1_000] for k, v in columns.items()},
        )
        for i in range(0, n, 1_000)
    ]
    merged = reduce(WindowPartial.merge, parts)
    counted = {f.feature: f for f in compare_partial(PREPARED, merged, rules=rules).features}
    raw = {f.feature: f for f in compare(PROFILE, columns, ks_method="fast", rules=rules).features}
    assert list(counted) == list(raw)
    for name, exact in raw.items():
        got = counted[name]
        assert [t.test for t in got.tests] == [t.test for t in exact.tests]
        assert (got.psi, got.psi_pvalue) == (exact.psi, exact.psi_pvalue)
        assert (got.chi2_statistic, got.chi2_pvalue) == (exact.chi2_statistic, exact.chi2_pvalue)
        for same in ("psi", "chi2", "js"):  # exact from counts: the same bins
            if (want := exact.test(same)) is not None:
                assert got.test(same) == want
        if (distance := exact.test("wasserstein")) is not None:
            found = got.test("wasserstein")
            assert found is not None
            assert found.effect == pytest.approx(distance.effect, rel=0.05, abs=0.005)
        assert (got.n_current, got.n_reference, got.excluded) == (
            exact.n_current,
            exact.n_reference,
            exact.excluded,
        )
        if exact.ks_statistic is not None:
            assert got.ks_statistic is not None
            assert exact.ks_statistic - 1 / GRID_CELLS - 1e-12 <= got.ks_statistic
            assert got.ks_statistic <= exact.ks_statistic + 1e-12


samples = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300)
discrete = st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=300)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(samples, discrete), st.one_of(samples, discrete), st.sampled_from([1, 2, 3, 7, 32])
)
def test_ks_from_the_grid_is_within_1_over_k_of_the_exact_statistic(
    reference: list[float], current: list[float], k: int
) -> None:
    ref = np.sort(np.array(reference))
    cur = np.array(current)
    grid = Grid(ref, edges=np.unique(ref)[1:2], cells=k)
    exact = ks_statistic(ref, np.sort(cur))
    approximate = grid.ks_statistic(grid.counts(cur))
    assert approximate <= exact + 1e-12
    assert exact <= approximate + 1 / k + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 6_000),
    st.integers(1, 3_000),
    st.sampled_from([50, 700, 2_000, 10_000]),
    st.booleans(),
)
def test_the_registrys_ks_from_counts_is_within_1_over_k_of_the_exact_statistic(
    seed: int, n_reference: int, n_current: int, sample_size: int, ties: bool
) -> None:
    """The registry's path (Baseline.grid, KS_TEST.run on grid counts) at K = GRID_CELLS,
    with references larger than K (the bound is not met trivially) and sketches."""
    rng = np.random.default_rng(seed)
    draw = (lambda n: rng.integers(-4, 5, n).astype(float)) if ties else rng.standard_normal
    reference, current = draw(n_reference), draw(n_current) + rng.uniform(-0.5, 0.5)
    base = Baseline(NumericProfile.from_values(reference, sample_size=sample_size))
    exact = ks_statistic(base.reference.sorted, np.sort(current))
    approximate = KS_TEST.run(base, Current(grid_counts=base.grid_counts(current)), fast=True)
    assert approximate.statistic <= exact + 1e-12
    assert exact <= approximate.statistic + 1 / GRID_CELLS + 1e-12


def test_psi_bins_are_sums_of_cells() -> None:
    grid = PREPARED.grid("age")
    values = np.round(np.random.default_rng(3).normal(40, 12, 500))
    reference = PROFILE.features["age"].reference()  # type: ignore[union-attr]
    assert grid.psi_counts(grid.counts(values)).tolist() == reference.bin_counts(values).tolist()


def test_grid_cells_must_be_positive() -> None:
    with pytest.raises(InputError, match="grid cells"):
        Grid(np.array([1.0]), edges=np.empty(0), cells=0)


def test_window_findings_on_counts_name_what_the_raw_window_tests_name() -> None:
    rng = np.random.default_rng(21)
    n = 3_000
    columns = {
        "income": rng.lognormal(10.4, 0.5, n),  # drifted
        "age": np.round(rng.normal(40, 12, n)),
        "region": list(rng.choice(["north", "south", "east"], n, p=[0.2, 0.3, 0.5])),  # drifted
    }
    partial = reduce_rows(PREPARED, "credit", "3", 9, np.zeros(n), columns)
    counted = window_findings(PREPARED, partial, start=90.0, end=100.0)
    raw = WindowTests("credit", "3", PROFILE, alpha=0.05, correction="bh").close(
        ClosedWindow(9, 90.0, 100.0, n, dict(columns))
    )
    assert {(f.feature, f.test) for f in counted} == {(f.feature, f.test) for f in raw}
    assert {(f.feature, f.test) for f in counted} >= {("income", "ks"), ("region", "chi2")}
    assert [f.alert_id for f in counted] == [f.alert_id for f in raw]
    assert {(f.window_index, f.window_start, f.window_end, f.partition) for f in counted} == {
        (9, 90.0, 100.0, None)
    }
    calm = reduce_rows(
        PREPARED, "credit", "3", 10, np.zeros(n), {"age": np.round(rng.normal(40, 12, n))}
    )
    assert window_findings(PREPARED, calm, start=100.0, end=110.0) == []


def test_merged_windows_are_judged_by_the_rules_given() -> None:
    rng = np.random.default_rng(5)
    n = 3_000
    columns = {"income": rng.lognormal(10.4, 0.5, n), "age": np.round(rng.normal(40, 12, n))}
    partial = reduce_rows(PREPARED, "credit", "3", 2, np.zeros(n), columns)
    default = window_findings(PREPARED, partial, start=0.0, end=10.0)
    assert {(f.feature, f.test) for f in default} >= {("income", "psi"), ("income", "ks")}
    strict = Rules(min_effect={"psi": 10.0, "ks": 1.0})  # floors no shift reaches
    assert window_findings(PREPARED, partial, start=0.0, end=10.0, rules=strict) == []
    wasserstein = Rules(tests={"numeric": ("wasserstein",)}, critical_effect={"wasserstein": 0.1})
    found = window_findings(PREPARED, partial, start=0.0, end=10.0, rules=wasserstein)
    assert [(f.feature, f.test, f.severity) for f in found] == [
        ("income", "wasserstein", "critical"),
        ("dataset", "verdict", "critical"),
    ]
    assert found[0].window_verdict is not None
    assert found[0].window_verdict.drifted_names == ("income",)
    share = Rules(tests={"numeric": ("wasserstein",)}, verdict="share:0.9")
    [alone] = window_findings(PREPARED, partial, start=0.0, end=10.0, rules=share)
    assert alone.window_verdict is not None
    assert (alone.test, alone.window_verdict.drift, alone.partition) == ("wasserstein", False, None)
    assert alone.window_verdict.drifted_share == 1 / alone.window_verdict.compared_features
