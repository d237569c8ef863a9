"""How the drift commands show results: a table for people, JSON for programs.

Data goes to stdout; progress and summaries meant for a person go to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click
import orjson
from rich.console import Console
from rich.table import Table

from flowops.errors import InputError

if TYPE_CHECKING:
    from flowops.drift import DriftReport, FeatureDrift, Profile

__all__ = ["note", "report_json", "report_table", "summary", "write_profile", "write_report"]

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
    note(_profile_summary(profile, source, output or "stdout"))


def _profile_summary(profile: Profile, source: str, target: str) -> str:
    rows = max(feature.n + feature.excluded for feature in profile.features.values())
    excluded = [f"{name} {f.excluded:,}" for name, f in profile.features.items() if f.excluded]
    left_out = f"; left out as missing, NaN or inf: {', '.join(excluded)}" if excluded else ""
    count = len(profile.features)
    features = f"{count} feature{'s' * (count != 1)}"
    return f"profiled {features} of {source} ({rows:,} rows{left_out}) -> {target}"


def write_report(report: DriftReport, output: Literal["table", "json"]) -> None:
    """Write the report to stdout as a table or as JSON."""
    if output == "json":
        click.echo(report_json(report).decode())
        return
    console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 120)
    report_table(report, console)


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
        "verdict",
    ):
        table.add_column(header, justify="left" if header in {"feature", "kind"} else "right")
    for feature in report.features:
        table.add_row(*_cells(feature))
    console.print(table)
    console.print(summary(report))


def _cells(feature: FeatureDrift) -> list[str]:
    if feature.kind == "numeric":
        statistic, pvalue = f"{feature.ks_statistic:.4f}", _p(feature.ks_pvalue)
    else:
        statistic, pvalue = f"{feature.chi2_statistic:.1f}", _p(feature.chi2_pvalue)
    verdict = "[bold red]DRIFT[/]" if feature.drift else "[green]ok[/]"
    return [
        feature.feature,
        feature.kind,
        f"{feature.psi:.4f}",
        _p(feature.psi_pvalue),
        statistic,
        pvalue,
        _p(feature.adjusted_pvalue),
        f"{feature.excluded:,}",
        verdict,
    ]


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 0.001:
        return f"{value:.3f}"
    return f"{value:.1e}" if value > 0 else "<1e-300"


def summary(report: DriftReport) -> str:
    """The verdict in one line: which features drifted, at which level, how corrected."""
    correction = _CORRECTIONS.get(report.correction, report.correction)
    how = f"adjusted p < {report.alpha:g} ({correction})"
    drifted = [feature.feature for feature in report.features if feature.drift]
    total = len(report.features)
    if not drifted:
        return f"No drift in {total} feature{'s' * (total != 1)}: no {how}."
    return f"DRIFT in {len(drifted)} of {total} features ({', '.join(drifted)}): {how}."
