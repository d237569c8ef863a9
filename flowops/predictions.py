"""A model's predictions as drift columns: a number, a class label, or class probabilities.

``flowops drift baseline --prediction-column COL`` profiles the model's outputs beside its
inputs, and ``flowops drift compare --prediction-column COL`` tests them, under names
that cannot be mistaken for an input:

* a number per row (a score, a regression output): the numeric column ``prediction``;
* a class label per row (text or a boolean): the categorical column ``prediction``;
  integer labels are numbers; write them as text to compare them as classes;
* a probability per class, as a JSON array (classes ``0 .. K-1``) or a JSON object
  (``{"cat": 0.2, "dog": 0.8}``): one numeric column per class, ``prediction[<class>]``.
  In a CSV cell the array or object is written as JSON.

A missing prediction (empty cell, ``null``) is missing in every column; a class absent
from one row's object is missing in its column.

>>> columns = prediction_columns([{"no": 0.9, "yes": 0.1}, {"no": 0.3, "yes": 0.7}, None])
>>> sorted(columns), columns["prediction[yes]"].tolist()
(['prediction[no]', 'prediction[yes]'], [0.1, 0.7, nan])
>>> prediction_columns(["yes", None, "no"])
{'prediction': ['yes', None, 'no']}
>>> prediction_columns([0.5, "0.25", ""])["prediction"].tolist()
[0.5, 0.25, nan]
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import orjson
from numpy.typing import NDArray

from flowops.errors import InputError

if TYPE_CHECKING:
    from flowops.data import Table
    from flowops.drift import Profile

__all__ = [
    "PREDICTION",
    "column_names",
    "current_predictions",
    "input_names",
    "inputs_and_predictions",
    "is_prediction",
    "prediction_columns",
    "read_predictions",
]

PREDICTION = "prediction"
"""The name of the prediction's column, and the prefix of the per-class ones."""

Column = NDArray[np.float64] | list[str | None]
_T = TypeVar("_T")


def is_prediction(name: str) -> bool:
    """Whether a profile's feature is the model's prediction (or one class of it).

    >>> is_prediction("prediction"), is_prediction("prediction[1]"), is_prediction("age")
    (True, True, False)
    """
    return name == PREDICTION or (name.startswith(f"{PREDICTION}[") and name.endswith("]"))


def input_names(profile: Profile) -> list[str]:
    """The profile's features that are not the model's predictions."""
    return [name for name in profile.features if not is_prediction(name)]


def inputs_and_predictions(
    path: str | os.PathLike[str], features: Sequence[str] | None, prediction_column: str | None
) -> tuple[Table, dict[str, Column]]:
    """The file's input columns (``features``, default all but the prediction's) and, with
    ``prediction_column``, its prediction columns beside them."""
    from flowops.data import read_table

    if prediction_column is None:
        table = read_table(path, columns=features)
        return table, dict(table.columns)
    names = list(features or _column_names(Path(path)))
    inputs = [name for name in names if name != prediction_column]
    for name in inputs:
        if is_prediction(name):
            reason = "the name is kept for the predictions of --prediction-column; rename it"
            raise InputError(reason, path=str(path), column=name)
    table = read_table(path, columns=inputs)
    return table, {**table.columns, **read_predictions(path, prediction_column)}


def current_predictions(
    profile: Profile, path: str | os.PathLike[str], prediction_column: str | None
) -> dict[str, Column]:
    """The current file's predictions the profile has features for (none without a column).

    Raises InputError when the profile holds no prediction, or the column gives none of
    the profile's (a label where it learned probabilities, other class names).
    """
    wanted = [name for name in profile.features if is_prediction(name)]
    if prediction_column is None:
        return {}
    if not wanted:
        raise InputError("the profile holds no predictions: build it with --prediction-column")
    # a profile made before CSV numbers were read as numbers holds them as categories
    text = any(profile.features[name].kind == "categorical" for name in wanted)
    columns = read_predictions(path, prediction_column, numbers=not text)
    found = {name: column for name, column in columns.items() if name in wanted}
    if not found:
        reason = f"gives {', '.join(columns)}; the profile has {', '.join(wanted)}"
        raise InputError(reason, path=str(path), column=prediction_column)
    return found


def read_predictions(
    path: str | os.PathLike[str], column: str, *, numbers: bool = True
) -> dict[str, Column]:
    """The prediction columns of ``column`` in a CSV, JSON Lines or Parquet file; a CSV
    column of numbers is read as numbers unless ``numbers`` is False (as text, as a
    profile made from it before held it)."""
    file = Path(path)
    try:
        values = _raw(file, column)
        if numbers and file.suffix.lower() == ".csv":
            values = _csv_numbers(values)
        return prediction_columns(values)
    except InputError as exc:
        raise InputError(exc.reason, path=str(file), column=column, row=exc.row) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(file)) from None


def prediction_columns(values: Sequence[object], *, strict: bool = True) -> dict[str, Column]:
    """Per-row predictions as drift columns (see the module).

    The first prediction present decides the shape. ``strict`` raises InputError (with
    its ``row``) for a later one of another shape; ``strict=False``, for traffic whose
    rows nobody can fix, reads it as missing instead:

    >>> prediction_columns([0.5, "yes", None], strict=False)["prediction"].tolist()
    [0.5, nan, nan]
    """
    if _NUMBERS.issuperset(map(type, values)):  # scores: checked in C, converted at once
        return {PREDICTION: np.array(values, dtype=np.float64)}
    cells = [_parsed(value) for value in values]
    present = [cell for cell in cells if not _missing(cell)]
    if not present:
        return {PREDICTION: np.full(len(cells), np.nan)}
    first = present[0]
    if isinstance(first, list | dict):
        return _per_class(cells, strict)
    if isinstance(first, str | bool):
        return {PREDICTION: [_lenient(_label, cell, i, strict) for i, cell in enumerate(cells)]}
    return {PREDICTION: np.array([_lenient(_number, c, i, strict) for i, c in enumerate(cells)])}


_NUMBERS: frozenset[type] = frozenset({int, float, type(None)})


def _lenient(convert: Callable[[object, int], _T], value: object, index: int, strict: bool) -> _T:
    """``convert(value)``; not strict, a value of another shape is missing."""
    try:
        return convert(value, index)
    except InputError:
        if strict:
            raise
        return convert(None, index)


def _per_class(cells: list[object], strict: bool) -> dict[str, Column]:
    rows: list[Mapping[str, object]] = []
    for i, cell in enumerate(cells):
        if isinstance(cell, list):
            rows.append({str(k): value for k, value in enumerate(cell)})
        elif isinstance(cell, dict):
            rows.append({str(k): value for k, value in cell.items()})
        elif _missing(cell) or not strict:
            rows.append({})
        else:
            raise InputError(
                f"expected class probabilities like the rows before, got {cell!r}", row=i + 1
            )
    classes = list(dict.fromkeys(key for row in rows for key in row))
    return {
        f"{PREDICTION}[{name}]": np.array(
            [_lenient(_number, row.get(name), i, strict) for i, row in enumerate(rows)]
        )
        for name in classes
    }


def _parsed(value: object) -> object:
    """A CSV cell holding JSON (an array or object) as that JSON; anything else as is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _missing(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _number(value: object, index: int) -> float:
    if _missing(value):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"expected a number like the rows before, got {value!r}", row=index + 1)
    try:
        return float(value)
    except ValueError:
        raise InputError(
            f"expected a number like the rows before, got {value!r}", row=index + 1
        ) from None


def _label(value: object, index: int) -> str | None:
    if _missing(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    raise InputError(f"expected a class label like the rows before, got {value!r}", row=index + 1)


def _csv_numbers(cells: list[object]) -> list[object]:
    """A CSV's cells are text: a column whose every filled cell reads as a number is
    numbers (scores, or class labels 0 and 1, as JSON Lines gives them), not categories.

    >>> _csv_numbers(["0.25", "", "1"]), _csv_numbers(["0.25", "yes"])
    ([0.25, None, 1.0], ['0.25', 'yes'])
    """
    try:
        return [None if _missing(cell) else float(cell) for cell in cells]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return cells


def _raw(file: Path, column: str) -> list[object]:
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return _raw_csv(file, column)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _raw_jsonl(file, column)
    if suffix == ".parquet":
        return _raw_parquet(file, column)
    raise InputError(f"unknown file format {file.suffix or '(no suffix)'!r}")


def column_names(path: str | os.PathLike[str]) -> list[str]:
    """Every column of a CSV, JSON Lines or Parquet file, in order."""
    try:
        return _column_names(Path(path))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=os.fspath(path)) from None


def _column_names(file: Path) -> list[str]:
    """Every column of a file, in order: the CSV header, the JSON keys, the Parquet schema."""
    suffix = file.suffix.lower()
    if suffix == ".csv":
        with file.open(newline="", encoding="utf-8-sig") as handle:
            return next((row for row in csv.reader(handle) if row), [])
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        return list(pq.read_schema(file).names)
    names: dict[str, None] = {}
    with file.open("rb") as handle:
        for line in handle:
            record = orjson.loads(line) if line.strip() else {}
            names.update(dict.fromkeys(record if isinstance(record, dict) else {}))
    return list(names)


def _raw_csv(file: Path, column: str) -> list[object]:
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next((row for row in reader if row), [])
        if column not in header:
            raise InputError(f"no such column; the file has: {', '.join(header)}")
        at = header.index(column)
        return [row[at] if at < len(row) else "" for row in reader if row]


def _raw_jsonl(file: Path, column: str) -> list[object]:
    values: list[object] = []
    found = False
    with file.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise InputError(f"line {len(values) + 1}: not valid JSON") from None
            if isinstance(record, dict):
                found = found or column in record
                values.append(record.get(column))
    if not found:
        raise InputError("no such key in any record")
    return values


def _raw_parquet(file: Path, column: str) -> list[object]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow: pip install 'flowops[parquet]'") from None
    names = list(pq.read_schema(file).names)
    if column not in names:
        raise InputError(f"no such column; the file has: {', '.join(names)}")
    values: list[object] = pq.read_table(file, columns=[column]).column(column).to_pylist()
    return values
