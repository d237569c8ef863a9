"""Options several commands share, spelled once: the config file, Kafka, the metrics port,
and ``-o`` for a choice of output formats."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

__all__ = ["bootstrap_option", "config_option", "metrics_port_option", "output_option"]

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML settings file (also FLOWOPS_CONFIG).",
)

metrics_port_option = click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="Port of /metrics on 127.0.0.1. [default: 6066; streams.metrics_port]",
)


def bootstrap_option(
    help: str = "Kafka bootstrap servers. [default: 127.0.0.1:9092; kafka.bootstrap]",
) -> Callable[[Any], Any]:
    """``--bootstrap HOST:PORT``, with the command's own help when it means more."""
    return click.option("--bootstrap", metavar="HOST:PORT", help=help)


def output_option(choices: Sequence[str], help: str) -> Callable[[Any], Any]:
    """``-o/--output`` as ``output_format``, one of ``choices`` (the first is the default)."""
    return click.option(
        "-o",
        "--output",
        "output_format",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help=help,
    )
