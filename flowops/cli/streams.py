"""``flowops streams``: the stream workers that turn traffic into drift alerts.

Thin: ``worker`` reads its settings and calls :func:`streams.worker.run_worker`. Faust
is imported only when the command runs, so ``flowops --help`` does not load it.
"""

from __future__ import annotations

import click

from flowops.cli.options import bootstrap_option, config_option, metrics_port_option

__all__ = ["streams", "worker"]

_EXIT_CODES = """\b
Exit codes:
  0  stopped by Ctrl-C or SIGTERM, cleanly
  2  configuration error (one line on stderr)
  3  the Kafka broker did not answer
"""


@click.group()
def streams() -> None:
    """Run the stream workers that turn model traffic into drift alerts."""


@streams.command(epilog=_EXIT_CODES)
@config_option
@bootstrap_option()
@metrics_port_option
def worker(config_file: str | None, bootstrap: str | None, metrics_port: int | None) -> None:
    """Run one stream worker until Ctrl-C.

    It reads flowops.traffic in batches, keeps a tumbling window per model version
    (streams.window, streams.models.<name>.window), tests each closed window against
    the model's reference profile (flowops.references) and publishes drift alerts to
    flowops.drift.alerts; bad events go to flowops.deadletter with their reason. Start
    more workers with the same streams.app_id to share the partitions.

    \b
    Example:
      flowops streams worker --bootstrap 127.0.0.1:9092 --metrics-port 6066
    """
    from flowops.extras import require_extra

    require_extra("worker")
    from flowops.config import load_settings
    from streams.worker import run_worker

    settings = load_settings(
        config_file,
        {"kafka": {"bootstrap": bootstrap}, "streams": {"metrics_port": metrics_port}},
    )
    run_worker(settings, say=lambda line: click.echo(f"flowops streams: {line}", err=True))
