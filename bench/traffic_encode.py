"""The gateway's publisher encoding a list of rows: `encode_traffic_rows` (no numpy, what
the gateway runs since its install dropped numpy) beside the path it replaced,
`encode_traffic(TrafficBatch.from_rows(rows))`; the same bytes, per batch size."""

from __future__ import annotations

import timeit

from flowops.events import TrafficBatch, TrafficRow
from flowops.events.codec import encode_traffic, encode_traffic_rows

SIZES = (1, 16, 256)
NUMBER, REPEAT = 2000, 5


def main() -> None:
    rows = [
        TrafficRow(
            "credit", "3", f"r-{i:08d}", 1764291600.25 + i,
            {"age": 41 + i % 7, "income": 52000.0 + i, "region": "north"}, 0.12, 8.5, 200,
        )
        for i in range(max(SIZES))
    ]  # fmt: skip
    print("| rows | from_rows + encode_traffic (anchor) | encode_traffic_rows | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for size in SIZES:
        part = rows[:size]
        assert encode_traffic_rows(part) == encode_traffic(TrafficBatch.from_rows(part))
        old = min(timeit.repeat(lambda p=part: encode_traffic(TrafficBatch.from_rows(p)),
                                number=NUMBER, repeat=REPEAT)) / NUMBER  # fmt: skip
        new = min(timeit.repeat(lambda p=part: encode_traffic_rows(p),
                                number=NUMBER, repeat=REPEAT)) / NUMBER  # fmt: skip
        print(f"| {size} | {old * 1e6:.1f} µs | {new * 1e6:.1f} µs | {new / old:.2f} |")


if __name__ == "__main__":
    main()
