"""``flowops monitor``: the monitoring agent, or one round of its probes for cron and CI.

Thin: reads the settings and calls :mod:`flowops.monitor.server`; aiohttp, aiokafka and
the probes are imported only when the command runs.
"""

from __future__ import annotations

import asyncio
import sys

import click

from flowops.cli.options import config_option, output_option

__all__ = ["monitor"]

_EXIT_CODES = """\b
Exit codes:
  0  every check passed (--once), or stopped by Ctrl-C or SIGTERM
  1  a check failed (--once)
  2  configuration error, or the listen address is taken (one line on stderr)
"""


@click.command(epilog=_EXIT_CODES)
@config_option
@click.option(
    "--once",
    is_flag=True,
    help="Probe everything once, print the results, and exit 1 if anything is unhealthy.",
)
@output_option(("table", "json"), "With --once: a table, or JSON for scripts.")
@click.option(
    "--listen", metavar="HOST:PORT", help="Serve /metrics here. [default: 127.0.0.1:9108]"
)
def monitor(config_file: str | None, once: bool, output_format: str, listen: str | None) -> None:
    """Probe MLflow, DVC repositories, model servers, Kafka and FlowOps services:
    Prometheus metrics, health events on flowops.health, alerts to Alertmanager.

    Targets come from the config file's monitor section; every probe runs at once,
    each within its timeout, every monitor.interval seconds. /metrics, /status (JSON)
    and /healthz are served on monitor.listen. See docs/monitor.md.

    \b
    Example config (flowops.yaml):
      monitor:
        mlflow:
          - url: http://127.0.0.1:5000
        model_servers:
          - name: iris
            url: http://127.0.0.1:9001
            protocol: kserve_v2     # or mlflow, or http
        dvc:
          - path: /srv/models-repo
    \b
      flowops monitor --once -o json --config flowops.yaml   # cron, CI
      flowops monitor --config flowops.yaml                  # the agent
    """
    from flowops.extras import require_extra

    require_extra("monitor")
    from flowops.config import load_settings

    settings = load_settings(config_file, {"monitor": {"listen": listen}})
    if once:
        _once(settings, output_format)
        return
    from flowops.monitor.server import run_monitor

    run_monitor(settings, say=lambda line: click.echo(f"flowops monitor: {line}", err=True))


def _once(settings: object, output_format: str) -> None:
    from flowops.cli.render import health_table, stdout_console
    from flowops.config import Settings
    from flowops.logs import quiet_kafka_client
    from flowops.monitor.server import probe_once

    assert isinstance(settings, Settings)
    quiet_kafka_client()
    found = asyncio.run(probe_once(settings))
    if output_format == "json":
        import orjson

        click.echo(orjson.dumps(found.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        health_table(found.results, stdout_console())
    if not found.healthy:
        sys.exit(1)
