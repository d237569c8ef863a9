"""Compare current data with a reference profile: per-feature tests, one verdict.

Each feature gets the registered tests its kind (or its own entry) asks for, by default
PSI and KS (numeric) or PSI and chi-square (categorical); see
:mod:`flowops.drift.registry`. A feature's p-value combines its ``k`` tests by
Bonferroni, ``min(1, k * min(p))``; the features' p-values are then corrected for
testing many features at once (Benjamini-Hochberg by default, Bonferroni, or none). Each
test gets the adjusted p-value its feature would have were that test the feature's most
significant one (for the most significant test, the feature's own), and drifts when
that is below ``alpha`` and its effect size reaches its floor (:mod:`flowops.drift.rules`).
A feature drifts when any of its tests does; the model when the verdict rule says so.

>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> profile = Profile.from_columns({"x": rng.normal(size=5_000), "y": rng.normal(size=5_000)})
>>> report = compare(profile, {"x": rng.normal(size=2_000), "y": rng.normal(1, size=2_000)})
>>> [(feature.feature, feature.drift, feature.severity) for feature in report.features]
[('x', False, None), ('y', True, 'critical')]
>>> report.drift, report.drifted_share
(True, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flowops.drift import registry
from flowops.drift.corrections import benjamini_hochberg, bonferroni
from flowops.drift.ks import KSMethod
from flowops.drift.profile import (
    CategoricalProfile,
    Column,
    NumericProfile,
    Profile,
    category_counts,
)
from flowops.drift.registry import TestName
from flowops.drift.rules import Rules, Severity
from flowops.drift.window_test import Baseline, Current
from flowops.errors import EmptyInputError, InputError

__all__ = [
    "CORRECTIONS",
    "DriftReport",
    "FeatureDrift",
    "Judgement",
    "combined_pvalue",
    "compare",
    "compare_counts",
    "corrector",
    "prepare",
]


def _uncorrected(pvalues: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(pvalues, dtype=np.float64)


CORRECTIONS: Mapping[str, Callable[[ArrayLike], NDArray[np.float64]]] = MappingProxyType(
    {"bh": benjamini_hochberg, "bonferroni": bonferroni, "none": _uncorrected}
)
"""The corrections across features that :func:`compare` accepts, by name."""


@dataclass(frozen=True)
class Judgement:
    """One registered test of one feature, and whether it says drift."""

    test: TestName
    statistic: float
    pvalue: float  # the test's own p-value
    adjusted_pvalue: float  # its feature's adjusted p-value, were this test its best
    effect: float  # the effect size (see the test's module)
    min_effect: float  # the floor the effect had to reach
    critical_effect: float  # the effect from which a drift is critical
    drift: bool  # adjusted_pvalue < alpha and effect >= min_effect
    severity: Severity | None  # None when the test did not drift

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain Python values, in declaration order."""
        return {field.name: _plain(getattr(self, field.name)) for field in fields(self)}


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's tests against its profile and its verdict.

    ``psi``, ``ks_statistic``, ``chi2_pvalue`` and their kin read the entries of
    ``tests`` (None when the test did not run, NaN for ``psi``), as the report's JSON
    has always had them.
    """

    feature: str
    kind: str  # "numeric" | "categorical"
    tests: tuple[Judgement, ...]
    pvalue: float  # min(1, k * min(test p-values)), before the correction across features
    adjusted_pvalue: float  # after the correction across features
    drift: bool  # any test drifted
    severity: Severity | None  # the highest severity among the drifted tests
    n_reference: int
    n_current: int  # usable current values
    excluded: int  # NaN, inf or missing current values left out

    def test(self, name: TestName) -> Judgement | None:
        """The result of the test called ``name``, if it ran."""
        return next((test for test in self.tests if test.test == name), None)

    @property
    def psi(self) -> float:
        """PSI; NaN when it did not run (the JSON report writes null)."""
        value = self._get("psi", "statistic")
        return math.nan if value is None else value

    @property
    def psi_pvalue(self) -> float | None:
        """PSI's p-value, if it ran."""
        return self._get("psi", "pvalue")

    @property
    def ks_statistic(self) -> float | None:
        """KS D, if it ran."""
        return self._get("ks", "statistic")

    @property
    def ks_pvalue(self) -> float | None:
        """KS's p-value, if it ran."""
        return self._get("ks", "pvalue")

    @property
    def chi2_statistic(self) -> float | None:
        """Pearson's chi-square, if it ran."""
        return self._get("chi2", "statistic")

    @property
    def chi2_pvalue(self) -> float | None:
        """Chi-square's p-value, if it ran."""
        return self._get("chi2", "pvalue")

    def _get(self, name: TestName, attribute: str) -> float | None:
        test = self.test(name)
        return None if test is None else float(getattr(test, attribute))

    def to_dict(self) -> dict[str, Any]:
        """The report's entry: the legacy per-test keys, the verdict, then every test."""
        legacy = {key: getattr(self, key) for key in _LEGACY_KEYS}
        head = {"feature": self.feature, "kind": self.kind, **legacy}
        rest = {
            field.name: _plain(getattr(self, field.name))
            for field in fields(self)
            if field.name not in ("feature", "kind", "tests")
        }
        return {**head, **rest, "tests": [test.to_dict() for test in self.tests]}


_LEGACY_KEYS = ("psi", "psi_pvalue", "ks_statistic", "ks_pvalue", "chi2_statistic", "chi2_pvalue")


@dataclass(frozen=True)
class DriftReport:
    """Every compared feature, and the model's verdict by ``verdict`` at level ``alpha``."""

    features: list[FeatureDrift]
    drift: bool  # the verdict
    alpha: float
    correction: str
    verdict: str = "any"

    @property
    def drifted(self) -> int:
        """How many features drifted."""
        return sum(feature.drift for feature in self.features)

    @property
    def drifted_share(self) -> float:
        """The share of the compared features that drifted."""
        return self.drifted / len(self.features) if self.features else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready builtins."""
        return {
            "features": [feature.to_dict() for feature in self.features],
            "drift": bool(self.drift),
            "verdict": self.verdict,
            "drifted_features": self.drifted,
            "drifted_share": self.drifted_share,
            "alpha": float(self.alpha),
            "correction": self.correction,
        }


@dataclass(frozen=True)
class _Tested:
    """A feature's raw test results, before the correction across features."""

    feature: str
    kind: str
    results: dict[TestName, tuple[float, float, float]]  # name -> statistic, p, effect
    n_reference: int
    n_current: int
    excluded: int

    @property
    def pvalue(self) -> float:
        return combined_pvalue(*(p for _, p, _ in self.results.values()))


def compare(
    profile: Profile,
    current: Mapping[str, Column],
    *,
    features: Sequence[str] | None = None,
    alpha: float = 0.05,
    correction: str = "bh",
    ks_method: KSMethod = "auto",
    rules: Rules | None = None,
    baselines: Mapping[str, Baseline] | None = None,
) -> DriftReport:
    """Test each feature of ``current`` against ``profile`` and correct across features.

    ``features=None`` compares every profile feature present in ``current``. Raises
    :class:`~flowops.errors.InputError` (with ``.column``) for a requested feature
    missing from the profile or the data, when no profile feature is in the data, or
    for a bad ``alpha`` or ``correction``; :class:`~flowops.errors.EmptyInputError`
    when a feature has no usable current values. NaN, inf and missing current values
    are left out and counted in each feature's ``excluded``. ``ks_method="fast"`` is
    the stream workers' (see :func:`~flowops.drift.ks.ks_2samp`). ``rules`` choose the
    tests, their floors and the verdict (default: :class:`~flowops.drift.rules.Rules`).
    ``baselines`` are the profile's features prepared once (:func:`prepare`), for a caller
    that compares many windows with one profile.
    """
    adjust = corrector(correction, alpha)
    names = _feature_names(profile, current, features)
    given = rules or Rules()
    fast = ks_method == "fast"
    ready = baselines or {}
    tested = [
        _test_feature(
            name, _baseline(ready, name, profile.features[name]), current[name], given, fast
        )
        for name in names
    ]
    return _verdict(tested, adjust, alpha, correction, given)


def compare_counts(
    profile: Profile,
    current: Mapping[str, Current],
    *,
    excluded: Mapping[str, int] | None = None,
    alpha: float = 0.05,
    correction: str = "bh",
    rules: Rules | None = None,
    baselines: Mapping[str, Baseline] | None = None,
) -> DriftReport:
    """:func:`compare` from counts: what a stage merging many partitions' counts has.

    ``current`` maps profile features to a :class:`~flowops.drift.window_test.Current`
    holding counts on the feature's :attr:`~flowops.drift.window_test.Baseline.grid`
    (numeric) or category counts; features without values are left out. KS and
    Wasserstein are then approximate (see each test), the others exact. ``baselines``
    as for :func:`compare` (the grid is what a caller counts on, so it has them).

    >>> import numpy as np
    >>> profile = Profile.from_columns({"x": np.arange(1000.0)})
    >>> grid = Baseline(profile.features["x"]).grid_counts(np.arange(1000.0) + 500)
    >>> compare_counts(profile, {"x": Current(grid_counts=grid)}).features[0].severity
    'critical'
    """
    adjust = corrector(correction, alpha)
    given = rules or Rules()
    missing, ready = excluded or {}, baselines or {}
    tested = [
        _run(name, _baseline(ready, name, feature), part, missing.get(name, 0), given, True)
        for name, part in current.items()
        if (feature := profile.features.get(name)) is not None and part.n > 0
    ]
    if not tested:
        raise EmptyInputError("no feature of the profile has current values")
    return _verdict(tested, adjust, alpha, correction, given)


def corrector(name: str, alpha: float) -> Callable[[ArrayLike], NDArray[np.float64]]:
    """The correction across features called ``name``, once it and ``alpha`` are checked.

    Raises :class:`~flowops.errors.InputError` for an unknown name or an ``alpha``
    outside (0, 1).

    >>> corrector("bonferroni", 0.05)([0.01, 0.2]).tolist()
    [0.02, 0.4]
    """
    if name not in CORRECTIONS:
        raise InputError(f"correction must be one of {', '.join(CORRECTIONS)}, got {name!r}")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    return CORRECTIONS[name]


def _feature_names(
    profile: Profile, current: Mapping[str, Column], features: Sequence[str] | None
) -> list[str]:
    """The features to compare, checked to be in both the profile and the data."""
    if features is None:
        names = [name for name in profile.features if name in current]
        if not names:
            raise InputError(
                "none of the profile's features is in the data; the profile "
                f"has: {', '.join(profile.features)}"
            )
        return names
    names = list(dict.fromkeys([features] if isinstance(features, str) else features))
    if not names:
        raise InputError("no features to compare")
    for name in names:
        if name not in profile.features:
            raise InputError("no such feature in the profile", column=name)
        if name not in current:
            raise InputError("no such column in the data", column=name)
    return names


def _verdict(
    tested: list[_Tested],
    adjust: Callable[[ArrayLike], NDArray[np.float64]],
    alpha: float,
    correction: str,
    rules: Rules,
) -> DriftReport:
    """Correct across features, judge every test, and the model by the verdict rule."""
    pvalues = np.array([feature.pvalue for feature in tested])
    adjusted = adjust(pvalues)
    results = []
    for i, feature in enumerate(tested):
        tests = tuple(
            _judge(
                name,
                result,
                _as_best(i, result[1], feature, pvalues, adjusted, adjust),
                alpha,
                rules,
            )
            for name, result in feature.results.items()
        )
        results.append(_feature_drift(feature, tests, float(adjusted[i])))
    drift = rules.verdict_holds(drifted=sum(r.drift for r in results), total=len(results))
    return DriftReport(results, drift, float(alpha), correction, rules.verdict)


def _as_best(
    i: int,
    pvalue: float,
    feature: _Tested,
    pvalues: NDArray[np.float64],
    adjusted: NDArray[np.float64],
    adjust: Callable[[ArrayLike], NDArray[np.float64]],
) -> float:
    """The feature's adjusted p-value had this test been its most significant."""
    alone = min(1.0, len(feature.results) * pvalue)
    if alone == pvalues[i]:
        return float(adjusted[i])
    trial = pvalues.copy()
    trial[i] = alone
    return float(adjust(trial)[i])


def _judge(
    name: TestName,
    result: tuple[float, float, float],
    adjusted: float,
    alpha: float,
    rules: Rules,
) -> Judgement:
    statistic, pvalue, effect = result
    drift = adjusted < alpha and effect >= rules.floor(name)
    return Judgement(
        test=name,
        statistic=statistic,
        pvalue=pvalue,
        adjusted_pvalue=adjusted,
        effect=effect,
        min_effect=rules.floor(name),
        critical_effect=rules.critical(name),
        drift=drift,
        severity=rules.severity(name, effect) if drift else None,
    )


def _feature_drift(feature: _Tested, tests: tuple[Judgement, ...], adjusted: float) -> FeatureDrift:
    severities = {test.severity for test in tests if test.drift}
    severity: Severity | None = (
        "critical" if "critical" in severities else "warning" if severities else None
    )
    return FeatureDrift(
        feature=feature.feature,
        kind=feature.kind,
        tests=tests,
        pvalue=feature.pvalue,
        adjusted_pvalue=adjusted,
        drift=bool(severities),
        severity=severity,
        n_reference=feature.n_reference,
        n_current=feature.n_current,
        excluded=feature.excluded,
    )


def prepare(profile: Profile) -> dict[str, Baseline]:
    """Every feature of ``profile`` prepared once, for :func:`compare`'s ``baselines``.

    >>> import numpy as np
    >>> sorted(prepare(Profile.from_columns({"x": np.arange(10.0), "c": ["a", "b"]})))
    ['c', 'x']
    """
    return {name: Baseline(feature) for name, feature in profile.features.items()}


def _baseline(
    ready: Mapping[str, Baseline], name: str, feature: NumericProfile | CategoricalProfile
) -> Baseline:
    """The prepared baseline of this very feature profile, else a new one."""
    found = ready.get(name)
    return found if found is not None and found.profile is feature else Baseline(feature)


def _test_feature(
    name: str,
    baseline: Baseline,
    column: Column,
    rules: Rules,
    fast: bool,
) -> _Tested:
    """The feature's tests, before the correction; names the feature in any InputError."""
    try:
        if baseline.kind == "numeric":
            values = _numbers(column)
            finite = np.isfinite(values)
            usable = values if finite.all() else values[finite]
            if usable.size == 0:
                raise EmptyInputError("no usable current values (all NaN, inf or missing)")
            current = Current(values=usable)
            excluded = int(values.size - usable.size)
        else:
            counts = category_counts(column)
            current = Current(categories=counts)
            if current.n == 0:
                raise EmptyInputError("no usable current values (all missing)")
            excluded = len(column) - current.n
        return _run(name, baseline, current, excluded, rules, fast)
    except InputError as exc:
        if exc.column is not None:
            raise
        raise type(exc)(exc.reason, column=name) from None


def _run(
    name: str,
    baseline: Baseline,
    current: Current,
    excluded: int,
    rules: Rules,
    fast: bool,
) -> _Tested:
    """Run the feature's tests on its current data (values or counts)."""
    profile = baseline.profile
    results = {
        test: tuple(registry.WINDOW_TESTS[test].run(baseline, current, fast=fast))
        for test in rules.tests_for(name, profile.kind)
    }
    return _Tested(name, profile.kind, results, profile.n, current.n, excluded)  # type: ignore[arg-type]


def _numbers(column: Column) -> NDArray[np.float64]:
    """A numeric feature's current values as floats (``None`` becomes NaN)."""
    if isinstance(column, np.ndarray) and column.dtype.kind in "iuf":
        values = column.astype(np.float64, copy=False)
    elif any(isinstance(value, str) for value in column):
        raise InputError("the profile has a numeric feature, the data has text")
    else:
        try:
            values = np.asarray(column, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"not numbers: {exc}") from None
    if values.ndim != 1:
        raise InputError(f"expected a 1-D column, got shape {values.shape}")
    return values


def combined_pvalue(*pvalues: float) -> float:
    """Bonferroni over one feature's tests: ``min(1, k * min(p))`` for ``k`` tests.

    >>> combined_pvalue(0.02, 0.4)
    0.04
    """
    return min(1.0, len(pvalues) * min(pvalues))


def _plain(value: Any) -> Any:
    """numpy scalars as the Python ones JSON encoders take."""
    return value.item() if isinstance(value, np.generic) else value
