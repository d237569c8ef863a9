"""The label join's disk: pending predictions and labels in one SQLite file.

Why SQLite (the standard library's ``sqlite3``) and not an append log: the join needs
point look-ups by request id and deletes of what joined or expired, which an append log
would have to index and compact itself; SQLite does both, and its write-ahead log makes
a committed transaction survive the process being killed (``synchronous=NORMAL`` in WAL
mode loses nothing on a process crash; only a power cut can take the last commits).

A row is an entry of one ``kind`` (``"p"``, a prediction; ``"l"``, a label) keyed by
``(model, request_id)``. ``spilled`` says where the entry lives: 1, on disk only (the
memory budget was full when it came, or the process restarted since); 0, a copy of an
entry held in memory, written by :meth:`PendingStore.commit` so that a restart finds it.

Nothing is durable until :meth:`commit`: the stream worker commits the store before it
commits its Kafka offsets, so what a crash loses is re-read from Kafka, as the windows'
state is (``docs/streaming.md``).

>>> store = PendingStore(":memory:")
>>> store.put("p", "credit", "r-1", 10.0, b"[1]", spilled=True)
>>> store.take("p", "credit", "r-1"), store.take("p", "credit", "r-1")
((10.0, b'[1]'), None)
>>> store.close()
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from typing import Final, Literal, TypeAlias

__all__ = ["Kind", "PendingStore"]

Kind: TypeAlias = Literal["p", "l"]
"""An entry's kind: ``"p"`` a pending prediction, ``"l"`` a pending label."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS pending (
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    request_id TEXT NOT NULL,
    timestamp REAL NOT NULL,
    body BLOB NOT NULL,
    spilled INTEGER NOT NULL,
    PRIMARY KEY (kind, model, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_age ON pending (kind, spilled, timestamp);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


class PendingStore:
    """Pending entries on disk; one open transaction, made durable by :meth:`commit`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level="DEFERRED")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def put(
        self,
        kind: Kind,
        model: str,
        request_id: str,
        timestamp: float,
        body: bytes,
        *,
        spilled: bool,
    ) -> None:
        """Write (or overwrite) an entry."""
        self._db.execute(
            "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?, ?)",
            (kind, model, request_id, timestamp, body, int(spilled)),
        )

    def put_many(self, kind: Kind, rows: Iterable[tuple[str, str, float, bytes]]) -> None:
        """Write copies of in-memory entries (``spilled`` 0): ``(model, id, time, body)``."""
        self._db.executemany(
            f"INSERT OR REPLACE INTO pending VALUES ('{kind}', ?, ?, ?, ?, 0)", rows
        )

    def take(self, kind: Kind, model: str, request_id: str) -> tuple[float, bytes] | None:
        """Remove and return a spilled entry's ``(timestamp, body)``; ``None`` if absent."""
        key = (kind, model, request_id)
        row = self._db.execute(
            "SELECT timestamp, body FROM pending"
            " WHERE kind = ? AND model = ? AND request_id = ? AND spilled = 1",
            key,
        ).fetchone()
        if row is None:
            return None
        self._db.execute("DELETE FROM pending WHERE kind = ? AND model = ? AND request_id = ?", key)
        return float(row[0]), bytes(row[1])

    def delete_many(self, kind: Kind, keys: Iterable[tuple[str, str]]) -> None:
        """Delete entries by ``(model, request_id)``, spilled or not."""
        self._db.executemany(
            f"DELETE FROM pending WHERE kind = '{kind}' AND model = ? AND request_id = ?", keys
        )

    def expire(self, kind: Kind, before: float) -> int:
        """Delete the spilled entries older than ``before``; return how many."""
        cursor = self._db.execute(
            "DELETE FROM pending WHERE kind = ? AND spilled = 1 AND timestamp < ?", (kind, before)
        )
        return cursor.rowcount

    def spilled(self, kind: Kind) -> int:
        """How many entries of ``kind`` live on disk only."""
        row = self._db.execute(
            "SELECT count(*) FROM pending WHERE kind = ? AND spilled = 1", (kind,)
        ).fetchone()
        return int(row[0])

    def mark_all_spilled(self) -> None:
        """After a restart memory is empty: every entry now lives on disk only."""
        self._db.execute("UPDATE pending SET spilled = 1 WHERE spilled = 0")

    def meta(self) -> dict[str, float]:
        """The numbers saved with the last commit (counts, the watermark)."""
        return {key: float(value) for key, value in self._db.execute("SELECT * FROM meta")}

    def commit(self, meta: dict[str, float]) -> None:
        """Save ``meta`` and make everything written so far durable."""
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        self._db.commit()

    def disk_bytes(self) -> int:
        """The database's size in pages (the WAL not counted)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)

    def close(self) -> None:
        """Close without committing: what was not committed is dropped, as in a crash."""
        self._db.close()
