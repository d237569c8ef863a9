"""Read the tables the drift commands compare: CSV, JSON Lines and Parquet.

The suffix gives the format: ``.csv`` (UTF-8, a header row naming the columns),
``.jsonl``, ``.ndjson`` or ``.json`` (one JSON object per line), ``.parquet`` (needs
pyarrow: ``pip install 'flowops[parquet]'``).

A column is *numeric* (a float64 array, NaN where a value is missing) or *categorical*
(a list of strings, ``None`` where a value is missing). An empty or blank cell, a JSON
``null`` and an absent JSON key are missing. When the kind of a column is not given, the
first non-missing value decides: a number (``3``, ``-1.5e3``, ``nan``, ``inf``) makes the
column numeric, anything else categorical. NaN and inf stay in the arrays: the drift
commands leave them out and count them.

Bad data stops the read with an :class:`~flowops.errors.InputError` that names the file,
the place (``line N`` as an editor counts lines, for CSV and JSON Lines; ``row N``, the
1-based data row, for Parquet) and the column; its ``.row`` is the 1-based data row.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, cast

import numpy as np
import orjson
from numpy.typing import NDArray

from flowops.errors import EmptyInputError, InputError

if TYPE_CHECKING:
    from flowops.drift import CategoricalProfile, DriftReport, NumericProfile, Profile
    from flowops.drift.rules import Rules

__all__ = [
    "Column",
    "Kind",
    "Table",
    "build_profile",
    "compare_files",
    "read_profile",
    "read_table",
]

Kind: TypeAlias = Literal["numeric", "categorical"]
Column: TypeAlias = NDArray[np.float64] | list[str | None]

_SUFFIXES = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
# Rows converted at a time. Small chunks measured fastest (1M-row CSV: 512 rows 2.3 s,
# 65,536 rows 6 s): the records die young, before the garbage collector scans them again.
_CHUNK_ROWS = 512
_T = TypeVar("_T")
_Reader: TypeAlias = Callable[[Path, "list[str] | None", "dict[str, Kind]"], "Table"]


@dataclass(frozen=True)
class Table:
    """Columns read from one file, each with its kind, all ``rows`` long."""

    path: str
    columns: dict[str, Column]
    kinds: dict[str, Kind]
    rows: int


def read_table(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    kinds: Mapping[str, Kind] | None = None,
) -> Table:
    """Read ``columns`` (default: all) of a CSV, JSON Lines or Parquet file.

    ``kinds`` fixes the kind of the columns it names (they must exist); the others are
    inferred from their first non-missing value.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name, "loans.csv")
    >>> _ = path.write_text("age,area,zip\\n34,north,02139\\n,south,\\n51,,10001\\n")
    >>> table = read_table(path, kinds={"zip": "categorical"})
    >>> table.kinds
    {'age': 'numeric', 'area': 'categorical', 'zip': 'categorical'}
    >>> table.columns["age"], table.columns["area"], table.rows
    (array([34., nan, 51.]), ['north', 'south', None], 3)
    >>> read_table(path, columns=["income"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flowops.errors.InputError: ...csv: column 'income': no such column; the file has: age, area, zip
    >>> folder.cleanup()
    """
    file = Path(path)
    reader = _reader_for(file)
    forced = dict(kinds or {})
    wanted = None if columns is None else list(dict.fromkeys([*columns, *forced]))
    try:
        table = reader(file, wanted, forced)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(file)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc.reason}", path=str(file)) from None
    _select(list(forced), list(table.columns), file)
    return table if columns is None else _only(table, columns)


def _only(table: Table, columns: Sequence[str]) -> Table:
    names = list(dict.fromkeys(columns))
    kinds = {name: table.kinds[name] for name in names}
    return Table(table.path, {name: table.columns[name] for name in names}, kinds, table.rows)


# -- the drift commands' work on files -------------------------------------------------


def build_profile(
    path: str | os.PathLike[str],
    *,
    features: Sequence[str] | None = None,
    bins: int = 10,
    sample_size: int | None = None,
    model: str | None = None,
    prediction_column: str | None = None,
) -> Profile:
    """Profile the ``features`` (default: every column) of a data file.

    ``sample_size=None`` keeps every value, so that KS against the profile is exact;
    ``prediction_column``: the model's predictions too (:mod:`flowops.predictions`).
    """
    from flowops.drift import Profile
    from flowops.predictions import inputs_and_predictions

    table, columns = inputs_and_predictions(path, features, prediction_column)
    size = table.rows if sample_size is None else sample_size
    with _blame(table.path):
        return Profile.from_columns(columns, bins=bins, sample_size=size, model=model)


def read_profile(path: str | os.PathLike[str]) -> Profile | None:
    """The profile stored in a ``.json`` file, or None when the file holds no profile."""
    from flowops.drift import Profile

    file = Path(path)
    if file.suffix.lower() != ".json":
        return None
    try:
        data = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(file)) from None
    except orjson.JSONDecodeError:
        return None  # JSON Lines data, read by read_table
    if not (isinstance(data, dict) and "features" in data):
        return None
    try:
        return Profile.from_dict(data)
    except InputError as exc:
        raise InputError(f"not a valid FlowOps profile: {exc}", path=str(file)) from None


def compare_files(
    reference: str | os.PathLike[str],
    current: str | os.PathLike[str],
    *,
    features: Sequence[str] | None = None,
    bins: int = 10,
    alpha: float = 0.05,
    correction: str = "bh",
    rules: Rules | None = None,
    prediction_column: str | None = None,
) -> DriftReport:
    """Compare a data file with a reference: a profile (``.json``) or data profiled now.

    The current file's columns are read with the kinds the profile gives them; ``rules``
    choose the tests, their floors and the verdict; ``prediction_column``: see baseline.
    """
    from flowops.drift import compare
    from flowops.predictions import current_predictions, input_names

    profile = read_profile(reference) or _reference_data(
        reference, features, bins, prediction_column
    )
    names = list(dict.fromkeys(features or input_names(profile)))
    kinds = {name: _kind(profile.features, name, reference) for name in names}
    table = read_table(current, columns=names, kinds=kinds)
    columns = {**table.columns, **current_predictions(profile, current, prediction_column)}
    with _blame(table.path):
        return compare(profile, columns, alpha=alpha, correction=correction, rules=rules)


def _reference_data(
    reference: str | os.PathLike[str],
    features: Sequence[str] | None,
    bins: int,
    prediction_column: str | None,
) -> Profile:
    """A reference that is data, profiled now; a ``.json`` reference that is one JSON
    document but no profile is refused, naming it (read as one row of data, its keys
    would be blamed on the current file's columns)."""
    file = Path(reference)
    if file.suffix.lower() == ".json":
        try:
            orjson.loads(file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            pass  # unreadable: read_table says so; several lines: JSON Lines data
        else:
            raise InputError(
                "not a FlowOps profile (it has no 'features'; `flowops drift baseline` makes "
                "one); reference data in JSON must be JSON Lines (.jsonl), one row a line",
                path=str(file),
            )
    return build_profile(
        reference, features=features, bins=bins, prediction_column=prediction_column
    )


def _kind(
    features: Mapping[str, NumericProfile | CategoricalProfile],
    name: str,
    reference: str | os.PathLike[str],
) -> Kind:
    if name not in features:
        raise InputError(
            f"no such feature in the profile; it has: {', '.join(features)}",
            path=str(reference),
            column=name,
        )
    return "numeric" if features[name].kind == "numeric" else "categorical"


@contextmanager
def _blame(path: str) -> Iterator[None]:
    """Name ``path`` in the kernels' input errors, which know the column but not the file."""
    try:
        yield
    except InputError as exc:
        if exc.path is not None:
            raise
        raise type(exc)(exc.reason, path=path, column=exc.column, row=exc.row) from None


# -- formats -------------------------------------------------------------------------


def _reader_for(file: Path) -> _Reader:
    fmt = _SUFFIXES.get(file.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_SUFFIXES))
        raise InputError(
            f"unknown file format {file.suffix or '(no suffix)'!r}; use one of {known}",
            path=str(file),
        )
    return {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[fmt]


def _read_csv(file: Path, wanted: list[str] | None, kinds: dict[str, Kind]) -> Table:
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = _csv_header(reader, file)
        names = _select(wanted, header, file)
        builders = {name: _Builder(name, kinds.get(name)) for name in names}
        getters = {name: itemgetter(header.index(name)) for name in names}
        rows = 0
        try:
            for chunk in _csv_chunks(reader, file):
                _check_widths(chunk, len(header), rows)
                for name, builder in builders.items():
                    builder.add(list(map(getters[name], chunk)))
                rows += len(chunk)
        except _CellError as bad:
            raise bad.error(file, _csv_line(file, bad.index)) from None
    return _finish(file, builders, rows)


def _csv_header(reader: Iterator[list[str]], file: Path) -> list[str]:
    header = next((row for row in reader if row), None)
    if header is None:
        raise EmptyInputError(
            "the file is empty; a header row naming the columns is needed", path=str(file)
        )
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise InputError(
            f"duplicate column names in the header: {', '.join(duplicates)}", path=str(file)
        )
    return header


def _csv_chunks(reader: Any, file: Path) -> Iterator[list[list[str]]]:
    """The records after the header, blank lines left out; a malformed one names its line."""
    try:
        for chunk in _chunks(reader):
            records = chunk if all(chunk) else [record for record in chunk if record]
            if records:
                yield records
    except csv.Error as exc:
        raise _line_error(str(exc), file, reader.line_num) from None


def _check_widths(chunk: list[list[str]], width: int, offset: int) -> None:
    if set(map(len, chunk)) != {width}:
        index = next(i for i, record in enumerate(chunk) if len(record) != width)
        found = len(chunk[index])
        raise _CellError(offset + index, None, f"expected {width} fields, found {found}")


def _csv_line(file: Path, index: int) -> int:
    """The line on which data record ``index`` (0-based, blank lines skipped) starts."""
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(row for row in reader if row)
        seen = 0
        while True:
            start = reader.line_num + 1
            if next(reader):
                if seen == index:
                    return start
                seen += 1


def _read_jsonl(file: Path, wanted: list[str] | None, kinds: dict[str, Kind]) -> Table:
    builders = {name: _Builder(name, kinds.get(name)) for name in wanted or []}
    present: dict[str, None] = {}
    rows = 0
    with file.open("rb") as handle:
        try:
            for chunk in _chunks(_json_records(handle, file)):
                present.update(dict.fromkeys(_keys(chunk)))
                if wanted is None:
                    _add_new_builders(builders, present, kinds, rows)
                for name, builder in builders.items():
                    builder.add([record.get(name) for record in chunk])
                rows += len(chunk)
        except _CellError as bad:
            raise bad.error(file, _jsonl_line(file, bad.index)) from None
    if rows:
        _select(wanted, list(present), file)
    return _finish(file, builders, rows)


def _json_records(handle: Iterable[bytes], file: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            reason = f"not valid JSON (column {exc.colno}): {exc.msg}"
            raise _line_error(reason, file, number) from None
        if not isinstance(record, dict):
            found = type(record).__name__
            raise _line_error(f"expected one JSON object per line, found a {found}", file, number)
        yield record


def _keys(chunk: list[dict[str, Any]]) -> list[str]:
    """Every key of the chunk's records, in order of first appearance."""
    shapes = dict.fromkeys(map(tuple, chunk))
    return list(dict.fromkeys(key for shape in shapes for key in shape))


def _add_new_builders(
    builders: dict[str, _Builder], present: Iterable[str], kinds: dict[str, Kind], rows: int
) -> None:
    """Give keys first seen now a column, missing in the records before."""
    for name in present:
        if name not in builders:
            builders[name] = _Builder(name, kinds.get(name))
            builders[name].add([None] * rows)


def _jsonl_line(file: Path, index: int) -> int:
    with file.open("rb") as handle:
        records = (n for n, line in enumerate(handle, start=1) if line.strip())
        return next(islice(records, index, None))


def _read_parquet(file: Path, wanted: list[str] | None, kinds: dict[str, Kind]) -> Table:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise InputError(
            "reading Parquet needs pyarrow: pip install 'flowops[parquet]'", path=str(file)
        ) from None
    try:
        schema = pq.read_schema(file)
        names = _select(wanted, list(schema.names), file)
        data = pq.read_table(file, columns=names)
    except pa.ArrowException as exc:
        raise InputError(f"not a readable Parquet file: {exc}", path=str(file)) from None
    columns: dict[str, Column] = {}
    found: dict[str, Kind] = {}
    for name in names:
        chunked = data.column(name)
        natural = _arrow_kind(pa, chunked.type)
        kind = kinds.get(name) or natural
        if kind is None:
            reason = f"cannot compare values of type {chunked.type}"
            raise InputError(reason, path=str(file), column=name)
        found[name] = kind
        try:
            columns[name] = _arrow_column(pa, chunked, kind, natural)
        except _CellError as bad:
            raise InputError(bad.reason, path=str(file), column=name, row=bad.index + 1) from None
    return _checked(Table(str(file), columns, found, int(data.num_rows)))


def _arrow_kind(pa: Any, arrow_type: Any) -> Kind | None:
    t = pa.types
    if t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return "numeric"
    if (
        t.is_string(arrow_type)
        or t.is_large_string(arrow_type)
        or t.is_boolean(arrow_type)
        or t.is_dictionary(arrow_type)
    ):
        return "categorical"
    return None


def _arrow_column(pa: Any, chunked: Any, kind: Kind, natural: Kind | None) -> Column:
    if kind == natural == "numeric":
        values = chunked.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.float64)
    builder = _Builder("", kind)
    builder.add(chunked.to_pylist())
    return builder.finish()


# -- columns -------------------------------------------------------------------------


class _CellError(Exception):
    """A value that does not fit its column, found at data record ``index`` (0-based)."""

    def __init__(self, index: int, column: str | None, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.column = column
        self.reason = reason

    def error(self, file: Path, line: int) -> InputError:
        return _line_error(self.reason, file, line, column=self.column, row=self.index + 1)


class _Builder:
    """Collects one column chunk by chunk; decides its kind at the first real value."""

    def __init__(self, name: str, kind: Kind | None) -> None:
        self.name = name
        self.kind = kind
        self.count = 0
        self._pending: list[Sequence[object]] = []
        self._numbers: list[NDArray[np.float64]] = []
        self._labels: list[str | None] = []

    def add(self, values: Sequence[object]) -> None:
        if self.kind is None:
            self.kind = _infer(values)
            if self.kind is None:
                self._pending.append(values)
                return
        for part in [*self._pending, values]:
            self._convert(part)
        self._pending.clear()

    def finish(self) -> Column:
        if self.kind == "categorical":
            return self._labels
        parts = [*self._numbers, *(np.full(len(part), np.nan) for part in self._pending)]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)

    def _convert(self, values: Sequence[object]) -> None:
        try:
            if self.kind == "numeric":
                self._numbers.append(_numbers(values))
            else:
                self._labels.extend(_labels(values))
        except _CellError as bad:
            raise _CellError(self.count + bad.index, self.name, bad.reason) from None
        self.count += len(values)


def _infer(values: Sequence[object]) -> Kind | None:
    first = next((value for value in values if not _missing(value)), None)
    if first is None:
        return None
    try:
        _number(first)
    except ValueError:
        return "categorical"
    return "numeric"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _numbers(values: Sequence[object]) -> NDArray[np.float64]:
    """Convert a chunk vectorised; only when that fails, find the first bad value."""
    types = set(map(type, values))
    try:
        if types == {str}:
            texts = [value or "nan" for value in values] if "" in values else values
            return np.array(texts, dtype=np.float64)
        if types <= {int, float, type(None)}:
            return np.array(values, dtype=np.float64)
    except (ValueError, OverflowError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    for index, value in enumerate(values):
        try:
            out[index] = _number(value)
        except ValueError as exc:
            raise _CellError(index, None, str(exc)) from None
    return out


def _number(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return math.nan
        try:
            return float(text)
        except ValueError:
            pass
    raise ValueError(f"not a number: {_show(value)}")


def _labels(values: Sequence[object]) -> list[str | None]:
    if set(map(type, values)) == {str}:
        texts = cast("Sequence[str]", values)
        if all(text.strip() for text in set(texts)):
            return list(texts)
        return [text if text.strip() else None for text in texts]
    out: list[str | None] = []
    for index, value in enumerate(values):
        try:
            out.append(_label(value))
        except ValueError as exc:
            raise _CellError(index, None, str(exc)) from None
    return out


def _label(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, (int, float)):
        return str(value)
    raise ValueError(f"not a category (a single value is needed): {_show(value)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


# -- helpers -------------------------------------------------------------------------


def _chunks(items: Iterable[_T]) -> Iterator[list[_T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, _CHUNK_ROWS)):
        yield chunk


def _select(wanted: list[str] | None, available: list[str], file: Path) -> list[str]:
    """The columns to read, in order; a wanted column that is absent is an error."""
    if wanted is None:
        return available
    for name in wanted:
        if name not in available:
            raise _no_column(name, available, file)
    return list(dict.fromkeys(wanted))


def _no_column(name: str, available: list[str], file: Path) -> InputError:
    shown = ", ".join(available[:30]) or "no columns"
    if len(available) > 30:
        shown += f" and {len(available) - 30} more"
    return InputError(f"no such column; the file has: {shown}", path=str(file), column=name)


def _finish(file: Path, builders: Mapping[str, _Builder], rows: int) -> Table:
    columns = {name: builder.finish() for name, builder in builders.items()}
    kinds: dict[str, Kind] = {name: b.kind or "numeric" for name, b in builders.items()}
    return _checked(Table(str(file), columns, kinds, rows))


def _checked(table: Table) -> Table:
    if table.rows == 0:
        raise EmptyInputError("no data rows", path=table.path)
    return table


def _line_error(
    reason: str, file: Path, line: int, *, column: str | None = None, row: int | None = None
) -> InputError:
    """An InputError naming the file line (what an editor shows) and the data row."""
    return InputError(reason, path=str(file), column=column, row=row, line=line)
