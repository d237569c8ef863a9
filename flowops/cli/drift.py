"""``flowops drift``: profile reference data and compare new data with it.

Thin on purpose: each command parses its flags, calls one function of :mod:`flowops.data`
and renders with :mod:`flowops.cli.render`. numpy, scipy and rich are imported only when a
command runs, so ``flowops drift --help`` stays quick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click

__all__ = ["baseline", "compare", "drift"]

_F = TypeVar("_F", bound=Callable[..., Any])

_EXIT_CODES = """\b
Exit codes:
  0  no drift (compare); profile written (baseline)
  1  drift found (compare)
  2  usage, input or configuration error (one line on stderr)
"""

_SETTINGS = (
    "Settings: a flag wins over FLOWOPS_DRIFT__<KEY> (e.g. FLOWOPS_DRIFT__ALPHA=0.01), "
    "which wins over the --config file (drift: {alpha: 0.01}), which wins over the defaults."
)


def _feature_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one feature, e.g. --features age,income")
    return list(dict.fromkeys(names))


def _shared_options(function: _F) -> _F:
    """--features, --bins and --config, the same on both commands."""
    options = [
        click.option(
            "--features",
            callback=_feature_list,
            metavar="A,B,...",
            help="Only these columns (comma-separated). Default: every column.",
        ),
        click.option(
            "--bins",
            type=click.IntRange(2, 1000),
            metavar="N",
            help="Quantile bins for PSI. [default: 10; drift.bins]",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="YAML settings file (also FLOWOPS_CONFIG).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(epilog=_EXIT_CODES)
def drift() -> None:
    """Profile reference data and compare new data with it.

    Numeric features get PSI and the two-sample Kolmogorov-Smirnov test, categorical
    ones PSI and chi-square; the p-values of all features are corrected together
    (Benjamini-Hochberg by default) into one verdict for the model.

    \b
    Example:
      flowops drift baseline --data train.csv -o profile.json
      flowops drift compare --reference profile.json --current today.csv

    Files: .csv (with a header row), .jsonl / .ndjson / .json (one JSON object per
    line), .parquet (pip install 'flowops[parquet]').
    """


@drift.command(epilog=f"{_SETTINGS}\n\n{_EXIT_CODES}")
@click.option(
    "--data",
    "data_file",
    required=True,
    metavar="FILE",
    help="Reference data, e.g. the model's training set.",
)
@click.option("-o", "--output", metavar="FILE", help="Write the profile to FILE. Default: stdout.")
@click.option(
    "--sample-size",
    type=click.IntRange(min=100),
    metavar="N",
    help="Reference values kept per numeric feature for KS. [default: 10000; drift.sample_size]",
)
@click.option("--model", metavar="NAME", help="Name of the model, stored in the profile.")
@_shared_options
def baseline(
    data_file: str,
    output: str | None,
    sample_size: int | None,
    model: str | None,
    features: list[str] | None,
    bins: int | None,
    config_file: str | None,
) -> None:
    """Profile reference data and write the profile as JSON.

    The profile keeps, per numeric feature, PSI bin edges and counts, summary
    statistics and a sample for KS; per categorical feature, the category counts.
    Missing, NaN and inf values are left out and counted. What it prints goes to
    stdout unless -o is given; a summary goes to stderr.

    \b
    Example:
      flowops drift baseline --data train.csv --model credit -o profile.json
    """
    from flowops.cli import render
    from flowops.config import load_settings
    from flowops.data import build_profile

    settings = load_settings(
        config_file, {"drift": {"bins": bins, "sample_size": sample_size}}
    ).drift
    profile = build_profile(
        data_file,
        features=features,
        bins=settings.bins,
        sample_size=settings.sample_size,
        model=model,
    )
    render.write_profile(profile, output, source=data_file)


@drift.command(
    epilog=f"{_SETTINGS}\n\n{_EXIT_CODES}",
    short_help="Compare data with a reference; exit 1 on drift.",
)
@click.option(
    "--reference",
    required=True,
    metavar="FILE",
    help="A profile written by `baseline` (.json), or reference data to "
    "profile now (all its values are kept, so KS is exact).",
)
@click.option(
    "--current",
    required=True,
    metavar="FILE",
    help="The data to check, read with the kinds the reference gives.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="A",
    help="Significance level of the verdict. [default: 0.05; drift.alpha]",
)
@click.option(
    "--correction",
    type=click.Choice(["bh", "bonferroni", "none"]),
    help="Multiple-testing correction across features. [default: bh; drift.correction]",
)
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Table for people, JSON for programs.",
)
@_shared_options
@click.pass_context
def compare(
    ctx: click.Context,
    reference: str,
    current: str,
    alpha: float | None,
    correction: str | None,
    output_format: Literal["table", "json"],
    features: list[str] | None,
    bins: int | None,
    config_file: str | None,
) -> None:
    """Compare current data with a reference and say whether it drifted.

    Per feature: PSI with its p-value, and KS (numeric) or chi-square (categorical).
    A feature's p-value is min(1, 2 x the smaller test p-value); the features'
    p-values are then corrected together, and a feature drifts when its adjusted
    p-value is below alpha. The model drifts when any feature does. --bins applies
    when the reference is data; a profile keeps the bins it was built with.

    \b
    Examples:
      flowops drift compare --reference profile.json --current today.csv
      flowops drift compare --reference train.parquet --current today.jsonl -o json
    """
    from flowops.cli import render
    from flowops.config import load_settings
    from flowops.data import compare_files

    overrides = {"drift": {"bins": bins, "alpha": alpha, "correction": correction}}
    settings = load_settings(config_file, overrides).drift
    report = compare_files(
        reference,
        current,
        features=features,
        bins=settings.bins,
        alpha=settings.alpha,
        correction=settings.correction,
    )
    render.write_report(report, output_format)
    ctx.exit(1 if report.drift else 0)
