"""``flowops deploy``: apply an ``infra/k8s`` overlay to a cluster, wait, roll back.

Thin: parses, calls :func:`flowops.ops.deploy.deploy`, renders. kubernetes-asyncio is
imported only when the command runs.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from flowops.cli.options import config_option, output_option

if TYPE_CHECKING:
    from flowops.ops.deploy import DeployReport

__all__ = ["deploy"]

_EXIT_CODES = """\b
Exit codes:
  0  applied (and rolled out, with --wait or --rollback), or dry run done
  1  a rollout failed or timed out, or a rollback found nothing to return to
  2  user or configuration error: no kubeconfig, bad context, no such overlay,
     a missing CRD, 401/403 from the cluster, an invalid object (422)
  3  the cluster did not answer (connection refused, timeout)
"""


@click.command(epilog=_EXIT_CODES)
@click.option("--env", required=True, metavar="dev|staging|prod", help="The overlay to deploy.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Server-side dry run (dryRun=All); no cluster: print the manifests.",
)
@click.option("--wait", is_flag=True, help="Wait for every rollout, like kubectl rollout status.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Seconds to wait for rollouts. [default: 300; deploy.timeout]",
)
@click.option(
    "--rollback",
    is_flag=True,
    help="Return each Deployment and Rollout to its previous revision, then wait.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="SERVICE=REF",
    help="Image of one service (gateway, worker, monitor); repeatable.",
)
@click.option("--tag", metavar="T", help="Tag of all three images. [default: <version>-<commit>]")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="kubeconfig file. [default: $KUBECONFIG, ~/.kube/config]",
)
@click.option(
    "--context", metavar="NAME", help="kubeconfig context. [default: its current-context]"
)
@output_option(("table", "json"), "What was applied and how each rollout ended.")
@config_option
def deploy(
    env: str,
    dry_run: bool,
    wait: bool,
    timeout: float | None,
    rollback: bool,
    images: tuple[str, ...],
    tag: str | None,
    kubeconfig: str | None,
    context: str | None,
    output_format: str,
    config_file: str | None,
) -> None:
    """Render the infra/k8s overlay ENV with the built images, apply it with server-side
    apply (field manager flowops), and with --wait follow each rollout until it is done,
    failed or out of time. Argo Rollouts canaries are followed too.

    Images are <deploy.registry>/flowops-<service>:<tag>, or the overlay's image names
    at <tag>; the tag defaults to the one `flowops build` gives (<version>-<commit>).
    Progress goes to stderr, the result to stdout. See docs/deploy.md.

    \b
    Examples:
      flowops deploy --env dev --dry-run                 # what would change
      flowops deploy --env staging --tag 0.1.0-1a2b3c4 --wait --timeout 600
      flowops deploy --env prod --rollback -o json       # previous revision, then wait
    """
    from flowops.config import load_settings, section
    from flowops.ops.deploy import DeployRequest, DeploySettings, parse_images
    from flowops.ops.deploy import deploy as run_deploy

    settings = load_settings(config_file)
    overrides = {"kubeconfig": kubeconfig, "context": context, "timeout": timeout}
    values = settings.deploy | {k: v for k, v in overrides.items() if v is not None}
    deploy_settings = section(DeploySettings, values, "deploy")
    request = DeployRequest(env, dry_run, wait, rollback, tag, parse_images(images))
    report = asyncio.run(run_deploy(request, deploy_settings, say=_say))
    _render(report, output_format)
    if not report.ok:
        sys.exit(1)


def _say(line: str) -> None:
    click.echo(f"flowops deploy: {line}", err=True)


def _render(report: DeployReport, output_format: str) -> None:
    if report.offline_yaml is not None:
        _say(str(report.offline_reason))
        click.echo(report.offline_yaml, nl=False)
        return
    if output_format == "json":
        import orjson

        click.echo(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode())
        return
    from rich.table import Table

    from flowops.cli.render import stdout_console

    console = stdout_console()
    what = "server dry run" if report.dry_run else "applied"
    table = Table("kind", "object", "result", title=f"{report.env} on {report.server} ({what})")
    for applied in report.objects:
        where = "/".join(p for p in (applied.namespace, applied.name) if p)
        table.add_row(applied.kind, where, applied.action)
    console.print(table)
    if report.rollouts:
        rollouts = Table("kind", "object", "rollout", "status", title="rollouts")
        for waited in report.rollouts:
            where = "/".join(p for p in (waited.namespace, waited.name) if p)
            rollouts.add_row(waited.kind, where, waited.state, waited.message)
        console.print(rollouts)
    for waited in report.rollouts:
        if not waited.ok:
            where = "/".join(p for p in (waited.namespace, waited.name) if p)
            _say(f"rollout of {waited.kind} {where} {waited.state}: {waited.message}")
