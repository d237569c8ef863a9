"""Rows of features from a ``text/csv`` request body, as MLflow's scoring server reads it.

MLflow's ``/invocations`` takes ``Content-Type: text/csv`` with a header row naming the
columns (pandas ``read_csv``). Each further record is one row: an empty cell is missing,
a cell that reads as a number is that number (an integer when it is written as one),
anything else is text. Blank records are skipped; a record with more cells than the
header makes the body unreadable (pandas refuses it too), one with fewer leaves the
rest missing. Reasons never quote values from the body.

>>> read_csv_rows(b"age,region,income\\n41,north,52000.5\\n,south,\\n")
([{'age': 41, 'region': 'north', 'income': 52000.5}, {'age': None, 'region': 'south', \
'income': None}], None)
>>> read_csv_rows(b"a,b\\n1,2,3\\n")
([], 'CSV record 1 has 3 cells, the header names 2 columns')
"""

from __future__ import annotations

import csv
import io
from typing import Final

from flowops.events import FeatureValue

__all__ = ["CSV_TYPES", "is_csv", "read_csv_rows"]

CSV_TYPES: Final = frozenset({"text/csv", "application/csv"})
"""Content types read as CSV with a header row."""


def is_csv(content_type: str | None) -> bool:
    """Whether ``content_type`` (parameters aside) is CSV.

    >>> is_csv("text/csv; charset=utf-8"), is_csv("application/json")
    (True, False)
    """
    return content_type is not None and (
        content_type.partition(";")[0].strip().lower() in CSV_TYPES
    )


def read_csv_rows(
    body: bytes | bytearray | memoryview,
) -> tuple[list[dict[str, FeatureValue]], str | None]:
    """The body's rows, or no rows and the reason it cannot be read."""
    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], "the CSV request body is not UTF-8 text"
    try:
        records = [record for record in csv.reader(io.StringIO(text)) if record]
    except csv.Error as exc:
        return [], f"the CSV request body is malformed ({exc})"
    if not records:
        return [], "the CSV request body has no header row"
    header = records[0]
    rows: list[dict[str, FeatureValue]] = []
    for number, record in enumerate(records[1:], start=1):
        if len(record) > len(header):
            found = f"{len(record)} cells, the header names {len(header)} columns"
            return [], f"CSV record {number} has {found}"
        cells = [_value(cell) for cell in record] + [None] * (len(header) - len(record))
        rows.append(dict(zip(header, cells, strict=True)))
    return rows, None


def _value(cell: str) -> FeatureValue:
    """An empty cell as missing, a number as a number, anything else as text."""
    text = cell.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return cell
