"""Reference profiles: the compacted ``flowops.references`` topic as a Faust global table.

Every worker holds every model's profile (a model's traffic may land on any worker after
a rebalance), so the table is global: Faust reads the whole topic before the worker
starts and follows it afterwards. Values stay the bytes on the topic; :class:`References`
parses each once and hands :class:`~flowops.drift.Profile` objects to the monitors.

Two details of faust-streaming 0.15 shape the table (each checked against Tansu):

* a table over an existing topic (``changelog_topic=``) still reports the default
  changelog name to Faust's partition assignor, which then fails the assignment with a
  ``KeyError``; :class:`ReferenceTable` reports the real topic;
* a global table applies updates that arrive after recovery in batches of the buffer
  sizes (1000 by default), so a new profile would wait for 999 more; both are 1 here
  (as Faust's own notes on global tables advise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import faust
from faust.tables.globaltable import GlobalTable

from flowops.drift import Profile
from flowops.drift.partial import Prepared
from flowops.errors import EventError
from flowops.events import ReferenceProfile, Topics
from streams.monitors import Reject

__all__ = ["ReferenceTable", "References", "reference_table"]

log = logging.getLogger("flowops.streams")


class ReferenceTable(GlobalTable):
    """A global table whose changelog is an existing topic, named as it is."""

    def _changelog_topic_name(self) -> str:
        return str(self.changelog_topic.get_topic_name())


def reference_table(app: faust.App, partitions: int) -> ReferenceTable:
    """The table of reference profiles, keyed by model name, values the topic's bytes."""
    topic = app.topic(
        Topics.REFERENCES,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        compacting=True,
        deleting=False,
    )
    table = ReferenceTable(
        app,
        name="references",
        key_type=bytes,
        value_type=bytes,
        changelog_topic=topic,
        partitions=partitions,
        standby_buffer_size=1,
        recovery_buffer_size=1,
        is_global=True,
        help="reference profiles by model (flowops.references)",
    )
    app.tables.add(table)
    return table


class References:
    """The latest usable profile of each model, parsed once per value of the table.

    A value that is not a reference profile is logged and kept in :attr:`rejects` (once
    per value) for the agent to dead-letter; the model keeps the profile it had.
    """

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self._table = table
        self._parsed: dict[bytes, tuple[bytes, ReferenceProfile | None]] = {}
        self._prepared: dict[str, tuple[bytes, Prepared]] = {}
        self.rejects: list[Reject] = []

    def get(self, model: str) -> tuple[bytes, ReferenceProfile] | None:
        """The model's value on the topic (a token that changes with it) and its profile."""
        key = model.encode()
        raw = self._table.get(key)
        if raw is None:
            return None
        cached = self._parsed.get(key)
        if cached is None or cached[0] is not raw:
            cached = (raw, self._parse(key, raw))
            self._parsed[key] = cached
        token, reference = cached
        if reference is None:
            return None
        return token, reference

    def prepared(self, model: str, version: str) -> Prepared | None:
        """The model's profile made ready for window partials, if it applies to
        ``version`` (fitted once per value of the table)."""
        found = self.get(model)
        if found is None or found[1].version not in (None, version):
            return None
        token, reference = found
        cached = self._prepared.get(model)
        if cached is None or cached[0] is not token:
            cached = (token, Prepared.from_profile(reference.to_profile()))
            self._prepared[model] = cached
        return cached[1]

    def profile(self, model: str) -> Profile | None:
        """The model's current profile, if it has a usable one."""
        found = self.get(model)
        return None if found is None else found[1].to_profile()

    def __len__(self) -> int:
        return len(self._table)

    def _parse(self, key: bytes, raw: bytes) -> ReferenceProfile | None:
        try:
            return ReferenceProfile.from_json(raw)
        except EventError as exc:
            log.warning("reference profile of %r is unusable: %s", key, exc)
            self.rejects.append(Reject(Topics.REFERENCES, None, None, key, raw, exc))
            return None

    def take_rejects(self) -> list[Reject]:
        """The unusable values found since the last call."""
        rejects, self.rejects = self.rejects, []
        return rejects
