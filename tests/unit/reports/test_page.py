"""The HTML page: built from whatever the JSON report holds, self-contained, row-free."""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pytest

from flowops.drift import Profile, compare
from flowops.reports import render_html, sketch_columns
from flowops.reports.page import is_prediction


def _data(rows: int, seed: int = 0) -> tuple[Profile, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    reference = {
        "age": rng.normal(40, 10, 5_000),
        "city": list(rng.choice(["oslo", "lima", "pune"], 5_000)),
        "prediction": rng.uniform(size=5_000),
    }
    current = {
        "age": rng.normal(45, 10, rows),
        "city": list(rng.choice(["oslo", "lima", "kyiv"], rows)),
        "prediction": rng.uniform(size=rows),
    }
    return Profile.from_columns(reference), current


def _page(report: dict[str, Any], rows: int = 2_000) -> str:
    profile, current = _data(rows)
    return render_html(report, sketch_columns(profile.features, current))


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    profile, current = _data(2_000)
    return compare(profile, current).to_dict()


def _values(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in re.findall(r'data-k="([^"]+)">([^<]*)<', page)}


def test_page_is_self_contained(report: dict[str, Any]) -> None:
    page = _page(report)
    assert page.startswith("<!DOCTYPE html>")
    for outside in ("http:", "https:", "//", "<script", "<link", "src=", "url("):
        assert outside not in page.replace("<!DOCTYPE", "")


def test_drifted_features_first_and_predictions_apart(report: dict[str, Any]) -> None:
    page = _page(report)
    order = re.findall(
        r'<article class="feature (\w+)" id="f-\d+" tabindex="-1" '
        r'data-feature="([^"]+)"',
        page,
    )
    names = [name for _, name in order]
    assert names.index("prediction") < page.count("<article")  # drawn
    assert page.index('id="predictions"') < page.index('data-feature="prediction"')
    assert page.index('data-feature="prediction"') < page.index('id="features"')
    features = [cls for cls, name in order if name != "prediction"]
    assert features == sorted(features, key=lambda cls: cls != "drift")
    assert "drift" in features  # age and city moved


def test_every_scalar_of_the_report_is_on_the_page(report: dict[str, Any]) -> None:
    shown = _values(_page(report))
    for index, feature in enumerate(report["features"]):
        for key, value in feature.items():
            if key in ("feature", "kind") or value is None:
                continue
            if isinstance(value, list):  # a list of objects, the feature's tests: a table
                for row, item in enumerate(value):
                    for name in item:
                        assert f"features.{index}.{key}.{row}.{name}" in shown, (key, name)
                continue
            assert f"features.{index}.{key}" in shown, key
    assert shown["alpha"] == "0.05"
    assert shown["drift"] in ("Drift detected", "yes")


def test_fields_and_tests_added_later_show_without_a_change(report: dict[str, Any]) -> None:
    grown = {
        **report,
        "dataset": {"drifted_share": 0.6667, "verdict_rule": "share >= 0.5"},
        "features": [
            {
                **feature,
                "severity": "critical",
                "tests": [
                    {
                        "test": "wasserstein",
                        "statistic": 0.4123,
                        "effect_size": 0.52,
                        "threshold": 0.1,
                        "drift": True,
                    },
                    {
                        "test": "jensen_shannon",
                        "statistic": 0.0871,
                        "threshold": 0.1,
                        "drift": False,
                    },
                ],
            }
            for feature in report["features"]
        ],
    }
    page = _page(grown)
    shown = _values(page)
    assert shown["features.0.tests.0.statistic"] == "0.4123"
    assert shown["features.0.tests.1.test"] == "jensen_shannon"
    assert shown["features.2.severity"] == "critical"
    assert shown["dataset.drifted_share"] == "0.6667"
    assert "66.7%</span> drifted share" in page  # the headline uses the report's share
    assert shown["dataset.verdict_rule"] == "share >= 0.5"
    assert "effect size" in page


def test_size_does_not_grow_with_the_rows(report: dict[str, Any]) -> None:
    small, large = _page(report, rows=2_000), _page(report, rows=200_000)
    assert abs(len(large) - len(small)) < 0.05 * len(small)


def test_a_feature_without_a_sketch_still_shows_its_statistics(report: dict[str, Any]) -> None:
    page = render_html(report, {})
    assert page.count("No distribution data") == len(report["features"])
    assert "<svg" not in page


@pytest.mark.parametrize(
    ("name", "expected"),
    [("prediction", True), ("prediction[yes]", True), ("predictions", False), ("age", False)],
)
def test_is_prediction(name: str, expected: bool) -> None:
    assert is_prediction(name) is expected


def test_each_feature_shows_the_threshold_it_is_judged_by(report: dict[str, Any]) -> None:
    page = _page(report)
    assert page.count('data-k="alpha">0.05<') == 1 + len(report["features"])  # + summary
    own = {**report, "features": [{**f, "threshold": 0.1} for f in report["features"]]}
    page = _page(own)
    assert page.count('data-k="alpha">') == 1
    assert page.count('data-k="features.0.threshold">0.1<') == 1
