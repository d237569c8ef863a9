"""ADWIN2 change detection, compatible with ``river.drift.ADWIN``, vectorised over batches.

ADWIN keeps a window of recent values in an exponential histogram: level ``i`` holds at
most ``max_buckets`` buckets of ``2**i`` values, and a level that reaches
``max_buckets + 1`` merges its two oldest buckets into one bucket of the next level.
Every ``clock`` values (once the window is longer than ``grace_period``) it checks each
bucket boundary as a cut into an older part ``W0`` and a newer part ``W1`` and reports a
change when ``|mean(W0) - mean(W1)|`` exceeds the variance-based bound

    eps = sqrt(2 * m * var * d') + 2/3 * d' * m,
    m = 1 / (n0 - L + 1) + 1 / (n1 - L + 1),   d' = ln(2 * ln(n) / delta),

where ``var`` is the window's variance and ``L`` is ``min_window_length``. After a
detection the old buckets are dropped, and like river the detector starts afresh with
the next value.

Two facts make :meth:`ADWIN.update_many` vectorisable without changing a single
detection. Between two detections nothing is deleted, so the histogram's bucket layout
depends only on how many values it has seen; and every bucket sum is a difference of
prefix sums. The checks at all clock ticks of a batch are therefore evaluated together,
as arrays, and the first tick that fires ends the segment.

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> stream = np.concatenate([rng.normal(0, 1, 2000), rng.normal(2, 1, 2000)])
>>> detector = ADWIN()
>>> detector.update_many(stream).tolist()
[2015]
>>> detector.width < 2000
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flowops.errors import InputError

__all__ = ["ADWIN"]

_FIRST_BLOCK = 32  # clock ticks in the first check block of a segment
_TICK_BLOCK = 2048  # most clock ticks evaluated together; bounds the memory of one check


@dataclass
class _Bucket:
    """A run of ``size`` consecutive values: their sum and their sum of squared deviations."""

    size: int
    total: float
    m2: float

    def merged(self, other: _Bucket) -> _Bucket:
        """The bucket holding both runs (Chan's parallel variance update)."""
        n = self.size + other.size
        delta = self.total / self.size - other.total / other.size
        m2 = self.m2 + other.m2 + self.size * other.size * delta * delta / n
        return _Bucket(n, self.total + other.total, m2)


class ADWIN:
    """ADaptive WINdowing drift detector (Bifet and Gavaldà, 2007), river-compatible.

    Parameters, defaults, cut rule and reset-after-detection behaviour are those of
    ``river.drift.ADWIN``: on the same stream both report the same indices, whether this
    one is fed by :meth:`update` one value at a time or by :meth:`update_many` in
    batches of any size.

    >>> detector = ADWIN(delta=0.002)
    >>> [detector.update(x) for x in [0.0] * 100].count(True)
    0
    >>> detector.width, detector.estimation
    (100, 0.0)
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if not 0 < delta < 1:
            raise InputError(f"delta must be in (0, 1), got {delta}")
        if clock < 1 or max_buckets < 1 or min_window_length < 1 or grace_period < 0:
            raise InputError(
                "clock, max_buckets and min_window_length must be >= 1, grace_period >= 0"
            )
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.n_detections = 0
        self.drift_detected = False
        self._reset()

    # -- public surface -------------------------------------------------------------

    @property
    def width(self) -> int:
        """How many values the window holds."""
        return self._width

    @property
    def estimation(self) -> float:
        """The mean of the values in the window (0.0 when it is empty)."""
        return self._total / self._width if self._width else 0.0

    @property
    def variance(self) -> float:
        """The variance of the values in the window (0.0 when it is empty)."""
        return self._m2 / self._width if self._width else 0.0

    def update(self, x: float) -> bool:
        """Add one value; True when a change is detected at this value."""
        x = float(x)
        if not math.isfinite(x):
            raise InputError(f"ADWIN takes finite values, got {x}")
        if self.drift_detected:
            self._reset()
        self._insert(x)
        self.drift_detected = self._check()
        self.n_detections += self.drift_detected
        return self.drift_detected

    def update_many(self, values: ArrayLike) -> NDArray[np.int64]:
        """Add a batch of values; the 0-based indices within it where changes were detected.

        >>> ADWIN().update_many([0.0] * 500 + [10.0] * 100).tolist()
        [511]
        """
        x = np.ascontiguousarray(values, dtype=np.float64).ravel()
        scan = _BatchScan(self, x)
        # A NaN or an infinity makes every prefix sum after it non-finite, the last one
        # included: one look instead of a pass (the pass only when a sum overflowed).
        if not math.isfinite(scan.c1[-1]) and not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            raise InputError(f"ADWIN takes finite values, got {x[bad]} at index {bad}")
        found = list(scan.detections())
        self.n_detections += len(found)
        return np.asarray(found, dtype=np.int64)

    def to_state(self) -> dict[str, Any]:
        """The detector as plain JSON-safe data; :meth:`from_state` restores it exactly.

        >>> detector = ADWIN(clock=4)
        >>> _ = detector.update_many([1.0, 2.0, 3.0] * 10)
        >>> restored = ADWIN.from_state(detector.to_state())
        >>> restored.to_state() == detector.to_state()
        True
        """
        return {
            "params": {
                "delta": self.delta,
                "clock": self.clock,
                "max_buckets": self.max_buckets,
                "min_window_length": self.min_window_length,
                "grace_period": self.grace_period,
            },
            "n_detections": self.n_detections,
            "drift_detected": self.drift_detected,
            "levels": [[[b.size, b.total, b.m2] for b in level] for level in self._levels],
            "total": self._total,
            "m2": self._m2,
            "width": self._width,
            "tick": self._tick,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ADWIN:
        """The detector :meth:`to_state` described; InputError when the state is not one."""
        try:
            detector = cls(**state["params"])
            detector.n_detections = int(state["n_detections"])
            detector.drift_detected = bool(state["drift_detected"])
            detector._levels = [
                [_Bucket(int(size), float(total), float(m2)) for size, total, m2 in level]
                for level in state["levels"]
            ] or [[]]
            detector._total = float(state["total"])
            detector._m2 = float(state["m2"])
            detector._width = int(state["width"])
            detector._tick = int(state["tick"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not an ADWIN state: {exc!r}") from None
        return detector

    def __repr__(self) -> str:
        return (
            f"ADWIN(delta={self.delta}, clock={self.clock}, max_buckets={self.max_buckets}, "
            f"min_window_length={self.min_window_length}, grace_period={self.grace_period})"
        )

    # -- the window, one value at a time (river's algorithm) ------------------------

    def _reset(self) -> None:
        self.drift_detected = False
        self._levels: list[list[_Bucket]] = [[]]  # level i: buckets of 2**i values, oldest first
        self._total = 0.0
        self._m2 = 0.0
        self._width = 0
        self._tick = 0

    def _insert(self, x: float) -> None:
        if self._width:
            delta = x - self._total / self._width
            self._m2 += self._width * delta * delta / (self._width + 1)
        self._width += 1
        self._total += x
        self._levels[0].append(_Bucket(1, x, 0.0))
        self._compress()

    def _compress(self) -> None:
        level = 0
        while len(self._levels[level]) == self.max_buckets + 1:
            if level + 1 == len(self._levels):
                self._levels.append([])
            older, newer = self._levels[level][:2]
            del self._levels[level][:2]
            self._levels[level + 1].append(older.merged(newer))
            level += 1

    def _check(self) -> bool:
        self._tick += 1
        if self._tick % self.clock or self._width <= self.grace_period:
            return False
        detected = False
        while self._width and self._first_cut_fires():
            detected = True
            self._drop_oldest()
        return detected

    def _first_cut_fires(self) -> bool:
        n0, u0 = 0, 0.0
        for size, total in self._cuts():
            n0 += size
            u0 += total
            n1 = self._width - n0
            if n1 == 0:
                return False
            if self._cut_fires(n0, n1, u0 / n0 - (self._total - u0) / n1):
                return True
        return False

    def _cut_fires(self, n0: int, n1: int, mean_gap: float) -> bool:
        """River's cut rule for one boundary of the current window."""
        length = self.min_window_length
        if n0 < length or n1 < length:
            return False
        d_prime = math.log(2.0 * math.log(self._width) / self.delta)
        m = 1.0 / (n0 - length + 1) + 1.0 / (n1 - length + 1)
        eps = math.sqrt(2.0 * m * self.variance * d_prime) + 2.0 / 3.0 * d_prime * m
        return abs(mean_gap) > eps

    def _cuts(self) -> Iterator[tuple[int, float]]:
        for level in reversed(self._levels):
            for bucket in level:
                yield bucket.size, bucket.total

    def _drop_oldest(self) -> None:
        top = len(self._levels) - 1
        while not self._levels[top]:
            top -= 1
        oldest = self._levels[top].pop(0)
        self._width -= oldest.size
        self._total -= oldest.total
        if self._width:
            delta = oldest.total / oldest.size - self._total / self._width
            rest = oldest.size * self._width / (oldest.size + self._width)
            self._m2 -= oldest.m2 + rest * delta * delta
        else:
            self._m2 = 0.0
        while len(self._levels) > 1 and not self._levels[-1]:
            self._levels.pop()


def _level_counts(n: NDArray[np.int64], max_buckets: int) -> NDArray[np.int64]:
    """Buckets per level of a histogram that has seen ``n`` values, shape (levels, len(n)).

    Rows run from the top (oldest) level down to level 0. Each level behaves the same
    whatever feeds it: it merges its two oldest buckets whenever it reaches
    ``max_buckets + 1``. A level fed ``a`` buckets therefore passes
    ``(a - max_buckets + 1) // 2`` of them up (none while ``a <= max_buckets``) and keeps
    the rest.
    """
    rows = []
    fed = n.copy()
    while True:
        passed = np.where(fed > max_buckets, (fed - max_buckets + 1) // 2, 0)
        rows.append(fed - 2 * passed)
        if not passed.any():
            return np.array(rows[::-1])
        fed = passed


def _cut_positions(n: NDArray[np.int64], max_buckets: int) -> NDArray[np.float64]:
    """Every bucket boundary of each layout, counted from the oldest value.

    Shape (levels * max_buckets, len(n)): one column per layout. Slot ``j`` of a level
    that holds ``c`` buckets sits at ``min(j, c)`` buckets past the level's start, so an
    unused slot repeats the level's last boundary: checking a cut twice changes nothing,
    and cuts at 0 or at the window's end are never valid.
    """
    counts = _level_counts(n, max_buckets).astype(np.float64)
    sizes = np.ldexp(1.0, np.arange(len(counts) - 1, -1, -1))[:, None]
    starts = counts * sizes
    running = np.zeros(len(n))
    for level in range(len(starts)):  # np.cumsum down axis 0 is many times slower
        running, starts[level] = running + starts[level], running
    slot = np.arange(1, max_buckets + 1, dtype=np.float64)[:, None]
    filled = np.minimum(slot[None], counts[:, None, :])
    filled *= sizes[:, :, None]
    filled += starts[:, None, :]
    return filled.reshape(-1, len(n))


class _BatchScan:
    """One pass of :meth:`ADWIN.update_many` over a batch, segment by segment.

    A segment runs from a fresh or carried-over window to the next detection. Values are
    shifted by a constant before prefix sums are taken; every quantity ADWIN compares
    (differences of means, the variance) is invariant to that shift, and it keeps the
    prefix sums small.
    """

    def __init__(self, adwin: ADWIN, x: NDArray[np.float64]) -> None:
        self.adwin = adwin
        self.x = x
        self.shift = (
            adwin.estimation
            if adwin.width and not adwin.drift_detected
            else (float(x[0]) if len(x) else 0.0)
        )
        y = x - self.shift
        self.c1 = np.zeros(len(x) + 1)
        np.cumsum(y, out=self.c1[1:])
        self.y2 = np.square(y, out=y)  # squares are summed only up to each tick, never all

    def run(self, start: int, stop: int) -> _Bucket:
        """The bucket of the batch's values ``start:stop``, from the prefix sums."""
        size = stop - start
        if size == 1:
            return _Bucket(1, float(self.x[start]), 0.0)
        s1 = self.c1[stop] - self.c1[start]
        m2 = self.y2[start:stop].sum() - s1 * s1 / size
        return _Bucket(size, float(s1 + size * self.shift), max(float(m2), 0.0))

    def detections(self) -> Iterator[int]:
        start = 0
        while start < len(self.x):
            if self.adwin.drift_detected:
                self.adwin._reset()
            segment = _Segment(self, start)
            hit = segment.first_detection()
            last = len(self.x) - 1
            if hit is None or hit == last:
                segment.commit(last, detected=hit is not None)
            else:
                self.adwin.drift_detected = True  # reset by the next segment; no state to keep
            if hit is not None:
                yield hit
            start = last + 1 if hit is None else hit + 1


class _Segment:
    """The values of one window from batch index ``start``, on top of the carried state."""

    def __init__(self, scan: _BatchScan, start: int) -> None:
        adwin = scan.adwin
        self.scan, self.adwin, self.start = scan, adwin, start
        self.old = [b for level in reversed(adwin._levels) for b in level]
        self.old_n = adwin.width
        self.old_bounds = np.cumsum([0] + [b.size for b in self.old], dtype=np.float64)
        shifted = [b.total - b.size * scan.shift for b in self.old]
        self.old_prefix = np.concatenate([[0.0], np.cumsum(shifted)])
        self.s1 = float(self.old_prefix[-1])
        self.s2 = adwin._m2 + (self.s1 * self.s1 / self.old_n if self.old_n else 0.0)
        self.tick0 = adwin._tick
        self.squared = (0, 0.0)  # (k, shifted sum of squares of the first k new values)

    def first_detection(self) -> int | None:
        """Batch index of the first value at which a check fires, or None."""
        for ks in self._tick_blocks():
            fired = np.flatnonzero(self._fires(ks))
            if len(fired):
                return self.start + int(ks[fired[0]]) - 1
        return None

    def _tick_blocks(self) -> Iterator[NDArray[np.int64]]:
        """Numbers of new values at which a check is due, in blocks that grow from small.

        A detection soon after a reset then costs little, a long quiet stretch few calls.
        """
        clock, length = self.adwin.clock, len(self.scan.x) - self.start
        first = clock - self.tick0 % clock
        first += clock * max(0, -(-(self.adwin.grace_period + 1 - self.old_n - first) // clock))
        block, done = _FIRST_BLOCK, 0
        while first + done * clock <= length:
            count = min(block, (length - first) // clock - done + 1)
            yield first + clock * np.arange(done, done + count, dtype=np.int64)
            done += count
            block = min(2 * block, _TICK_BLOCK)

    def _prefix(self, positions: NDArray[np.float64]) -> NDArray[np.float64]:
        """Shifted sum of the window's first ``positions`` values."""
        new = self.scan.c1[self.start :]
        index = positions.astype(np.int64)
        if self.old_n:
            index -= self.old_n
            np.maximum(index, 0, out=index)
        sums = new[index]
        sums += self.s1 - new[0]
        if self.old_n:
            found = np.searchsorted(self.old_bounds, positions)
            old = self.old_prefix[np.minimum(found, len(self.old_prefix) - 1)]
            sums = np.where(positions <= self.old_n, old, sums)
        return sums

    def _fires(self, ks: NDArray[np.int64]) -> NDArray[np.bool_]:
        """For each number of new values ``k``, whether the check at that tick fires.

        Arrays are (cut, tick). With ``B = u0 - n0 * mean`` the gap of the two parts'
        means is ``n |B| / (n0 n1)``; with ``a = n0 - L + 1`` and ``b = n1 - L + 1`` the
        bound's ``m`` is ``(a + b) / (a b)``. A cut fires when ``|B| > eps n0 n1 / n``.
        It is valid when ``a, b >= 1``; since ``a + b > 0`` once ``n >= 2L - 1``, that is
        when ``a b > 0``; a negative ``a b`` makes ``sqrt(m)`` NaN and a zero one makes it
        infinite, and neither ever fires.
        """
        adwin, c1 = self.adwin, self.scan.c1
        spare = adwin.min_window_length - 1
        n = (self.old_n + ks).astype(np.float64)
        s1 = self.s1 + c1[self.start + ks] - c1[self.start]
        s2 = self.s2 + self._square_sums(ks)
        root_twice_var = np.sqrt(np.maximum(2.0 * (s2 - s1 * s1 / n) / n, 0.0))
        d_prime = np.log(2.0 * np.log(n) / adwin.delta)
        n0 = _cut_positions(self.old_n + ks, adwin.max_buckets)
        excess = self._prefix(n0)
        excess -= n0 * (s1 / n)
        np.abs(excess, out=excess)
        a = n0 - spare
        b = (n - 2 * spare) - a
        with np.errstate(divide="ignore", invalid="ignore"):
            a *= b
            dm = np.divide(d_prime * (n - 2 * spare), a, out=a)
            eps = np.sqrt(dm)  # NaN where a b < 0, even with no variance
            eps *= root_twice_var
            dm *= 2.0 / 3.0
            eps += dm
            b += spare  # now n1
            b *= n0
            b /= n
            eps *= b
            fired = excess > eps
        if n[0] < 2 * spare + 1:  # both parts may be short: check validity explicitly
            fired &= (n0 > spare) & (n - n0 > spare)
        return np.asarray(fired.any(axis=0), dtype=np.bool_)

    def _square_sums(self, ks: NDArray[np.int64]) -> NDArray[np.float64]:
        """Shifted sums of squares of the first ``k`` new values, for increasing ``ks``.

        Each call sums only the values since the previous call's last ``k``.
        """
        done, total = self.squared
        since = self.scan.y2[self.start + done : self.start + int(ks[-1])]
        parts = np.add.reduceat(since, np.concatenate([[0], ks[:-1] - done]))
        sums = np.cumsum(parts)
        sums += total
        self.squared = (int(ks[-1]), float(sums[-1]))
        return sums

    def commit(self, end: int, *, detected: bool) -> None:
        """Leave the detector as river's would be after the value at batch index ``end``."""
        adwin, shift, k = self.adwin, self.scan.shift, end - self.start + 1
        c1 = self.scan.c1
        n = self.old_n + k
        s1 = self.s1 + c1[end + 1] - c1[self.start]
        s2 = self.s2 + self.scan.y2[self.start : end + 1].sum()
        adwin._levels = self._rebuild(n, end)
        adwin._width, adwin._total = n, float(s1 + n * shift)
        adwin._m2 = max(float(s2 - s1 * s1 / n), 0.0)
        adwin._tick = self.tick0 + k
        adwin.drift_detected = detected
        if detected:
            while adwin._width and adwin._first_cut_fires():
                adwin._drop_oldest()

    def _rebuild(self, n: int, end: int) -> list[list[_Bucket]]:
        """The histogram's buckets after ``n`` values, from the old buckets and the new values."""
        counts = _level_counts(np.array([n], dtype=np.int64), self.adwin.max_buckets)[::-1, 0]
        old = iter(self.old)
        cursor = self.start
        levels: list[list[_Bucket]] = [[] for _ in counts]
        for level in range(len(counts) - 1, -1, -1):
            for _ in range(int(counts[level])):
                bucket, cursor = self._fill(1 << level, old, cursor)
                levels[level].append(bucket)
        assert cursor == end + 1, "the layout must account for every value"
        return levels

    def _fill(self, size: int, old: Iterator[_Bucket], cursor: int) -> tuple[_Bucket, int]:
        """One bucket of ``size`` values: old buckets first, then new values from ``cursor``."""
        bucket: _Bucket | None = None
        while bucket is None or bucket.size < size:
            part = next(old, None)
            if part is None:
                part = self.scan.run(cursor, cursor + size - (bucket.size if bucket else 0))
                cursor += part.size
            bucket = part if bucket is None else bucket.merged(part)
        return bucket, cursor
