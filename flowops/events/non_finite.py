"""JSON with ``NaN``, ``Infinity`` and ``-Infinity``: read again, the tokens as null.

Python's ``json.dumps`` writes those tokens for non-finite floats unless told not to
(``allow_nan=False``), and pandas, numpy and many clients pass them on; JSON has no such
values and orjson refuses them. :func:`loads_non_finite` is the second chance a reader
gives a payload orjson refused: the standard library's parser, with each token (and a
number too large for a float, which orjson refuses as well) read as ``null`` and
counted. It returns ``None`` when the payload holds no such token or is not JSON for
another reason too, so the caller's first error stands. Valid JSON never comes here.

>>> loads_non_finite(b'{"x": NaN, "y": [1.5, -Infinity]}')
({'x': None, 'y': [1.5, None]}, 2)
>>> loads_non_finite(b'{"x": 1') is None, loads_non_finite(b'{"x": NaN') is None
(True, True)
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

__all__ = ["loads_non_finite"]

_TOKENS: Final = re.compile(rb"NaN|Infinity")


def loads_non_finite(payload: bytes | bytearray | memoryview | str) -> tuple[Any, int] | None:
    """The parsed payload and how many values were read as null; None if not that."""
    raw = payload.encode() if isinstance(payload, str) else bytes(payload)
    if not _TOKENS.search(raw):
        return None
    seen: list[str] = []

    def as_null(token: str) -> None:
        seen.append(token)

    def finite(text: str) -> float | None:
        number = float(text)
        if math.isfinite(number):
            return number
        seen.append(text)
        return None

    try:
        return json.loads(raw, parse_constant=as_null, parse_float=finite), len(seen)
    except (ValueError, RecursionError):
        return None
