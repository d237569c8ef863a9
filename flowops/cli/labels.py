"""``flowops labels``: send the true outcomes of requests, known later, to Kafka.

Thin: ``send`` reads the file with :func:`flowops.quality.upload.read_labels`, sends it
with :func:`~flowops.quality.upload.send_labels` and prints what went where.
"""

from __future__ import annotations

import click

from flowops.cli.options import bootstrap_option, config_option, output_option

__all__ = ["labels", "send"]

_EXIT_CODES = """\b
Exit codes:
  0  every label sent and acknowledged by the broker
  2  usage, input or configuration error (one line on stderr)
  3  the Kafka broker did not answer or did not take a message (one line on stderr)
"""


@click.group()
def labels() -> None:
    """Send labels (the true outcomes of requests) to flowops.labels.

    A label names its request by the request_id the gateway (or your model server)
    put on the request's traffic row, so that the stream worker can join it to the
    model's prediction and measure how well the model does. See docs/quality.md.
    """


@labels.command(epilog=_EXIT_CODES)
@click.option(
    "--data",
    "data_file",
    required=True,
    metavar="FILE",
    help="Labels, one a row: .csv, .jsonl/.ndjson/.json (JSON Lines) or .parquet.",
)
@click.option(
    "--model",
    metavar="NAME",
    help="The model of every row. Default: the file's 'model' column.",
)
@click.option(
    "--label-column",
    default="label",
    show_default=True,
    metavar="NAME",
    help="The column holding the labels (numbers or strings).",
)
@click.option(
    "--id-column",
    default="request_id",
    show_default=True,
    metavar="NAME",
    help="The column holding each row's request id.",
)
@bootstrap_option()
@config_option
@output_option(["text", "json"], "What to print: a line, or JSON on stdout.")
def send(
    data_file: str,
    model: str | None,
    label_column: str,
    id_column: str,
    bootstrap: str | None,
    config_file: str | None,
    output_format: str,
) -> None:
    """Send a file of labels to flowops.labels, keyed by model, and wait for the acks.

    Optional columns: 'version' (the model version a label is for; default: whichever
    answered), 'timestamp' (Unix seconds when the outcome became known; default: now).
    A row without a request id or a label stops the upload before anything is sent,
    naming the row.

    \b
    Examples:
      flowops labels send --data outcomes.csv --model credit
      flowops labels send --data outcomes.parquet --label-column defaulted \\
          --id-column rid --bootstrap kafka:9092 -o json
    """
    from flowops.extras import require_extra

    require_extra("drift", "numpy", "aiokafka")
    from flowops.config import load_settings
    from flowops.logs import quiet_kafka_client
    from flowops.quality.upload import read_labels, send_labels

    settings = load_settings(config_file, {"kafka": {"bootstrap": bootstrap}})
    batches = read_labels(data_file, model=model, label_column=label_column, id_column=id_column)
    quiet_kafka_client()
    sent = send_labels(batches, settings.kafka)
    if output_format == "json":
        import orjson

        click.echo(orjson.dumps(sent.to_dict()).decode())
        return
    models = ", ".join(f"{name} ({rows})" for name, rows in sent.models.items())
    click.echo(f"sent {sent.rows} label(s) to {sent.topic} at {sent.bootstrap}: {models}")
