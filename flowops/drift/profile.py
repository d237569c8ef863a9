"""The reference profile: what a model's training data looked like, feature by feature.

A profile stores per feature what the drift tests need, so later comparisons need not
read the training data again:

* numeric features: the size ``n``, PSI bin edges and counts fitted on all values, a
  sorted sample for KS, and mean, standard deviation (population, ``ddof=0``), minimum
  and maximum;
* categorical features: the count of every category.

NaN, inf and missing values (``None`` in a categorical column) are left out and counted
in ``excluded``.

**The KS sample.** With ``n <= sample_size`` the sample holds every value and KS against
the profile is the KS test against the raw data. Above, it holds ``k = sample_size``
evenly spaced order statistics, the ``(j + 1/2) / k`` quantiles ``x[((2j + 1) n) //
(2k)]`` for ``j = 0 .. k-1``. Their empirical distribution function is within ``1 /
(2k)`` of the data's everywhere, so the KS statistic against the profile is within
``1 / (2k)`` of the statistic against the raw data (0.00005 for the default 10,000);
the p-value uses the true ``n``.

Profiles serialise to plain JSON and back without loss (floats are written with
``repr``, which round-trips exactly):

>>> import numpy as np
>>> profile = Profile.from_columns(
...     {"age": np.array([31.0, 45.0, np.nan, 27.0]), "city": ["Oslo", None, "Lima", "Oslo"]},
...     bins=2,
... )
>>> age = profile.features["age"]
>>> age.n, age.excluded, age.sample, age.edges, age.counts
(3, 1, (27.0, 31.0, 45.0), (31.0,), (1, 2))
>>> profile.features["city"]
CategoricalProfile(n=3, frequencies={'Oslo': 2, 'Lima': 1}, excluded=1)
>>> Profile.from_json(profile.to_json()) == profile
True
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray

from flowops.drift.reference import Reference, check_bins
from flowops.errors import EmptyInputError, InputError

__all__ = [
    "VERSION",
    "CategoricalProfile",
    "Column",
    "NumericProfile",
    "Profile",
    "category_counts",
]

VERSION = 1
"""The profile format this FlowOps writes and reads."""

Column: TypeAlias = NDArray[np.float64] | Sequence[str | None]
"""A numeric column (NaN for missing) or a categorical one (``None`` for missing)."""

_PROFILE_KEYS = ("version", "model", "bins", "sample_size", "features")
_NUMERIC_KEYS = ("kind", "n", "excluded", "mean", "std", "min", "max", "edges", "counts", "sample")
_CATEGORICAL_KEYS = ("kind", "n", "excluded", "frequencies")


@dataclass(frozen=True)
class NumericProfile:
    """A numeric feature: size, PSI bins on all values, a sorted KS sample, moments."""

    n: int
    sample: tuple[float, ...]
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    excluded: int
    kind: ClassVar[Literal["numeric"]] = "numeric"

    @classmethod
    def from_values(
        cls, values: NDArray[Any], *, bins: int = 10, sample_size: int = 10_000
    ) -> NumericProfile:
        """Profile the finite ``values``; NaN and inf are counted in ``excluded``.

        >>> NumericProfile.from_values(np.array([2.0, np.inf, 1.0]), bins=2).sample
        (1.0, 2.0)
        """
        numbers = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(numbers)
        if not finite.any():
            raise EmptyInputError("no finite values")
        ref = Reference(numbers[finite], bins=bins)
        mean, std = _moments(ref.sorted)
        return cls(
            n=ref.n,
            sample=_floats(_sketch(ref.sorted, sample_size)),
            edges=_floats(ref.edges),
            counts=tuple(ref.counts.tolist()),
            mean=mean,
            std=std,
            min=float(ref.sorted[0]),
            max=float(ref.sorted[-1]),
            excluded=int(numbers.size - ref.n),
        )

    def reference(self) -> Reference:
        """The :class:`Reference` the KS and PSI tests compare against."""
        return Reference.from_parts(self.sample, n=self.n, edges=self.edges, counts=self.counts)

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready builtins."""
        return {
            "kind": self.kind,
            "n": self.n,
            "excluded": self.excluded,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "edges": list(self.edges),
            "counts": list(self.counts),
            "sample": list(self.sample),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericProfile:
        """The profile :meth:`to_dict` gave; raises InputError naming a bad key."""
        _check_keys(data, _NUMERIC_KEYS)
        scalars = {key: _number(data, key) for key in ("mean", "std", "min", "max")}
        profile = cls(
            n=_count(data, "n"),
            excluded=_count(data, "excluded"),
            sample=_numbers(data, "sample"),
            edges=_numbers(data, "edges"),
            counts=_counts(data, "counts"),
            **scalars,
        )
        profile.reference()  # checks that the parts describe one sample
        return profile


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical feature: the count of every category, most frequent first."""

    n: int
    frequencies: dict[str, int]
    excluded: int
    kind: ClassVar[Literal["categorical"]] = "categorical"

    @classmethod
    def from_values(cls, values: Column) -> CategoricalProfile:
        """Count the categories; ``None`` values are counted in ``excluded``.

        >>> CategoricalProfile.from_values(["b", "a", None, "a"])
        CategoricalProfile(n=3, frequencies={'a': 2, 'b': 1}, excluded=1)
        """
        frequencies = category_counts(values)
        n = sum(frequencies.values())
        if n == 0:
            raise EmptyInputError("no values")
        return cls(n, dict(frequencies.most_common()), len(values) - n)

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready builtins."""
        return {
            "kind": self.kind,
            "n": self.n,
            "excluded": self.excluded,
            "frequencies": dict(self.frequencies),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalProfile:
        """The profile :meth:`to_dict` gave; raises InputError naming a bad key."""
        _check_keys(data, _CATEGORICAL_KEYS)
        frequencies = data["frequencies"]
        if not isinstance(frequencies, Mapping) or not all(
            _is_count(count) for count in frequencies.values()
        ):
            raise InputError("key 'frequencies': must map categories to counts")
        profile = cls(
            _count(data, "n"), {str(k): v for k, v in frequencies.items()}, _count(data, "excluded")
        )
        if sum(profile.frequencies.values()) != profile.n:
            raise InputError("key 'frequencies': the counts must sum to n")
        return profile


FeatureProfile: TypeAlias = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Profile:
    """Per-feature profiles of a reference data set, with the settings that made them."""

    features: dict[str, FeatureProfile]
    bins: int
    sample_size: int
    version: int = VERSION
    model: str | None = None

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Column],
        *,
        bins: int = 10,
        sample_size: int = 10_000,
        model: str | None = None,
    ) -> Profile:
        """Profile every column: float arrays as numeric, sequences of strings as categorical.

        Raises :class:`~flowops.errors.EmptyInputError` naming a column without usable
        values.
        """
        _check_settings(bins, sample_size)
        features = {
            name: _profile_column(name, column, bins, sample_size)
            for name, column in columns.items()
        }
        return cls(features, bins, sample_size, model=model)

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready builtins."""
        features = {name: feature.to_dict() for name, feature in self.features.items()}
        return {
            "version": self.version,
            "model": self.model,
            "bins": self.bins,
            "sample_size": self.sample_size,
            "features": features,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """The profile :meth:`to_dict` gave.

        Raises :class:`~flowops.errors.InputError` naming the key (and the feature) for an
        unknown, missing or ill-typed key, or a ``version`` other than :data:`VERSION`.
        """
        _check_keys(data, _PROFILE_KEYS)
        if data["version"] != VERSION or isinstance(data["version"], bool):
            raise InputError(
                f"key 'version': unsupported profile version "
                f"{data['version']!r}; this FlowOps reads version {VERSION}"
            )
        if data["model"] is not None and not isinstance(data["model"], str):
            raise InputError("key 'model': must be a string or null")
        if not isinstance(data["features"], Mapping):
            raise InputError("key 'features': must map feature names to profiles")
        features = {
            str(name): _feature_from_dict(str(name), feature)
            for name, feature in data["features"].items()
        }
        bins, sample_size = _count(data, "bins"), _count(data, "sample_size")
        _check_settings(bins, sample_size)
        return cls(features, bins, sample_size, model=data["model"])

    def to_json(self) -> str:
        """The profile as one line of JSON."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Profile:
        """The profile :meth:`to_json` wrote; raises InputError for anything else."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise InputError("a profile must be a JSON object")
        return cls.from_dict(data)


def category_counts(values: Column) -> Counter[str]:
    """Counts of the non-missing categories; raises InputError for a non-string value.

    >>> category_counts(["a", None, "b", "a"])
    Counter({'a': 2, 'b': 1})
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "US":
        return Counter(str(value) for value in values)
    counts: Counter[str] = Counter()
    for value in values:
        if value is None:
            continue
        if not isinstance(value, str):
            raise InputError(f"categorical values must be strings, got {value!r}")
        counts[value] += 1
    return counts


def _check_settings(bins: int, sample_size: int) -> None:
    check_bins(bins)
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
        raise InputError(f"sample_size must be a positive integer, got {sample_size!r}")


def _profile_column(name: str, column: Column, bins: int, sample_size: int) -> FeatureProfile:
    """The profile of one column, with the column named in any InputError."""
    try:
        if isinstance(column, np.ndarray) and column.dtype.kind in "iuf":
            return NumericProfile.from_values(column, bins=bins, sample_size=sample_size)
        return CategoricalProfile.from_values(column)
    except InputError as exc:
        raise type(exc)(exc.reason, column=name) from None


def _feature_from_dict(name: str, data: Any) -> FeatureProfile:
    """A feature's profile from its dict, with the feature named in any InputError."""
    try:
        if not isinstance(data, Mapping):
            raise InputError("a feature profile must be an object")
        kind = data.get("kind")
        if kind == NumericProfile.kind:
            return NumericProfile.from_dict(data)
        if kind == CategoricalProfile.kind:
            return CategoricalProfile.from_dict(data)
        raise InputError(f"key 'kind': expected 'numeric' or 'categorical', got {kind!r}")
    except InputError as exc:
        raise InputError(exc.reason, column=name) from None


def _sketch(sorted_values: NDArray[np.float64], size: int) -> NDArray[np.float64]:
    """All values when there are at most ``size``, else ``size`` evenly spaced order stats."""
    n = sorted_values.size
    if n <= size:
        return sorted_values
    return sorted_values[((2 * np.arange(size, dtype=np.int64) + 1) * n) // (2 * size)]


def _moments(sorted_values: NDArray[np.float64]) -> tuple[float, float]:
    """Mean and population standard deviation, free of overflow for any finite values.

    The values are scaled by a power of two (exact) so that sums cannot overflow, and the
    results are kept within the bounds they cannot leave: the range, and half of it.
    """
    low, high = float(sorted_values[0]), float(sorted_values[-1])
    scale = max(abs(low), abs(high))
    factor = math.ldexp(1.0, math.frexp(scale)[1] - 1) if scale > 0 else 1.0
    scaled = sorted_values / factor
    mean = float(np.mean(scaled)) * factor
    std = float(np.std(scaled)) * factor
    return min(max(mean, low), high), min(std, high / 2 - low / 2)


def _floats(values: NDArray[np.float64]) -> tuple[float, ...]:
    return tuple(values.tolist())


def _check_keys(data: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Raise InputError naming the first unknown or missing key."""
    for key in data:
        if key not in keys:
            raise InputError(f"unknown key {key!r}")
    for key in keys:
        if key not in data:
            raise InputError(f"missing key {key!r}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(data: Mapping[str, Any], key: str) -> int:
    if not _is_count(data[key]):
        raise InputError(f"key {key!r}: must be a non-negative integer, got {data[key]!r}")
    return int(data[key])


def _number(data: Mapping[str, Any], key: str) -> float:
    if not _is_number(data[key]):
        raise InputError(f"key {key!r}: must be a finite number, got {data[key]!r}")
    return float(data[key])


def _numbers(data: Mapping[str, Any], key: str) -> tuple[float, ...]:
    values = data[key]
    if not isinstance(values, list | tuple) or not all(_is_number(v) for v in values):
        raise InputError(f"key {key!r}: must be a list of finite numbers")
    return tuple(float(v) for v in values)


def _counts(data: Mapping[str, Any], key: str) -> tuple[int, ...]:
    values = data[key]
    if not isinstance(values, list | tuple) or not all(_is_count(v) for v in values):
        raise InputError(f"key {key!r}: must be a list of non-negative integers")
    return tuple(int(v) for v in values)
