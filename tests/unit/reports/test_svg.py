"""The plots' geometry: ticks inside the drawn range, outliers cut, bars per name."""

from __future__ import annotations

import re

import pytest

from flowops.reports import svg

GRID = [-1e6, 0.0, 0.25, 0.5, 0.75, 1.0, 50.0]
SHARES = [0.01, 0.2, 0.3, 0.3, 0.18, 0.01]


def _ticks(plot: str) -> list[float]:
    labels = re.findall(r'text-anchor="middle">([^<]+)<', plot)
    return [float(label.replace(",", "")) for label in labels]


@pytest.mark.parametrize("draw", ["density", "ecdf"])
def test_x_ticks_stay_in_the_inner_range_despite_outliers(draw: str) -> None:
    if draw == "density":
        plot = svg.density_plot(GRID, SHARES, SHARES, label="x")
    else:
        plot = svg.ecdf_plot(GRID, SHARES, SHARES, (0.5, 0.4, 0.6), distance="0.2", label="x")
    low, high = svg.view(GRID)
    ticks = _ticks(plot)
    assert len(ticks) >= 3
    assert all(low <= tick <= high for tick in ticks), ticks
    coordinates = [float(x) for x in re.findall(r"[MHL ,](-?\d+\.?\d*)", plot)]
    assert min(coordinates) >= 0  # the outliers' cells are cut at the frame, not off it


def test_ks_marker_spans_the_two_ecdf_values() -> None:
    plot = svg.ecdf_plot(GRID, SHARES, SHARES, (0.5, 0.25, 0.75), distance="0.5", label="x")
    marker = re.search(r'class="ks" d="M([\d.]+) ([\d.]+)V([\d.]+)"', plot)
    assert marker is not None
    top, bottom = 10, 180 - 30
    length = abs(float(marker.group(3)) - float(marker.group(2)))
    assert length == pytest.approx(0.5 * (bottom - top), abs=0.2)
    assert "KS D = 0.5" in plot


def test_bars_one_pair_per_name() -> None:
    plot = svg.bars_plot(["a", "b", "c"], [0.2, 0.3, 0.5], [0.5, 0.3, 0.2], label="bins")
    assert plot.count("<rect") == 6
    assert plot.count("<title>") == 3
    assert "a: reference 20.00%, current 50.00%" in plot


def test_category_plot_escapes_names() -> None:
    plot = svg.category_plot(["<b>&"], [1.0], [0.5], label="c")
    assert "<b>" not in plot
    assert "&lt;b&gt;&amp;" in plot
