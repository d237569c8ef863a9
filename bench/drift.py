"""Drift kernels beside their anchors, measured in the same run on the same data.

- ADWIN ``update_many`` on 1,000,000 values (a shift halfway) vs river's ``update`` loop:
  goal 5x river's updates per second, with the same detections.
- KS of a 10,000-value window against a prepared 1,000,000-value reference vs
  ``scipy.stats.ks_2samp``: goal 20x, the same statistic.
- KS of 1,000,000 against 1,000,000 values, nothing prepared: goal no slower than scipy.
- PSI of 1,000,000 values against a prepared reference vs binning both from scratch:
  goal 8x.
- The window tests of one 10,000-row window (5 numeric, 2 categorical features) through
  the registry (``compare``, as a stream window runs them) vs the same kernels called
  directly and combined by hand: goal 0.95x, i.e. the registry costs at most 5%.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from _harness import Comparison, best_of, print_table, usage
from numpy.typing import NDArray
from river import drift as river_drift

from flowops.drift import ADWIN, Profile, Reference, benjamini_hochberg, compare, ks_2samp, psi
from flowops.drift.chisq import chi2_test
from flowops.drift.profile import CategoricalProfile, NumericProfile, category_counts
from flowops.drift.psi import categorical_psi, psi_test

N = 1_000_000
WINDOW = 10_000
BINS = 10


def _river_detections(values: list[float]) -> list[int]:
    river, found = river_drift.ADWIN(), []
    for i, value in enumerate(values):
        river.update(value)
        if river.drift_detected:
            found.append(i)
    return found


def bench_adwin(rng: np.random.Generator) -> Comparison:
    values = np.concatenate([rng.normal(0, 1, N // 2), rng.normal(0.5, 1, N // 2)])
    as_list = values.tolist()
    ours_found = ADWIN().update_many(values).tolist()
    river_found = _river_detections(as_list)
    assert ours_found == river_found, (ours_found, river_found)
    ours = best_of(lambda: ADWIN().update_many(values), 5)
    anchor = best_of(lambda: _river_detections(as_list), 3)
    return Comparison(
        "ADWIN 1M values, shift halfway",
        ours,
        anchor,
        "river update loop",
        goal=5,
        note=f"same detections {ours_found}; {N / ours / 1e6:.1f} M values/s vs "
        f"{N / anchor / 1e6:.1f} M/s",
    )


def bench_ks_window(rng: np.random.Generator) -> Comparison:
    reference = rng.normal(0, 1, N)
    window = rng.normal(0.02, 1, WINDOW)
    prepared = Reference(reference)
    ours_result = ks_2samp(prepared, window)
    scipy_result = scipy.stats.ks_2samp(reference, window)
    assert ours_result.statistic == scipy_result.statistic
    ours = best_of(lambda: ks_2samp(prepared, window), 20)
    anchor = best_of(lambda: scipy.stats.ks_2samp(reference, window), 5)
    return Comparison(
        "KS 10k window vs prepared 1M reference",
        ours,
        anchor,
        "scipy ks_2samp",
        goal=20,
        note=f"D equal ({ours_result.statistic:.6f}); p {ours_result.pvalue:.4g} "
        f"vs scipy {scipy_result.pvalue:.4g}",
    )


def bench_ks_full(rng: np.random.Generator) -> Comparison:
    a = rng.normal(0, 1, N)
    b = rng.normal(0.002, 1, N)
    ours_result = ks_2samp(a, b)
    scipy_result = scipy.stats.ks_2samp(a, b)
    assert ours_result.statistic == scipy_result.statistic
    ours = best_of(lambda: ks_2samp(a, b), 3)
    anchor = best_of(lambda: scipy.stats.ks_2samp(a, b), 3)
    return Comparison(
        "KS 1M vs 1M, nothing prepared",
        ours,
        anchor,
        "scipy ks_2samp",
        goal=1,
        note=f"D equal; p {ours_result.pvalue:.4g} vs scipy {scipy_result.pvalue:.4g}",
    )


def _psi_from_scratch(reference: NDArray[np.float64], current: NDArray[np.float64]) -> float:
    """The anchor: quantile edges and both histograms computed anew, as a report does."""
    inner = np.quantile(reference, np.linspace(0, 1, BINS + 1)[1:-1])
    edges = np.concatenate([[-np.inf], np.unique(inner), [np.inf]])
    ref_counts = np.histogram(reference, edges)[0] + 0.5
    cur_counts = np.histogram(current, edges)[0] + 0.5
    p, q = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def bench_psi(rng: np.random.Generator) -> Comparison:
    reference = rng.normal(0, 1, N)
    current = rng.normal(0.05, 1, N)
    prepared = Reference(reference, bins=BINS)
    ours_value = psi(prepared, current, bins=BINS)
    anchor_value = _psi_from_scratch(reference, current)
    ours = best_of(lambda: psi(prepared, current, bins=BINS), 10)
    anchor = best_of(lambda: _psi_from_scratch(reference, current), 5)
    return Comparison(
        "PSI 1M vs prepared 1M reference",
        ours,
        anchor,
        "quantile + histograms from scratch",
        goal=8,
        note=f"PSI {ours_value:.6f} vs {anchor_value:.6f}",
    )


def _kernels_alone(profile: Profile, window: dict[str, object]) -> list[float]:
    """The anchor: each feature's two kernels, Bonferroni within it, BH across features."""
    pvalues = []
    for name, feature in profile.features.items():
        column = window[name]
        if isinstance(feature, NumericProfile):
            reference = feature.reference()
            tests = [psi_test(reference, column), ks_2samp(reference, column, method="fast")]  # type: ignore[arg-type]
        else:
            assert isinstance(feature, CategoricalProfile)
            counts = category_counts(column)  # type: ignore[arg-type]
            tests = [
                categorical_psi(feature.frequencies, counts),
                chi2_test(feature.frequencies, counts),
            ]
        pvalues.append(min(1.0, 2 * min(test.pvalue for test in tests)))
    return benjamini_hochberg(pvalues).tolist()


def bench_window(rng: np.random.Generator) -> Comparison:
    labels = ["a", "b", "c", "d"]

    def data(rows: int, shift: float) -> dict[str, object]:
        columns: dict[str, object] = {f"x{i}": rng.normal(shift, 1, rows) for i in range(5)}
        for i in range(2):
            columns[f"c{i}"] = rng.choice(labels, rows, p=[0.4, 0.3, 0.2, 0.1]).tolist()
        return columns

    profile = Profile.from_columns(data(N, 0.0))  # type: ignore[arg-type]
    window = data(WINDOW, 0.05)
    report = compare(profile, window, ks_method="fast")  # type: ignore[arg-type]
    anchor_q = _kernels_alone(profile, window)
    assert [f.adjusted_pvalue for f in report.features] == anchor_q
    ours = best_of(lambda: compare(profile, window, ks_method="fast"), 20)  # type: ignore[arg-type]
    anchor = best_of(lambda: _kernels_alone(profile, window), 20)
    return Comparison(
        "window tests, 10k rows x 7 features, via the registry",
        ours,
        anchor,
        "the kernels called directly",
        goal=0.95,
        note="the same adjusted p-values",
    )


def main() -> None:
    rng = np.random.default_rng(20261128)
    rows = [bench_adwin(rng), bench_ks_window(rng), bench_ks_full(rng), bench_psi(rng)]
    rows.append(bench_window(rng))
    print_table(rows)


if __name__ == "__main__":
    usage(__doc__)
    main()
