"""KServe v2 (Open Inference Protocol) tensors: ``{"name", "shape", "datatype", "data"}``.

The first dimension of a tensor is the batch: one element per row of the request (or
prediction per row of the response). ``data`` may be flat or nested (row-major);
binary data (the protocol's extension) is not read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Tensor", "flatten", "is_v2", "read_tensor"]


def is_v2(value: Any) -> bool:
    """Whether ``value`` is a non-empty array of v2 tensors (name, shape, datatype)."""
    return (
        type(value) is list
        and bool(value)
        and all(type(t) is dict and "name" in t and "shape" in t and "datatype" in t for t in value)
    )


@dataclass(frozen=True, slots=True)
class Tensor:
    """A v2 tensor's elements along its first dimension, or why it cannot be read."""

    name: str
    batch: int
    rank: int
    elements: list[Any]
    error: str | None = None


def read_tensor(spec: dict[str, Any], what: str) -> Tensor:
    """The tensor ``spec`` split along its first dimension; ``what`` names it in errors.

    >>> read_tensor({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
    ...             "input").elements
    [[1, 2], [3, 4]]
    """
    name = str(spec["name"])
    shape = spec["shape"]
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        return Tensor(name, 0, 0, [], f"{what} {name!r}: 'shape' must be non-negative integers")
    if "data" not in spec:
        return Tensor(name, 0, 0, [], f"{what} {name!r} has no 'data' (binary data is not read)")
    flat = flatten(spec["data"])
    size = math.prod(shape)
    if len(flat) != size:
        reason = f"{what} {name!r} has {len(flat)} values for shape {shape}"
        return Tensor(name, 0, 0, [], reason)
    if len(shape) <= 1:
        return Tensor(name, shape[0] if shape else 1, len(shape), flat)
    batch = shape[0]
    width = size // batch if batch else 0
    elements = [flat[i * width : (i + 1) * width] for i in range(batch)]
    return Tensor(name, batch, len(shape), elements)


def flatten(data: Any) -> list[Any]:
    """Nested arrays in row-major order as one flat list (a flat list as it is)."""
    if type(data) is not list:
        return [data]
    if list not in set(map(type, data)):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat
