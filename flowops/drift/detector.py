"""Drift findings for one model's live traffic: windows, window tests, ADWIN, state.

A :class:`ModelMonitor` watches one (model, version). Rows arrive as columns, one per
feature (numbers, text or ``None``), with their timestamps; they are cut into tumbling
windows (:class:`~flowops.drift.window.WindowSpec`, see :mod:`flowops.drift.window` for
boundaries and late rows) and two detectors, behind the
:class:`~flowops.drift.finding.Detector` protocol, look at them:

* :class:`~flowops.drift.window_tests.WindowTests`, at every window close: the
  registered tests its :class:`~flowops.drift.rules.Rules` choose (by default PSI and KS
  for numeric features, PSI and chi-square for categorical) against the model's
  reference, judged as :func:`~flowops.drift.report.compare` judges them; at most one
  :class:`Finding` per feature, test and window, for the tests that drifted (significant
  at ``alpha`` and past their effect floor; severity from the effect size).
  Each of them carries the window's verdict (``window_verdict``: the share of drifted
  features and the ``drift.verdict`` rule's answer), and a window whose verdict is drift
  adds one finding ``feature: "dataset"``, ``test: "verdict"``.
* :class:`~flowops.drift.adwin_detector.AdwinDetector`, on every finite value of every
  numeric feature: one finding per ADWIN change point, ``window_index`` being the
  running index of its row among the model's rows (late rows not counted). Values go to
  ADWIN in batches of ``adwin_batch`` rows, at window close and on
  :meth:`ModelMonitor.advance`. ADWIN compares the stream with itself; its findings'
  ``reference`` says what the model's window tests currently compare with.

Beside them, :class:`~flowops.drift.error_rate.ErrorRateWindows` counts every request
:meth:`ModelMonitor.requests` is given (answered or failed) in the monitor's windows and
reports a jump in the error rate (``test: "error_rate"``, ``feature: "requests"``).

**The reference.** A monitor without a profile takes its first closed window with usable
values as reference; that window makes no window-test findings and later ones say
``reference = "first_window"``, until :meth:`ModelMonitor.set_profile` gives a profile
(``"profile"``). A feature's kind comes from the reference, or before there is one from
its first usable value (text: categorical). Features the reference does not know are
ignored and counted in ``stats.ignored``; a reference feature absent from a batch is
missing (excluded) for its rows.

**Counting.** NaN, inf, ``None`` and values of the wrong type are excluded and counted
per feature in ``stats.excluded`` (numeric ones when they reach ADWIN, categorical ones
at window close); nothing inside a well-formed batch raises.

**Without window tests** (``window_tests=False``, for a model whose windows are merged
across partitions by the stream workers' merge stage) the monitor keeps no windows: rows
go to ADWIN in batches of ``adwin_batch`` and nothing else is tested.

**State and duplicates.** :meth:`ModelMonitor.to_state` is JSON-safe and exact: a monitor
restored mid-window and fed the rest of the stream makes the same findings as one that
never stopped. Every :attr:`Finding.alert_id` is a hash of (model, version, feature,
test, window index or change row, and the monitor's ``partition``: a monitor watching
one traffic partition of a model counts windows and rows within that partition, so its
findings carry the partition and two partitions' window 4 never share an id), and the
monitor drops a finding whose id is among the last :data:`SEEN_IDS` it emitted or was
told of (:meth:`ModelMonitor.mark_seen`). Limits:
the state only knows ids emitted before it was taken, so findings emitted after the last
saved state come again when the rows after it are replayed (readers drop them by id, or
the worker passes the ids it published to ``mark_seen``); and the monitor cannot tell a
replayed row from a new one, so rows replayed into the open window count twice (rows of
closed time windows are late and dropped). Store the stream offset with the state to skip
replays.

>>> import numpy as np
>>> rng = np.random.default_rng(5)
>>> monitor = ModelMonitor("credit", "3", WindowSpec("count", 1_000))
>>> ts = np.arange(3_000, dtype=np.float64)
>>> income = np.concatenate([rng.normal(50, 5, 2_000), rng.normal(60, 5, 1_000)])
>>> findings = monitor.add(ts, {"income": income})
>>> sorted({(f.test, f.window_index, f.reference) for f in findings if f.test != "adwin"})
[('ks', 2, 'first_window'), ('psi', 2, 'first_window'), ('verdict', 2, 'first_window')]
>>> [f.window_index for f in findings if f.test == "adwin"]
[2015]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flowops.drift.adwin_detector import AdwinDetector
from flowops.drift.error_rate import ErrorRate, ErrorRateWindows
from flowops.drift.finding import Chunk, ClosedWindow, Detector, Finding, ReferenceKind
from flowops.drift.profile import Column, Profile
from flowops.drift.report import DriftReport
from flowops.drift.rules import Rules
from flowops.drift.window import FeatureBuffer, Kind, Rows, Window, Windows, WindowSpec, infer_kind
from flowops.drift.window_tests import DriftedWindow, WindowTests
from flowops.errors import InputError

__all__ = [
    "ADWIN_BATCH",
    "SEEN_IDS",
    "ModelMonitor",
    "MonitorStats",
    "Values",
]

Values: TypeAlias = Sequence[float | str | None] | NDArray[Any]
"""One feature's column: numbers, text or None (a numpy array is taken as its values)."""

ADWIN_BATCH = 4096
"""Rows buffered before numeric values go to ADWIN (one ``update_many`` per feature)."""
SEEN_IDS = 4096
"""How many recent alert ids a monitor remembers to drop duplicates."""
_STATE_FORMAT = 1


@dataclass
class MonitorStats:
    """Counters and latest statistics of one monitor, for metrics.

    ``rows`` counts rows given to ``add``, ``late`` those dropped as late or untimed;
    ``excluded`` per feature counts NaN, inf, missing and wrongly typed values;
    ``ignored`` per feature the values of features the reference does not know;
    ``duplicates`` the findings dropped as already emitted; ``findings`` counts emitted
    findings by test.
    """

    rows: int = 0
    late: int = 0
    windows_closed: int = 0
    duplicates: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    last_psi: dict[str, float] = field(default_factory=dict)
    last_ks_pvalue: dict[str, float] = field(default_factory=dict)
    findings: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready builtins (copies)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorStats:
        """The counters :meth:`to_dict` gave."""
        return cls(**{f.name: _copy(data[f.name]) for f in fields(cls)})


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _count(counts: dict[str, int], key: str, n: int) -> None:
    if n:
        counts[key] = counts.get(key, 0) + n


class ModelMonitor:
    """Windows, window tests and ADWIN for one (model, version); see the module docstring.

    >>> import numpy as np
    >>> monitor = ModelMonitor("m", "1", WindowSpec("time", 60.0))
    >>> monitor.add(np.array([0.0, 30.0]), {"x": [1.0, None], "city": ["Oslo", "Lima"]})
    []
    >>> monitor.advance(60.0), monitor.stats.windows_closed, monitor.stats.excluded
    ([], 1, {'x': 1})
    >>> monitor.reference, sorted(monitor.profile.features)
    ('first_window', ['city', 'x'])
    """

    def __init__(
        self,
        model: str,
        version: str,
        spec: WindowSpec,
        profile: Profile | None = None,
        *,
        alpha: float = 0.05,
        correction: str = "bh",
        adwin_delta: float = 0.002,
        adwin_batch: int = ADWIN_BATCH,
        partition: int | None = None,
        window_tests: bool = True,
        rules: Rules | None = None,
    ) -> None:
        if isinstance(adwin_batch, bool) or not isinstance(adwin_batch, int) or adwin_batch < 1:
            raise InputError(f"adwin_batch must be a positive integer, got {adwin_batch!r}")
        self.model, self.version, self.spec = model, version, spec
        self.partition = partition  # the traffic partition whose rows this monitor sees
        self.stats = MonitorStats()
        self._tests = WindowTests(
            model,
            version,
            profile,
            alpha=alpha,
            correction=correction,
            on_report=self._record,
            rules=rules,
        )
        self._adwin = AdwinDetector(model, version, adwin_delta)
        self._errors = ErrorRateWindows(
            model, version, spec, rate=ErrorRate(self._tests.rules.error_rate)
        )
        self._detectors: tuple[Detector, ...] = (self._adwin, self._tests)
        self._drifted: list[DriftedWindow] = []  # see keep_drifted
        self._adwin_batch = adwin_batch
        # Without window tests (the model's windows are merged across partitions
        # elsewhere) rows pass through batches of adwin_batch rows on their way to ADWIN.
        self.window_tests = window_tests
        self._windows = Windows(spec if window_tests else WindowSpec("count", adwin_batch))
        self._kinds: dict[str, Kind] = {}
        self._seen: dict[str, None] = {}  # insertion-ordered set of recent alert ids
        if profile is not None:
            self._follow(profile)

    @property
    def profile(self) -> Profile | None:
        """The reference windows are compared with: the profile, or the first window's."""
        return self._tests.profile

    @property
    def rules(self) -> Rules:
        """The tests, floors and verdict windows are judged by, and the error rate's
        levels (``drift.*`` settings).

        Not part of the saved state: a monitor restored from it is given the rules of
        the configuration it runs under.
        """
        return self._tests.rules

    @rules.setter
    def rules(self, rules: Rules) -> None:
        self._tests.rules = rules
        self._errors.rate.levels = rules.error_rate

    @property
    def reference(self) -> ReferenceKind:
        """Where the reference comes from: ``"profile"`` or ``"first_window"``."""
        return self._tests.reference

    @property
    def keep_drifted(self) -> bool:
        """Whether windows that made findings are kept for :meth:`take_drifted` (off by
        default; not part of the state: a report is written when its window closes)."""
        return self._tests.on_drift is not None

    @keep_drifted.setter
    def keep_drifted(self, keep: bool) -> None:
        self._tests.on_drift = self._drifted.append if keep else None

    def take_drifted(self) -> list[DriftedWindow]:
        """The windows that made findings since the last call (see :attr:`keep_drifted`)."""
        taken, self._drifted[:] = list(self._drifted), []
        return taken

    def add(self, timestamps: ArrayLike, features: Mapping[str, Values]) -> list[Finding]:
        """Add rows (timestamps and one column per feature); the new findings.

        Raises :class:`~flowops.errors.InputError` only for a malformed batch: timestamps
        that are not a 1-D array of numbers, or a column of another length.
        """
        ts = _timestamps(timestamps)
        columns = self._columns(features, ts.size)
        self.stats.rows += ts.size
        segments, late = self._windows.route(ts)
        self.stats.late += late
        findings: list[Finding] = []
        for segment in segments:
            findings += self._fill(segment.index, segment.rows, ts, columns)
        window = self._windows.open
        if window is not None and window.pending >= self._adwin_batch:
            findings += self._flush(window)
        return self._emit(findings)

    def requests(self, timestamps: ArrayLike, failed: ArrayLike) -> list[Finding]:
        """Count requests, answered or not (``failed``: a non-2xx status or an unreadable
        request), in the error-rate windows; a jump in the rate is a finding (test
        ``error_rate``, see :mod:`flowops.drift.error_rate`). Only answered requests go to
        :meth:`add`.
        """
        ts = _timestamps(timestamps)
        flags = np.asarray(failed, dtype=bool)
        if flags.shape != ts.shape:
            raise InputError(f"{flags.size} failure flags for {ts.size} timestamps")
        self._errors.partition = self.partition
        return self._emit(self._errors.add(ts, flags))

    def advance(self, now: float) -> list[Finding]:
        """Close a time window that ends at or before ``now``; feed ADWIN what is buffered."""
        findings = self._errors.advance(now)
        window = self._windows.open
        if window is None:
            return self._emit(findings)
        if self._windows.expired(now):
            return self._emit(findings + self._close())
        return self._emit(findings + self._flush(window))

    def set_profile(self, profile: Profile) -> None:
        """Compare the windows that close from now on with ``profile``."""
        self._tests.set_profile(profile)
        self._follow(profile)
        window = self._windows.open
        if window is not None:
            for name in [name for name in window.features if name not in profile.features]:
                del window.features[name]

    def mark_seen(self, alert_ids: Iterable[str]) -> None:
        """Remember alert ids already published elsewhere, so as not to emit them again."""
        for alert_id in alert_ids:
            self._remember(alert_id)

    # -- rows into windows -----------------------------------------------------------

    def _columns(self, features: Mapping[str, Values], n: int) -> dict[str, Sequence[object]]:
        """The columns the monitor keeps (ndarrays as lists); unknown features counted."""
        profile = self._tests.profile
        columns: dict[str, Sequence[object]] = {}
        for name, column in features.items():
            if _length(column) != n:
                raise InputError(f"{len(column)} values for {n} timestamps", column=name)
            if profile is not None and name not in profile.features:
                _count(self.stats.ignored, name, n)
                continue
            columns[name] = column.tolist() if isinstance(column, np.ndarray) else column
        if profile is not None and len(columns) < len(profile.features):
            for name in profile.features:
                columns.setdefault(name, [None] * n)
        return columns

    def _fill(
        self,
        index: int,
        rows: Rows,
        ts: NDArray[np.float64],
        columns: Mapping[str, Sequence[object]],
    ) -> list[Finding]:
        """Put a segment's rows in window ``index``, closing windows as they end."""
        findings: list[Finding] = []
        window = self._windows.open
        if window is not None and window.index != index:
            findings += self._close()
        window = self._windows.start(index)
        if isinstance(rows, slice) and rows.start == 0 and rows.stop == ts.size:
            window.append(ts.tolist(), columns)  # the whole batch: the common case
        else:
            window.append(ts[rows].tolist(), {name: _take(v, rows) for name, v in columns.items()})
        if self._windows.full():
            findings += self._close()
        return findings

    def _close(self) -> list[Finding]:
        """Close the open window: ADWIN on its last values, then the window tests."""
        window = self._windows.open
        assert window is not None
        findings = self._flush(window)
        self._windows.take()
        if not self.window_tests:
            return findings
        closed = self._closed(window)
        had_reference = self._tests.profile is not None
        for detector in self._detectors:
            findings += detector.close(closed)
        self.stats.windows_closed += 1
        if not had_reference and self._tests.profile is not None:  # the first window's
            self._follow(self._tests.profile)
        return findings

    def _flush(self, window: Window) -> list[Finding]:
        """Hand the new numeric values of every feature to the streaming detectors."""
        numeric = [
            (name, buffer)
            for name, buffer in window.features.items()
            if buffer.raw and self._kind(name, buffer.raw) == "numeric"
        ]
        findings: list[Finding] = []
        if numeric:
            low = window.rows - max(len(buffer.raw) for _, buffer in numeric)
            stamps = np.array(window.timestamps[low:], dtype=np.float64)
            for name, buffer in numeric:
                findings += self._feed(window, name, buffer, stamps)
        window.pending = 0
        return findings

    def _feed(
        self, window: Window, name: str, buffer: FeatureBuffer, stamps: NDArray[np.float64]
    ) -> list[Finding]:
        """Convert a feature's new values, count the unusable ones, observe the rest.

        ``stamps`` holds the timestamps of the window's last ``len(stamps)`` rows.
        """
        start = window.rows - len(buffer.raw)
        values = buffer.take_numbers()
        usable = np.flatnonzero(np.isfinite(values))
        _count(self.stats.excluded, name, values.size - usable.size)
        if not usable.size:
            return []
        offset = start - (window.rows - stamps.size)
        chunk = Chunk(
            feature=name,
            values=values[usable],
            rows=window.first_row + start + usable,
            timestamps=stamps[offset + usable],
            reference=self.reference,
        )
        return [finding for detector in self._detectors for finding in detector.observe(chunk)]

    def _closed(self, window: Window) -> ClosedWindow:
        """The window's usable values by feature; categorical exclusions counted here."""
        columns: dict[str, Column] = {}
        for name, buffer in window.features.items():
            kind = self._kinds.get(name)
            usable: Column
            if kind == "numeric":
                values = buffer.numbers()
                usable = values[np.isfinite(values)]
            else:
                usable = buffer.categories() if kind == "categorical" else []
                _count(self.stats.excluded, name, len(buffer) - len(usable))
            if len(usable):
                columns[name] = usable
        start, end = self._windows.bounds(window)
        return ClosedWindow(window.index, start, end, window.rows, columns)

    def _kind(self, name: str, values: Sequence[object]) -> Kind | None:
        """The feature's kind: from the reference, else from its first usable value."""
        kind = self._kinds.get(name)
        if kind is None:
            kind = infer_kind(values)
            if kind is not None:
                self._kinds[name] = kind
        return kind

    def _follow(self, profile: Profile) -> None:
        self._kinds = {name: feature.kind for name, feature in profile.features.items()}

    # -- findings out ----------------------------------------------------------------

    def _record(self, report: DriftReport) -> None:
        for feature in report.features:
            self.stats.last_psi[feature.feature] = feature.psi
            if feature.ks_pvalue is not None:
                self.stats.last_ks_pvalue[feature.feature] = feature.ks_pvalue

    def _emit(self, findings: list[Finding]) -> list[Finding]:
        """The findings not emitted before, remembered and counted."""
        fresh = []
        for finding in findings:
            if finding.partition != self.partition:
                finding = replace(finding, partition=self.partition)
            alert_id = finding.alert_id
            if alert_id in self._seen:
                self.stats.duplicates += 1
                continue
            self._remember(alert_id)
            _count(self.stats.findings, finding.test, 1)
            fresh.append(finding)
        return fresh

    def _remember(self, alert_id: str) -> None:
        self._seen[alert_id] = None
        if len(self._seen) > SEEN_IDS:
            del self._seen[next(iter(self._seen))]

    # -- state -----------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The monitor as JSON-safe data (dicts, lists, str, int, float, bool, None)."""
        return {
            "format": _STATE_FORMAT,
            "model": self.model,
            "version": self.version,
            "settings": {
                "alpha": self._tests.alpha,
                "correction": self._tests.correction,
                "adwin_delta": self._adwin.delta,
                "adwin_batch": self._adwin_batch,
                "partition": self.partition,
                "window_tests": self.window_tests,
            },
            "spec": self.spec.to_dict(),
            "windows": self._windows.to_state(),
            "tests": self._tests.to_state(),
            "adwin": self._adwin.to_state(),
            "error_rate": self._errors.to_state(),
            "kinds": dict(self._kinds),
            "stats": self.stats.to_dict(),
            "seen": list(self._seen),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ModelMonitor:
        """The monitor :meth:`to_state` described; InputError when ``state`` is not one."""
        try:
            if state.get("format") != _STATE_FORMAT:
                raise InputError(f"unsupported monitor state format {state.get('format')!r}")
            windows = Windows.from_state(state["windows"])
            spec = WindowSpec.from_dict(state["spec"]) if "spec" in state else windows.spec
            monitor = cls(state["model"], state["version"], spec, **state["settings"])
            monitor._windows = windows
            monitor._tests.load_state(state["tests"])
            monitor._adwin.load_state(state["adwin"])
            if "error_rate" in state:  # states saved before it was counted have none
                monitor._errors.load_state(state["error_rate"])
            monitor._kinds = {str(name): _kind(kind) for name, kind in state["kinds"].items()}
            monitor.stats = MonitorStats.from_dict(state["stats"])
            monitor.mark_seen(state["seen"])
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"not a monitor state: {exc!r}") from None
        return monitor


def _kind(value: object) -> Kind:
    if value == "numeric" or value == "categorical":
        return value
    raise InputError(f"not a feature kind: {value!r}")


def _timestamps(timestamps: ArrayLike) -> NDArray[np.float64]:
    try:
        ts = np.asarray(timestamps, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"timestamps must be numbers: {exc}") from None
    if ts.ndim != 1:
        raise InputError(f"timestamps must be 1-D, got shape {ts.shape}")
    return ts


def _length(column: Values) -> int:
    """The column's length; InputError for something that is not a column."""
    try:
        return len(column)
    except TypeError:
        raise InputError(f"a column must be a sequence of values, got {column!r}") from None


def _take(column: Sequence[object], rows: Rows) -> Sequence[object]:
    """The column's values at ``rows``."""
    if isinstance(rows, slice):
        return column[rows]
    return [column[i] for i in rows.tolist()]
