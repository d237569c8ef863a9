"""The data of bench/report.py, numpy only, so that Evidently's environment makes the same."""

from __future__ import annotations

from typing import Any

import numpy as np

REFERENCE_ROWS = 100_000
CATEGORIES = np.array(["north", "south", "east", "west", "centre", "islands", "abroad", "other"])


def column(index: int, rows: int, shifted: bool, rng: np.random.Generator) -> Any:
    """Feature ``index``: every fifth categorical, the others numeric of varied shape."""
    shift = 0.3 if shifted and index % 3 == 0 else 0.0
    if index % 5 == 4:
        weights = np.linspace(1, 2 + shift * 10, CATEGORIES.size)
        return CATEGORIES[rng.choice(CATEGORIES.size, rows, p=weights / weights.sum())]
    if index % 2:
        return rng.lognormal(shift, 0.5 + index % 3 / 4, rows)
    return rng.normal(index + shift, 1 + index % 4, rows)


def data(features: int, rows: int, shifted: bool, seed: int) -> dict[str, Any]:
    """``features`` columns of ``rows`` values; the current data is ``shifted``."""
    rng = np.random.default_rng(seed)
    return {f"f{i:03d}": column(i, rows, shifted, rng) for i in range(features)}
