"""The report's plots, drawn here as inline SVG: no script, no library, nothing fetched.

Each function returns one ``<svg>`` element sized by its ``viewBox`` (the page's CSS
scales it to the column's width). Colours are classes (``ref``, ``cur``, ``ks``) that
the page's stylesheet maps to the Okabe-Ito palette; the reference is always a filled
shape and the current data an outline or a darker bar, so the two differ in form as
well as colour. Coordinates are rounded to one decimal: the file stays small and the
eye sees no difference.

>>> svg = bars_plot(["a", "b"], [0.5, 0.5], [0.2, 0.8], label="shares")
>>> svg.startswith('<svg class="plot" viewBox="0 0 360'), svg.count("<rect")
(True, 4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from itertools import pairwise

__all__ = [
    "bars_plot",
    "category_plot",
    "density_plot",
    "ecdf_plot",
    "fmt",
    "nice_ticks",
    "view",
]

_W, _H = 360, 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 10, 10, 30


def fmt(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, as the page shows every number.

    Numbers from ``10 ** digits`` to a billion are written whole, with thousands
    separators, which reads better than an exponent.

    >>> fmt(0.000123456), fmt(57713.2), fmt(12.0), fmt(3.2e12), fmt(float("nan"))
    ('0.0001235', '57,713', '12', '3.2e+12', 'n/a')
    """
    if not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if 10**digits <= abs(value) < 1e9:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About ``count`` round numbers between ``low`` and ``high``.

    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> nice_ticks(3.0, 3.0)
    [3.0]
    """
    if not high > low:
        return [low]
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def view(grid: Sequence[float]) -> tuple[float, float]:
    """The x range drawn for a fine grid: its inner edges and a tenth more each side.

    The outer cells run to the smallest and largest value, and one outlier would
    squeeze the rest of the plot into a sliver; they are drawn cut at this range.

    >>> view([-1000.0, 0.0, 1.0, 2.0, 10.0])
    (-0.2, 2.2)
    """
    if len(grid) < 4:
        return grid[0], grid[-1]
    margin = (grid[-2] - grid[1]) / 10
    return max(grid[0], grid[1] - margin), min(grid[-1], grid[-2] + margin)


class _Frame:
    """Data-to-pixel scales of one plot's drawing area; x outside the range is clamped."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float, height: int = _H) -> None:
        self.height = height
        self.x0, self.x1 = x0, x1 if x1 > x0 else x0 + 1.0
        self.y0, self.y1 = y0, y1 if y1 > y0 else y0 + 1.0

    def x(self, value: float) -> float:
        value = min(max(value, self.x0), self.x1)
        span = _W - _LEFT - _RIGHT
        return round(_LEFT + (value - self.x0) / (self.x1 - self.x0) * span, 1)

    def y(self, value: float) -> float:
        span = self.height - _TOP - _BOTTOM
        return round(self.height - _BOTTOM - (value - self.y0) / (self.y1 - self.y0) * span, 1)

    def axes(self, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]]) -> str:
        """The axis lines and their tick labels."""
        base = self.height - _BOTTOM
        parts = [f'<path class="axis" d="M{_LEFT} {_TOP}V{base}H{_W - _RIGHT}"/>']
        for value, text in xticks:
            x = self.x(value)
            parts.append(
                f'<text x="{x}" y="{base + 14}" text-anchor="middle">{escape(text)}</text>'
            )
        for value, text in yticks:
            y = self.y(value)
            parts.append(f'<text x="{_LEFT - 4}" y="{y + 4}" text-anchor="end">{text}</text>')
        return "".join(parts)


def _svg(body: str, label: str, height: int = _H) -> str:
    return (
        f'<svg class="plot" viewBox="0 0 {_W} {height}" role="img" '
        f'aria-label="{escape(label)}">{body}</svg>'
    )


def _percent_ticks(top: float) -> list[tuple[float, str]]:
    return [(value, f"{value * 100:.3g}%") for value in nice_ticks(0.0, top, 3)]


def density_plot(
    grid: Sequence[float], reference: Sequence[float], current: Sequence[float], *, label: str
) -> str:
    """Both sides' densities on the fine grid: the reference filled, the current a line.

    A cell's height is its share over its width, so cells of unequal width compare
    fairly; a cell narrower than a quarter of the average (repeated values) is drawn
    at that width, so one value held by many rows does not dwarf the rest.
    """
    low, high = view(grid)
    floor = (high - low) / (4 * max(len(grid) - 1, 1)) or 1.0
    widths = [max(b - a, floor) for a, b in pairwise(grid)]
    ref_d = [share / width for share, width in zip(reference, widths, strict=True)]
    cur_d = [share / width for share, width in zip(current, widths, strict=True)]
    frame = _Frame(low, high, 0.0, max(max(ref_d), max(cur_d)) * 1.05)
    ref_path = _steps(frame, grid, ref_d)
    area = f"{ref_path}V{frame.y(0.0)}H{frame.x(grid[0])}Z"
    xticks = [(t, fmt(t, 3)) for t in nice_ticks(low, high)]
    body = (
        frame.axes(xticks, [(0.0, "0")])
        + f'<path class="ref area" d="{area}"/>'
        + f'<path class="cur line" d="{_steps(frame, grid, cur_d)}"/>'
    )
    return _svg(body, label)


def _steps(frame: _Frame, grid: Sequence[float], heights: Sequence[float]) -> str:
    """A step path over the cells: across each cell at its height."""
    parts = [f"M{frame.x(grid[0])} {frame.y(0.0)}"]
    for right, height in zip(grid[1:], heights, strict=True):
        parts.append(f"V{frame.y(height)}H{frame.x(right)}")
    parts.append(f"V{frame.y(0.0)}")
    return "".join(parts)


def bars_plot(
    names: Sequence[str], reference: Sequence[float], current: Sequence[float], *, label: str
) -> str:
    """Both sides' shares side by side for each of ``names`` (the PSI bins), bottom to top.

    Each pair of bars carries a ``<title>`` with its name and both shares: the browser
    shows it on hover.
    """
    top = max(max(reference), max(current)) * 1.1 or 1.0
    frame = _Frame(0.0, float(len(names)), 0.0, top)
    parts = [frame.axes(_bin_ticks(names), _percent_ticks(top))]
    slot = (_W - _LEFT - _RIGHT) / len(names)
    bar = round(slot * 0.38, 1)
    for i, (name, ref, cur) in enumerate(zip(names, reference, current, strict=True)):
        x = frame.x(float(i)) + round(slot * 0.1, 1)
        parts.append(
            f"<g><title>{escape(name)}: reference {ref:.2%}, current {cur:.2%}</title>"
            f"{_bar('ref', x, bar, frame, ref)}"
            f"{_bar('cur', round(x + bar, 1), bar, frame, cur)}</g>"
        )
    return _svg("".join(parts), label)


def _bin_ticks(names: Sequence[str]) -> list[tuple[float, str]]:
    every = max(1, math.ceil(len(names) / 6))
    return [(i + 0.5, str(i + 1)) for i in range(0, len(names), every)]


def _bar(cls: str, x: float, width: float, frame: _Frame, share: float) -> str:
    y = frame.y(share)
    height = round(frame.y(0.0) - y, 1)
    return f'<rect class="{cls}" x="{x}" y="{y}" width="{width}" height="{height}"/>'


def ecdf_plot(
    grid: Sequence[float],
    reference: Sequence[float],
    current: Sequence[float],
    ks: tuple[float, float, float],
    *,
    distance: str,
    label: str,
) -> str:
    """Both ECDFs through the fine grid's edges, the KS distance a marked vertical bar.

    ``ks`` is where the ECDFs lie furthest apart and their values there; ``distance``
    the statistic's text, as the report gives it.
    """
    low, high = view(grid)
    frame = _Frame(low, high, 0.0, 1.0)
    at, ref_f, cur_f = ks
    lines = [
        f'<polyline class="{cls} line" points="{_cumulative(frame, grid, shares)}"/>'
        for cls, shares in (("ref", reference), ("cur", current))
    ]
    x = frame.x(at)
    y_low, y_high = frame.y(min(ref_f, cur_f)), frame.y(max(ref_f, cur_f))
    anchor = "end" if x > _W / 2 else "start"
    text_x = x - 4 if anchor == "end" else x + 4
    marker = (
        f'<path class="ks" d="M{x} {y_low}V{y_high}"/>'
        f'<text class="ks-label" x="{text_x}" y="{round((y_low + y_high) / 2 + 4, 1)}" '
        f'text-anchor="{anchor}">KS D = {escape(distance)}</text>'
    )
    xticks = [(t, fmt(t, 3)) for t in nice_ticks(low, high)]
    body = frame.axes(xticks, [(0.0, "0"), (0.5, "0.5"), (1.0, "1")]) + "".join(lines) + marker
    return _svg(body, label)


def _cumulative(frame: _Frame, grid: Sequence[float], shares: Sequence[float]) -> str:
    points, total = [f"{frame.x(grid[0])},{frame.y(0.0)}"], 0.0
    for right, share in zip(grid[1:], shares, strict=True):
        total += share
        points.append(f"{frame.x(right)},{frame.y(min(total, 1.0))}")
    return " ".join(points)


def category_plot(
    names: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    label: str,
) -> str:
    """Horizontal bar pairs, one row per category, names on the left."""
    row = 22
    height = _TOP + _BOTTOM + row * len(names)
    top = max(max(reference), max(current)) * 1.1 or 1.0
    left = 110
    span = _W - left - _RIGHT
    parts = []
    for i, (name, ref, cur) in enumerate(zip(names, reference, current, strict=True)):
        y = _TOP + i * row
        short = name if len(name) <= 16 else name[:15] + "…"
        parts.append(
            f"<g><title>{escape(name)}: reference {ref:.2%}, current {cur:.2%}</title>"
            f'<text x="{left - 4}" y="{y + 14}" text-anchor="end">{escape(short)}</text>'
            f'<rect class="ref" x="{left}" y="{y + 2}" width="{round(ref / top * span, 1)}" '
            'height="8"/>'
            f'<rect class="cur" x="{left}" y="{y + 11}" width="{round(cur / top * span, 1)}" '
            'height="8"/></g>'
        )
    base = height - _BOTTOM + 2
    for value, text in _percent_ticks(top):
        x = round(left + value / top * span, 1)
        parts.append(f'<text x="{x}" y="{base + 14}" text-anchor="middle">{text}</text>')
    parts.append(f'<path class="axis" d="M{left} {_TOP}V{base}H{_W - _RIGHT}"/>')
    return _svg("".join(parts), label, height)
