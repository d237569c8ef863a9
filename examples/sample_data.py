"""Write a reference and a current table of a credit model's inputs, for the drift demo.

    python examples/sample_data.py OUTDIR [--rows N] [--seed S]

writes OUTDIR/reference.csv and OUTDIR/current.csv: applicants' age, income and
debt_ratio (numeric), region and channel (categorical). The current data drifted in
exactly two features: incomes are about 8% higher, and more applications come through
the web channel. age, debt_ratio and region come from the same distributions in both
files. A few cells are empty or ``nan``, as in real exports. The same arguments always
write the same files.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from flowops.demo import CURRENT, REFERENCE, applicants

COLUMNS = ("age", "income", "debt_ratio", "region", "channel")
PERIODS = {"reference": REFERENCE, "current": CURRENT}  # current: incomes ~8% up, more web


def text_columns(rng: np.random.Generator, rows: int, period: str) -> dict[str, list[str]]:
    """One period's applications as text columns, ready to write."""
    drawn = applicants(rng, rows, PERIODS[period])
    columns = {
        "age": [str(value) for value in drawn["age"]],
        "income": [f"{value:.2f}" for value in drawn["income"]],
        "debt_ratio": [f"{value:.4f}" for value in drawn["debt_ratio"]],
        "region": [str(value) for value in drawn["region"]],
        "channel": [str(value) for value in drawn["channel"]],
    }
    _blank_some(rng, columns["income"], share=0.002, filler="")
    _blank_some(rng, columns["debt_ratio"], share=0.001, filler="nan")
    _blank_some(rng, columns["region"], share=0.001, filler="")
    return columns


def _blank_some(rng: np.random.Generator, cells: list[str], *, share: float, filler: str) -> None:
    for index in rng.choice(len(cells), size=max(1, int(len(cells) * share)), replace=False):
        cells[index] = filler


def write_csv(path: Path, columns: dict[str, list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(zip(*(columns[name] for name in COLUMNS), strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="folder to write reference.csv and current.csv")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per file (default 20000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    if args.rows < 100:
        parser.error("--rows must be at least 100")
    args.outdir.mkdir(parents=True, exist_ok=True)
    streams = np.random.SeedSequence(args.seed).spawn(2)
    for period, stream in zip(("reference", "current"), streams, strict=True):
        path = args.outdir / f"{period}.csv"
        write_csv(path, text_columns(np.random.default_rng(stream), args.rows, period))
        print(f"wrote {path} ({args.rows} rows)")


if __name__ == "__main__":
    main()
