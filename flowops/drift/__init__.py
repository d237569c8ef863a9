"""Drift kernels: pure numpy/scipy statistics with no I/O.

PSI, two-sample KS, chi-square, Wasserstein, Jensen-Shannon and ADWIN, verified against
scipy and river, plus the reference profile they compare against, the registry of window
tests (:data:`WINDOW_TESTS`), and the rules (:class:`Rules`: effect-size floors, severity,
the dataset verdict) and multiple-testing corrections that turn per-feature tests into a
model-level verdict. For live traffic, :class:`ModelMonitor`
cuts one model's rows into windows (:class:`WindowSpec`), runs the tests at every
window close and ADWIN on every value, and reports each significant result as a
:class:`Finding`.
"""

from flowops.drift.adwin import ADWIN
from flowops.drift.chisq import ChiSquareResult, chi2_test
from flowops.drift.corrections import benjamini_hochberg, bonferroni
from flowops.drift.detector import ModelMonitor, MonitorStats
from flowops.drift.finding import Finding
from flowops.drift.ks import KSResult, ks_2samp
from flowops.drift.profile import CategoricalProfile, NumericProfile, Profile
from flowops.drift.psi import PSIResult, categorical_psi, psi, psi_test
from flowops.drift.reference import Reference
from flowops.drift.registry import WINDOW_TESTS
from flowops.drift.report import DriftReport, FeatureDrift, compare, compare_counts
from flowops.drift.rules import Rules
from flowops.drift.window import WindowSpec

__all__ = [
    "ADWIN",
    "WINDOW_TESTS",
    "CategoricalProfile",
    "ChiSquareResult",
    "DriftReport",
    "FeatureDrift",
    "Finding",
    "KSResult",
    "ModelMonitor",
    "MonitorStats",
    "NumericProfile",
    "PSIResult",
    "Profile",
    "Reference",
    "Rules",
    "WindowSpec",
    "benjamini_hochberg",
    "bonferroni",
    "categorical_psi",
    "chi2_test",
    "compare",
    "compare_counts",
    "ks_2samp",
    "psi",
    "psi_test",
]
