"""The HTML report: one self-contained page from a drift report's JSON and its sketches.

The page is built from the dict that ``flowops drift compare -o json`` prints, read
generically: every scalar a feature carries is shown in its statistics table, every
list or mapping of objects (tests, effect sizes) as a table of its own, and every
top-level scalar in the summary. A field or a test added to the report later shows up
without a change here. Features named ``prediction`` or ``prediction[<class>]`` get a
section of their own. Drifted features come first.

Everything the page needs is inside it: the stylesheet inline, the plots as inline SVG
(:mod:`flowops.reports.svg`), no script. It opens from a ``file://`` URL, as an e-mail
attachment and in viewers that block scripts, and asks no network for anything.

>>> import numpy as np
>>> from flowops.drift import Profile, compare
>>> rng = np.random.default_rng(0)
>>> profile = Profile.from_columns({"x": rng.normal(size=2_000)})
>>> current = {"x": rng.normal(1, size=1_000)}
>>> report = compare(profile, current).to_dict()
>>> from flowops.reports.sketch import sketch_columns
>>> page = render_html(report, sketch_columns(profile.features, current))
>>> page.startswith("<!DOCTYPE html>"), "http" in page, page.count("<svg")
(True, False, 3)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any

from flowops.errors import InputError
from flowops.reports import sketch as _sketch
from flowops.reports import style as _style
from flowops.reports import svg
from flowops.reports.sketch import (
    CategoricalSketch,
    FeatureSketch,
    NumericSketch,
)

__all__ = ["PERFORMANCE", "is_prediction", "render_html", "write_html"]

_TOP_CATEGORIES = 20
_LABELS = {
    "psi": "PSI",
    "psi_pvalue": "PSI p-value",
    "ks_statistic": "KS D",
    "ks_pvalue": "KS p-value",
    "chi2_statistic": "chi-square",
    "chi2_pvalue": "chi-square p-value",
    "pvalue": "p-value (feature)",
    "adjusted_pvalue": "adjusted p-value",
    "n_reference": "reference values",
    "n_current": "current values",
    "excluded": "current values left out",
    "alpha": "alpha (threshold)",
    "correction": "correction across features",
}
_SKIP = ("feature", "kind")
PERFORMANCE = "performance"
"""The report's key for ``compare --label-column``'s section (drawn as a table)."""


def is_prediction(name: str) -> bool:
    """Whether a report's feature is the model's prediction (or one class's score).

    >>> is_prediction("prediction"), is_prediction("prediction[fraud]"), is_prediction("age")
    (True, True, False)
    """
    return name == "prediction" or (name.startswith("prediction[") and name.endswith("]"))


def write_html(
    path: str | os.PathLike[str],
    report: Mapping[str, Any],
    sketches: Mapping[str, FeatureSketch],
    context: Mapping[str, Any] | None = None,
) -> int:
    """Write the page to ``path``; returns its size in bytes.

    Raises :class:`~flowops.errors.InputError` naming the path when it cannot be written.
    """
    data = render_html(report, sketches, context).encode()
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", path=os.fspath(path)) from None
    return len(data)


def render_html(
    report: Mapping[str, Any],
    sketches: Mapping[str, FeatureSketch],
    context: Mapping[str, Any] | None = None,
) -> str:
    """The whole page: summary, the feature list, predictions, then every feature.

    ``report`` is the JSON report as a dict, ``sketches`` each feature's distributions by
    name (a feature without one gets its statistics alone), ``context`` the settings
    and facts the report does not hold (files, rows read, bins), shown in the summary.
    """
    features = _ordered(report.get("features", []))
    predictions = [item for item in features if is_prediction(str(item[1].get("feature")))]
    inputs = [item for item in features if not is_prediction(str(item[1].get("feature")))]
    sections = [_summary(report, features, dict(context or {}))]
    if predictions:
        sections.append(_group("predictions", "Predictions", predictions, sketches, report))
    if isinstance(report.get(PERFORMANCE), Mapping):
        sections.append(_performance(report[PERFORMANCE]))
    sections.append(_group("features", "Features", inputs, sketches, report))
    title = "Drift report" + (f": {context['model']}" if context and context.get("model") else "")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_style.STYLESHEET}</style></head><body>"
        '<a class="skip" href="#features">Skip to the features</a>'
        f'<div class="layout">{_nav(features)}<main><h1>{escape(title)}</h1>'
        f"{''.join(sections)}</main></div></body></html>"
    )


def _ordered(features: Iterable[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    """(index in the report, feature), drifted ones first, then by ascending p-value."""
    indexed = list(enumerate(features))

    def key(item: tuple[int, Mapping[str, Any]]) -> tuple[bool, float, int]:
        p = item[1].get("adjusted_pvalue")
        return (not item[1].get("drift"), p if isinstance(p, int | float) else 1.0, item[0])

    return sorted(indexed, key=key)


def _badge(drift: Any) -> str:
    if drift is True:
        return '<span class="badge drift">drift</span>'
    if drift is False:
        return '<span class="badge ok">no drift</span>'
    return ""


def _nav(features: Sequence[tuple[int, Mapping[str, Any]]]) -> str:
    items = "".join(
        f'<li><a href="#f-{index}">{escape(str(feature.get("feature")))}'
        f"{_badge(feature.get('drift'))}</a></li>"
        for index, feature in features
    )
    return f'<nav aria-label="Features"><h2>Features</h2><ol>{items}</ol></nav>'


def _summary(
    report: Mapping[str, Any],
    features: Sequence[tuple[int, Mapping[str, Any]]],
    context: dict[str, Any],
) -> str:
    drifted = sum(1 for _, feature in features if feature.get("drift") is True)
    share = _reported_share(report)
    share_text = (
        f'<span data-k="{share[0]}">{svg.fmt(share[1] * 100, 3)}%</span> drifted share'
        if share
        else f"{svg.fmt(drifted / len(features) * 100 if features else 0.0, 3)}% of the features"
    )
    # the report's "verdict" is the rule the model's drift was decided by (any,
    # share:F), shown among the settings; the headline is the decision itself
    headline = _verdict(report.get("drift"))
    excluded = sum(int(f.get("excluded") or 0) for _, f in features)
    facts = {
        "features compared": len(features),
        "features drifted": drifted,
        "current rows": context.pop("current_rows", None),
        "reference rows": context.pop("reference_rows", None),
        "current values left out (missing, NaN, inf)": excluded,
    }
    rows = _kv_rows(facts.items(), None)
    rows += _kv_rows(_scalars({k: v for k, v in report.items() if k != PERFORMANCE}), "")
    rows += _kv_rows(context.items(), None)
    cls = "drift" if report.get("drift") else "ok"
    return (
        f'<section id="summary" aria-labelledby="summary-h"><h2 id="summary-h">Summary</h2>'
        f'<p class="verdict {cls}"><strong data-k="drift">{escape(headline)}</strong>: '
        f"{drifted} of {len(features)} features drifted; {share_text}.</p>"
        f'{_legend()}<table class="kv">{rows}</table></section>'
    )


def _performance(section: Mapping[str, Any]) -> str:
    """How well the model did, where labels were given: a row a metric, the reference's
    figure, the current one with its interval, and whether it dropped."""
    head = "".join(
        f'<th scope="col">{label}</th>'
        for label in ("metric", "reference", "current", "95% CI", "dropped")
    )
    rows = []
    for name, figures in dict(section.get("metrics", {})).items():
        path = f"{PERFORMANCE}.metrics.{name}."
        interval = f"{_text(figures.get('low'))}\u2013{_text(figures.get('high'))}"
        rows.append(
            f'<tr><th scope="row">{escape(str(name))}</th>'
            f"{_cell(figures.get('reference'), path + 'reference')}"
            f"{_cell(figures.get('current'), path + 'current')}"
            f'<td class="ci">{escape(interval)}</td>'
            f"{_cell(figures.get('dropped'), path + 'dropped')}</tr>"
        )
    facts = [(k, v) for k, v in section.items() if not isinstance(v, Mapping | list)]
    return (
        f'<section id="performance" class="group" aria-labelledby="performance-h" tabindex="-1">'
        f'<h2 id="performance-h">Performance</h2>'
        f'<div class="wide"><table class="grid"><caption>Metrics on the labelled rows</caption>'
        f"<tr>{head}</tr>{''.join(rows)}</table></div>"
        f'<table class="kv">{_kv_rows(facts, PERFORMANCE + ".")}</table></section>'
    )


def _verdict(drift: Any) -> str:
    return "Drift detected" if drift else "No drift"


def _reported_share(report: Mapping[str, Any]) -> tuple[str, float] | None:
    """The drifted share when the report states one, with its key path."""
    for path, value in _scalars(report):
        if "share" in path and isinstance(value, int | float) and not isinstance(value, bool):
            return path, float(value)
    return None


def _scalars(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Top-level scalars and those of nested objects, as (dotted path, value)."""
    found: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.extend(_scalars(value, f"{path}."))
        elif not isinstance(value, list):
            found.append((path, value))
    return found


def _legend() -> str:
    return (
        '<p class="legend"><span class="swatch ref"></span>reference '
        '<span class="swatch cur"></span>current <span class="swatch ks"></span>KS distance</p>'
    )


def _group(
    anchor: str,
    title: str,
    features: Sequence[tuple[int, Mapping[str, Any]]],
    sketches: Mapping[str, FeatureSketch],
    report: Mapping[str, Any],
) -> str:
    alpha = report.get("alpha")
    body = "".join(
        _feature(index, feature, sketches.get(str(feature.get("feature"))), alpha)
        for index, feature in features
    )
    return (
        f'<section id="{anchor}" class="group" aria-labelledby="{anchor}-h" tabindex="-1">'
        f'<h2 id="{anchor}-h">{title}</h2>{body}</section>'
    )


def _feature(
    index: int, feature: Mapping[str, Any], sketch: FeatureSketch | None, alpha: Any
) -> str:
    name = str(feature.get("feature"))
    kind = feature.get("kind", getattr(sketch, "kind", ""))
    plots = (
        _plots(name, feature, sketch)
        if sketch is not None
        else ('<p class="note">No distribution data for this feature.</p>')
    )
    stats = _statistics(index, feature, alpha)
    summary = _summary_table(sketch) if sketch is not None else ""
    cls = "drift" if feature.get("drift") is True else "ok"
    return (
        f'<article class="feature {cls}" id="f-{index}" tabindex="-1" '
        f'data-feature="{escape(name)}">'
        f"<h3>{escape(name)} {_badge(feature.get('drift'))}"
        f' <span class="kind">{escape(str(kind))}</span></h3>'
        f'{plots}<div class="tables">{stats}{summary}</div></article>'
    )


def _plots(name: str, feature: Mapping[str, Any], sketch: FeatureSketch) -> str:
    if isinstance(sketch, CategoricalSketch):
        names, ref, cur = _top_categories(sketch)
        chart = svg.category_plot(names, ref, cur, label=f"{name}: category shares")
        return f'<div class="plots">{_figure(chart, "Category shares")}</div>'
    return f'<div class="plots">{"".join(_numeric_figures(name, feature, sketch))}</div>'


def _numeric_figures(name: str, feature: Mapping[str, Any], sketch: NumericSketch) -> list[str]:
    grid, ref, cur = sketch.grid, sketch.reference, sketch.current
    edges = [-math.inf, *sketch.bin_edges, math.inf]
    bins = [f"[{svg.fmt(a)}, {svg.fmt(b)})" for a, b in pairwise(edges)]
    distance = _ks_distance(feature, sketch)
    ks = (sketch.ks_at, sketch.ks_reference, sketch.ks_current)
    return [
        _figure(
            svg.density_plot(grid, ref.grid_shares, cur.grid_shares, label=f"{name}: densities"),
            "Density on a fine grid of the reference's quantiles (outer cells cut)",
        ),
        _figure(
            svg.bars_plot(bins, ref.bin_shares, cur.bin_shares, label=f"{name}: PSI bin shares"),
            f"Shares in the reference's {len(bins)} quantile (PSI) bins",
        ),
        _figure(
            svg.ecdf_plot(
                grid,
                ref.grid_shares,
                cur.grid_shares,
                ks,
                distance=distance,
                label=f"{name}: ECDFs",
            ),
            "ECDFs, the KS distance marked",
        ),
    ]


def _ks_distance(feature: Mapping[str, Any], sketch: NumericSketch) -> str:
    """The KS statistic as the report gives it, else the distance the sketch found."""
    value = feature.get("ks_statistic")
    for test in _tests(feature):
        if str(test.get("test", test.get("name", ""))).lower() == "ks":
            value = test.get("statistic", value)
    if not isinstance(value, int | float):
        value = abs(sketch.ks_current - sketch.ks_reference)
    return svg.fmt(float(value))


def _tests(feature: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every object a feature holds in a list or a mapping (its tests, when it has them)."""
    found: list[Mapping[str, Any]] = []
    for value in feature.values():
        items = (
            value.items()
            if isinstance(value, Mapping)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        for name, item in items:
            if isinstance(item, Mapping):
                found.append({"name": name, **item} if isinstance(name, str) else item)
    return found


def _figure(chart: str, caption: str) -> str:
    return f"<figure>{chart}<figcaption>{escape(caption)}</figcaption></figure>"


def _top_categories(sketch: CategoricalSketch) -> tuple[list[str], list[float], list[float]]:
    """The categories to draw (the most common of either side), the rest as one row."""
    ref, cur = sketch.reference, sketch.current
    ref_share = {k: v / ref.n for k, v in ref.counts.items()} if ref.n else {}
    cur_share = {k: v / cur.n for k, v in cur.counts.items()} if cur.n else {}
    names = sorted(
        set(ref_share) | set(cur_share),
        key=lambda k: (-max(ref_share.get(k, 0.0), cur_share.get(k, 0.0)), k),
    )
    shown, rest = names[:_TOP_CATEGORIES], names[_TOP_CATEGORIES:]
    labels = [name + (" (new)" if name not in ref_share else "") for name in shown]
    ref_values = [ref_share.get(k, 0.0) for k in shown]
    cur_values = [cur_share.get(k, 0.0) for k in shown]
    if rest:
        labels.append(f"{len(rest)} others")
        ref_values.append(sum(ref_share.get(k, 0.0) for k in rest))
        cur_values.append(sum(cur_share.get(k, 0.0) for k in rest))
    return labels, ref_values, cur_values


def _statistics(index: int, feature: Mapping[str, Any], alpha: Any) -> str:
    """Every scalar the feature carries, then a table for each list or mapping of objects.

    A feature without a threshold of its own is judged against the report's ``alpha``,
    shown with it so that the table reads on its own.
    """
    prefix = f"features.{index}."
    scalars = [
        (key, value)
        for key, value in feature.items()
        if key not in _SKIP and not isinstance(value, list | Mapping) and value is not None
    ]
    rows = _kv_rows(scalars, prefix)
    if "threshold" not in feature and isinstance(alpha, int | float):
        rows += _kv_rows([("alpha", alpha)], "")
    parts = [f'<table class="kv"><caption>Statistics</caption>{rows}</table>']
    for key, value in feature.items():
        if isinstance(value, list | Mapping) and value:
            parts.append(_object_table(_label(key), value, f"{prefix}{key}."))
    return "".join(parts)


def _object_table(title: str, value: Sequence[Any] | Mapping[str, Any], prefix: str) -> str:
    """A list or mapping of objects as one row each, columns the union of their scalars."""
    items = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
    objects = [(name, item) for name, item in items if isinstance(item, Mapping)]
    if not objects:
        scalars = [(str(name), item) for name, item in items]
        rows = _kv_rows(scalars, prefix)
        return f'<table class="kv"><caption>{escape(title)}</caption>{rows}</table>'
    columns = list(
        dict.fromkeys(
            k for _, item in objects for k, v in item.items() if not isinstance(v, list | Mapping)
        )
    )
    head = "".join(f'<th scope="col">{escape(_label(c))}</th>' for c in columns)
    rows = "".join(
        f"<tr>{''.join(_cell(item.get(c), f'{prefix}{name}.{c}') for c in columns)}</tr>"
        for name, item in objects
    )
    return f'<table class="grid"><caption>{escape(title)}</caption><tr>{head}</tr>{rows}</table>'


def _kv_rows(items: Iterable[tuple[str, Any]], prefix: str | None) -> str:
    """Rows of label and value; values carry ``data-k``, their path in the JSON report."""
    return "".join(
        f'<tr><th scope="row">{escape(_label(key))}</th>'
        f"{_cell(value, None if prefix is None else prefix + key)}</tr>"
        for key, value in items
        if value is not None
    )


def _cell(value: Any, path: str | None) -> str:
    attribute = f' data-k="{escape(path)}"' if path is not None else ""
    return f"<td{attribute}>{escape(_text(value))}</td>"


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return svg.fmt(value)
    return str(value)


def _label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " ").replace("pvalue", "p-value"))


def _summary_table(sketch: FeatureSketch) -> str:
    if isinstance(sketch, CategoricalSketch):
        return _categorical_summary(sketch)
    ref, cur = sketch.reference, sketch.current
    rows: list[tuple[str, str, str]] = [
        ("values", f"{ref.n:,}", f"{cur.n:,}"),
        ("missing share", _percent(ref.missing_share), _percent(cur.missing_share)),
        ("mean", svg.fmt(ref.mean), svg.fmt(cur.mean)),
        ("standard deviation", svg.fmt(ref.std), svg.fmt(cur.std)),
        ("minimum", svg.fmt(ref.minimum), svg.fmt(cur.minimum)),
    ]
    rows += [
        (f"{q:.0%} quantile", svg.fmt(a), svg.fmt(b))
        for q, a, b in zip(_sketch.QUANTILES, ref.quantiles, cur.quantiles, strict=True)
    ]
    rows.append(("maximum", svg.fmt(ref.maximum), svg.fmt(cur.maximum)))
    return _two_sided(rows)


def _categorical_summary(sketch: CategoricalSketch) -> str:
    ref, cur = sketch.reference, sketch.current
    unseen = sketch.unseen
    gone = [name for name in ref.counts if name not in cur.counts]
    rows = [
        ("values", f"{ref.n:,}", f"{cur.n:,}"),
        ("missing share", _percent(ref.missing_share), _percent(cur.missing_share)),
        ("categories", f"{len(ref.counts):,}", f"{len(cur.counts):,}"),
        ("unseen categories", "", _names(unseen, sum(unseen.values()))),
        ("categories absent now", "", _names(dict.fromkeys(gone, 0), None)),
    ]
    return _two_sided(rows)


def _names(names: Mapping[str, int], values: int | None) -> str:
    if not names:
        return "none"
    shown = ", ".join(list(names)[:10]) + (
        f" and {len(names) - 10} more" if len(names) > 10 else ""
    )
    return f"{len(names)}: {shown}" + (f" ({values:,} values)" if values is not None else "")


def _percent(share: float) -> str:
    return f"{svg.fmt(share * 100, 3)}%"


def _two_sided(rows: Sequence[tuple[str, str, str]]) -> str:
    body = "".join(
        f'<tr><th scope="row">{escape(label)}</th><td>{escape(a)}</td><td>{escape(b)}</td></tr>'
        for label, a, b in rows
    )
    return (
        '<table class="grid"><caption>Summary statistics</caption>'
        '<tr><th></th><th scope="col">reference</th><th scope="col">current</th></tr>'
        f"{body}</table>"
    )
