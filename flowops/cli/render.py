"""How the drift commands show results: a table for people, JSON for programs.

Data goes to stdout; progress and summaries meant for a person go to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flowops.errors import InputError

if TYPE_CHECKING:
    from flowops.drift import DriftReport, FeatureDrift, Profile
    from flowops.events import DriftAlert
    from flowops.monitor.checks import CheckResult

__all__ = [
    "AlertTable",
    "alert_line",
    "alert_row",
    "health_table",
    "note",
    "performance_table",
    "profile_summary",
    "report_json",
    "report_table",
    "stdout_console",
    "summary",
    "write_profile",
    "write_report",
]

_CORRECTIONS = {"bh": "Benjamini-Hochberg", "bonferroni": "Bonferroni", "none": "no correction"}


def note(message: str) -> None:
    """Tell the person running the command something, on stderr."""
    click.echo(f"flowops: {message}", err=True)


def write_profile(profile: Profile, output: str | None, *, source: str) -> None:
    """Write the profile's JSON to ``output`` (stdout when None) and say what was written."""
    text = profile.to_json()
    if output is None:
        click.echo(text)
    else:
        try:
            Path(output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"cannot write the profile: {exc.strerror or exc}", path=output
            ) from None
    note(profile_summary(profile, source, output or "stdout"))


def profile_summary(profile: Profile, source: str, target: str | None = None) -> str:
    """What was profiled, in one line: features, rows, values left out, where it went."""
    rows = max(feature.n + feature.excluded for feature in profile.features.values())
    excluded = [f"{name} {f.excluded:,}" for name, f in profile.features.items() if f.excluded]
    left_out = f"; left out as missing, NaN or inf: {', '.join(excluded)}" if excluded else ""
    count = len(profile.features)
    features = f"{count} feature{'s' * (count != 1)}"
    to = f" -> {target}" if target is not None else ""
    return f"profiled {features} of {source} ({rows:,} rows{left_out}){to}"


def write_report(
    report: DriftReport,
    output: Literal["table", "json"],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write the report to stdout as a table or as JSON; ``extra`` sections (the
    ``performance`` of ``compare --label-column``) go beside the report's keys."""
    if output == "json":
        if extra:
            data = {**report.to_dict(), **extra}
            options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
            click.echo(orjson.dumps(data, option=options).decode())
            return
        click.echo(report_json(report).decode())
        return
    report_table(report, stdout_console())
    if extra and extra.get("performance"):
        performance_table(extra["performance"], stdout_console())


def performance_table(section: Mapping[str, Any], console: Console) -> None:
    """The performance section: a row a metric, reference and current with its interval."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("metric", "reference", "current", "95% interval", "dropped"):
        table.add_column(header, justify="left" if header == "metric" else "right")
    for name, figures in section["metrics"].items():
        dropped = figures["dropped"]
        table.add_row(
            name,
            _figure(figures["reference"]),
            _figure(figures["current"]),
            f"{_figure(figures['low'])} - {_figure(figures['high'])}",
            "" if dropped is None else ("yes" if dropped else "no"),
        )
    console.print(table)
    console.print(
        f"performance: {section['task']} on {section['rows']:,} labelled rows"
        f" ({section['unusable']:,} left out)"
    )


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def stdout_console() -> Console:
    """A console on stdout: the terminal's width, or 120 columns into a pipe or file."""
    return Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 120)


def report_json(report: DriftReport) -> bytes:
    """The report as indented JSON: ``DriftReport.to_dict()``; NaN becomes null."""
    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def report_table(report: DriftReport, console: Console) -> None:
    """One row per feature, then the model-level verdict in one line."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in (
        "feature",
        "kind",
        "PSI",
        "PSI p",
        "KS D / chi2",
        "KS p / chi2 p",
        "adjusted p",
        "excluded",
        "severity",
        "verdict",
    ):
        table.add_column(header, justify="left" if header in {"feature", "kind"} else "right")
    for feature in report.features:
        table.add_row(*_cells(feature))
    console.print(table)
    console.print(summary(report))


def _cells(feature: FeatureDrift) -> list[str]:
    if feature.kind == "numeric":
        statistic, pvalue = _number(feature.ks_statistic, ".4f"), _p(feature.ks_pvalue)
    else:
        statistic, pvalue = _number(feature.chi2_statistic, ".1f"), _p(feature.chi2_pvalue)
    verdict = "[bold red]DRIFT[/]" if feature.drift else "[green]ok[/]"
    return [
        feature.feature,
        feature.kind,
        _number(feature.psi, ".4f"),
        _p(feature.psi_pvalue),
        statistic,
        pvalue,
        _p(feature.adjusted_pvalue),
        f"{feature.excluded:,}",
        feature.severity or "-",
        verdict,
    ]


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 0.001:
        return f"{value:.3f}"
    return f"{value:.1e}" if value > 0 else "<1e-300"


def summary(report: DriftReport) -> str:
    """The verdict in one line: which features drifted, by which rule, how corrected."""
    correction = _CORRECTIONS.get(report.correction, report.correction)
    how = f"adjusted p < {report.alpha:g} ({correction}) and effect >= its floor"
    drifted = [feature.feature for feature in report.features if feature.drift]
    total = len(report.features)
    rule = "" if report.verdict == "any" else f"; verdict {report.verdict}"
    if not drifted:
        return f"No drift in {total} feature{'s' * (total != 1)}: no {how}{rule}."
    names = ", ".join(drifted)
    share = f"{report.drifted_share:.0%}"
    if not report.drift:
        found = f"{len(drifted)} of {total} features ({names}, {share})"
        return f"No drift by {report.verdict}: {found} with {how}."
    return f"DRIFT in {len(drifted)} of {total} features ({names}, {share}): {how}{rule}."


# -- drift alerts (`flowops drift watch`) ------------------------------------------------

# (header, width, justify): fixed widths, so that rows printed one at a time line up;
# with the gaps between them, all the columns fill 118 characters, the narrow set 75
# (test: 7, for "verdict"; the longer names, error_rate and wasserstein, are cut)
_ALERT_COLUMNS: Final[tuple[tuple[str, int, Literal["left", "right"]], ...]] = (
    ("time", 8, "left"),
    ("model", 12, "left"),
    ("version", 7, "left"),
    ("feature", 12, "left"),
    ("test", 7, "left"),
    ("statistic", 9, "right"),
    ("p", 7, "right"),
    ("threshold", 9, "right"),
    ("window", 9, "right"),
    ("severity", 8, "left"),
    ("reference", 10, "left"),
)
_NARROW_COLUMNS: Final = ("time", "model", "feature", "test", "statistic", "p", "severity")
_WIDE: Final = sum(width + 2 for _, width, _ in _ALERT_COLUMNS) - 2
_SEVERITY_STYLES: Final = {"critical": "bold red", "warning": "yellow"}


def alert_line(alert: DriftAlert) -> str:
    """One alert as one line of JSON: the event as it is on the topic."""
    return alert.to_json().decode()


def alert_row(alert: DriftAlert) -> dict[str, str | Text]:
    """The cells of an alert's row, by column header."""
    window = f"row {alert.window_index}" if alert.test == "adwin" else f"#{alert.window_index}"
    return {
        "time": datetime.fromtimestamp(alert.detected_at).strftime("%H:%M:%S"),
        "model": alert.model,
        "version": alert.version,
        "feature": alert.feature,
        "test": alert.test,
        "statistic": f"{alert.statistic:.4g}",
        "p": _p(alert.pvalue),
        "threshold": f"{alert.threshold:g}",
        "window": window,
        "severity": Text(alert.severity, style=_SEVERITY_STYLES[alert.severity]),
        "reference": "profile" if alert.reference == "profile" else "1st window",
    }


class AlertTable:
    """Alerts as the rows of a table that grows as they arrive.

    Each row is printed when its alert arrives, the header above the first, so rows stay
    in the terminal's scrollback (and in a file) as ``tail -f`` would leave them. A
    console narrower than the table gets the essential columns only.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.count = 0
        wide = console.width >= _WIDE
        self._columns = [c for c in _ALERT_COLUMNS if wide or c[0] in _NARROW_COLUMNS]

    def add(self, alert: DriftAlert) -> None:
        """Print the alert's row (and the header, before the first)."""
        table = Table(box=None, show_header=self.count == 0, header_style="bold", pad_edge=False)
        for header, width, justify in self._columns:
            table.add_column(
                header, width=width, justify=justify, no_wrap=True, overflow="ellipsis"
            )
        cells = alert_row(alert)
        table.add_row(*(cells[header] for header, _, _ in self._columns))
        self.console.print(table)
        self.count += 1


def health_table(results: Sequence[CheckResult], console: Console) -> None:
    """One row per check (``flowops monitor --once``), then how many failed."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("check", "target", "ok", "seconds", "detail"):
        table.add_column(header, justify="right" if header == "seconds" else "left")
    for result in results:
        mark = Text("yes", style="green") if result.success else Text("NO", style="bold red")
        table.add_row(
            result.check, result.target, mark, f"{result.duration_seconds:.3f}", result.detail
        )
    console.print(table)
    failed = sum(not result.success for result in results)
    console.print(
        f"{failed} of {len(results)} checks failed"
        if failed
        else f"all {len(results)} checks passed"
    )
