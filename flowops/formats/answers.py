"""Predictions out of a parsed inference response (the response side of the formats).

:func:`read_predictions` pairs them with the request's rows (the gateway's traffic);
:func:`predictions_shape` reads only their shape (the monitor's canary and the CI gate's
contract check it against an expected one). See :mod:`flowops.formats`.
"""

from __future__ import annotations

from typing import Any

from flowops.formats.kinds import ServingProtocol
from flowops.formats.tensors import is_v2, read_tensor

__all__ = ["predictions_shape", "read_predictions", "shape_matches", "shape_of"]


def read_predictions(body: Any, count: int) -> tuple[list[Any] | None, str | None]:
    """One prediction per row of a parsed response of ``count`` rows, or None and why.

    >>> read_predictions({"predictions": [0, 2]}, 2)
    ([0, 2], None)
    >>> read_predictions({"outputs": [{"name": "p", "shape": [2], "datatype": "INT64",
    ...                                "data": [1, 0]}]}, 2)
    ([1, 0], None)
    >>> read_predictions([0.1], 2)
    (None, 'the response has 1 predictions for 2 rows')
    """
    if type(body) is dict:
        if "predictions" in body:
            return _per_row(body["predictions"], count)
        if is_v2(body.get("outputs")):
            return _v2_outputs(body["outputs"], count)
    if type(body) is list:
        return _per_row(body, count)
    if count == 1:
        return [body], None
    return None, f"the response holds no predictions this gateway reads for {count} rows"


def _per_row(predictions: Any, count: int) -> tuple[list[Any] | None, str | None]:
    """An array of one prediction per row; columns of them; or one for a single row."""
    if type(predictions) is list:
        if len(predictions) == count:
            return predictions, None
        return None, _mismatch(len(predictions), count)
    if (
        type(predictions) is dict
        and predictions
        and all(type(column) is list and len(column) == count for column in predictions.values())
    ):
        return [
            {name: column[i] for name, column in predictions.items()} for i in range(count)
        ], None
    if count == 1:
        return [predictions], None
    return None, _mismatch(1, count)


def _v2_outputs(specs: list[dict[str, Any]], count: int) -> tuple[list[Any] | None, str | None]:
    """One element per row of each output; a dict of them when there are several."""
    tensors = [read_tensor(spec, "output") for spec in specs]
    for tensor in tensors:
        if tensor.error is not None:
            return None, tensor.error
        if tensor.batch != count:
            return None, _mismatch(tensor.batch, count)
    if len(tensors) == 1:
        return tensors[0].elements, None
    return [{t.name: t.elements[i] for t in tensors} for i in range(count)], None


def _mismatch(found: int, count: int) -> str:
    return f"the response has {found} predictions for {count} rows"


def predictions_shape(protocol: ServingProtocol, body: Any) -> list[int] | None:
    """The shape of the predictions in a canary's parsed answer; None when it has none.

    >>> predictions_shape("mlflow", {"predictions": [[0.1, 0.9], [0.8, 0.2]]})
    [2, 2]
    >>> predictions_shape("kserve_v2", {"outputs": [{"name": "p", "shape": [3, 1], "data": []}]})
    [3, 1]
    """
    if protocol == "kserve_v2":
        outputs = body.get("outputs") if isinstance(body, dict) else None
        if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
            return None
        shape = outputs[0].get("shape")
        if isinstance(shape, list) and all(isinstance(n, int) for n in shape):
            return list(shape)
        return None
    predictions = body.get("predictions") if isinstance(body, dict) else body
    if not isinstance(predictions, list):
        return None
    return shape_of(predictions)


def shape_of(array: list[Any]) -> list[int]:
    """The shape of a nested JSON array, read along its first elements.

    >>> shape_of([[1, 2, 3], [4, 5, 6]])
    [2, 3]
    >>> shape_of([])
    [0]
    """
    shape: list[int] = []
    item: Any = array
    while isinstance(item, list):
        shape.append(len(item))
        item = item[0] if item else None
    return shape


def shape_matches(shape: list[int], expected: list[int]) -> bool:
    """Whether ``shape`` is ``expected``, where ``-1`` matches any size.

    >>> shape_matches([5, 2], [-1, 2])
    True
    """
    return len(shape) == len(expected) and all(
        want in (-1, got) for got, want in zip(shape, expected, strict=True)
    )
