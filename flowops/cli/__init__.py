"""The ``flowops`` command line.

Commands are thin: they parse, call one function, render. Command groups are imported
only when they run, so ``flowops --help`` never pays for numpy, scipy or Faust.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

import click

from flowops._version import __version__

if TYPE_CHECKING:
    from flowops.errors import MissingExtraError

__all__ = ["EXIT_CODES_HELP", "LazyGroup", "cli", "main"]

# name -> (module, attribute, one-line help shown by `flowops --help` without importing it)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "build": (
        "flowops.cli.build",
        "build",
        "Build OCI images of the gateway, stream worker and monitor (buildah, podman, ...).",
    ),
    "deploy": (
        "flowops.cli.deploy",
        "deploy",
        "Deploy to Kubernetes (infra/k8s overlays), wait for the rollout, roll back.",
    ),
    "drift": (
        "flowops.cli.drift",
        "drift",
        "Profile reference data, compare new data with it, publish it, watch alerts.",
    ),
    "gateway": (
        "flowops.cli.gateway",
        "gateway",
        "Run the gateway in front of model servers; it publishes their traffic to Kafka.",
    ),
    "labels": (
        "flowops.cli.labels",
        "labels",
        "Send labels (the true outcomes of requests) to Kafka for the quality join.",
    ),
    "monitor": (
        "flowops.cli.monitor",
        "monitor",
        "Probe MLflow, DVC, model servers and Kafka: metrics, health events, alerts.",
    ),
    "streams": (
        "flowops.cli.streams",
        "streams",
        "Run the stream workers that turn traffic into drift alerts.",
    ),
    "test": (
        "flowops.cli.gate",
        "test",
        "A model project's CI gate: unit tests, contract checks of a model server, drift.",
    ),
    "up": (
        "flowops.cli.up",
        "up",
        "Run it all on this machine: broker, worker, gateway, monitor (--demo: a model).",
    ),
}

EXIT_CODES_HELP = """\b
Exit codes:
  0  success (no drift, healthy)
  1  the check found something (drift, unhealthy)
  2  usage, input or configuration error
  3  a service FlowOps needs did not answer
"""


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute, _ = entry
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self._short_help(ctx, name)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, ctx: click.Context, name: str) -> str:
        if name in _COMMANDS:
            return _COMMANDS[name][2]
        return self.commands[name].get_short_help_str()

    def invoke(self, ctx: click.Context) -> Any:
        from flowops.errors import FlowOpsError

        try:
            return super().invoke(ctx)
        except FlowOpsError as exc:
            click.echo(f"flowops: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except ModuleNotFoundError as exc:
            # a package of an extra that this install left out, met where no
            # require_extra() looked first: the same one line, never a traceback
            missing = _missing_extra(exc, ctx.invoked_subcommand)
            if missing is None:
                raise
            click.echo(f"flowops: error: {missing}", err=True)
            ctx.exit(missing.exit_code)


def _missing_extra(exc: ModuleNotFoundError, command: str | None) -> MissingExtraError | None:
    """The MissingExtraError to report for ``exc``, or None if the module is not one an
    extra brings (a bug, which keeps its traceback)."""
    from flowops.errors import MissingExtraError
    from flowops.extras import extra_of_module

    extra = extra_of_module(exc.name or "", command)
    return None if extra is None else MissingExtraError(extra, exc.name or "")


@click.group(cls=LazyGroup, epilog=EXIT_CODES_HELP, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="flowops")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML settings file for the command (also FLOWOPS_CONFIG; the command's own "
    "--config wins).",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """FlowOps keeps machine-learning models honest in production.

    It detects drift in model traffic, fronts model servers with a gateway that records
    their traffic, and watches the platform's health. Start with `flowops drift --help`.
    """
    if config_file is not None:
        from flowops.config import set_default_config_file

        ctx.call_on_close(set_default_config_file(config_file))


def main() -> None:
    """Entry point of the ``flowops`` script and ``python -m flowops``."""
    cli(prog_name="flowops", args=sys.argv[1:])
