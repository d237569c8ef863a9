"""When a test, a feature and a model count as drifted: floors, severity, the verdict.

A test **drifts** when its adjusted p-value is below ``alpha`` *and* its effect size is
at least its floor (``min_effect``): significance alone grows with the data (at a million
rows a 0.02 SD shift is significant and harmless), effect alone is noise in small
windows. A drifted test's **severity** comes from its effect: ``"critical"`` from the
test's ``critical_effect`` on, else ``"warning"``. A feature drifts when any of its tests
does, with the highest severity among them. The **verdict** says when the model drifts:
``"any"`` (one drifted feature is enough) or ``"share:<fraction>"`` (at least that share
of the compared features, and at least one). A model's **error rate** has levels of its
own (:class:`ErrorRateLevels`, read by :mod:`flowops.drift.error_rate`), kept here so that
one :class:`Rules` made from the ``drift`` settings carries every level the stream judges by.

>>> rules = Rules(min_effect={"ks": 0.05}, verdict="share:0.5")
>>> rules.floor("ks"), rules.floor("psi"), rules.critical("psi")
(0.05, 0.1, 0.25)
>>> rules.verdict_holds(drifted=1, total=3), rules.verdict_holds(drifted=2, total=3)
(False, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from flowops.drift import registry
from flowops.drift.registry import TestName, check_tests
from flowops.drift.window_test import FeatureKind
from flowops.errors import ConfigError, InputError

__all__ = ["ErrorRateLevels", "Rules", "Severity", "check_verdict", "rules_from_settings"]

Severity: TypeAlias = Literal["warning", "critical"]


@dataclass(frozen=True)
class ErrorRateLevels:
    """When a jump in a model's error rate is an alert (``drift.error_rate.*``).

    A closing window's share of failed requests is tested against the pooled share of
    its last ``history`` windows (one-sided, at ``alpha``: a stricter level than the
    features' 0.05, since a window is tested against windows of the same live traffic
    every time it closes, and a false page costs more than a late one); it is a jump
    when it rose by at least ``min_increase`` (5 percentage points: 0.1% more errors at a
    million requests is certain and harmless), ``"critical"`` from ``critical_increase``
    (20 points: a fifth more of the calls failing). Windows of fewer than
    ``min_requests`` requests are neither tested nor kept (a 100-request window's rate
    moves by a point with one request).

    >>> ErrorRateLevels(min_increase=0.3)
    Traceback (most recent call last):
    ...
    flowops.errors.InputError: critical_increase: expected at least min_increase (0.3), got 0.2
    """

    alpha: float = 0.001
    min_increase: float = 0.05
    critical_increase: float = 0.2
    history: int = 10
    min_requests: int = 100

    def __post_init__(self) -> None:
        problem = _error_rate_problem(self)
        if problem is not None:
            raise InputError(f"{problem[0]}: {problem[1]}")


def _error_rate_problem(levels: Any) -> tuple[str, str] | None:
    """The first bad level of ``levels`` (anything with the :class:`ErrorRateLevels`
    attributes), as (key, what is wrong); None when all are good."""
    checks: list[tuple[str, Any, bool, str]] = [
        ("alpha", levels.alpha, _number(levels.alpha) and 0 < levels.alpha < 1, "in (0, 1)"),
        (
            "min_increase",
            levels.min_increase,
            _number(levels.min_increase) and 0 <= levels.min_increase <= 1,
            "in [0, 1]",
        ),
        (
            "critical_increase",
            levels.critical_increase,
            _number(levels.critical_increase) and levels.critical_increase <= 1,
            "at most 1",
        ),
        ("history", levels.history, _whole(levels.history), "a whole number >= 1"),
        ("min_requests", levels.min_requests, _whole(levels.min_requests), "a whole number >= 1"),
    ]
    for key, value, good, expected in checks:
        if not good:
            return key, f"expected {expected}, got {value!r}"
    if levels.critical_increase < levels.min_increase:
        return (
            "critical_increase",
            f"expected at least min_increase ({levels.min_increase}), "
            f"got {levels.critical_increase}",
        )
    return None


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class Rules:
    """Which tests run, their floors and critical levels, and the dataset verdict.

    ``tests`` by feature kind and ``feature_tests`` by feature name (winning) name
    registered tests; ``min_effect`` and ``critical_effect`` override the tests' own
    defaults by test name; ``error_rate`` holds the error-rate test's levels.
    """

    tests: Mapping[FeatureKind, tuple[TestName, ...]] = field(
        default_factory=lambda: dict(registry.DEFAULT_TESTS)
    )
    feature_tests: Mapping[str, tuple[TestName, ...]] = field(default_factory=dict)
    min_effect: Mapping[TestName, float] = field(default_factory=dict)
    critical_effect: Mapping[TestName, float] = field(default_factory=dict)
    verdict: str = "any"
    error_rate: ErrorRateLevels = field(default_factory=ErrorRateLevels)

    def __post_init__(self) -> None:
        try:
            check_verdict(self.verdict)
            for kind, names in self.tests.items():
                check_tests(list(names), kind)
            for table in (self.min_effect, self.critical_effect):
                _check_levels(table)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def tests_for(self, feature: str, kind: FeatureKind) -> tuple[TestName, ...]:
        """The tests a feature gets: its own list, else its kind's."""
        if feature in self.feature_tests:
            try:
                return check_tests(list(self.feature_tests[feature]), kind)
            except ValueError as exc:
                raise InputError(str(exc), column=feature) from None
        return tuple(self.tests.get(kind, registry.DEFAULT_TESTS[kind]))

    def floor(self, test: TestName) -> float:
        """The smallest effect of ``test`` that can be drift."""
        return float(self.min_effect.get(test, registry.WINDOW_TESTS[test].min_effect))

    def critical(self, test: TestName) -> float:
        """The effect of ``test`` from which a drift is ``"critical"``."""
        return float(self.critical_effect.get(test, registry.WINDOW_TESTS[test].critical_effect))

    def severity(self, test: TestName, effect: float) -> Severity:
        """``"critical"`` from the test's critical effect on, else ``"warning"``."""
        return "critical" if effect >= self.critical(test) else "warning"

    def verdict_holds(self, *, drifted: int, total: int) -> bool:
        """Whether ``drifted`` of ``total`` features make the model drift."""
        if drifted == 0 or total == 0:
            return False
        share = check_verdict(self.verdict)
        return share is None or drifted / total >= share


def check_verdict(rule: str) -> float | None:
    """The share a ``share:<fraction>`` rule asks for, None for ``any``; ValueError else.

    >>> check_verdict("any"), check_verdict("share:0.3")
    (None, 0.3)
    """
    if rule == "any":
        return None
    prefix, _, number = rule.partition(":")
    try:
        share = float(number)
    except ValueError:
        share = -1.0
    if prefix != "share" or not 0.0 < share <= 1.0:
        raise ValueError(f"expected 'any' or 'share:<fraction in (0, 1]>', got {rule!r}")
    return share


def rules_from_settings(drift: Any) -> Rules:
    """The rules a ``drift`` settings section gives; ConfigError names a bad key."""
    try:
        check_verdict(drift.verdict)
    except ValueError as exc:
        raise ConfigError("drift.verdict", str(exc)) from None
    tests: dict[FeatureKind, tuple[TestName, ...]] = dict(registry.DEFAULT_TESTS)
    for kind, names in drift.tests.items():
        tests[kind] = _checked(f"drift.tests.{kind}", names, kind)
    for key in ("min_effect", "critical_effect"):
        try:
            _check_levels(getattr(drift, key))
        except ValueError as exc:
            raise ConfigError(f"drift.{key}", str(exc)) from None
    return Rules(
        tests=tests,
        feature_tests={name: tuple(names) for name, names in drift.feature_tests.items()},
        min_effect=dict(drift.min_effect),
        critical_effect=dict(drift.critical_effect),
        verdict=drift.verdict,
        error_rate=_error_rate_levels(drift.error_rate),
    )


def _error_rate_levels(section: Any) -> ErrorRateLevels:
    problem = _error_rate_problem(section)
    if problem is not None:
        raise ConfigError(f"drift.error_rate.{problem[0]}", problem[1])
    return ErrorRateLevels(
        alpha=float(section.alpha),
        min_increase=float(section.min_increase),
        critical_increase=float(section.critical_increase),
        history=int(section.history),
        min_requests=int(section.min_requests),
    )


def _checked(key: str, names: Any, kind: FeatureKind) -> tuple[TestName, ...]:
    try:
        return check_tests(names, kind)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def _check_levels(levels: Mapping[str, float]) -> None:
    for name, level in levels.items():
        if name not in registry.WINDOW_TESTS:
            raise ValueError(f"unknown test {name!r} (known: {', '.join(registry.WINDOW_TESTS)})")
        if isinstance(level, bool) or not isinstance(level, int | float) or level < 0:
            raise ValueError(f"{name}: expected a non-negative number, got {level!r}")
