"""Rows of features out of a parsed inference request (the request side of the formats).

See :mod:`flowops.formats` for the formats, how values are named and what is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, Final

from flowops.formats.kinds import PayloadFormat, ServingProtocol
from flowops.formats.tensors import is_v2, read_tensor

if TYPE_CHECKING:  # flowops.events.traffic imports numpy: the monitor must not
    from flowops.events.traffic import FeatureValue

__all__ = ["RequestRows", "input_rows", "read_request"]

_SCALAR: Final[frozenset[type]] = frozenset({int, float, str, type(None)})
_NESTED: Final[frozenset[type]] = frozenset({list, dict})
_JSON_NAMES: Final = {list: "an array", str: "a string", int: "a number", float: "a number"}
_MAX_RANK: Final = 2


@dataclass(frozen=True, slots=True)
class RequestRows:
    """What :func:`read_request` found: the format, the rows, or an error; and a note.

    ``error`` set means the request could not be read (``rows`` is then empty); ``note``
    says what else was off (values left out, route names that do not fit the rows).
    """

    format: PayloadFormat
    rows: list[dict[str, FeatureValue]]
    error: str | None = None
    note: str | None = None


def read_request(body: Any, names: Sequence[str] = ()) -> RequestRows:
    """The rows of features of a parsed JSON request, whichever format it is in.

    ``names`` are the route's names for values that come without names (arrays, a 2-D
    tensor); ``f0, f1, ...`` name any value beyond them.

    >>> read_request({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"]]}}).rows
    [{'a': 1, 'b': 'x'}]
    >>> read_request({"instances": [[5.1, 3.5]]}, ["sepal"]).rows
    [{'sepal': 5.1, 'f1': 3.5}]
    >>> read_request([1, 2]).error
    'an array is not an inference request'
    """
    names = list(names)
    if type(body) is not dict:
        return RequestRows("unknown", [], f"{_json_name(body)} is not an inference request")
    if "dataframe_split" in body:
        return _dataframe_split(body["dataframe_split"], names)
    if "dataframe_records" in body:
        return _records("dataframe_records", body["dataframe_records"], names)
    if "instances" in body:
        return _records("instances", body["instances"], names)
    if "inputs" in body:
        return _inputs(body["inputs"], names)
    return _object(body)


def _object(body: dict[str, Any]) -> RequestRows:
    row, left_out = _named(body)
    if not row:
        reason = "a JSON object without a single feature value is not an inference request"
        return RequestRows("unknown", [], reason)
    return RequestRows("object", [row], note=_LEFT_OUT if left_out else None)


def _records(kind: PayloadFormat, items: Any, names: list[str]) -> RequestRows:
    if type(items) is not list:
        return RequestRows(kind, [], f"'{kind}' must be an array, not {_json_name(items)}")
    rows, note = _rows(items, names)
    return RequestRows(kind, rows, note=note)


def _dataframe_split(split: Any, names: list[str]) -> RequestRows:
    kind: PayloadFormat = "dataframe_split"
    if type(split) is not dict or type(split.get("data")) is not list:
        return RequestRows(kind, [], "'dataframe_split' must be an object with a 'data' array")
    columns = split.get("columns")
    if columns is None:
        columns = names
    elif type(columns) is not list or not _SCALAR.issuperset(map(type, columns)):
        return RequestRows(kind, [], "'dataframe_split.columns' must be an array of names")
    rows, note = _rows(split["data"], [str(name) for name in columns])
    return RequestRows(kind, rows, note=note)


def _inputs(inputs: Any, names: list[str]) -> RequestRows:
    if is_v2(inputs):
        return _v2_inputs(inputs, names)
    if type(inputs) is list:
        return _records("inputs", inputs, names)
    if type(inputs) is dict:
        return _input_columns(inputs, names)
    return RequestRows(
        "inputs", [], f"'inputs' must be an array or an object, not {_json_name(inputs)}"
    )


def _input_columns(inputs: dict[str, Any], names: list[str]) -> RequestRows:
    """MLflow's columnar ``inputs``: one array per input, an element per row."""
    columns = {name: v if type(v) is list else [v] for name, v in inputs.items()}
    lengths = sorted({len(values) for values in columns.values()})
    if len(lengths) > 1:
        reason = f"the arrays of 'inputs' differ in length ({lengths[0]} and {lengths[-1]})"
        return RequestRows("inputs", [], reason)
    rows, note = _tensor_rows(columns, names, lengths[0] if lengths else 0)
    return RequestRows("inputs", rows, note=note)


def input_rows(protocol: ServingProtocol, payload: Any) -> int | None:
    """The rows of a request body, or None when its shape is not a known one.

    Counted from the payload's structure alone (a KServe v2 first input's batch, the length
    of an MLflow or KServe v1 array), without reading the values as :func:`read_request` does.

    >>> input_rows("mlflow", {"dataframe_records": [{"a": 1}, {"a": 2}, {"a": 3}]})
    3
    >>> input_rows("mlflow", {"inputs": {"a": [1, 2]}})
    2
    >>> input_rows("kserve_v2", {"inputs": [{"name": "x", "shape": [4, 3], "data": []}]})
    4
    >>> input_rows("http", {"text": "hello"}) is None
    True
    """
    if not isinstance(payload, dict):
        return None
    if protocol == "kserve_v2":
        inputs = payload.get("inputs")
        shape = inputs[0].get("shape") if isinstance(inputs, list) and inputs else None
        return shape[0] if isinstance(shape, list) and shape and type(shape[0]) is int else None
    for key in ("dataframe_records", "instances", "inputs"):
        rows = payload.get(key)
        if isinstance(rows, list):
            return len(rows)
        if key == "inputs" and isinstance(rows, dict) and rows:
            first = next(iter(rows.values()))
            return len(first) if isinstance(first, list) else 1
    split = payload.get("dataframe_split")
    data = split.get("data") if isinstance(split, dict) else None
    return len(data) if isinstance(data, list) else None


_LEFT_OUT: Final = "arrays and objects are not feature values: left out"


def _rows(items: list[Any], names: list[str]) -> tuple[list[dict[str, FeatureValue]], str | None]:
    """One row per item: an object by its keys, an array by ``names``, a value alone."""
    namer = _Namer(names)
    fast = _plain_rows(items, namer)
    if fast is not None:
        return fast, namer.note
    rows: list[dict[str, FeatureValue]] = []
    left_out = False
    for item in items:
        kind = type(item)
        if kind is dict:
            row, nested = _named(item)
        elif kind is list:
            row, nested = _positional(item, namer.names(len(item)))
        else:
            row, nested = _positional([item], namer.names(1))
        rows.append(row)
        left_out = left_out or nested
    return rows, namer.note or (_LEFT_OUT if left_out else None)


def _plain_rows(items: list[Any], namer: _Namer) -> list[dict[str, FeatureValue]] | None:
    """The rows when every item is an object, or an array of one length, of plain values
    (numbers, strings, null): the common case, checked in C, in one pass; else ``None``.
    """
    kinds = set(map(type, items))
    if kinds == {dict}:
        values = chain.from_iterable(map(dict.values, items))
        return items if _SCALAR.issuperset(map(type, values)) else None
    if kinds == {list}:
        lengths = set(map(len, items))
        if len(lengths) != 1 or not _SCALAR.issuperset(map(type, chain.from_iterable(items))):
            return None
        names = namer.names(lengths.pop())
        return [dict(zip(names, item, strict=False)) for item in items]
    return None


def _named(values: dict[str, Any]) -> tuple[dict[str, FeatureValue], bool]:
    """The object's feature values (no copy when all are plain); whether any was left out."""
    if _SCALAR.issuperset(map(type, values.values())):
        return values, False
    row = {name: _cell(value) for name, value in values.items() if type(value) not in _NESTED}
    return row, len(row) != len(values)


def _positional(values: list[Any], names: list[str]) -> tuple[dict[str, FeatureValue], bool]:
    if _SCALAR.issuperset(map(type, values)):
        return dict(zip(names, values, strict=False)), False
    row = {
        name: _cell(value)
        for name, value in zip(names, values, strict=False)
        if type(value) not in _NESTED
    }
    return row, len(row) != len(values)


def _cell(value: Any) -> FeatureValue:
    """A JSON scalar as a feature value: booleans as the categories "true" and "false"."""
    if type(value) is bool:
        return "true" if value else "false"
    return value  # type: ignore[no-any-return]  # a number, a string or None here


class _Namer:
    """Names for values in order: the route's, then ``f<i>``; notes a count that differs."""

    def __init__(self, route: list[str]) -> None:
        self.route = route
        self.note: str | None = None
        self._cache: dict[int, list[str]] = {}

    def names(self, count: int) -> list[str]:
        found = self._cache.get(count)
        if found is None:
            route = self.route
            found = route[:count] + [f"f{i}" for i in range(len(route), count)]
            self._cache[count] = found
            if route and count != len(route) and self.note is None:
                self.note = f"the route names {len(route)} features, a row has {count} values"
        return found


def _v2_inputs(specs: list[dict[str, Any]], names: list[str]) -> RequestRows:
    kind: PayloadFormat = "kserve_v2"
    tensors = [read_tensor(spec, "input") for spec in specs]
    for tensor in tensors:
        if tensor.error is not None:
            return RequestRows(kind, [], tensor.error)
    batches = sorted({tensor.batch for tensor in tensors})
    if len(batches) > 1:
        return RequestRows(
            kind, [], f"inputs of different batch sizes ({batches[0]}, {batches[-1]})"
        )
    kept = [tensor for tensor in tensors if tensor.rank <= _MAX_RANK]
    rows, note = _tensor_rows({t.name: t.elements for t in kept}, names, batches[0])
    if len(kept) != len(tensors):
        dropped = next(t for t in tensors if t.rank > _MAX_RANK)
        note = f"input {dropped.name!r} of rank {dropped.rank} left out (rank 1 or 2 only)"
    return RequestRows(kind, rows, note=note)


def _tensor_rows(
    columns: dict[str, list[Any]], names: list[str], batch: int
) -> tuple[list[dict[str, FeatureValue]], str | None]:
    """Rows from named columns of per-row elements (a value, or an array of values).

    One column of arrays is the features, named as arrays are; otherwise each column is
    a feature, or ``name[j]`` for the values of its arrays.
    """
    if len(columns) == 1:
        [elements] = columns.values()
        if any(type(element) is list for element in elements):
            return _rows(elements, names)
    rows: list[dict[str, FeatureValue]] = [{} for _ in range(batch)]
    left_out = False
    for name, elements in columns.items():
        for row, element in zip(rows, elements, strict=False):
            if type(element) is list:
                for j, value in enumerate(element):
                    if type(value) in _NESTED:
                        left_out = True
                    else:
                        row[f"{name}[{j}]"] = _cell(value)
            elif type(element) is dict:
                left_out = True
            else:
                row[name] = _cell(element)
    return rows, _LEFT_OUT if left_out else None


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is dict:
        return "an object"
    return _JSON_NAMES.get(type(value), "a value")
