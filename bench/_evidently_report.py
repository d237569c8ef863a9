"""Evidently's data drift report on bench/report.py's data; run by Evidently's own Python.

Arguments: features, current rows, reference rows, output file. Prints the seconds from
the data frames to the written HTML file.
"""

from __future__ import annotations

import sys
import time

import pandas as pd
from _report_data import data
from evidently import Report
from evidently.presets import DataDriftPreset


def main(features: int, rows: int, reference_rows: int, out: str) -> None:
    reference = pd.DataFrame(data(features, reference_rows, False, 1))
    current = pd.DataFrame(data(features, rows, True, 2))
    start = time.perf_counter()
    Report([DataDriftPreset()]).run(current, reference).save_html(out)
    print(time.perf_counter() - start)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
