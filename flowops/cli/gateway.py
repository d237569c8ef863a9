"""``flowops gateway``: the API gateway in front of model servers.

Thin: reads the settings and calls :func:`flowops.gateway.server.run_gateway`; aiohttp
and the gateway's modules are imported only when the command runs.
"""

from __future__ import annotations

import click

from flowops.cli.options import bootstrap_option, config_option

__all__ = ["gateway"]

_EXIT_CODES = """\b
Exit codes:
  0  stopped by Ctrl-C or SIGTERM, cleanly
  2  configuration error, or the listen address is taken (one line on stderr)
"""


@click.command(epilog=_EXIT_CODES)
@config_option
@click.option(
    "--listen", metavar="HOST:PORT", help="Serve here. [default: 127.0.0.1:8080; gateway.listen]"
)
@bootstrap_option("Kafka for the traffic events. [default: 127.0.0.1:9092; kafka.bootstrap]")
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One JSON line per request on stdout.",
)
@click.option(
    "--new-key",
    metavar="NAME",
    help="Print a new API key for NAME and the gateway.auth.api_keys entry (its hash), "
    "then exit: give the key to the client, put the entry in the config.",
)
def gateway(
    config_file: str | None,
    listen: str | None,
    bootstrap: str | None,
    access_log: bool,
    new_key: str | None,
) -> None:
    """Run the gateway: route, balance, limit and authenticate requests to model
    servers, and publish every request and response to Kafka as a traffic event.

    Routes come from the config file's gateway section; a slow or down Kafka never
    delays or fails a request (events queue up to gateway.publish.queue_size, then are
    dropped and counted). /healthz, /readyz, /metrics and /admin/upstreams are the
    gateway's own. See docs/gateway.md.

    \b
    Example config (flowops.yaml):
      gateway:
        listen: 127.0.0.1:8080
        routes:
          - name: iris
            prefix: /models/iris
            upstreams: [http://127.0.0.1:9001, http://127.0.0.1:9002]
    \b
      flowops gateway --config flowops.yaml
      flowops gateway --new-key ci-pipeline   # an API key and its config entry
    """
    from flowops.extras import require_extra

    require_extra("gateway")
    if new_key is not None:
        _print_new_key(new_key)
        return
    from flowops.config import load_settings
    from flowops.gateway.server import run_gateway

    overrides = {"gateway": {"listen": listen}, "kafka": {"bootstrap": bootstrap}}
    run_gateway(
        load_settings(config_file, overrides),
        say=lambda line: click.echo(f"flowops gateway: {line}", err=True),
        access_log=access_log,
        reread=lambda: load_settings(config_file, overrides),  # SIGHUP: the routes anew
    )


def _print_new_key(name: str) -> None:
    """The key on stdout (for a script to capture), the config entry on stderr."""
    import yaml
    from pydantic import ValidationError

    from flowops.gateway.auth import ApiKeySettings, generate_api_key, hash_api_key

    key = generate_api_key()
    try:
        entry = ApiKeySettings(name=name, sha256=hash_api_key(key))
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise click.BadParameter(f"{name!r}: {reason}", param_hint="--new-key") from None
    click.echo(key)
    snippet = yaml.safe_dump(
        {"gateway": {"auth": {"api_keys": [entry.model_dump(exclude_none=True)]}}}, sort_keys=False
    )
    click.echo(f"\nAdd to the config (the key itself is not stored anywhere):\n{snippet}", err=True)
