"""``streams.reports``: one safe, atomically written page an alerting window, pruned by age."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowops.config import ReportSettings, load_settings
from flowops.drift import Finding, ModelMonitor, Profile, WindowSpec
from flowops.drift.partial import Prepared, compare_partial, reduce_rows
from flowops.errors import ConfigError
from streams import reports as reports_module
from streams.monitors import Partition, Tracked
from streams.reports import (
    PRUNE_EVERY,
    ReportWriter,
    WindowReport,
    alert_links,
    report_name,
)

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def _merged_report(model: str = "credit", *, shift: float = 1.0) -> WindowReport:
    rng = np.random.default_rng(4)
    prepared = Prepared.from_profile(Profile.from_columns({"x": rng.normal(size=3_000)}))
    values = rng.normal(shift, size=800)
    partial = reduce_rows(prepared, model, "2", 9, np.zeros(values.size), {"x": values})
    report = compare_partial(prepared, partial).to_dict()
    return WindowReport.of_merged(partial, report, prepared.baselines, start=90.0, end=100.0)


def _writer(tmp_path: Path, **settings: object) -> ReportWriter:
    return ReportWriter(ReportSettings.model_validate({"dir": tmp_path / "r", **settings}))


@pytest.mark.parametrize(
    "model",
    [
        "credit",
        "../../etc/passwd",
        "a/b\\c",
        "nul\x00byte",
        "ünïcode模型",
        ".hidden",
        "x" * 500,
        "",
    ],
)
def test_names_are_safe_whatever_the_model_is_called(model: str) -> None:
    name = report_name(model, "v/1", 3, 12)
    assert SAFE.match(name)
    assert name.startswith("drift-")
    assert name.endswith(".html")
    assert len(name) < 200
    assert "/" not in name
    assert not name.removeprefix("drift-").startswith(".")  # never a dot path


def test_different_windows_never_share_a_name() -> None:
    names = {
        report_name(model, version, partition, index)
        for model in ("a/b", "a?b", "a-b", "a b")
        for version in ("1", "1/")
        for partition in (None, 0, 1)
        for index in (0, 1, -1)
    }
    assert len(names) == 4 * 2 * 3 * 3


def test_a_page_is_written_atomically_and_linked_by_path(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    page = _merged_report()
    links = writer.write_now([page])
    path = Path(links[page.key])
    assert path.parent == (tmp_path / "r").resolve()
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert 'data-feature="x"' in text
    assert text.count("<svg") == 3
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [p.name for p in (tmp_path / "r").iterdir()] == [path.name]  # no temporary left


def test_with_a_base_url_the_link_is_the_url_of_the_file(tmp_path: Path) -> None:
    writer = _writer(tmp_path, base_url="https://reports.example/drift/")
    page = _merged_report("fraud model")
    link = writer.write_now([page])[page.key]
    name = report_name("fraud model", "2", None, 9)
    assert link == f"https://reports.example/drift/{name}"
    assert (tmp_path / "r" / name).exists()


def test_a_window_closed_again_rewrites_its_own_page(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    first = writer.write_now([_merged_report(shift=1.0)])
    again = writer.write_now([_merged_report(shift=2.0)])
    assert first == again
    assert len(list((tmp_path / "r").iterdir())) == 1


def test_a_failed_write_leaves_the_old_page_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    writer = _writer(tmp_path)
    page = _merged_report()
    path = Path(writer.write_now([page])[page.key])
    before = path.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reports_module.os, "replace", refuse)
    with caplog.at_level(logging.ERROR, logger="flowops.streams"):
        assert writer.write_now([_merged_report(shift=3.0)]) == {}
    assert "No space left on device" in caplog.text
    assert path.read_bytes() == before
    assert [p.name for p in (tmp_path / "r").iterdir()] == [path.name]


def test_writing_runs_off_the_event_loop(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    threads: list[str] = []
    original = ReportWriter.write_now

    def spy(self: ReportWriter, reports: object) -> object:
        import threading

        threads.append(threading.current_thread().name)
        return original(self, reports)  # type: ignore[arg-type]

    async def run() -> dict[object, str]:
        ReportWriter.write_now = spy  # type: ignore[method-assign,assignment]
        try:
            return dict(await writer.write([_merged_report()]))
        finally:
            ReportWriter.write_now = original  # type: ignore[method-assign]

    links = asyncio.run(run())
    assert len(links) == 1
    assert threads
    assert threads[0] != "MainThread"


def test_off_writes_nothing(tmp_path: Path) -> None:
    writer = ReportWriter(ReportSettings())
    assert not writer.enabled
    assert asyncio.run(writer.write([_merged_report()])) == {}
    assert writer.prune() == 0


def test_old_pages_and_stale_temporaries_are_pruned_and_nothing_else(tmp_path: Path) -> None:
    now = 1_000_000.0
    writer = _writer(tmp_path, max_age=3_600)
    folder = tmp_path / "r"
    old = folder / report_name("m", "1", 0, 1)
    young = folder / report_name("m", "1", 0, 2)
    stale = folder / f".{report_name('m', '1', 0, 3)}.a1b2_c.tmp"
    foreign = [folder / "index.html", folder / "drift-notes.txt", folder / "mine.html"]
    for path in [old, young, stale, *foreign]:
        path.write_text("x")
        os.utime(path, (now - 7_200, now - 7_200))
    os.utime(young, (now - 60, now - 60))
    assert writer.prune(now) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in [young, *foreign])


def test_pruning_looks_at_most_once_a_minute(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    writer = ReportWriter(ReportSettings(dir=tmp_path / "r", max_age=10.0), clock=lambda: clock[0])
    old = tmp_path / "r" / report_name("m", "1", 0, 1)

    def age(path: Path) -> None:
        path.write_text("x")
        os.utime(path, (clock[0] - 100, clock[0] - 100))

    age(old)
    assert asyncio.run(writer.prune_due()) == 1
    age(old)
    clock[0] += PRUNE_EVERY / 2
    assert asyncio.run(writer.prune_due()) == 0
    assert old.exists()
    clock[0] += PRUNE_EVERY
    assert asyncio.run(writer.prune_due()) == 1
    assert not old.exists()


def test_a_directory_that_cannot_be_made_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as caught:
        ReportWriter(ReportSettings(dir=tmp_path / "file" / "reports"))
    assert caught.value.key == "streams.reports.dir"


@pytest.mark.parametrize(
    ("key", "value"),
    [("base_url", "ftp://x/"), ("base_url", "reports/"), ("max_age", 0), ("max_age", "nan")],
)
def test_bad_report_settings_name_their_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides={"streams": {"reports": {key: value}}})
    assert caught.value.key == f"streams.reports.{key}"


def _finding(test: str, window: int, partition: int | None, feature: str = "x") -> Finding:
    return Finding(
        model="m",
        version="1",
        feature=feature,
        test=test,
        statistic=0.5,
        pvalue=0.001 if test != "adwin" else None,
        threshold=0.05,
        window_index=window,
        window_start=0.0,
        window_end=1.0,
        n_reference=10,
        n_current=10,
        severity="critical",
        reference="profile",
        partition=partition,
    )


def test_every_alert_of_a_window_names_its_one_page_and_adwin_none() -> None:
    findings = [
        _finding("psi", 4, 1),
        _finding("ks", 4, 1),
        _finding("error_rate", 4, 1, feature="requests"),  # counts requests: other rows
        _finding("adwin", 4, 1),  # a change row that happens to be 4: not a window
        _finding("psi", 4, 2),  # another partition's window 4
        _finding("psi", 5, None),
        _finding("error_rate", 5, None, feature="requests"),  # the merged window's own
    ]
    links = {("m", "1", 1, 4): "a.html", ("m", "1", None, 5): "b.html"}
    found = alert_links(findings, links)
    assert found == {
        findings[0].alert_id: "a.html",
        findings[1].alert_id: "a.html",
        findings[5].alert_id: "b.html",
        findings[6].alert_id: "b.html",
    }


# --- a single worker's windows: kept only when they alert, and only when asked ----------


def _monitor_rows(shift: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    return np.arange(2_000.0), {"x": rng.normal(shift, size=2_000)}


def _profile() -> Profile:
    return Profile.from_columns({"x": np.random.default_rng(12).normal(size=5_000)})


@pytest.mark.parametrize(("shift", "kept"), [(0.0, 0), (1.0, 2)])
def test_a_monitor_keeps_exactly_its_alerting_windows(shift: float, kept: int) -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 1_000), _profile())
    monitor.keep_drifted = True
    findings = monitor.add(*_monitor_rows(shift))
    drifted = monitor.take_drifted()
    assert len(drifted) == kept
    windows = {f.window_index for f in findings if f.test != "adwin"}
    assert {d.window.index for d in drifted} == windows
    assert monitor.take_drifted() == []
    for window in drifted:
        assert window.report.drift
        assert window.window.rows == 1_000


def test_a_monitor_keeps_nothing_unless_asked() -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 1_000), _profile())
    assert not monitor.keep_drifted
    assert monitor.add(*_monitor_rows(1.0))
    assert monitor.take_drifted() == []


def test_a_partitions_window_page_is_drawn_from_its_values(tmp_path: Path) -> None:
    monitor = ModelMonitor("m", "1", WindowSpec("count", 1_000), _profile())
    monitor.keep_drifted = True
    monitor.add(*_monitor_rows(1.0))
    part = Partition(3, lambda model, version: monitor)
    part.monitors[("m", "1")] = Tracked.of(monitor)
    drifted = part.take_drifted()
    assert [key for key, _ in drifted] == [("m", "1"), ("m", "1")]
    page = WindowReport.of_window("m", "1", 3, drifted[0][1])
    writer = _writer(tmp_path)
    link = writer.write_now([page])[("m", "1", 3, 0)]
    text = Path(link).read_text()
    assert text.count("<svg") == 3
    assert ">3<" in text  # the partition, in the summary


# --- the merge stage: a page for each merged window that alerts, none for a quiet one ----


class _Alerts:
    """Stands in for the stage's Kafka publisher: records what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[Finding], dict[str, str]]] = []

    async def start(self) -> None:
        return None

    async def alerts(self, findings: list[Finding], links: dict[str, str]) -> list[Any]:
        self.sent.append((list(findings), dict(links)))
        return []


def test_the_merge_stage_writes_a_page_for_each_alerting_window_only(tmp_path: Path) -> None:
    from flowops.drift.error_rate import ErrorRateJump
    from flowops.events import ReferenceProfile
    from streams.app import build
    from streams.merge import MergedWindow
    from streams.references import References

    profile = Profile.from_columns({"x": np.random.default_rng(21).normal(size=3_000)})
    table = {b"m": ReferenceProfile.from_profile(profile, model="m").to_json()}
    folder = tmp_path / "reports"
    settings = load_settings(
        overrides={"streams": {"datadir": str(tmp_path), "reports": {"dir": str(folder)}}}
    )
    stage = build(settings).merge
    stage._references = References(table)
    prepared = stage._references.prepared("m", "1")
    assert prepared is not None
    publisher = stage._publisher = _Alerts()  # type: ignore[assignment]
    stage._publishing = True
    rng = np.random.default_rng(22)

    def window(index: int, shift: float, jump: ErrorRateJump | None = None) -> MergedWindow:
        values = rng.normal(shift, size=1_000)
        partial = reduce_rows(prepared, "m", "1", index, np.zeros(1_000), {"x": values})
        start, end = index * 10.0, (index + 1) * 10.0
        return MergedWindow("m", "1", index, start, end, partial, (0, 1), jump)

    jump = ErrorRateJump(3, 30.0, 40.0, 0.3, 0.01, 0.29, 1e-9, 1_000, 9_000, "critical")
    closed = [window(1, 0.0), window(2, 1.0), window(3, 0.0, jump)]
    asyncio.run(stage._publish(closed))

    [(findings, links)] = publisher.sent
    by_window: dict[int, set[str | None]] = {}
    for finding in findings:
        by_window.setdefault(finding.window_index, set()).add(links.get(finding.alert_id))
    assert set(by_window) == {2, 3}  # the quiet window 1 made no finding
    assert all(len(found) == 1 and None not in found for found in by_window.values())
    names = sorted(path.name for path in folder.iterdir())
    assert names == sorted(report_name("m", "1", None, index) for index in (2, 3))
    error_page = (folder / report_name("m", "1", None, 3)).read_text()
    assert "failed requests" in error_page
