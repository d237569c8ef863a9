"""Window tests: PSI and KS or chi-square against the reference at every window close.

``compare`` gives each feature the p-value ``min(1, 2 min(p_psi, p_test))`` and corrects
those across the window's features (Benjamini-Hochberg, Bonferroni or none). A test's
``Finding.pvalue`` is the adjusted p-value ``compare`` would give its feature had this
test been the feature's most significant one: for the most significant test it is
exactly ``compare``'s ``adjusted_pvalue``, so a window's findings name exactly the
features ``compare`` reports as drifting. A test is reported when that p-value is below
``alpha`` (the finding's ``threshold``); its severity is ``"critical"`` below ``alpha /
CRITICAL_FACTOR``, else ``"warning"``.

Without a profile the first closed window with usable values becomes the reference (a
:class:`~flowops.drift.profile.Profile` of it, 10 bins) and makes no findings itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from flowops.drift.finding import Chunk, ClosedWindow, Finding, ReferenceKind, TestName
from flowops.drift.profile import Profile
from flowops.drift.report import DriftReport, FeatureDrift, combined_pvalue, compare, corrector

__all__ = ["CRITICAL_FACTOR", "WindowTests"]

CRITICAL_FACTOR = 100.0
"""A window test is ``"critical"`` when its adjusted p-value is below ``alpha / 100``."""


class WindowTests:
    """PSI and KS or chi-square against the reference at each window close (see module)."""

    def __init__(
        self,
        model: str,
        version: str,
        profile: Profile | None,
        *,
        alpha: float,
        correction: str,
        on_report: Callable[[DriftReport], None] = lambda report: None,
    ) -> None:
        self._adjust = corrector(correction, alpha)
        self.model, self.version = model, version
        self.alpha, self.correction = float(alpha), correction
        self.profile = profile
        self.reference: ReferenceKind = "profile" if profile is not None else "first_window"
        self._on_report = on_report

    def set_profile(self, profile: Profile) -> None:
        """Compare later windows with ``profile``."""
        self.profile, self.reference = profile, "profile"

    def observe(self, chunk: Chunk) -> list[Finding]:
        """Window tests look at closed windows only."""
        return []

    def close(self, window: ClosedWindow) -> list[Finding]:
        """The window's significant tests; the first window becomes the reference."""
        if self.profile is None:
            if window.columns:
                self.profile = Profile.from_columns(window.columns, model=self.model)
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
        )
        self._on_report(report)
        return [
            self._finding(window, feature, test, statistic, adjusted)
            for feature, test, statistic, adjusted in self._adjusted(report)
            if adjusted < self.alpha
        ]

    def _adjusted(
        self, report: DriftReport
    ) -> Iterator[tuple[FeatureDrift, TestName, float, float]]:
        """Every test with its adjusted p-value, as if it were its feature's best."""
        pvalues = np.array([feature.pvalue for feature in report.features])
        for i, feature in enumerate(report.features):
            for test, statistic, pvalue in _tests(feature):
                alone = combined_pvalue(pvalue, 1.0)  # the feature's p-value were this its best
                if alone == feature.pvalue:
                    adjusted = feature.adjusted_pvalue
                else:
                    trial = pvalues.copy()
                    trial[i] = alone
                    adjusted = float(self._adjust(trial)[i])
                yield feature, test, statistic, adjusted

    def _finding(
        self,
        window: ClosedWindow,
        feature: FeatureDrift,
        test: TestName,
        statistic: float,
        adjusted: float,
    ) -> Finding:
        return Finding(
            model=self.model,
            version=self.version,
            feature=feature.feature,
            test=test,
            statistic=statistic,
            pvalue=adjusted,
            threshold=self.alpha,
            window_index=window.index,
            window_start=window.start,
            window_end=window.end,
            n_reference=feature.n_reference,
            n_current=feature.n_current,
            severity="critical" if adjusted < self.alpha / CRITICAL_FACTOR else "warning",
            reference=self.reference,
        )

    def to_state(self) -> dict[str, Any]:
        """The reference and where it came from."""
        profile = None if self.profile is None else self.profile.to_dict()
        return {"profile": profile, "reference": self.reference}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the reference :meth:`to_state` described."""
        data = state["profile"]
        self.profile = None if data is None else Profile.from_dict(data)
        self.reference = "profile" if state["reference"] == "profile" else "first_window"


def _tests(feature: FeatureDrift) -> list[tuple[TestName, float, float]]:
    """A feature's tests from its report entry: (name, statistic, raw p-value)."""
    tests: list[tuple[TestName, float, float]] = [("psi", feature.psi, feature.psi_pvalue)]
    if feature.ks_statistic is not None and feature.ks_pvalue is not None:
        tests.append(("ks", feature.ks_statistic, feature.ks_pvalue))
    if feature.chi2_statistic is not None and feature.chi2_pvalue is not None:
        tests.append(("chi2", feature.chi2_statistic, feature.chi2_pvalue))
    return tests
