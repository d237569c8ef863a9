"""The window-partial codec: exact round trips, compact bytes, clear errors."""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowops.drift import Profile
from flowops.drift.partial import NumericCounts, Prepared, WindowPartial, reduce_rows
from flowops.errors import EventError
from flowops.events.partials import decode_partial, encode_partial

_RNG = np.random.default_rng(4)
PREPARED = Prepared.from_profile(
    Profile.from_columns({"x": _RNG.normal(size=5_000), "c": ["a", "b", "c"] * 50})
)


def _same(left: WindowPartial, right: WindowPartial) -> bool:
    numeric = all(
        left.numeric[n].cells.tolist() == right.numeric[n].cells.tolist()
        and repr((left.numeric[n].missing, left.numeric[n].total, left.numeric[n].squares))
        == repr((right.numeric[n].missing, right.numeric[n].total, right.numeric[n].squares))
        and (left.numeric[n].low, left.numeric[n].high)
        == (right.numeric[n].low, right.numeric[n].high)
        for n in left.numeric
    )
    rest = (left.key, left.rows, left.first, left.last, left.ignored, left.categorical)
    rest += (left.requests, left.failed)
    return (
        numeric
        and list(left.numeric) == list(right.numeric)
        and rest
        == (
            right.key,
            right.rows,
            right.first,
            right.last,
            right.ignored,
            right.categorical,
            right.requests,
            right.failed,
        )
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e9, 1e9) | st.just(math.nan),
            st.floats(allow_nan=True) | st.none(),
            st.sampled_from(["a", "b", "ünï", None]),
        ),
        max_size=80,
    ),
    st.integers(0, 2**40),
)
def test_round_trip_is_exact(
    rows: list[tuple[float, float | None, str | None]], window: int
) -> None:
    ts = np.array([row[0] for row in rows], dtype=np.float64)
    columns = {"x": [row[1] for row in rows], "c": [row[2] for row in rows]}
    partial = reduce_rows(PREPARED, "credit", "3", window, ts, columns)
    partial = dataclasses.replace(partial, requests=len(rows) + 3, failed=3)
    assert _same(decode_partial(encode_partial(partial)), partial)


def test_large_counts_and_a_full_grid_round_trip() -> None:
    cells = np.full(2049, 2**33, dtype=np.int64)
    partial = WindowPartial("m", "1", 0, "r", 5, 0.0, 1.0, {"x": NumericCounts(cells, 3)})
    data = encode_partial(partial)
    assert decode_partial(data).numeric["x"].cells.tolist() == cells.tolist()


def test_a_partial_of_a_few_rows_is_small() -> None:
    partial = reduce_rows(PREPARED, "credit", "3", 9, np.arange(5.0), {"x": _RNG.normal(size=5)})
    assert len(encode_partial(partial)) < 400


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "bad_json"),
        (b"\x02\x00\x00\x00{}", "schema_version"),
        (b"\x05\x00\x00\x00nope!", "bad_json"),
    ],
)
def test_garbage_is_an_event_error(data: bytes, code: str) -> None:
    with pytest.raises(EventError) as caught:
        decode_partial(data)
    assert caught.value.code == code


def test_cut_short_counts_are_refused() -> None:
    partial = reduce_rows(PREPARED, "m", "1", 0, np.arange(3.0), {"x": [0.1, 0.2, 0.3]})
    with pytest.raises(EventError, match="cut short"):
        decode_partial(encode_partial(partial)[:-1])


def test_a_partial_written_before_requests_were_counted_reads_none() -> None:
    partial = reduce_rows(PREPARED, "credit", "3", 1, np.zeros(2), {"x": [1.0, 2.0]})
    data = encode_partial(dataclasses.replace(partial, requests=5, failed=2))
    (length,) = struct.unpack_from("<I", data)
    header = orjson.loads(data[4 : 4 + length])
    assert (header.pop("requests"), header.pop("failed")) == (5, 2)
    older = orjson.dumps(header)
    decoded = decode_partial(struct.pack("<I", len(older)) + older + data[4 + length :])
    assert (decoded.rows, decoded.requests, decoded.failed) == (2, 0, 0)
