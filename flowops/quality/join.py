"""Labels joined to predictions by request id, in either order, within ``max_delay``.

The stream worker reads ``flowops.traffic`` and ``flowops.labels`` at their own paces: a
label usually comes long after its prediction, but may be read first (the labels topic
is ahead, or its producer knew the outcome at once). :class:`LabelJoin` keeps whichever
side came first *pending* under ``(model, request_id)`` and emits a :class:`Joined`
pair when the other side comes.

Time is event time: the watermark is the largest ``timestamp`` seen on either side.
A pending prediction expires when the watermark passes its timestamp by ``max_delay``
(it is counted ``unlabelled``); a pending label likewise (counted ``unmatched``). A
label that finds its prediction but was known more than ``max_delay`` after it is
counted ``late`` and not joined: its window of label time would judge a model by an
outcome from another era. Entries expire in the order they came, so an entry may
outlive its deadline until those before it have expired (one scan per
:meth:`LabelJoin.expire`, costing only what it removes).

Memory is bounded: each pending entry's bytes are estimated (:func:`entry_bytes`, checked
against tracemalloc in the tests: about 300 bytes for a 16-character request id and a
float prediction), and once ``memory_budget`` bytes are held, new entries go to the
:class:`~flowops.quality.store.PendingStore` on disk instead, and are looked up there.
:meth:`LabelJoin.checkpoint` writes the in-memory entries not yet on disk and commits;
after a crash, :meth:`LabelJoin` opened on the same file finds every entry pending at the
last checkpoint (the worker re-reads from Kafka what came after, since it commits its
offsets only after the checkpoint).

>>> join = LabelJoin(":memory:", max_delay=100.0)
>>> join.add_label("credit", "r-1", 1, 50.0)  # the label is read first
[]
>>> [(j.request_id, j.prediction, j.label) for j in join.add_prediction(
...     "credit", "r-1", 0.8, 20.0, version="3")]
[('r-1', 0.8, 1)]
>>> join.add_prediction("credit", "r-2", 0.1, 30.0)
[]
>>> join.add_label("credit", "r-2", 0, 500.0)  # known 470 s later: too late
[]
>>> join.counts
JoinCounts(joined=1, unlabelled=0, unmatched=0, late=1)
>>> join.close()
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Self

import orjson

from flowops.quality.store import Kind, PendingStore

if TYPE_CHECKING:
    from flowops.events.labels import LabelBatch
    from flowops.events.traffic import TrafficBatch

__all__ = [
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MEMORY_BUDGET",
    "JoinCounts",
    "Joined",
    "LabelJoin",
    "entry_bytes",
]

DEFAULT_MAX_DELAY: Final = 86_400.0
"""A day: how long a prediction waits for its label, and a label for its prediction."""
DEFAULT_MEMORY_BUDGET: Final = 64 * 2**20
"""Bytes of pending entries held in memory before new ones go to disk (about 220,000)."""

# A dict's slot for one more entry, amortised over its growth (measured with tracemalloc
# in tests/unit/quality/test_join.py: the index, the hash/key/value triple and the slack
# of a table resized at two thirds full).
_DICT_SLOT_BYTES: Final = 60
# what every entry holds besides its id and value: the slot, the (model, id) key tuple,
# the entry's tuple (4 items for a prediction, 3 for a label) and its timestamp float
_FIXED_BYTES: Final = {
    size: _DICT_SLOT_BYTES + sys.getsizeof(("", "")) + sys.getsizeof((0.0,) * size) + 24
    for size in (3, 4)
}
_SHADOW: Final = "shadow"  # flowops.gateway.split.SHADOW, not imported: no gateway here


class Joined(NamedTuple):
    """A prediction and its label, with when each was made or known.

    A named tuple, not a frozen dataclass: one is made per joined row, and a frozen
    dataclass's ``__init__`` cost a tenth of the join's time.
    """

    model: str
    request_id: str
    version: str | None
    variant: str | None
    prediction: Any
    label: Any
    predicted_at: float
    labelled_at: float


@dataclass
class JoinCounts:
    """What became of entries: joined, or why not."""

    joined: int = 0
    unlabelled: int = 0
    """Predictions whose label never came within ``max_delay``."""
    unmatched: int = 0
    """Labels whose prediction was never read within ``max_delay``."""
    late: int = 0
    """Labels known more than ``max_delay`` after their prediction: counted, not joined."""


# (timestamp, version, variant, prediction) and (timestamp, label, version)
_Prediction = tuple[float, str | None, str | None, Any]
_Label = tuple[float, Any, str | None]


def entry_bytes(request_id: str, entry: tuple[Any, ...]) -> int:
    """Estimated bytes one pending entry holds in memory: the dict's slot, the key, the
    entry's tuple and timestamp, the request id and the prediction or label (model,
    version and variant names are shared between entries, see ``_intern``).

    >>> 250 < entry_bytes("r-0000000000001", (1.0, "3", None, 0.5)) < 350
    True
    """
    value = entry[3] if len(entry) == 4 else entry[1]
    own = 0 if value is None else sys.getsizeof(value)
    return _FIXED_BYTES[len(entry)] + sys.getsizeof(request_id) + own


@dataclass
class _Side:
    """One kind of pending entry: in memory by key, in insertion order.

    ``fresh`` holds the keys put in memory since the last checkpoint (so not on disk);
    every other key in memory was written by a checkpoint, and is deleted from disk at
    the next one when it leaves memory (``deleted``). Both grow with what happens between
    two checkpoints, not with what is pending.
    """

    kind: Kind
    memory: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    fresh: set[tuple[str, str]] = field(default_factory=set)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    spilled: int = 0


class LabelJoin:
    """Joins labels to predictions by ``(model, request_id)``; see the module's text.

    ``path`` is the SQLite file of pending entries beyond the memory budget and of
    checkpoints (``":memory:"`` for neither durability nor a file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_delay: float = DEFAULT_MAX_DELAY,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        if max_delay <= 0:
            raise ValueError(f"max_delay must be positive, got {max_delay}")
        self.max_delay = max_delay
        self.memory_budget = memory_budget
        self.memory_bytes = 0
        self._store = PendingStore(path)
        self._store.mark_all_spilled()
        self._predictions = _Side("p", spilled=self._store.spilled("p"))
        self._labels = _Side("l", spilled=self._store.spilled("l"))
        self._names: dict[str, str] = {}
        meta = self._store.meta()
        self.watermark = meta.pop("watermark", float("-inf"))
        self.counts = JoinCounts(**{key: int(value) for key, value in meta.items()})

    # --- the two streams ------------------------------------------------------------

    def add_prediction(
        self,
        model: str,
        request_id: str,
        prediction: Any,
        timestamp: float,
        *,
        version: str | None = None,
        variant: str | None = None,
    ) -> list[Joined]:
        """A prediction read from traffic: its join if its label is pending, else ``[]``."""
        self._advance(timestamp)
        label = self._take(self._labels, model, request_id)
        entry: _Prediction = (timestamp, self._intern(version), self._intern(variant), prediction)
        if label is None:
            self._keep(self._predictions, self._names.setdefault(model, model), request_id, entry)
            return []
        return self._joined(model, request_id, entry, label)

    def add_label(
        self,
        model: str,
        request_id: str,
        label: Any,
        timestamp: float,
        *,
        version: str | None = None,
    ) -> list[Joined]:
        """A label: its join if its prediction is pending, else ``[]`` (kept pending)."""
        self._advance(timestamp)
        prediction = self._take(self._predictions, model, request_id)
        entry: _Label = (timestamp, label, self._intern(version))
        if prediction is None:
            self._keep(self._labels, self._names.setdefault(model, model), request_id, entry)
            return []
        return self._joined(model, request_id, prediction, entry)

    def add_traffic(self, batch: TrafficBatch, *, shadow: bool = False) -> list[Joined]:
        """The answered rows of a traffic batch as predictions; the joins they make.

        Rows whose status is not 2xx carry no prediction and are left out. A shadow's
        copy of a request has the request's id, so one join takes either the shadow's
        rows (``shadow=True``) or the others: a worker judging a shadow keeps a second
        join for it and gives the labels to both.
        """
        variants = batch.variants or [None] * batch.rows
        status = batch.status.tolist()
        stamps = batch.timestamps.tolist()
        joined: list[Joined] = []
        for index, request_id in enumerate(batch.request_ids):
            variant = variants[index]
            if (variant == _SHADOW) != shadow or not 200 <= status[index] < 300:
                continue
            joined += self.add_prediction(
                batch.model,
                request_id,
                batch.predictions[index],
                stamps[index],
                version=batch.version,
                variant=variant,
            )
        return joined

    def add_labels(self, batch: LabelBatch) -> list[Joined]:
        """Every label of a batch; the joins they make."""
        joined: list[Joined] = []
        stamps = batch.timestamps.tolist()
        for request_id, label, stamp in zip(batch.request_ids, batch.labels, stamps, strict=True):
            joined += self.add_label(batch.model, request_id, label, stamp, version=batch.version)
        return joined

    # --- time, durability -----------------------------------------------------------

    def expire(self) -> JoinCounts:
        """Drop what waited past ``max_delay`` behind the watermark; return the counts."""
        cutoff = self.watermark - self.max_delay
        self.counts.unlabelled += self._expire(self._predictions, cutoff)
        self.counts.unmatched += self._expire(self._labels, cutoff)
        return self.counts

    def checkpoint(self) -> None:
        """Write the in-memory entries not yet on disk and the counts, and commit."""
        for side in (self._predictions, self._labels):
            self._store.delete_many(side.kind, side.deleted)
            side.deleted.clear()
            self._store.put_many(side.kind, self._rows(side, side.fresh))
            side.fresh.clear()
        meta = {key: float(value) for key, value in asdict(self.counts).items()}
        self._store.commit(meta | {"watermark": self.watermark})

    def pending(self) -> tuple[int, int]:
        """Pending ``(predictions, labels)``, in memory and on disk."""
        return (
            len(self._predictions.memory) + self._predictions.spilled,
            len(self._labels.memory) + self._labels.spilled,
        )

    def spilled(self) -> tuple[int, int]:
        """Pending ``(predictions, labels)`` on disk only."""
        return self._predictions.spilled, self._labels.spilled

    def disk_bytes(self) -> int:
        """Bytes of the store's file (its write-ahead log not counted)."""
        return self._store.disk_bytes()

    def close(self) -> None:
        """Close the store; what was not checkpointed is dropped."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the parts --------------------------------------------------------------------

    def _joined(
        self, model: str, request_id: str, prediction: _Prediction, label: _Label
    ) -> list[Joined]:
        predicted_at, version, variant, value = prediction
        labelled_at, label_value, label_version = label
        if labelled_at - predicted_at > self.max_delay:
            self.counts.late += 1
            return []
        self.counts.joined += 1
        return [
            Joined(
                model,
                request_id,
                version if version is not None else label_version,
                variant,
                value,
                label_value,
                predicted_at,
                labelled_at,
            )
        ]

    def _advance(self, timestamp: float) -> None:
        if timestamp > self.watermark:
            self.watermark = timestamp

    def _intern(self, name: str | None) -> str | None:
        """One string object per model, version and variant name, shared by entries."""
        if name is None:
            return None
        return self._names.setdefault(name, name)

    def _keep(self, side: _Side, model: str, request_id: str, entry: tuple[Any, ...]) -> None:
        key = (model, request_id)
        old = side.memory.pop(key, None)
        if old is not None:  # a second entry of the key replaces the first
            self._forget(side, key, old)
        size = entry_bytes(request_id, entry)
        if self.memory_bytes + size <= self.memory_budget:
            side.memory[key] = entry
            side.fresh.add(key)
            self.memory_bytes += size
            return
        body = orjson.dumps(entry[1:], option=orjson.OPT_SERIALIZE_NUMPY)
        self._store.put(side.kind, model, request_id, entry[0], body, spilled=True)
        side.spilled += 1

    def _take(self, side: _Side, model: str, request_id: str) -> Any:
        """Remove and return the pending entry of the key, from memory or disk."""
        key = (model, request_id)
        entry = side.memory.pop(key, None)
        if entry is not None:
            self._forget(side, key, entry)
            return entry
        if side.spilled == 0:
            return None
        found = self._store.take(side.kind, model, request_id)
        if found is None:
            return None
        side.spilled -= 1
        timestamp, body = found
        return (timestamp, *orjson.loads(body))

    def _forget(self, side: _Side, key: tuple[str, str], entry: tuple[Any, ...]) -> None:
        self.memory_bytes -= entry_bytes(key[1], entry)
        if key in side.fresh:
            side.fresh.discard(key)
        else:
            side.deleted.append(key)

    def _expire(self, side: _Side, cutoff: float) -> int:
        expired = 0
        for key in list(_oldest(side.memory, cutoff)):
            self._forget(side, key, side.memory.pop(key))
            expired += 1
        if side.spilled:
            on_disk = self._store.expire(side.kind, cutoff)
            side.spilled -= on_disk
            expired += on_disk
        return expired

    def _rows(
        self, side: _Side, keys: Iterable[tuple[str, str]]
    ) -> Iterator[tuple[str, str, float, bytes]]:
        for model, request_id in keys:
            entry = side.memory[model, request_id]
            yield (
                model,
                request_id,
                entry[0],
                orjson.dumps(entry[1:], option=orjson.OPT_SERIALIZE_NUMPY),
            )


def _oldest(
    memory: dict[tuple[str, str], tuple[Any, ...]], cutoff: float
) -> Iterator[tuple[str, str]]:
    """Keys from the front of the dict (the first added) while their entry is older than
    ``cutoff``."""
    for key, entry in memory.items():
        if entry[0] >= cutoff:
            return
        yield key
