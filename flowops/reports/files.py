"""The HTML report of a file comparison: what ``flowops drift compare --html`` writes.

The JSON report is made first, by whatever :func:`flowops.data.compare_files` does
today; this module reads the reference and the current file again for the plots. The
second read costs what the first did (about 1 s a million rows of CSV) and keeps the
report's numbers and the page's numbers from one source: the page shows the JSON
report's dict, as it is.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import Any

from flowops._version import __version__
from flowops.data import build_profile, read_profile, read_table
from flowops.drift.profile import Profile
from flowops.reports.page import render_html, write_html
from flowops.reports.sketch import sketch_columns

__all__ = ["html_report", "write_comparison_html"]


def write_comparison_html(
    path: str | os.PathLike[str],
    report: Mapping[str, Any],
    reference: str | os.PathLike[str],
    current: str | os.PathLike[str],
    *,
    features: Sequence[str] | None = None,
    bins: int = 10,
    prediction_column: str | None = None,
) -> int:
    """Write the page of ``report``, the comparison of ``current`` with ``reference``.

    ``reference`` is a profile (``.json``) or data, as for ``compare_files``, and
    ``prediction_column`` the current file's predictions as it read them; returns the
    page's size in bytes.
    """
    profile, columns, rows = _read(reference, current, features, bins, prediction_column)
    context = _context(profile, reference, current, rows)
    return write_html(path, report, sketch_columns(profile.features, columns), context)


def html_report(
    report: Mapping[str, Any],
    profile: Profile,
    columns: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
) -> str:
    """The page of ``report`` from a profile and current columns already in memory."""
    return render_html(report, sketch_columns(profile.features, columns), context)


def _read(
    reference: str | os.PathLike[str],
    current: str | os.PathLike[str],
    features: Sequence[str] | None,
    bins: int,
    prediction_column: str | None,
) -> tuple[Profile, dict[str, Any], int]:
    from flowops.predictions import current_predictions, input_names

    profile = read_profile(reference) or build_profile(
        reference, features=features, bins=bins, prediction_column=prediction_column
    )
    names = list(dict.fromkeys(features or input_names(profile)))
    kinds = {name: profile.features[name].kind for name in names if name in profile.features}
    table = read_table(current, columns=list(kinds), kinds=kinds)
    predicted = current_predictions(profile, current, prediction_column)
    return profile, {**table.columns, **predicted}, table.rows


def _context(
    profile: Profile,
    reference: str | os.PathLike[str],
    current: str | os.PathLike[str],
    rows: int,
) -> dict[str, Any]:
    """The facts and settings the JSON report does not hold, for the page's summary."""
    return {
        "current_rows": rows,
        "reference_rows": max((f.n + f.excluded for f in profile.features.values()), default=0),
        "model": profile.model,
        "reference": os.fspath(reference),
        "current": os.fspath(current),
        "PSI bins": profile.bins,
        "KS sample size": profile.sample_size,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "FlowOps": __version__,
    }
