"""Window tests: the registered tests against the reference at every window close.

Each closed window goes through :func:`~flowops.drift.report.compare` with the monitor's
:class:`~flowops.drift.rules.Rules` (by default PSI and KS for numbers, PSI and
chi-square for categories, each with its effect-size floor), so the stream and ``flowops
drift compare`` judge by one rule. Every test ``compare`` marks as drifted becomes a
:class:`Finding`: its ``pvalue`` is the test's adjusted p-value (what ``compare`` would
give its feature had this test been the feature's most significant one), its
``threshold`` is ``alpha``, and its severity comes from its effect size (PSI: critical
from 0.25), not from the p-value.

Every finding of a window carries the window's :class:`WindowVerdict` (the share of its
compared features that drifted and the ``drift.verdict`` rule's answer), and a window
whose verdict is drift adds one finding of its own, ``feature: "dataset"``, ``test:
"verdict"``, after its features' (:func:`report_findings`): a reader hears once a window
that the model drifted, and the alerts before it say why.

Without a profile the first closed window with usable values becomes the reference (a
:class:`~flowops.drift.profile.Profile` of it, 10 bins) and makes no findings itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from flowops.drift.finding import Chunk, ClosedWindow, Finding, ReferenceKind, WindowVerdict
from flowops.drift.profile import Profile
from flowops.drift.report import DriftReport, FeatureDrift, Judgement, compare, corrector, prepare
from flowops.drift.rules import Rules, check_verdict
from flowops.drift.window_test import Baseline

__all__ = [
    "VERDICT_FEATURE",
    "VERDICT_TEST",
    "DriftedWindow",
    "WindowTests",
    "report_findings",
    "window_verdict",
]

VERDICT_TEST: Final = "verdict"
"""The test name of a window's finding that the model drifted, by ``drift.verdict``."""
VERDICT_FEATURE: Final = "dataset"
"""The feature that finding names: the model's features as a whole."""


@dataclass(frozen=True)
class DriftedWindow:
    """A closed window that made findings, with what its report needs: the drift
    report, the window's usable values and the prepared reference they were judged on.

    Kept only when asked (:attr:`WindowTests.on_drift`): a stream worker writing a
    report behind each alert turns the values into counts and draws them.
    """

    window: ClosedWindow
    report: DriftReport
    baselines: Mapping[str, Baseline]
    reference: ReferenceKind


class WindowTests:
    """The registered tests against the reference at each window close (see module)."""

    def __init__(
        self,
        model: str,
        version: str,
        profile: Profile | None,
        *,
        alpha: float,
        correction: str,
        on_report: Callable[[DriftReport], None] = lambda report: None,
        rules: Rules | None = None,
    ) -> None:
        corrector(correction, alpha)  # a bad alpha or correction fails here, not per window
        self.rules = rules or Rules()
        self.model, self.version = model, version
        self.alpha, self.correction = float(alpha), correction
        self.profile = profile
        self._baselines: dict[str, Baseline] = {} if profile is None else prepare(profile)
        self.reference: ReferenceKind = "profile" if profile is not None else "first_window"
        self._on_report = on_report
        # told of every window that made findings (a report behind its alerts); None: not
        self.on_drift: Callable[[DriftedWindow], None] | None = None

    def set_profile(self, profile: Profile) -> None:
        """Compare later windows with ``profile``."""
        self.profile, self.reference = profile, "profile"
        self._baselines = prepare(profile)

    def observe(self, chunk: Chunk) -> list[Finding]:
        """Window tests look at closed windows only."""
        return []

    def close(self, window: ClosedWindow) -> list[Finding]:
        """The window's significant tests; the first window becomes the reference."""
        if self.profile is None:
            if window.columns:
                self.profile = Profile.from_columns(window.columns, model=self.model)
                self._baselines = prepare(self.profile)
            return []
        names = [name for name in self.profile.features if name in window.columns]
        if not names:
            return []
        report = compare(
            self.profile,
            window.columns,
            features=names,
            alpha=self.alpha,
            correction=self.correction,
            ks_method="fast",  # a drifted window's exact KS p-value would delay its alert
            rules=self.rules,
            baselines=self._baselines,  # the references sorted and binned once, not per window
        )
        self._on_report(report)
        findings = report_findings(
            report,
            model=self.model,
            version=self.version,
            window=(window.index, window.start, window.end),
            reference=self.reference,
        )
        if findings and self.on_drift is not None:
            self.on_drift(DriftedWindow(window, report, self._baselines, self.reference))
        return findings

    def to_state(self) -> dict[str, Any]:
        """The reference and where it came from."""
        profile = None if self.profile is None else self.profile.to_dict()
        return {"profile": profile, "reference": self.reference}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the reference :meth:`to_state` described."""
        data = state["profile"]
        self.profile = None if data is None else Profile.from_dict(data)
        self._baselines = {} if self.profile is None else prepare(self.profile)
        self.reference = "profile" if state["reference"] == "profile" else "first_window"


def report_findings(
    report: DriftReport,
    *,
    model: str,
    version: str,
    window: tuple[int, float, float],
    reference: ReferenceKind,
) -> list[Finding]:
    """A :class:`Finding` for every test ``report`` marks as drifted, in report order,
    then the verdict's when the model drifted by the report's rule; each carries the
    window's :class:`WindowVerdict`.

    ``window`` is the window's (index, start, end). Shared by :class:`WindowTests` (a
    window of raw rows) and the merge stage (a window merged from counts), so an alert
    reads the same whichever way its window was judged.

    >>> import numpy as np
    >>> from flowops.drift.rules import Rules, check_verdict
    >>> rng = np.random.default_rng(4)
    >>> columns = {name: rng.normal(size=3_000) for name in "abcde"}
    >>> profile = Profile.from_columns(columns)
    >>> current = {name: rng.normal(1.0 if name in "ab" else 0.0, size=1_000) for name in "abcde"}
    >>> def findings(rule):
    ...     report = compare(profile, current, rules=Rules(verdict=rule))
    ...     return report_findings(report, model="m", version="1", window=(3, 0.0, 60.0),
    ...                            reference="profile")
    >>> [(f.feature, f.test) for f in findings("any")][-1]
    ('dataset', 'verdict')
    >>> verdict = findings("share:0.5")[0].window_verdict
    >>> verdict.drift, verdict.drifted_share, verdict.drifted_names
    (False, 0.4, ('a', 'b'))
    >>> [f.test for f in findings("share:0.5")].count("verdict")
    0
    """
    verdict = window_verdict(report)
    found = [
        _finding(report, feature, test, model, version, window, reference, verdict)
        for feature in report.features
        for test in feature.tests
        if test.drift
    ]
    if verdict.drift:
        found.append(_verdict_finding(report, verdict, model, version, window, reference))
    return found


def window_verdict(report: DriftReport) -> WindowVerdict:
    """The model's verdict a report gives, as the findings of its window carry it."""
    return WindowVerdict(
        drift=bool(report.drift),
        verdict=report.verdict,
        drifted_features=report.drifted,
        compared_features=len(report.features),
        drifted_share=report.drifted_share,
        drifted_names=tuple(feature.feature for feature in report.features if feature.drift),
    )


def _finding(
    report: DriftReport,
    feature: FeatureDrift,
    test: Judgement,
    model: str,
    version: str,
    window: tuple[int, float, float],
    reference: ReferenceKind,
    verdict: WindowVerdict,
) -> Finding:
    assert test.severity is not None  # a drifted test has one
    index, start, end = window
    return Finding(
        model=model,
        version=version,
        feature=feature.feature,
        test=test.test,
        statistic=test.statistic,
        pvalue=test.adjusted_pvalue,
        threshold=report.alpha,
        window_index=index,
        window_start=start,
        window_end=end,
        n_reference=feature.n_reference,
        n_current=feature.n_current,
        severity=test.severity,
        reference=reference,
        window_verdict=verdict,
    )


def _verdict_finding(
    report: DriftReport,
    verdict: WindowVerdict,
    model: str,
    version: str,
    window: tuple[int, float, float],
    reference: ReferenceKind,
) -> Finding:
    """The model drifted: the share of drifted features as the statistic, the share the
    rule asks for as the threshold (0 for ``any``: one feature is enough), the highest
    severity among the drifted features, the largest counts among the compared ones."""
    index, start, end = window
    drifted = [feature for feature in report.features if feature.drift]
    return Finding(
        model=model,
        version=version,
        feature=VERDICT_FEATURE,
        test=VERDICT_TEST,
        statistic=verdict.drifted_share,
        pvalue=None,
        threshold=check_verdict(report.verdict) or 0.0,
        window_index=index,
        window_start=start,
        window_end=end,
        n_reference=max(feature.n_reference for feature in report.features),
        n_current=max(feature.n_current for feature in report.features),
        severity="critical" if any(f.severity == "critical" for f in drifted) else "warning",
        reference=reference,
        window_verdict=verdict,
    )
