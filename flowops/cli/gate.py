"""``flowops test``: a model project's CI gate: unit tests, contract checks, drift.

Thin: parses, calls :func:`flowops.ops.gate.run_gate`, renders. aiohttp, numpy and
the drift engine are imported only when the command runs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from flowops.cli.options import config_option, output_option

if TYPE_CHECKING:
    from flowops.ops.gate import GateReport

__all__ = ["test"]

_EXIT_CODES = """\b
Exit codes:
  0  every case passed (or was skipped)
  1  a case failed, or could not run (a model server that did not answer, a
     pytest suite that crashed, a data file that cannot be read)
  2  usage or configuration error: nothing ran (one line on stderr)
"""


def _suites(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    from flowops.ops.gate import parse_suites

    if value is None:
        return None
    try:
        return parse_suites(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(epilog=_EXIT_CODES)
@click.option(
    "--suite",
    "suites",
    callback=_suites,
    metavar="unit,contract,drift",
    help="The suites to run, comma-separated. [default: every configured one]",
)
@output_option(("table", "json"), "A table for people, JSON for scripts.")
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, writable=True),
    metavar="PATH",
    help="Also write JUnit XML here: one testsuite per suite.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show pytest's output as it runs.")
@config_option
def test(
    suites: list[str] | None,
    output_format: str,
    junit_path: str | None,
    verbose: bool,
    config_file: str | None,
) -> None:
    """Run a model project's CI gate and exit non-zero when anything fails.

    unit runs the project's pytest suites; contract sends sample payloads to a model
    server (directly or through the gateway) and checks each answer's status, keys,
    number of predictions, and the latency budgets; drift compares a data file with
    the model's reference profile, as `flowops drift compare` does. Each case's result
    goes to stderr as it ends; the summary (a table or JSON) goes to stdout. See
    docs/test.md.

    \b
    Example config (flowops.yaml):
      test:
        unit:
          - {name: model, paths: [tests], args: [-q]}
        contract:
          url: http://127.0.0.1:5001       # a model server, or a gateway route
          protocol: mlflow                 # or kserve_v2, http
          samples: [samples/*.json]
          expect: {status: 200, latency_p95_ms: 200}
          headers_from_env: {X-API-Key: MODEL_API_KEY}
        drift:
          reference: profile.json          # flowops drift baseline -o profile.json
          data: data/latest.csv
    \b
      flowops test --config flowops.yaml --junit reports/gate.xml
      flowops test --suite contract,drift -o json --config flowops.yaml
    """
    from flowops.extras import require_extra

    require_extra("deploy", "aiohttp")  # the contract checks' client
    from flowops.config import load_settings
    from flowops.ops.gate import gate_settings, run_gate
    from flowops.ops.junit import write_junit

    settings = load_settings(config_file)
    gate = gate_settings(settings.test, suites)
    report = run_gate(
        gate,
        suites,
        drift_defaults=settings.drift,
        say=_say,
        echo=(lambda line: _say(f"| {line}")) if verbose else None,
    )
    if junit_path is not None:
        write_junit(report.cases, junit_path)
        _say(f"wrote JUnit XML to {junit_path}")
    _render(report, output_format)
    if not report.ok:
        sys.exit(1)


def _say(line: str) -> None:
    click.echo(f"flowops test: {line}", err=True)


def _render(report: GateReport, output_format: str) -> None:
    if output_format == "json":
        import orjson

        click.echo(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode())
        return
    from rich.table import Table
    from rich.text import Text

    from flowops.cli.render import stdout_console

    styles = {"pass": "green", "fail": "bold red", "error": "bold red", "skip": "yellow"}
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in ("suite", "case", "result", "seconds", "detail"):
        table.add_column(header, justify="right" if header == "seconds" else "left")
    for case in report.cases:
        result = Text(case.outcome, style=styles[case.outcome])
        table.add_row(case.suite, case.case, result, f"{case.seconds:.3f}", case.detail)
    console = stdout_console()
    console.print(table)
    counts = report.counts()
    said = ", ".join(f"{n} {word}" for word, n in counts.items() if n)
    console.print(f"{'passed' if report.ok else 'FAILED'}: {said}")
