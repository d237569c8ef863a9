"""HTML reports behind the stream's alerts: one file a window that alerted.

With ``streams.reports.dir`` set, each window that makes findings (a single worker's
window, or a window merged across partitions) is drawn as the page ``flowops drift
compare --html`` writes, from the counts the window keeps
(:mod:`flowops.reports.counts`), and every alert of that window carries the page's
address in ``report``: ``streams.reports.base_url`` joined with the file's name, or
the file's path.

* **Off the loop.** Drawing and writing run in a thread (:func:`asyncio.to_thread`,
  tens of milliseconds a page); the alerts of those windows wait for their files, so an
  alert never names a file that is not there yet. A window that alerts nothing costs
  nothing here: it is never handed over.
* **Atomic.** A page is written to a temporary file in the same directory, synced, then
  renamed over its name: a reader sees the old page or the new one, never half of one.
* **One file a window.** The name is the window's identity (model, version, traffic
  partition or ``merged``, window index), so every alert of the window names one file,
  and a window closed again after a restart rewrites its own.
* **Safe names.** Model names and versions are user input: only ``A-Z a-z 0-9 . _ -``
  are kept (others become ``-``, each part at most 60 characters), and a digest of the
  exact identity follows, so two names that clean up alike never share a file.
* **Pruned by age.** Pages older than ``streams.reports.max_age`` (by modification
  time), and temporary files left by a crash, are deleted at most once a minute; only
  files named as this module names them.

A page that cannot be written is logged (one line) and its alerts go out without
``report``: a full disk must not stop the alerts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from flowops._version import __version__
from flowops.config import ReportSettings
from flowops.drift import Finding
from flowops.drift.partial import CategoryCounts, NumericCounts, WindowPartial
from flowops.drift.window_test import Baseline
from flowops.drift.window_tests import DriftedWindow
from flowops.errors import ConfigError
from flowops.reports.counts import column_counts, window_sketches
from flowops.reports.page import render_html

__all__ = [
    "PRUNE_EVERY",
    "ReportWriter",
    "WindowKey",
    "WindowReport",
    "alert_links",
    "report_name",
]

log = logging.getLogger("flowops.streams")

PRUNE_EVERY: Final = 60.0
"""Seconds between two looks for reports past their age."""

WindowKey = tuple[str, str, int | None, int]
"""A window's identity: model, version, traffic partition (None: merged), index."""

_PREFIX: Final = "drift-"
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_OURS: Final = re.compile(r"^(\.)?drift-[A-Za-z0-9._-]+\.html(\.[A-Za-z0-9_]+\.tmp)?$")


@dataclass(frozen=True)
class WindowReport:
    """What one alerting window's page is drawn from: its drift report (the JSON report's
    dict), the prepared reference, and its counts or (a single worker's window) its
    usable values, reduced to counts when drawn."""

    model: str
    version: str
    partition: int | None
    index: int
    start: float
    end: float
    report: Mapping[str, Any]
    baselines: Mapping[str, Baseline]
    reference: str
    rows: int
    numeric: Mapping[str, NumericCounts] = field(default_factory=dict)
    categorical: Mapping[str, CategoryCounts] = field(default_factory=dict)
    columns: Mapping[str, Any] | None = None  # usable values, when there are no counts
    requests: int | None = None
    failed: int | None = None

    @property
    def key(self) -> WindowKey:
        """The window's identity (see :data:`WindowKey`)."""
        return (self.model, self.version, self.partition, self.index)

    @classmethod
    def of_merged(
        cls,
        partial: WindowPartial,
        report: Mapping[str, Any],
        baselines: Mapping[str, Baseline],
        *,
        start: float,
        end: float,
    ) -> WindowReport:
        """A window merged across partitions: its counts as they are."""
        return cls(
            partial.model,
            partial.version,
            None,
            partial.window,
            start,
            end,
            report,
            baselines,
            "profile",
            partial.rows,
            partial.numeric,
            partial.categorical,
            requests=partial.requests,
            failed=partial.failed,
        )

    @classmethod
    def of_window(
        cls, model: str, version: str, partition: int | None, drifted: DriftedWindow
    ) -> WindowReport:
        """A single worker's window: its values, counted on the grid when drawn."""
        window = drifted.window
        return cls(
            model,
            version,
            partition,
            window.index,
            window.start,
            window.end,
            drifted.report.to_dict(),
            drifted.baselines,
            drifted.reference,
            window.rows,
            columns=window.columns,
        )

    def counts(self) -> tuple[Mapping[str, NumericCounts], Mapping[str, CategoryCounts]]:
        """The window's counts on its features' grids."""
        if self.columns is None:
            return self.numeric, self.categorical
        return column_counts(self.baselines, self.columns, self.rows)

    def page(self, now: float) -> str:
        """The page (see :mod:`flowops.reports.page`)."""
        numeric, categorical = self.counts()
        sketches = window_sketches(self.baselines, numeric, categorical)
        return render_html(self.report, sketches, self._context(now))

    def _context(self, now: float) -> dict[str, Any]:
        baselines = self.baselines.values()
        context: dict[str, Any] = {
            "current_rows": self.rows,
            "reference_rows": max((b.profile.n + b.profile.excluded for b in baselines), default=0),
            "model": self.model,
            "version": self.version,
            "window": str(self.index),  # an index, not a quantity: no separators
            "window start": _utc(self.start),
            "window end": _utc(self.end),
            "partition": "merged (all partitions)" if self.partition is None else self.partition,
            "requests": self.requests,
            "failed requests": self.failed,
            "reference": self.reference,
            "drawn from": "the window's counts on the reference's grid (docs/drift.md)",
            "generated": _utc(now),
            "FlowOps": __version__,
        }
        return {key: value for key, value in context.items() if value is not None}


def _utc(seconds: float) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # a count window of odd timestamps
        return str(seconds)


def report_name(model: str, version: str, partition: int | None, index: int) -> str:
    """The file name of a window's report: safe whatever the names hold, one a window.

    >>> report_name("credit", "3", None, 41)[:-18]
    'drift-credit-v3-merged-w41'
    >>> report_name("../../etc/passwd", "1", 2, 0)[:-18]
    'drift-etc-passwd-v1-p2-w0'
    >>> report_name("a/b", "1", 0, 0) != report_name("a?b", "1", 0, 0)
    True
    """
    where = "merged" if partition is None else f"p{partition}"
    digest = hashlib.sha256(repr((model, version, partition, index)).encode()).hexdigest()[:12]
    return f"{_PREFIX}{_safe(model)}-v{_safe(version)}-{where}-w{index}-{digest}.html"


def _safe(name: str) -> str:
    return _UNSAFE.sub("-", name).strip(".-")[:60] or "x"


class ReportWriter:
    """Writes the pages of alerting windows into ``streams.reports.dir`` (see module)."""

    def __init__(self, settings: ReportSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.dir = settings.dir
        self._clock = clock
        self._pruned = -float("inf")
        if self.dir is not None:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = f"cannot create {self.dir}: {exc.strerror or exc}"
                raise ConfigError("streams.reports.dir", reason) from None

    @property
    def enabled(self) -> bool:
        """Whether reports are written at all."""
        return self.dir is not None

    def link(self, name: str) -> str:
        """What an alert carries for the file ``name``: the base URL joined with it, or
        the file's path."""
        base = self.settings.base_url
        if base is not None:
            return f"{base.rstrip('/')}/{name}"
        assert self.dir is not None
        return str(self.dir.resolve() / name)

    async def write(self, reports: Sequence[WindowReport]) -> dict[WindowKey, str]:
        """Draw and write each window's page in a thread; the links of those written."""
        if not reports or self.dir is None:
            return {}
        return await asyncio.to_thread(self.write_now, reports)

    def write_now(self, reports: Iterable[WindowReport]) -> dict[WindowKey, str]:
        """:meth:`write` on this thread: each page, atomically; a failure logged."""
        links: dict[WindowKey, str] = {}
        for report in reports:
            name = report_name(report.model, report.version, report.partition, report.index)
            try:
                self._write_file(name, report.page(self._clock()).encode())
            except Exception as exc:  # a full disk or a drawing bug must not stop alerts
                log.error("report of window %s of %s: not written: %s", report.index, name, exc)
                continue
            links[report.key] = self.link(name)
        return links

    def _write_file(self, name: str, data: bytes) -> None:
        assert self.dir is not None
        fd, temporary = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from a web server
            os.replace(temporary, self.dir / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def prune_due(self) -> int:
        """Prune in a thread if the last look was :data:`PRUNE_EVERY` seconds ago."""
        now = self._clock()
        if self.dir is None or now - self._pruned < PRUNE_EVERY:
            return 0
        self._pruned = now
        return await asyncio.to_thread(self.prune, now)

    def prune(self, now: float | None = None) -> int:
        """Delete this module's files older than ``max_age``; how many were deleted."""
        if self.dir is None:
            return 0
        oldest = (self._clock() if now is None else now) - self.settings.max_age
        removed = 0
        try:
            entries = list(os.scandir(self.dir))
        except OSError as exc:
            log.warning("reports: cannot list %s: %s", self.dir, exc.strerror or exc)
            return 0
        for entry in entries:
            if not _OURS.match(entry.name):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < oldest:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # another worker pruned it first
                continue
            except OSError as exc:
                log.warning("reports: cannot delete %s: %s", entry.path, exc.strerror or exc)
        return removed


def alert_links(findings: Iterable[Finding], links: Mapping[WindowKey, str]) -> dict[str, str]:
    """The report of each finding's window, by alert id: a window test's finding, or the
    error rate's of a merged window (whose requests and rows one partial holds). None for
    ADWIN (a change row, no window) and for a single worker's error rate: its windows
    count every request, the drift windows only answered ones, so a count window's
    index names other rows."""
    found: dict[str, str] = {}
    for finding in findings:
        if finding.test == "adwin" or (
            finding.test == "error_rate" and finding.partition is not None
        ):
            continue
        key = (finding.model, finding.version, finding.partition, finding.window_index)
        link = links.get(key)
        if link is not None:
            found[finding.alert_id] = link
    return found
