"""``flowops labels send``'s work: a file of labels read into batches and sent to Kafka.

A file (CSV, JSON Lines or Parquet, read by :func:`flowops.data.read_table`) holds one
label a row: a request id column (``request_id`` unless told), a label column
(``label`` unless told), and optionally ``model``, ``version`` and ``timestamp``
columns. ``--model`` names the model for every row and wins over a ``model`` column; a
file with neither is refused. Rows without a ``timestamp`` get the time of the upload:
when the outcome became known to FlowOps.

>>> import tempfile
>>> from pathlib import Path
>>> folder = tempfile.TemporaryDirectory()
>>> path = Path(folder.name, "labels.csv")
>>> _ = path.write_text("request_id,label,timestamp\\nr-1,1,10\\nr-2,0,11\\n")
>>> [(b.model, b.request_ids, b.labels) for b in read_labels(path, model="credit")]
[('credit', ['r-1', 'r-2'], [1, 0])]
>>> _ = path.write_text("request_id,label\\nr-1,\\n")
>>> read_labels(path, model="credit")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
flowops.errors.InputError: ...labels.csv: row 1: column 'label': no label: ...
>>> folder.cleanup()
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from flowops.config import KafkaSettings
from flowops.errors import InputError

if TYPE_CHECKING:
    from flowops.data import Column
    from flowops.events.labels import LabelBatch, LabelValue

__all__ = ["SentLabels", "read_labels", "send_labels"]

_SOURCE: Final = "/flowops/cli/labels-send"


@dataclass(frozen=True)
class SentLabels:
    """What :func:`send_labels` sent: rows and batches by model, the topic, the broker."""

    rows: int
    models: dict[str, int]
    topic: str
    bootstrap: str

    def to_dict(self) -> dict[str, Any]:
        """As ``-o json`` prints it."""
        return {
            "rows": self.rows,
            "models": self.models,
            "topic": self.topic,
            "bootstrap": self.bootstrap,
        }


def read_labels(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    label_column: str = "label",
    id_column: str = "request_id",
    now: float | None = None,
) -> list[LabelBatch]:
    """The file's labels, one batch per (model, version) in order of first row.

    Raises :class:`~flowops.errors.InputError` naming the file, row and column for a
    missing column, an empty id or label, or no model.
    """
    from flowops.data import read_table

    table = read_table(path, kinds={id_column: "categorical"})
    file = str(path)
    for name in (id_column, label_column):
        if name not in table.columns:
            available = ", ".join(table.columns)
            raise InputError(f"no such column; the file has: {available}", path=file, column=name)
    ids = _texts(table.columns[id_column], file, id_column, "no request id")
    labels = _labels(table.columns[label_column], file, label_column)
    models = _models(table.columns.get("model"), model, table.rows, file)
    versions = _optional_texts(table.columns.get("version"), table.rows)
    stamps = _timestamps(table.columns.get("timestamp"), table.rows, now, file)
    return _group(models, versions, ids, labels, stamps)


def send_labels(
    batches: Sequence[LabelBatch], kafka: KafkaSettings, *, topic: str | None = None
) -> SentLabels:
    """Send the batches to ``flowops.labels`` (creating missing FlowOps topics first)
    and wait for every acknowledgement; :class:`~flowops.errors.BrokerError` if not."""
    return asyncio.run(_send(batches, kafka, topic))


async def _send(
    batches: Sequence[LabelBatch], kafka: KafkaSettings, topic: str | None
) -> SentLabels:
    from flowops.events import LabelProducer, Topics, ensure_topics

    name = topic or Topics.LABELS
    if topic is None:
        await ensure_topics(kafka, kafka.partitions, replication=kafka.replication)
    producer = LabelProducer(
        kafka.bootstrap,
        topic=name,
        source=_SOURCE,
        client_id=kafka.client_id,
        compression=kafka.compression,
        idempotence=kafka.idempotence,
        security=kafka,
    )
    async with producer:
        for batch in batches:
            await producer.send(batch)
    models: dict[str, int] = {}
    for batch in batches:
        models[batch.model] = models.get(batch.model, 0) + batch.rows
    return SentLabels(sum(models.values()), models, name, kafka.bootstrap)


def _texts(column: Column, file: str, name: str, what: str) -> list[str]:
    values = _optional_texts(column, len(column))
    for row, value in enumerate(values, start=1):
        if value is None or value == "":
            raise InputError(f"{what}: every row needs one", path=file, column=name, row=row)
    return values  # type: ignore[return-value]  # checked above: no None left


def _optional_texts(column: Column | None, rows: int) -> list[str | None]:
    if column is None:
        return [None] * rows
    if isinstance(column, np.ndarray):
        return [None if math.isnan(value) else _number_text(value) for value in column.tolist()]
    return list(column)


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _labels(column: Column, file: str, name: str) -> list[LabelValue]:
    """Numbers (whole ones as int, so class 1 is 1 and not 1.0) or strings."""
    values: list[LabelValue] = []
    for row, value in enumerate(column.tolist() if isinstance(column, np.ndarray) else column, 1):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise InputError(
                "no label: a row whose outcome is unknown has no place in the file yet",
                path=file,
                column=name,
                row=row,
            )
        values.append(int(value) if isinstance(value, float) and value.is_integer() else value)
    return values


def _models(column: Column | None, model: str | None, rows: int, file: str) -> list[str]:
    if model is not None:
        if not model:
            raise InputError("--model must not be empty", path=file)
        return [model] * rows
    if column is None:
        raise InputError("no model: give --model NAME or a 'model' column", path=file)
    return _texts(column, file, "model", "no model")


def _timestamps(column: Column | None, rows: int, now: float | None, file: str) -> list[float]:
    if column is None:
        return [time.time() if now is None else now] * rows
    if not isinstance(column, np.ndarray):
        raise InputError("expected Unix seconds (numbers)", path=file, column="timestamp")
    bad = np.flatnonzero(~np.isfinite(column))
    if bad.size:
        raise InputError(
            "no timestamp (Unix seconds)", path=file, column="timestamp", row=int(bad[0]) + 1
        )
    values: list[float] = column.tolist()
    return values


def _group(
    models: list[str],
    versions: list[str | None],
    ids: list[str],
    labels: list[LabelValue],
    stamps: list[float],
) -> list[LabelBatch]:
    from flowops.events.labels import LabelBatch

    groups: dict[tuple[str, str | None], list[int]] = {}
    for index, key in enumerate(zip(models, versions, strict=True)):
        groups.setdefault(key, []).append(index)
    return [
        LabelBatch(
            model,
            version,
            [ids[i] for i in rows],
            [labels[i] for i in rows],
            np.array([stamps[i] for i in rows], dtype=np.float64),
        )
        for (model, version), rows in groups.items()
    ]
