"""A report behind every alert: `flowops streams worker` with ``streams.reports.dir``.

One worker on the real broker, two models: a count-windowed one (its windows are the
partition's, kept as values) and a time-windowed one with a profile (its windows merged
across every partition, kept as counts). Each has a window that does not drift and one
that does. Every window-test alert must name a file that exists, the alerts of a window
one file, the quiet windows none; each page, opened in a real headless Chromium from its
``file://`` URL, draws every feature, asks no network for anything, and shows the
alert's numbers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from headless_chromium import Browser, Page, browser, find
from stream_worker_process import Stack, publish_profiles, read_topic, traffic
from test_stream_worker import (
    DRIFT,
    SIZE,
    WINDOW_TESTS,
    alerts_of,
    close_by_rows,
    merged_setup,
    send,
    send_spread,
    start,
)

from flowops.events import DriftAlert, Topics
from flowops.reports import svg

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

# Per feature (its article's data-feature and id): each plot's count of drawn shapes.
_DRAWN = """
[...document.querySelectorAll("article.feature")].map(article => ({
  feature: article.dataset.feature,
  index: Number(article.id.slice(2)),
  plots: [...article.querySelectorAll("svg.plot")].map(svg =>
    [...svg.querySelectorAll("path:not(.axis), rect, polyline")].filter(shape => {
      const box = shape.getBBox();
      return box.width > 0 || box.height > 0;
    }).length),
}))
"""
_NUMBERS = """
Object.fromEntries([...document.querySelectorAll("[data-k]")].map(e => [e.dataset.k,
  e.textContent]))
"""
FEATURES = {"age": 3, "income": 3, "score": 3, "region": 1}  # plots a feature draws


@pytest.fixture
def stack(broker: str, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(broker, tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = find()
    if executable is None:
        pytest.skip("no chromium, and apt-get could not install Debian's package")
    with browser(executable) as running:
        yield running


async def test_every_alerting_window_has_one_report_and_quiet_windows_none(
    stack: Stack, tmp_path: Path, chromium: Browser
) -> None:
    reports = tmp_path / "reports"
    merged, config, count, begin = await merged_setup(
        stack, "rmerged", reports={"dir": str(reports)}
    )
    counted = f"rcount-{uuid.uuid4().hex[:8]}"
    await publish_profiles(stack.bootstrap, [counted])
    config = stack.config(
        {counted: 2_000, merged: {"kind": "time", "size": SIZE}}, reports={"dir": str(reports)}
    )
    await start(stack, config)
    rng = np.random.default_rng(16)
    calm, drifted = traffic(counted, 2_000, rng), traffic(counted, 2_000, rng, shift=DRIFT)
    await send(stack.bootstrap, calm, drifted)
    quiet = traffic(merged, 1_000, rng, at=begin + 1)
    moved = traffic(merged, 1_000, rng, shift=DRIFT, at=begin + SIZE + 1)
    await send_spread(stack.bootstrap, quiet, count)
    await send_spread(stack.bootstrap, moved, count)
    await close_by_rows(stack.bootstrap, merged, count, begin + SIZE)

    alerts = await alerts_of(stack, {counted, merged}, expected=4, timeout=120)

    tested = [alert for alert in alerts if alert.test in WINDOW_TESTS]
    windows = {(a.model, a.window_index) for a in tested}
    assert windows == {(counted, 1), (merged, int(begin // SIZE) + 1)}  # not the quiet ones
    by_window: dict[tuple[str, int], set[str | None]] = {}
    for alert in tested:
        by_window.setdefault((alert.model, alert.window_index), set()).add(alert.report)
    links = {window: found.pop() for window, found in by_window.items() if len(found) == 1}
    assert set(links) == windows  # one report a window
    assert all(link is not None for link in links.values())
    assert all(a.report is None for a in alerts if a.test == "adwin")
    written = sorted(path.name for path in reports.iterdir())
    assert written == sorted(Path(str(link)).name for link in links.values())  # and no other

    # the model's verdict (drift.verdict is "any": each window drifted) names its page too
    verdicts = await read_topic(
        stack.bootstrap,
        Topics.ALERTS,
        lambda message: _verdict_of(message.value, {counted, merged}),
        lambda found: len(found) >= len(links),
        workers=stack.workers,
        timeout=120,
    )
    assert {(a.model, a.window_index): a.report for a in verdicts} == links

    for (model, _), link in links.items():
        assert link is not None
        path = Path(link)
        assert path.parent == reports.resolve()
        of_window = [a for a in tested if a.report == link]
        _check_page(chromium, path, of_window, tmp_path / f"{model}.png")


def _verdict_of(value: bytes, models: set[str]) -> DriftAlert | None:
    alert = DriftAlert.from_json(value)
    return alert if alert.model in models and alert.test == "verdict" else None


def _check_page(chromium: Browser, path: Path, alerts: list[DriftAlert], shot: Path) -> None:
    page = Page(chromium, 1280, 800)
    page.open(path.as_uri())
    page.screenshot(shot, full_page=True)
    drawn = {item["feature"]: item for item in page.evaluate(_DRAWN)}
    assert set(drawn) == set(FEATURES)
    for feature, plots in FEATURES.items():
        shapes = drawn[feature]["plots"]
        assert len(shapes) == plots, (feature, shapes)
        assert all(count >= 2 for count in shapes), (feature, shapes)
    assert page.requests() == [path.as_uri()]  # nothing fetched
    numbers: dict[str, Any] = page.evaluate(_NUMBERS)
    assert numbers["drift"] == "yes"  # the report's drift, as the summary shows it
    for alert in alerts:
        index = drawn[alert.feature]["index"]
        test = next(
            key.rsplit(".", 1)[0]
            for key, value in numbers.items()
            if key.startswith(f"features.{index}.tests.") and key.endswith(".test")
            if value == alert.test
        )
        assert numbers[f"{test}.statistic"] == svg.fmt(alert.statistic)
        assert alert.pvalue is not None
        assert numbers[f"{test}.adjusted_pvalue"] == svg.fmt(alert.pvalue)
        assert numbers[f"features.{index}.n_current"] == f"{alert.n_current:,}"
        assert numbers[f"features.{index}.n_reference"] == f"{alert.n_reference:,}"
