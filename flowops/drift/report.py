"""Compare current data with a reference profile: per-feature tests, one verdict.

Each feature gets two tests against its profile: PSI (with its chi-square p-value) and
either the two-sample KS test (numeric) or the chi-square homogeneity test
(categorical). A feature's p-value combines its two tests by Bonferroni,
``min(1, 2 * min(p_psi, p_test))``; the features' p-values are then corrected for
testing many features at once (Benjamini-Hochberg by default, Bonferroni, or none), and
a feature drifts when its adjusted p-value is below ``alpha``. The report drifts when
any feature does.

>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> profile = Profile.from_columns({"x": rng.normal(size=5_000), "y": rng.normal(size=5_000)})
>>> report = compare(profile, {"x": rng.normal(size=2_000), "y": rng.normal(1, size=2_000)})
>>> [(feature.feature, feature.drift) for feature in report.features], report.drift
([('x', False), ('y', True)], True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flowops.drift.chisq import chi2_test
from flowops.drift.corrections import benjamini_hochberg, bonferroni
from flowops.drift.ks import KSMethod, ks_2samp
from flowops.drift.profile import (
    CategoricalProfile,
    Column,
    NumericProfile,
    Profile,
    category_counts,
)
from flowops.drift.psi import categorical_psi, psi_test
from flowops.errors import EmptyInputError, InputError

__all__ = ["CORRECTIONS", "DriftReport", "FeatureDrift", "combined_pvalue", "compare", "corrector"]


def _uncorrected(pvalues: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(pvalues, dtype=np.float64)


CORRECTIONS: dict[str, Callable[[ArrayLike], NDArray[np.float64]]] = {
    "bh": benjamini_hochberg,
    "bonferroni": bonferroni,
    "none": _uncorrected,
}
"""The corrections across features that :func:`compare` accepts, by name."""


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's tests against its profile and its verdict."""

    feature: str
    kind: str  # "numeric" | "categorical"
    psi: float
    psi_pvalue: float
    ks_statistic: float | None  # None for categorical features
    ks_pvalue: float | None
    chi2_statistic: float | None  # None for numeric features
    chi2_pvalue: float | None
    pvalue: float  # min(1, 2 * min(test p-values)), before the correction across features
    adjusted_pvalue: float  # after the correction across features
    drift: bool  # adjusted_pvalue < alpha
    n_reference: int
    n_current: int  # usable current values
    excluded: int  # NaN, inf or missing current values left out

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain Python values, in declaration order."""
        return {field.name: _plain(getattr(self, field.name)) for field in fields(self)}


@dataclass(frozen=True)
class DriftReport:
    """Every compared feature, and whether any of them drifted at level ``alpha``."""

    features: list[FeatureDrift]
    drift: bool
    alpha: float
    correction: str

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready builtins: features, drift, alpha, correction."""
        return {
            "features": [feature.to_dict() for feature in self.features],
            "drift": bool(self.drift),
            "alpha": float(self.alpha),
            "correction": self.correction,
        }


def compare(
    profile: Profile,
    current: Mapping[str, Column],
    *,
    features: Sequence[str] | None = None,
    alpha: float = 0.05,
    correction: str = "bh",
    ks_method: KSMethod = "auto",
) -> DriftReport:
    """Test each feature of ``current`` against ``profile`` and correct across features.

    ``features=None`` compares every profile feature present in ``current``. Raises
    :class:`~flowops.errors.InputError` (with ``.column``) for a requested feature
    missing from the profile or the data, when no profile feature is in the data, or
    for a bad ``alpha`` or ``correction``; :class:`~flowops.errors.EmptyInputError`
    when a feature has no usable current values. NaN, inf and missing current values
    are left out and counted in each feature's ``excluded``. ``ks_method`` is
    :func:`~flowops.drift.ks.ks_2samp`'s ``method``.
    """
    adjust = corrector(correction, alpha)
    names = _feature_names(profile, current, features)
    tested = [
        _test_feature(name, profile.features[name], current[name], ks_method) for name in names
    ]
    adjusted = adjust([feature.pvalue for feature in tested]).tolist()
    results = [
        replace(feature, adjusted_pvalue=q, drift=q < alpha)
        for feature, q in zip(tested, adjusted, strict=True)
    ]
    return DriftReport(results, any(r.drift for r in results), float(alpha), correction)


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


def _test_feature(
    name: str, profile: NumericProfile | CategoricalProfile, column: Column, ks_method: KSMethod
) -> FeatureDrift:
    """The feature's tests, before the correction; names the feature in any InputError."""
    try:
        if isinstance(profile, NumericProfile):
            return _test_numeric(name, profile, column, ks_method)
        return _test_categorical(name, profile, column)
    except InputError as exc:
        if exc.column is not None:
            raise
        raise type(exc)(exc.reason, column=name) from None


def _test_numeric(
    name: str, profile: NumericProfile, column: Column, ks_method: KSMethod
) -> FeatureDrift:
    values = _numbers(column)
    finite = np.isfinite(values)
    usable = values if finite.all() else values[finite]
    if usable.size == 0:
        raise EmptyInputError("no usable current values (all NaN, inf or missing)")
    reference = profile.reference()
    ks, psi = ks_2samp(reference, usable, method=ks_method), psi_test(reference, usable)
    return FeatureDrift(
        feature=name,
        kind="numeric",
        psi=psi.statistic,
        psi_pvalue=psi.pvalue,
        ks_statistic=ks.statistic,
        ks_pvalue=ks.pvalue,
        chi2_statistic=None,
        chi2_pvalue=None,
        pvalue=combined_pvalue(ks.pvalue, psi.pvalue),
        adjusted_pvalue=math.nan,  # set by compare, after the correction
        drift=False,
        n_reference=profile.n,
        n_current=int(usable.size),
        excluded=int(values.size - usable.size),
    )


def _test_categorical(name: str, profile: CategoricalProfile, column: Column) -> FeatureDrift:
    counts = category_counts(column)
    n = sum(counts.values())
    if n == 0:
        raise EmptyInputError("no usable current values (all missing)")
    chi2 = chi2_test(profile.frequencies, counts)
    psi = categorical_psi(profile.frequencies, counts)
    return FeatureDrift(
        feature=name,
        kind="categorical",
        psi=psi.statistic,
        psi_pvalue=psi.pvalue,
        ks_statistic=None,
        ks_pvalue=None,
        chi2_statistic=chi2.statistic,
        chi2_pvalue=chi2.pvalue,
        pvalue=combined_pvalue(chi2.pvalue, psi.pvalue),
        adjusted_pvalue=math.nan,  # set by compare, after the correction
        drift=False,
        n_reference=profile.n,
        n_current=n,
        excluded=len(column) - n,
    )


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
