"""The HTML report in a real headless Chromium: drawn, offline, readable, same numbers.

``flowops drift compare -o json --html`` runs as a process on data with numeric,
categorical and prediction columns; the page is opened from its ``file://`` URL at a
laptop's width and a phone's. Screenshots of both land in the test's temporary folder
(kept by pytest for the last runs) for a person to look at.
"""

from __future__ import annotations

import html
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from headless_chromium import Browser, Page, browser, find

from flowops.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}

# Per feature: how many plots, and that each has drawn shapes of non-zero size.
_DRAWN = """
[...document.querySelectorAll("article.feature")].map(article => ({
  feature: article.dataset.feature,
  plots: [...article.querySelectorAll("svg.plot")].map(svg => {
    const shapes = [...svg.querySelectorAll("path:not(.axis), rect, polyline")];
    return shapes.filter(shape => {
      const box = shape.getBBox();
      return box.width > 0 || box.height > 0;
    }).length;
  }),
}))
"""
_NUMBERS = """
Object.fromEntries([...document.querySelectorAll("[data-k]")].map(e => [e.dataset.k,
  e.textContent]))
"""
_OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = find()
    if executable is None:
        pytest.skip("no chromium, and apt-get could not install Debian's package")
    with browser(executable) as running:
        yield running


def _write_data(folder: Path) -> tuple[Path, Path]:
    """A reference and a current CSV: 6 numeric, 3 categorical columns, a prediction and
    the true outcome (``label``: the scores' calibration lost on the current file)."""
    rng = np.random.default_rng(16)
    files = []
    for name, rows, shift in (("reference", 6_000, 0.0), ("current", 4_000, 1.0)):
        columns: dict[str, list[str]] = {}
        for i in range(6):
            values = rng.normal(i * shift * 0.3, 1 + i, rows)
            values[rng.uniform(size=rows) < 0.01] = np.nan
            columns[f"num_{i}"] = ["" if math.isnan(v) else repr(float(v)) for v in values]
        cities = ["oslo", "lima", "pune", "kyiv"] + (["new_city"] if shift else [])
        for i in range(3):
            columns[f"cat_{i}"] = list(rng.choice(cities[: 3 + i], rows))
        scores = rng.beta(2, 5 - 2 * shift, rows)
        columns["prediction"] = [repr(float(v)) for v in scores]
        # outcomes: as the scores say on the reference, less so on the current file
        truth = rng.uniform(size=rows) < (scores if not shift else 1 - scores)
        columns["label"] = [str(int(v)) for v in truth]
        path = folder / f"{name}.csv"
        lines = [",".join(columns), *(",".join(row) for row in zip(*columns.values(), strict=True))]
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    return files[0], files[1]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("report")
    reference, current = _write_data(folder)
    page = folder / "report.html"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLOWOPS_")}}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "flowops", "drift", "compare", "--reference", str(reference),
         "--current", str(current), "-o", "json", "--html", str(page),
         "--prediction-column", "prediction", "--label-column", "label"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the data drifted
    return page, json.loads(done.stdout)


@pytest.fixture(scope="module", params=list(WIDTHS))
def page(
    request: pytest.FixtureRequest, chromium: Browser, rendered: tuple[Path, dict[str, Any]]
) -> Page:
    width, height = WIDTHS[request.param]
    tab = Page(chromium, width, height)
    tab.open(rendered[0].as_uri())
    shots = rendered[0].parent
    tab.screenshot(shots / f"{request.param}.png")
    tab.screenshot(shots / f"{request.param}-full.png", full_page=True)
    return tab


def test_every_feature_is_drawn(page: Page, rendered: tuple[Path, dict[str, Any]]) -> None:
    report = rendered[1]
    drawn = {item["feature"]: item["plots"] for item in page.evaluate(_DRAWN)}
    assert set(drawn) == {feature["feature"] for feature in report["features"]}
    for feature in report["features"]:
        plots = drawn[feature["feature"]]
        assert len(plots) == (3 if feature["kind"] == "numeric" else 1), feature["feature"]
        assert all(shapes >= 2 for shapes in plots), (feature["feature"], plots)


def test_nothing_is_fetched(page: Page, rendered: tuple[Path, dict[str, Any]]) -> None:
    assert page.requests() == [rendered[0].as_uri()]


def test_the_request_record_sees_a_fetch(chromium: Browser, tmp_path: Path) -> None:
    """The instrument itself: a page that does fetch something is caught."""
    port = free_port()  # nothing listens there: the request is made, and fails
    fetching = tmp_path / "fetching.html"
    fetching.write_text(f'<!DOCTYPE html><img src="http://127.0.0.1:{port}/x.png">')
    tab = Page(chromium, 800, 600)
    tab.open(fetching.as_uri())
    assert f"http://127.0.0.1:{port}/x.png" in tab.requests()
    tab.call("Page.close")


def test_screenshots_were_taken(page: Page, rendered: tuple[Path, dict[str, Any]]) -> None:
    shots = sorted(rendered[0].parent.glob("*.png"))
    assert shots
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 20_000, shot.name  # a blank page compresses to a few KB


def test_numbers_equal_the_json_report(page: Page, rendered: tuple[Path, dict[str, Any]]) -> None:
    report = rendered[1]
    shown: dict[str, str] = page.evaluate(_NUMBERS)
    checked = 0
    for index, feature in enumerate(report["features"]):
        for path, value in _leaves(feature, f"features.{index}"):
            if path.endswith((".feature", ".kind")) or value is None:
                continue
            _same(shown[path], value, f"{feature['feature']}: {path}")
            checked += 1
    for key in ("alpha", "correction"):
        _same(shown[key], report[key], key)
    assert checked >= 10 * len(report["features"])
    performance = _leaves(report["performance"]["metrics"], "performance.metrics")
    for path, value in performance:
        if value is not None and not path.endswith((".low", ".high")):  # those: one cell
            _same(shown[path], value, path)
    assert len(performance) >= 6 * 5  # a row a metric: accuracy ... log loss
    assert report["performance"]["metrics"]["roc_auc"]["dropped"] is True


def _leaves(value: Any, path: str) -> list[tuple[str, Any]]:
    """Every scalar under ``value`` with its dotted path, lists of objects (a feature's
    tests) descended into as the page's tables show them."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}.{i}")]
    return [(path, value)]


def _same(text: str, value: Any, where: str) -> None:
    """The page's text says the JSON value: yes/no, the string, or the number to 4 digits."""
    text = html.unescape(text).strip()
    if isinstance(value, bool):
        assert text == ("yes" if value else "no"), where
    elif isinstance(value, int | float):
        assert float(text.replace(",", "")) == pytest.approx(value, rel=5e-4, abs=1e-300), where
    else:
        assert text == str(value), where


def test_readable_without_sideways_scrolling(page: Page) -> None:
    assert page.evaluate(_OVERFLOW) <= 0


def test_feature_list_works_from_the_keyboard(page: Page) -> None:
    page.evaluate("document.activeElement.blur(), window.scrollTo(0, 0)")
    focused = []
    for _ in range(4):
        for kind in ("keyDown", "keyUp"):
            page.call(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9},
            )
        focused.append(page.evaluate("document.activeElement.getAttribute('href')"))
    assert focused[0] == "#features"  # the skip link
    assert all(href.startswith("#f-") for href in focused[1:]), focused
    for kind in ("keyDown", "keyUp"):
        page.call(
            "Input.dispatchKeyEvent",
            {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13},
        )
    assert page.evaluate("location.hash") == focused[-1]
