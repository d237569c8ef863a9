"""The window-partial codec: a :class:`~flowops.drift.partial.WindowPartial` as bytes.

Partials travel between the stream stages on an internal topic, so the format is
compact rather than readable: a 4-byte little-endian length, a JSON header (orjson), then
the numeric features' cell counts as raw little-endian arrays, sparse (the positions of
the cells that are not empty, then their counts), each array in the narrowest unsigned
type that holds it. A partial of a few rows is a few hundred bytes whatever the grid's
size; a full window at most about 10 bytes a cell. Floats that are not finite (the
bounds of a partial without values, a sum of squares that overflowed) are written as
the text ``"inf"``, ``"-inf"`` or ``"nan"``. The header's ``requests`` and ``failed``
(the window's error-rate counts) were added within format 1: a partial without them
reads as 0 and 0.

>>> import numpy as np
>>> from flowops.drift.partial import NumericCounts, WindowPartial
>>> cells = np.zeros(2049, dtype=np.int64); cells[[3, 700]] = [2, 1]
>>> partial = WindowPartial("m", "1", 4, "abc", 3, 10.0, 12.5,
...                         {"x": NumericCounts(cells, 0, 6.0, 14.0, 1.0, 3.0)})
>>> data = encode_partial(partial)
>>> len(data) < 300, decode_partial(data).numeric["x"].cells[[3, 700]].tolist()
(True, [2, 1])
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

from flowops.drift.partial import CategoryCounts, NumericCounts, WindowPartial
from flowops.errors import EventError

__all__ = [
    "PARTIAL_FORMAT",
    "Flush",
    "Watermark",
    "decode_flush",
    "decode_message",
    "decode_partial",
    "encode_flush",
    "encode_partial",
    "encode_watermark",
]

PARTIAL_FORMAT: Final = 1
"""The partial format this FlowOps writes and reads."""

_LENGTH = struct.Struct("<I")
_FLUSH = "partial flush"
_NOT_FINITE = ("inf", "-inf", "nan")
_EVENT = "window partial"


def encode_partial(partial: WindowPartial) -> bytes:
    """The partial as bytes (see the module)."""
    arrays: list[bytes] = []
    numeric = {}
    for name, counts in partial.numeric.items():
        where = np.flatnonzero(counts.cells)
        index, values = _narrow(where), _narrow(counts.cells[where])
        arrays += [index.tobytes(), values.tobytes()]
        numeric[name] = [
            counts.cells.size,
            where.size,
            index.dtype.str,
            values.dtype.str,
            counts.missing,
            _finite(counts.total),
            _finite(counts.squares),
            _finite(counts.low),
            _finite(counts.high),
        ]
    header = {
        "format": PARTIAL_FORMAT,
        "model": partial.model,
        "version": partial.version,
        "window": partial.window,
        "reference": partial.reference,
        "rows": partial.rows,
        "first": _finite(partial.first),
        "last": _finite(partial.last),
        "ignored": partial.ignored,
        "requests": partial.requests,
        "failed": partial.failed,
        "numeric": numeric,
        "categorical": {
            name: [counts.counts, counts.missing] for name, counts in partial.categorical.items()
        },
    }
    head = orjson.dumps(header)
    return b"".join([_LENGTH.pack(len(head)), head, *arrays])


def decode_partial(data: bytes) -> WindowPartial:
    """The partial :func:`encode_partial` wrote; EventError for anything else."""
    try:
        (length,) = _LENGTH.unpack_from(data)
        header = orjson.loads(data[_LENGTH.size : _LENGTH.size + length])
        if not isinstance(header, dict) or header.get("format") != PARTIAL_FORMAT:
            raise EventError(
                "not a window partial of format 1", event=_EVENT, code="schema_version"
            )
        offset = _LENGTH.size + length
        numeric = {}
        for name, spec in header["numeric"].items():
            numeric[name], offset = _numeric(data, offset, spec)
        if offset != len(data):
            raise EventError(f"{len(data) - offset} bytes after the counts", event=_EVENT)
        return WindowPartial(
            model=str(header["model"]),
            version=str(header["version"]),
            window=int(header["window"]),
            reference=str(header["reference"]),
            rows=int(header["rows"]),
            first=_float(header["first"]),
            last=_float(header["last"]),
            numeric=numeric,
            categorical={
                str(name): CategoryCounts({str(k): int(v) for k, v in counts.items()}, int(miss))
                for name, (counts, miss) in header["categorical"].items()
            },
            ignored=int(header["ignored"]),
            # absent from partials written before windows counted their requests
            requests=int(header.get("requests", 0)),
            failed=int(header.get("failed", 0)),
        )
    except EventError:
        raise
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EventError(f"not a window partial: {exc}", event=_EVENT, code="bad_json") from None


def _numeric(data: bytes, offset: int, spec: list[Any]) -> tuple[NumericCounts, int]:
    size, nonzero, index_type, count_type, missing, total, squares, low, high = spec
    where, offset = _array(data, offset, index_type, nonzero)
    counts, offset = _array(data, offset, count_type, nonzero)
    if nonzero and int(where.max()) >= size:
        raise EventError(f"a cell index beyond {size} cells", event=_EVENT)
    cells = np.zeros(int(size), dtype=np.int64)
    cells[where] = counts
    numeric = NumericCounts(
        cells,
        int(missing),
        _float(total),
        _float(squares),
        _float(low),
        _float(high),
    )
    return numeric, offset


def _array(data: bytes, offset: int, dtype: str, count: int) -> tuple[NDArray[Any], int]:
    kind = np.dtype(dtype)
    if kind.kind != "u":
        raise EventError(f"cell arrays are unsigned integers, got {dtype!r}", event=_EVENT)
    end = offset + kind.itemsize * int(count)
    if end > len(data):
        raise EventError("the counts are cut short", event=_EVENT, code="bad_batch")
    return np.frombuffer(data, dtype=kind, count=int(count), offset=offset), end


def _narrow(values: NDArray[Any]) -> NDArray[Any]:
    """``values`` (non-negative integers) in the narrowest little-endian unsigned type."""
    top = int(values.max()) if values.size else 0
    for dtype in ("<u1", "<u2", "<u4"):
        if top < 1 << (8 * np.dtype(dtype).itemsize):
            return values.astype(dtype)
    return values.astype("<u8")


def _finite(value: float) -> float | str:
    """JSON has no inf nor NaN: those are written as the text ``float()`` reads back."""
    return value if math.isfinite(value) else repr(value)


def _float(value: object) -> float:
    if value in _NOT_FINITE:
        return float(str(value))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Flush:
    """What one traffic partition's reader sends the merge stage about one model at once.

    ``partials`` hold the model's rows of traffic offsets ``[start, end)`` of partition
    ``source``, a partial a window (none when only the watermark moved); ``watermark``
    is how far the partition has got in event time (seconds): its rows from now on are
    expected at or after it, give or take ``streams.grace``. ``size`` is the length of
    the model's time windows, so the merge stage needs no settings to bound them.
    The merge stage drops a flush whose ``end`` it has merged before (a replay).
    """

    model: str
    source: int
    start: int
    end: int
    watermark: float
    size: float
    partials: tuple[WindowPartial, ...] = ()


def encode_flush(flush: Flush) -> bytes:
    """The flush as bytes: a length, a JSON header, then each partial's bytes.

    >>> flush = Flush("m", 2, 10, 14, 1700.0, 60.0)
    >>> decode_flush(encode_flush(flush)) == flush
    True
    """
    parts = [encode_partial(partial) for partial in flush.partials]
    header = orjson.dumps(
        {
            "format": PARTIAL_FORMAT,
            "model": flush.model,
            "source": flush.source,
            "start": flush.start,
            "end": flush.end,
            "watermark": _finite(flush.watermark),
            "size": flush.size,
            "partials": [len(part) for part in parts],
        }
    )
    return b"".join([_LENGTH.pack(len(header)), header, *parts])


def decode_flush(data: bytes) -> Flush:
    """The flush :func:`encode_flush` wrote; EventError for anything else."""
    try:
        (length,) = _LENGTH.unpack_from(data)
        header = orjson.loads(data[_LENGTH.size : _LENGTH.size + length])
        if not isinstance(header, dict) or header.get("format") != PARTIAL_FORMAT:
            raise EventError("not a flush of format 1", event=_FLUSH, code="schema_version")
        offset, partials = _LENGTH.size + length, []
        for size in header["partials"]:
            partials.append(decode_partial(data[offset : offset + int(size)]))
            offset += int(size)
        if offset != len(data):
            raise EventError(f"{len(data) - offset} bytes after the partials", event=_FLUSH)
        return Flush(
            model=str(header["model"]),
            source=int(header["source"]),
            start=int(header["start"]),
            end=int(header["end"]),
            watermark=_float(header["watermark"]),
            size=float(header["size"]),
            partials=tuple(partials),
        )
    except EventError:
        raise
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EventError(f"not a flush: {exc}", event=_FLUSH, code="bad_json") from None


@dataclass(frozen=True)
class Watermark:
    """How far traffic partition ``source`` has got in event time (see :class:`Flush`);
    its reader sends it to every partition of the partials topic, with the number of
    partitions the traffic topic has (the merge stage waits to hear from each)."""

    source: int
    watermark: float
    partitions: int


def encode_watermark(mark: Watermark) -> bytes:
    """The watermark as bytes (a header and nothing after it).

    >>> decode_message(encode_watermark(Watermark(1, 1700.5, 4)))
    Watermark(source=1, watermark=1700.5, partitions=4)
    """
    header = {
        "format": PARTIAL_FORMAT,
        "kind": "watermark",
        "source": mark.source,
        "partitions": mark.partitions,
    }
    head = orjson.dumps({**header, "watermark": _finite(mark.watermark)})
    return _LENGTH.pack(len(head)) + head


def decode_message(data: bytes) -> Flush | Watermark:
    """A message of the partials topic: a flush or a watermark; EventError otherwise."""
    try:
        (length,) = _LENGTH.unpack_from(data)
        header = orjson.loads(data[_LENGTH.size : _LENGTH.size + length])
        if isinstance(header, dict) and header.get("kind") == "watermark":
            if header.get("format") != PARTIAL_FORMAT:
                raise EventError("not a watermark of format 1", event=_FLUSH, code="schema_version")
            source, partitions = int(header["source"]), int(header["partitions"])
            return Watermark(source, _float(header["watermark"]), partitions)
    except EventError:
        raise
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EventError(f"not a partials message: {exc}", event=_FLUSH, code="bad_json") from None
    return decode_flush(data)
