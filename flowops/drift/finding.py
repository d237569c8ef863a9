"""What drift detectors report, and the protocol they implement.

A :class:`Finding` is one significant result: a window test of one feature in one
window, one ADWIN change point, or a window's dataset verdict. The findings of a judged
window carry its :class:`WindowVerdict`. Detectors sit behind :class:`Detector`: streaming
ones see a numeric feature's new values as a :class:`Chunk`, window ones every
:class:`ClosedWindow`. :class:`~flowops.drift.detector.ModelMonitor` feeds them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray

from flowops.drift.profile import Column
from flowops.drift.registry import TestName

__all__ = [
    "Chunk",
    "ClosedWindow",
    "Detector",
    "Finding",
    "ReferenceKind",
    "TestName",
    "WindowVerdict",
]

ReferenceKind: TypeAlias = Literal["profile", "first_window"]
"""What window tests compare with: a profile given, or the model's first window."""


@dataclass(frozen=True)
class WindowVerdict:
    """What a judged window says of the model as a whole, by the ``drift.verdict`` rule.

    The fields the batch report's JSON has (``drift``, ``verdict``: the rule,
    ``drifted_features``, ``drifted_share``), the number of features compared, and the
    names of those that drifted, in report order: enough for a reader of one alert to
    know whether the model drifted, and why.
    """

    drift: bool
    verdict: str  # the rule: "any" or "share:<fraction>"
    drifted_features: int
    compared_features: int
    drifted_share: float
    drifted_names: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """One significant drift test of one feature, for one window or ADWIN change point,
    or a window's verdict that the model drifted (``feature: "dataset"``, ``test:
    "verdict"``)."""

    model: str
    version: str
    feature: str
    test: TestName
    statistic: float
    pvalue: float | None  # the adjusted p-value; None for ADWIN
    threshold: float  # alpha, or ADWIN's delta
    window_index: int  # the window's index; for ADWIN the change point's row
    window_start: float
    window_end: float
    n_reference: int
    n_current: int
    severity: Literal["warning", "critical"]
    reference: ReferenceKind
    partition: int | None = None  # the stream of values: see alert_id
    window_verdict: WindowVerdict | None = None  # a window test's: the model's verdict

    @property
    def alert_id(self) -> str:
        """sha256 of the JSON array [model, version, feature, test, window_index], in hex,
        with ``partition`` appended when there is one.

        A window or ADWIN kept per traffic partition counts its windows and rows within
        that partition, so the partition is part of what it is: two partitions' window 4
        are two windows, and their findings must not share an id (a reader would drop
        one as a duplicate). A window merged across partitions has no partition.

        >>> finding = Finding("m", "1", "x", "psi", 0.3, 0.001, 0.05, 4, 0.0, 60.0, 100, 100,
        ...                   "warning", "profile")
        >>> finding.alert_id[:16]
        'b8c1e7e00c93109d'
        >>> from dataclasses import replace
        >>> replace(finding, partition=1).alert_id[:16]
        'a01dee0614605e85'
        """
        key: list[object] = [self.model, self.version, self.feature, self.test, self.window_index]
        if self.partition is not None:
            key.append(self.partition)
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The fields and ``alert_id`` as JSON-ready builtins."""
        return {"alert_id": self.alert_id, **asdict(self)}


@dataclass(frozen=True)
class Chunk:
    """New finite values of one numeric feature, for streaming detectors."""

    feature: str
    values: NDArray[np.float64]
    rows: NDArray[np.int64]  # running row index of each value
    timestamps: NDArray[np.float64]  # timestamp of each value's row
    reference: ReferenceKind


@dataclass(frozen=True)
class ClosedWindow:
    """A closed window's usable values: finite floats or category lists, by feature."""

    index: int
    start: float
    end: float
    rows: int
    columns: dict[str, Column]  # only features with at least one usable value


class Detector(Protocol):
    """A drift test behind :class:`ModelMonitor`.

    Streaming detectors look at values as they arrive (:meth:`observe`), window
    detectors at windows as they close (:meth:`close`); each returns its findings and
    ignores the other call.
    """

    def observe(self, chunk: Chunk) -> list[Finding]:
        """Findings in new values of a numeric feature."""
        ...

    def close(self, window: ClosedWindow) -> list[Finding]:
        """Findings in a window that just closed."""
        ...

    def to_state(self) -> dict[str, Any]:
        """The detector's state as JSON-safe data."""
        ...
