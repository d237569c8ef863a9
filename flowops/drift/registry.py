"""The registry of window tests: one table that reports, windows, alerts and schemas read.

A new test is one module with a class that follows
:class:`~flowops.drift.window_test.WindowTest`, and one line in :data:`WINDOW_TESTS`.
Its name is then accepted by ``drift.tests`` in the config, gets its entry in each
feature's ``tests`` in the JSON report, can be an alert's ``test``, and appears in the
alert event's JSON Schema.

Default floors (``min_effect``) and critical levels, each justified in its module:

==============  ==================  =====  ========  ======================================
test            effect size         floor  critical  convention it follows
==============  ==================  =====  ========  ======================================
psi             PSI                 0.1    0.25      industry: 0.1 moderate, 0.25 large
ks              KS D                0.1    0.2       D of a 0.25 / 0.5 SD shift
chi2            Cohen's w           0.3    0.5       Cohen's medium / large (w^2 ~ PSI)
wasserstein     W1 / reference SD   0.2    0.5       Cohen's d small / medium
js              JS distance         0.1    0.2       Evidently's 0.1; ~ PSI 0.055 / 0.22
==============  ==================  =====  ========  ======================================

>>> sorted(WINDOW_TESTS)
['chi2', 'js', 'ks', 'psi', 'wasserstein']
>>> dict(DEFAULT_TESTS)
{'numeric': ('psi', 'ks'), 'categorical': ('psi', 'chi2')}
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, TypeAlias

from flowops.drift.chisq import CHI2_TEST
from flowops.drift.js import JS_TEST
from flowops.drift.ks import KS_TEST
from flowops.drift.psi import PSI_TEST
from flowops.drift.wasserstein import WASSERSTEIN_TEST
from flowops.drift.window_test import FeatureKind, WindowTest

__all__ = [
    "ALERT_TESTS",
    "DEFAULT_TESTS",
    "STREAM_TESTS",
    "WINDOW_TESTS",
    "TestName",
    "check_tests",
]

TestName: TypeAlias = str
"""A test's name as reports and alerts carry it: a key of :data:`WINDOW_TESTS`, or one of
:data:`STREAM_TESTS`."""

WINDOW_TESTS: Final[Mapping[TestName, WindowTest]] = MappingProxyType(
    {test.name: test for test in (PSI_TEST, KS_TEST, CHI2_TEST, WASSERSTEIN_TEST, JS_TEST)}
)
"""Every registered window test, by name."""

STREAM_TESTS: Final = ("adwin", "error_rate", "verdict")
"""Tests that are not window tests but make alerts too: ADWIN on every value, a jump in a
model's error rate (:mod:`flowops.drift.error_rate`), and a window's verdict that the
model drifted (``drift.verdict``, :mod:`flowops.drift.window_tests`)."""

ALERT_TESTS: Final = (*WINDOW_TESTS, *STREAM_TESTS)
"""Every name an alert's ``test`` can hold."""

DEFAULT_TESTS: Final[Mapping[FeatureKind, tuple[TestName, ...]]] = MappingProxyType(
    {"numeric": ("psi", "ks"), "categorical": ("psi", "chi2")}
)
"""The tests each kind of feature gets unless ``drift.tests`` says otherwise."""


def check_tests(names: object, kind: FeatureKind) -> tuple[TestName, ...]:
    """``names`` checked to be registered tests that apply to ``kind``.

    Raises ValueError with the reason (the config names the key).

    >>> check_tests(["psi", "js"], "categorical")
    ('psi', 'js')
    >>> check_tests(["ks"], "categorical")
    Traceback (most recent call last):
    ...
    ValueError: test 'ks' does not apply to categorical features (those that do: psi, chi2, js)
    """
    if isinstance(names, str) or not isinstance(names, list | tuple) or not names:
        raise ValueError("expected a non-empty list of test names")
    applicable = [name for name, test in WINDOW_TESTS.items() if kind in test.kinds]
    for name in names:
        if name not in WINDOW_TESTS:
            raise ValueError(f"unknown test {name!r} (known: {', '.join(WINDOW_TESTS)})")
        if name not in applicable:
            raise ValueError(
                f"test {name!r} does not apply to {kind} features "
                f"(those that do: {', '.join(applicable)})"
            )
    return tuple(dict.fromkeys(names))
