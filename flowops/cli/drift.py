"""``flowops drift``: profile reference data, compare new data with it, watch alerts.

Thin on purpose: each command parses its flags, calls the functions that do the work
(:mod:`flowops.data`, :mod:`flowops.baseline`, :mod:`flowops.watch`) and renders with
:mod:`flowops.cli.render`. numpy, scipy, rich, aiokafka and pydantic are imported only
when a command runs, so ``flowops drift --help`` stays quick.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click

from flowops.cli.options import bootstrap_option, config_option, output_option

__all__ = ["baseline", "compare", "drift", "watch"]

_F = TypeVar("_F", bound=Callable[..., Any])

_EXIT_CODES = """\b
Exit codes:
  0  no drift by the verdict rule (compare); profile written (baseline); stopped (watch)
  1  drift by the verdict rule (compare)
  2  usage, input or configuration error (one line on stderr)
  3  the Kafka broker or the MLflow server did not answer (one line on stderr)
"""

_WATCH_EXIT_CODES = """\b
Exit codes:
  0  stopped: Ctrl-C, SIGTERM, --max or --timeout
  2  usage or configuration error (one line on stderr)
  3  the Kafka broker did not answer (one line on stderr)
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
    """--features, --prediction-column, --bins and --config, the same on both commands."""
    options = [
        click.option(
            "--features",
            callback=_feature_list,
            metavar="A,B,...",
            help="Only these columns (comma-separated). Default: every column.",
        ),
        click.option(
            "--prediction-column",
            metavar="COL",
            help="The column holding the model's predictions: a number, a class label, "
            "or class probabilities as a JSON array or object; tested as the feature "
            "'prediction' or 'prediction[<class>]'.",
        ),
        click.option(
            "--bins",
            type=click.IntRange(2, 1000),
            metavar="N",
            help="Quantile bins for PSI. [default: 10; drift.bins]",
        ),
        config_option,
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(epilog=_EXIT_CODES)
def drift() -> None:
    """Profile reference data, compare new data with it, and watch drift alerts.

    Numeric features get PSI and the two-sample Kolmogorov-Smirnov test, categorical
    ones PSI and chi-square; the p-values of all features are corrected together
    (Benjamini-Hochberg by default) into one verdict for the model.

    \b
    Examples:
      flowops drift baseline --data train.csv -o profile.json
      flowops drift compare --reference profile.json --current today.csv
      flowops drift baseline --data train.csv --model credit --publish
      flowops drift watch --model credit

    Files: .csv (with a header row), .jsonl / .ndjson / .json (one JSON object per
    line), .parquet (pip install 'flowops[parquet]').
    """


@drift.command(
    epilog=f"{_SETTINGS}\n\n{_EXIT_CODES}",
    short_help="Profile reference data; write, publish or log the profile.",
)
@click.option(
    "--data",
    "data_file",
    required=True,
    metavar="FILE",
    help="Reference data, e.g. the model's training set.",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Write the profile to FILE ('-': stdout). "
    "Default: stdout, unless --publish or --mlflow-run sends it elsewhere.",
)
@click.option(
    "--sample-size",
    type=click.IntRange(min=100),
    metavar="N",
    help="Reference values kept per numeric feature for KS. [default: 10000; drift.sample_size]",
)
@click.option("--model", metavar="NAME", help="Name of the model, stored in the profile.")
@click.option(
    "--publish",
    is_flag=True,
    help="Put the profile on flowops.references, keyed by --model, for the stream workers.",
)
@click.option(
    "--model-version",
    metavar="VERSION",
    help="With --publish: the profile applies to this model version only. Default: all.",
)
@bootstrap_option()
@click.option(
    "--mlflow-run",
    metavar="RUN_ID",
    help="Log the profile to this MLflow run, as the artifact flowops/profile.json.",
)
@click.option(
    "--mlflow-uri",
    metavar="URL",
    help="MLflow tracking server. [default: mlflow.tracking_uri, else MLFLOW_TRACKING_URI]",
)
@_shared_options
def baseline(
    data_file: str,
    output: str | None,
    sample_size: int | None,
    model: str | None,
    publish: bool,
    model_version: str | None,
    bootstrap: str | None,
    mlflow_run: str | None,
    mlflow_uri: str | None,
    features: list[str] | None,
    prediction_column: str | None,
    bins: int | None,
    config_file: str | None,
) -> None:
    """Profile reference data; write the profile, publish it, log it to MLflow.

    The profile keeps, per numeric feature, PSI bin edges and counts, summary
    statistics and a sample for KS; per categorical feature, the category counts.
    Missing, NaN and inf values are left out and counted. A summary goes to stderr.
    --prediction-column profiles the model's outputs too, as the feature 'prediction'
    (or 'prediction[<class>]' per class probability).

    --publish puts the profile on the compacted topic flowops.references, keyed by
    the model: the stream workers test the model's windows that close after it
    against it. --mlflow-run logs it to an MLflow run (the server must proxy its
    artifacts: `mlflow server --serve-artifacts`, the default). Both can go with -o.

    \b
    Examples:
      flowops drift baseline --data train.csv --model credit -o profile.json
      flowops drift baseline --data train.csv --model credit --publish
      flowops drift baseline --data train.parquet --model credit --publish \\
          --bootstrap kafka:9092 --mlflow-run 3f2a... --mlflow-uri http://mlflow:5000
    """
    from flowops.extras import require_extra

    _check_baseline_flags(model, publish, model_version, bootstrap, mlflow_run, mlflow_uri)
    require_extra("drift", *(("numpy", "aiokafka") if publish else ("numpy",)))
    from flowops.cli import render
    from flowops.config import load_settings
    from flowops.data import build_profile

    settings = load_settings(
        config_file,
        {
            "drift": {"bins": bins, "sample_size": sample_size},
            "kafka": {"bootstrap": bootstrap},
            "mlflow": {"tracking_uri": mlflow_uri},
        },
    )
    if mlflow_run is not None and settings.mlflow.tracking_uri is None:
        raise click.UsageError(
            "--mlflow-run needs a tracking server: --mlflow-uri URL, mlflow.tracking_uri "
            "(FLOWOPS_MLFLOW__TRACKING_URI) or MLFLOW_TRACKING_URI"
        )
    profile = build_profile(
        data_file,
        features=features,
        bins=settings.drift.bins,
        sample_size=settings.drift.sample_size,
        model=model,
        prediction_column=prediction_column,
    )
    if output is not None or not (publish or mlflow_run):
        render.write_profile(profile, None if output == "-" else output, source=data_file)
    else:
        render.note(render.profile_summary(profile, data_file))
    if publish:
        from flowops.baseline import publish_profile
        from flowops.logs import quiet_kafka_client

        assert model is not None  # _check_baseline_flags
        quiet_kafka_client()
        event = publish_profile(profile, settings.kafka, model=model, version=model_version)
        for_version = f" (version {event.version})" if event.version is not None else ""
        render.note(
            f"published the profile of {event.model}{for_version} to {event.TOPIC} "
            f"at {settings.kafka.bootstrap}"
        )
    if mlflow_run is not None:
        from flowops.baseline import log_profile

        uri = log_profile(profile, settings.mlflow, mlflow_run)
        render.note(f"logged the profile to MLflow run {mlflow_run}: {uri}")


def _check_baseline_flags(
    model: str | None,
    publish: bool,
    model_version: str | None,
    bootstrap: str | None,
    mlflow_run: str | None,
    mlflow_uri: str | None,
) -> None:
    """Flags that mean nothing without another are usage errors, not silently ignored."""
    if publish and not model:
        raise click.UsageError(
            "--publish needs --model NAME: profiles are keyed by model on flowops.references"
        )
    for flag, value, needs, given in (
        ("--model-version", model_version, "--publish", publish),
        ("--bootstrap", bootstrap, "--publish", publish),
        ("--mlflow-uri", mlflow_uri, "--mlflow-run", mlflow_run),
    ):
        if value is not None and not given:
            raise click.UsageError(f"{flag} goes with {needs}")


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
    "--verdict",
    metavar="RULE",
    help="When the model drifts: 'any' drifted feature, or 'share:F' of the features "
    "(e.g. share:0.3). [default: any; drift.verdict]",
)
@output_option(["table", "json"], "Table for people, JSON for programs.")
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    help="Also write the report as one self-contained HTML page (plots, no network).",
)
@click.option(
    "--label-column",
    metavar="COL",
    help="The column holding the true outcomes (with --prediction-column): the report "
    "gains a performance section, against the reference's when the reference is data.",
)
@_shared_options
@click.pass_context
def compare(
    ctx: click.Context,
    reference: str,
    current: str,
    alpha: float | None,
    correction: str | None,
    verdict: str | None,
    output_format: Literal["table", "json"],
    html_file: str | None,
    label_column: str | None,
    features: list[str] | None,
    prediction_column: str | None,
    bins: int | None,
    config_file: str | None,
) -> None:
    """Compare current data with a reference and say whether it drifted.

    Per feature: PSI with its p-value, and KS (numeric) or chi-square (categorical),
    or the tests drift.tests names (wasserstein, js too). A feature's p-value is
    min(1, k x the smallest of its k test p-values); the features' p-values are then
    corrected together. A test drifts when its adjusted p-value is below alpha AND its
    effect size reaches its floor (drift.min_effect: PSI 0.1, KS D 0.1, chi2 Cohen's
    w 0.3, Wasserstein 0.2 SD, JS 0.1); its severity is critical from drift.critical_effect
    (PSI 0.25) on. A feature drifts when any test does; the model by --verdict, and the
    exit code follows the model's verdict. --bins applies when the reference is data; a
    profile keeps the bins it was built with. --prediction-column names the current
    file's predictions, compared with the profile's. --label-column adds how well the
    predictions did (accuracy, precision, recall, F1, ROC AUC, log loss; or MAE, RMSE,
    MAPE), each with its 95% interval, and against reference data whether a rate dropped
    by more than 0.05; the label column is no feature.

    \b
    Examples:
      flowops drift compare --reference profile.json --current today.csv
      flowops drift compare --reference train.parquet --current today.jsonl -o json
      flowops drift compare --reference profile.json --current today.csv --html report.html
      flowops drift compare --reference profile.json --current today.jsonl \\
          --prediction-column score --verdict share:0.3
    """
    from flowops.extras import require_extra

    require_extra("drift", "numpy", "scipy")
    from flowops.cli import render
    from flowops.config import load_settings
    from flowops.data import compare_files
    from flowops.drift.rules import rules_from_settings

    overrides = {
        "drift": {"bins": bins, "alpha": alpha, "correction": correction, "verdict": verdict}
    }
    settings = load_settings(config_file, overrides).drift
    if label_column is not None:
        if prediction_column is None:
            raise click.UsageError("--label-column needs --prediction-column")
        features = _without_label(features, reference, label_column, prediction_column)
    report = compare_files(
        reference,
        current,
        features=features,
        bins=settings.bins,
        alpha=settings.alpha,
        correction=settings.correction,
        rules=rules_from_settings(settings),
        prediction_column=prediction_column,
    )
    extra = _performance(reference, current, label_column, prediction_column)
    render.write_report(report, output_format, extra)
    if html_file is not None:
        _write_html(
            html_file,
            report,
            (reference, current, prediction_column),
            features,
            settings.bins,
            extra,
        )
    ctx.exit(1 if report.drift else 0)


def _without_label(
    features: list[str] | None, reference: str, label: str, prediction: str
) -> list[str] | None:
    """The features to compare: all of reference data's columns but the label (and the
    predictions, which are compared as the feature 'prediction')."""
    from flowops.data import read_profile
    from flowops.predictions import column_names

    if features is not None or read_profile(reference) is not None:
        return features
    return [name for name in column_names(reference) if name not in (label, prediction)]


def _performance(
    reference: str, current: str, label_column: str | None, prediction_column: str | None
) -> dict[str, Any]:
    """The report's performance section (empty without a label column)."""
    if label_column is None or prediction_column is None:
        return {}
    from flowops.data import read_profile
    from flowops.reports.performance import file_performance

    data = None if read_profile(reference) is not None else reference
    section = file_performance(
        data, current, label_column=label_column, prediction_column=prediction_column
    )
    return {"performance": section}


def _write_html(
    path: str,
    report: Any,
    files: tuple[str, str, str | None],
    features: list[str] | None,
    bins: int,
    extra: dict[str, Any],
) -> None:
    """The page shows the JSON report's dict exactly as ``-o json`` prints it (with the
    sections beside it: ``extra``); ``files``: reference, current, prediction column."""
    import orjson

    from flowops.cli import render
    from flowops.reports import write_comparison_html

    reference, current, predictions = files
    data = {**orjson.loads(render.report_json(report)), **extra}
    size = write_comparison_html(
        path,
        data,
        reference,
        current,
        features=features,
        bins=bins,
        prediction_column=predictions,
    )
    render.note(f"wrote the HTML report to {path} ({size:,} bytes)")


@drift.command(epilog=_WATCH_EXIT_CODES, short_help="Show drift alerts as they arrive.")
@click.option("--model", metavar="NAME", help="Only this model's alerts. Default: every model's.")
@bootstrap_option()
@click.option(
    "--from-beginning",
    is_flag=True,
    help="Start with the oldest alert the topic holds. Default: the next one.",
)
@output_option(
    ["table", "json"], "A table for people; JSON lines (one alert a line, flushed) for programs."
)
@click.option(
    "--max", "max_alerts", type=click.IntRange(min=1), metavar="N", help="Stop after N alerts."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after SECONDS of watching.",
)
@config_option
def watch(
    model: str | None,
    bootstrap: str | None,
    from_beginning: bool,
    output_format: Literal["table", "json"],
    max_alerts: int | None,
    timeout: float | None,
    config_file: str | None,
) -> None:
    """Show drift alerts as the stream workers publish them, until Ctrl-C.

    Reads flowops.drift.alerts (no consumer group: every watcher sees every alert, and
    nothing is committed) and shows each alert once: a worker that restarts may publish
    an alert again, with the same alert_id, and the copy is dropped. The table's rows
    are printed as alerts arrive; -o json prints each alert as one line of JSON, the
    event as it is on the topic (docs/events/drift-alert.v1.json).

    \b
    Examples:
      flowops drift watch
      flowops drift watch --model credit --bootstrap kafka:9092
      flowops drift watch --from-beginning -o json --max 10 --timeout 30 | jq .feature
    """
    from flowops.extras import require_extra

    require_extra("drift", "aiokafka")
    from flowops.cli import render
    from flowops.config import load_settings
    from flowops.logs import quiet_kafka_client
    from flowops.watch import watch as watch_alerts

    settings = load_settings(config_file, {"kafka": {"bootstrap": bootstrap}})
    quiet_kafka_client()
    options: dict[str, Any] = {
        "model": model,
        "from_beginning": from_beginning,
        "max_alerts": max_alerts,
        "timeout": timeout,
        "say": render.note,
    }
    try:
        if output_format == "json":
            stats = watch_alerts(settings.kafka, show=_echo_json, **options)
        else:
            table = render.AlertTable(render.stdout_console())
            stats = watch_alerts(settings.kafka, show=table.add, **options)
    except BrokenPipeError:
        _drop_stdout()  # the reader went away (`| head`): nothing is wrong
        return
    dropped = f", {stats.duplicates} duplicate{'s' * (stats.duplicates != 1)} dropped"
    render.note(
        f"{stats.alerts} alert{'s' * (stats.alerts != 1)}{dropped if stats.duplicates else ''}"
    )


def _echo_json(alert: Any) -> None:
    from flowops.cli import render

    click.echo(render.alert_line(alert))  # click.echo flushes: a reader sees each line at once


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that Python's last flush at exit does not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
