"""Drift reports people look at: one self-contained HTML page per comparison.

:func:`html_report` turns a drift report's JSON dict, the profile and the current
columns into the page; :mod:`flowops.reports.sketch` reduces each feature to the
row-free counts a page draws (the same counts a stream window keeps), and
:mod:`flowops.reports.page` draws them with inline SVG. A stream window's counts
become the same sketches in :mod:`flowops.reports.counts` (the page behind an alert), and
:mod:`flowops.reports.performance` is ``compare --label-column``'s section.
"""

from flowops.reports.files import html_report, write_comparison_html
from flowops.reports.page import render_html, write_html
from flowops.reports.sketch import (
    CategoricalSketch,
    FeatureSketch,
    NumericSketch,
    sketch_columns,
    sketch_feature,
)

__all__ = [
    "CategoricalSketch",
    "FeatureSketch",
    "NumericSketch",
    "html_report",
    "render_html",
    "sketch_columns",
    "sketch_feature",
    "write_comparison_html",
    "write_html",
]
