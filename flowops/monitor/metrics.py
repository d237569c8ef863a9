"""The agent's Prometheus metrics, with blackbox_exporter's semantics.

Each round replaces the gauges of every check it ran: ``flowops_probe_success`` is 1 or
0 per (check, target), as ``probe_success`` is, so a rule reads
``flowops_probe_success == 0``. A check that disappears from the configuration
disappears from the page.

============================================  =========  ====================================
metric                                        type       labels
============================================  =========  ====================================
``flowops_probe_success``                     gauge      check, target (1 passed, 0 failed)
``flowops_probe_duration_seconds``            gauge      check, target
``flowops_probe_value``                       gauge      check, target, name (the numbers
                                                         behind a check: lag, not_in_remote)
``flowops_probe_rounds_total``                counter    (rounds of probes run)
``flowops_alerts_firing``                     gauge      check, target (1 while a rule fires)
``flowops_build_info``                        gauge      version, commit (always 1)
============================================  =========  ====================================

>>> from flowops.monitor.checks import CheckResult
>>> metrics = MonitorMetrics(commit="abc123")
>>> metrics.round([CheckResult("dvc.status", "/srv/repo", False, 0.5, "2 files not in the "
...                "remote", {"not_in_remote": 2.0})])
>>> text = metrics.render().decode()
>>> 'flowops_probe_success{check="dvc.status",target="/srv/repo"} 0.0' in text
True
>>> 'flowops_probe_value{check="dvc.status",name="not_in_remote",target="/srv/repo"} 2.0' in text
True
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowops._version import __version__
from flowops.monitor.checks import CheckResult

__all__ = ["MonitorMetrics", "build_commit"]


class MonitorMetrics:
    """The agent's metrics in a registry of its own; :meth:`render` serves them."""

    def __init__(self, *, commit: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._rounds = Counter(
            "flowops_probe_rounds", "Rounds of probes run.", registry=self.registry
        )
        self._latest = _Latest(commit)
        self.registry.register(self._latest)

    def round(self, results: Sequence[CheckResult]) -> None:
        """A round's results replace the last round's gauges."""
        self._latest.results = list(results)
        self._rounds.inc()

    def firing(self, alerts: Iterable[tuple[str, str]]) -> None:
        """The (check, target) pairs whose alert rule fires now."""
        self._latest.firing = sorted(set(alerts))

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class _Latest(Collector):
    """The last round's results, read at scrape time."""

    def __init__(self, commit: str | None) -> None:
        self.results: list[CheckResult] = []
        self.firing: list[tuple[str, str]] = []
        self._commit = commit  # asked of git at the first scrape: --once never needs it

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = ["check", "target"]
        success = GaugeMetricFamily(
            "flowops_probe_success", "1 if the check passed in the last round.", labels=labels
        )
        duration = GaugeMetricFamily(
            "flowops_probe_duration_seconds", "How long the check took.", labels=labels
        )
        value = GaugeMetricFamily(
            "flowops_probe_value",
            "The numbers behind a check (consumer lag, files not in a DVC remote...).",
            labels=[*labels, "name"],
        )
        for result in self.results:
            key = [result.check, result.target]
            success.add_metric(key, 1.0 if result.success else 0.0)
            duration.add_metric(key, result.duration_seconds)
            for name, number in sorted(result.values.items()):
                value.add_metric([*key, name], float(number))
        firing = GaugeMetricFamily(
            "flowops_alerts_firing", "1 while an alert rule fires for the check.", labels=labels
        )
        for check, target in self.firing:
            firing.add_metric([check, target], 1.0)
        if self._commit is None:
            self._commit = build_commit()
        info = GaugeMetricFamily(
            "flowops_build_info",
            "The agent's version and commit (always 1).",
            labels=["version", "commit"],
        )
        info.add_metric([__version__, self._commit], 1.0)
        yield from (success, duration, value, firing, info)


def build_commit() -> str:
    """The commit this code was built from: ``FLOWOPS_COMMIT`` (set in images), else
    git's, when the package runs from a checkout, else ``unknown``."""
    found = os.environ.get("FLOWOPS_COMMIT")
    if found:
        return found[:40]
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown" if done.returncode == 0 else "unknown"
