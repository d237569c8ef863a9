"""Variant weights changed while the gateway runs: by an operator (``/admin/routes``) or
by the variant policy (:mod:`~flowops.gateway.variant_policy`), in every worker alike.

A route's configured ``variants[].weight`` stay what the settings say; a change is an
:class:`Override` of one variant's weight, kept on a :class:`WeightBoard`, and the proxy
splits the route's traffic by the configured weights with the overrides on top
(:func:`effective_weights`). :class:`VariantWeights` is the one path every change takes:
it checks the change (:class:`WeightRefused`, an HTTP status and a reason), writes it,
logs one line and hands a :class:`~flowops.events.VariantWeightEvent` to the publisher.

**Why shared memory.** With ``gateway.workers: N`` the kernel gives a client's
connections to any worker, so a weight set through one worker must hold in all of
them. The board is an anonymous shared ``mmap`` made before the workers fork (as the
rate limits' ``store: shared`` is), holding the overrides as JSON after a generation
counter; a writer takes a process-shared lock, writes, then bumps the generation; a
worker reads the 8-byte generation on each request of a split route and re-reads the
overrides (under the lock) only when it moved: a change answered 200 holds for the next
request of every worker. It lives exactly as long as the gateway's processes: a restart
serves the configured weights again, so the settings file stays the truth an operator
reads, and nothing is left on disk for another gateway on the host to find. A file or
Redis would outlive the gateway (and Redis would add a dependency and a round trip);
replicas on other hosts each keep their own board (docs/gateway.md says so).

>>> board = WeightBoard(size=4096)
>>> board.write({"credit": {"b": Override(0.0, "key:ops", "slow", 1.0)}})
>>> board.read()["credit"]["b"].weight
0.0
>>> effective_weights([("a", 3.0), ("b", 1.0)], board.read().get("credit", {}))
[('a', 3.0), ('b', 0.0)]
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import multiprocessing
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from flowops.gateway.split import Split

if TYPE_CHECKING:
    from flowops.events import VariantWeightEvent
    from flowops.gateway.config import GatewaySettings, RouteSettings
    from flowops.gateway.state import RouteState

__all__ = [
    "BOARD_BYTES",
    "MAX_REASON",
    "MAX_WEIGHT",
    "Change",
    "Override",
    "Overrides",
    "SplitSync",
    "VariantWeights",
    "WeightBoard",
    "WeightRefused",
    "effective_weights",
]

log = logging.getLogger("flowops.gateway")

BOARD_BYTES: Final = 1 << 20
"""The board's size: over 1,500 overrides even with the longest reasons."""
MAX_WEIGHT: Final = 1e6
"""The largest weight, as for ``variants[].weight``."""
MAX_REASON: Final = 500
"""The longest reason a change may give, in characters."""
_HEADER: Final = struct.Struct("<QI")  # generation, length of the JSON that follows
_LOCK_TIMEOUT: Final = 1.0

Overrides = dict[str, dict[str, "Override"]]
"""Route name -> variant name -> its override."""
Action = Literal["set", "restore", "policy"]


@dataclass(frozen=True, slots=True)
class Override:
    """The last change of one variant's weight: ``weight`` None when it was restored to
    the configured one (kept so that who restored it, when and why stay visible, and the
    policy knows the operator decided after an old alert)."""

    weight: float | None
    by: str
    reason: str
    at: float
    alert_id: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """A change made: what the log line and the event say."""

    route: str
    variant: str
    version: str
    model: str
    old: float
    new: float
    configured: float
    by: str
    reason: str
    action: Action
    at: float
    alert_id: str | None = None

    def line(self) -> str:
        """The one log line of the change."""
        return (
            f"variant weight: route {self.route} variant {self.variant} "
            f"{self.old:g} -> {self.new:g} by {self.by} ({self.action}): {self.reason}"
        )


class WeightRefused(Exception):  # noqa: N818 - an answer, as the proxy's _Refusal
    """A change that cannot be made: the HTTP status, a code and the reason."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


def effective_weights(
    configured: Sequence[tuple[str, float]], overrides: Mapping[str, Override]
) -> list[tuple[str, float]]:
    """Each variant's weight: its override's, else the configured one.

    >>> effective_weights([("a", 1.0), ("b", 1.0)], {"a": Override(None, "x", "", 0.0)})
    [('a', 1.0), ('b', 1.0)]
    """
    weights = []
    for name, weight in configured:
        override = overrides.get(name)
        if override is not None and override.weight is not None:
            weight = override.weight
        weights.append((name, weight))
    return weights


class WeightBoard:
    """The overrides in shared memory; make it before forking the workers that share it."""

    def __init__(self, size: int = BOARD_BYTES) -> None:
        self.size = size
        self._memory = mmap.mmap(-1, size)  # anonymous, MAP_SHARED: inherited by forks
        self._lock = multiprocessing.get_context("fork").Lock()

    def generation(self) -> int:
        """Bumped by every write: a reader compares it with the one it last read."""
        generation: int = _HEADER.unpack_from(self._memory, 0)[0]
        return generation

    def read(self) -> Overrides:
        """The overrides now; TimeoutError when the lock is not had within a second (a
        worker died holding it: the supervisor is stopping every worker then)."""
        if not self._lock.acquire(timeout=_LOCK_TIMEOUT):
            raise TimeoutError("the variant weights' lock was not released")
        try:
            return self._read()
        finally:
            self._lock.release()

    def write(self, overrides: Overrides) -> None:
        """Replace the overrides (see :meth:`update` to change them in place)."""
        self.update(lambda _: overrides)

    def update(self, change: Callable[[Overrides], Overrides]) -> Overrides:
        """Apply ``change`` to the overrides under the lock, so no other worker's change
        is lost in between; returns what was written. ``change`` may raise
        :class:`WeightRefused`, and then nothing is written."""
        if not self._lock.acquire(timeout=_LOCK_TIMEOUT):
            raise WeightRefused(503, "busy", "the variant weights' lock was not released")
        try:
            overrides = change(self._read())
            payload = json.dumps(
                {r: {v: asdict(o) for v, o in vs.items()} for r, vs in overrides.items()},
                separators=(",", ":"),
            ).encode()
            if _HEADER.size + len(payload) > self.size:
                raise WeightRefused(507, "board_full", f"the overrides pass {self.size} bytes")
            generation = self.generation() + 1
            self._memory[_HEADER.size : _HEADER.size + len(payload)] = payload
            _HEADER.pack_into(self._memory, 0, generation, len(payload))
            return overrides
        finally:
            self._lock.release()

    def _read(self) -> Overrides:
        _, length = _HEADER.unpack_from(self._memory, 0)
        if not length:
            return {}
        raw: dict[str, dict[str, dict[str, Any]]] = json.loads(
            self._memory[_HEADER.size : _HEADER.size + length]
        )
        return {r: {v: Override(**o) for v, o in vs.items()} for r, vs in raw.items()}


class SplitSync:
    """Keeps a worker's splits at the board's weights: on each request of a split route,
    one read of the generation; the overrides are read again only when it moved."""

    def __init__(self, board: WeightBoard) -> None:
        self.board = board
        self._generation = -1

    def sync(self, routes: Sequence[RouteState], *, force: bool = False) -> None:
        """Give each route's split its weights now (``force``: even if nothing moved,
        for routes just built)."""
        generation = self.board.generation()
        if generation == self._generation and not force:
            return
        try:
            overrides = self.board.read()
        except TimeoutError as exc:  # the last weights stay; the next request tries again
            log.warning("variant weights: %s", exc)
            return
        self._generation = generation
        for route in routes:
            _resplit(route, overrides)


def _resplit(route: RouteState, overrides: Overrides) -> None:
    variants = route.settings.variants
    if not variants:
        return
    configured = [(v.name, v.weight) for v in variants]
    weights = [w for _, w in effective_weights(configured, overrides.get(route.settings.name, {}))]
    if not any(weights):  # a reload left only set-aside variants: the settings decide
        weights = [w for _, w in configured]
    if weights != route.split.weights:
        route.split = Split(list(zip(route.split.items, weights, strict=True)))


class VariantWeights:
    """The one path of a weight change (operator or policy): checked, written, logged,
    published. ``settings`` gives the routes of the moment (a SIGHUP may change them);
    ``publish`` takes each change's event and never waits."""

    def __init__(
        self,
        board: WeightBoard,
        settings: Callable[[], GatewaySettings],
        publish: Callable[[VariantWeightEvent], object],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.board = board
        self._settings = settings
        self._publish = publish
        self._clock = clock

    def routes(self) -> list[RouteSettings]:
        """The routes of the moment."""
        return self._settings().routes

    def route(self, name: str) -> RouteSettings:
        """The route named ``name`` that has variants; 404 otherwise."""
        for route in self._settings().routes:
            if route.name == name:
                if not route.variants:
                    raise WeightRefused(404, "no_variants", f"route {name} has no variants")
                return route
        raise WeightRefused(404, "unknown_route", f"no route is named {name!r}")

    def set(
        self,
        route: str,
        variant: str,
        weight: float,
        *,
        by: str,
        reason: str,
        action: Action = "set",
        alert_id: str | None = None,
        guard: Callable[[Overrides], None] | None = None,
    ) -> Change:
        """Give ``variant`` of ``route`` the weight ``weight``; raises WeightRefused for an
        unknown route or variant, a weight out of range, or one that would leave the
        route with no weight at all. ``guard`` sees the overrides under the lock and may
        raise WeightRefused to leave them as they are (the policy's checks)."""
        settings = self.route(route)
        _check_weight(weight)
        names = [v.name for v in settings.variants]
        if variant not in names:
            raise WeightRefused(404, "unknown_variant", f"route {route} has no variant {variant!r}")
        override = Override(weight, by, _check_reason(reason), self._clock(), alert_id)
        return self._change(settings, {variant: override}, action, guard)[0]

    def restore(self, route: str, *, by: str, reason: str) -> list[Change]:
        """Every variant of ``route`` back to its configured weight; the changes made."""
        settings = self.route(route)
        override = Override(None, by, _check_reason(reason), self._clock())
        return self._change(settings, {v.name: override for v in settings.variants}, "restore")

    def weights(self, route: RouteSettings, overrides: Overrides) -> list[tuple[str, float]]:
        """``route``'s variants' weights under ``overrides``."""
        configured = [(v.name, v.weight) for v in route.variants]
        return effective_weights(configured, overrides.get(route.name, {}))

    def _change(
        self,
        route: RouteSettings,
        new: dict[str, Override],
        action: Action,
        guard: Callable[[Overrides], None] | None = None,
    ) -> list[Change]:
        changes: list[Change] = []

        def apply(overrides: Overrides) -> Overrides:
            if guard is not None:
                guard(overrides)
            before = dict(self.weights(route, overrides))
            updated = {**overrides, route.name: {**overrides.get(route.name, {}), **new}}
            after = dict(self.weights(route, updated))
            if not any(after.values()):
                raise WeightRefused(
                    409,
                    "no_weight_left",
                    f"route {route.name} would have no variant with weight left",
                )
            changes[:] = [
                self._made(route, name, before[name], after[name], override, action)
                for name, override in new.items()
                if action != "restore" or before[name] != after[name]
            ]
            return updated

        self.board.update(apply)
        for change in changes:
            log.warning("%s", change.line())
            self._publish(_event(change))
        return changes

    def _made(
        self,
        route: RouteSettings,
        name: str,
        old: float,
        new: float,
        override: Override,
        action: Action,
    ) -> Change:
        variant = next(v for v in route.variants if v.name == name)
        return Change(
            route=route.name,
            variant=name,
            version=variant.model_version,
            model=route.model_name,
            old=old,
            new=new,
            configured=variant.weight,
            by=override.by,
            reason=override.reason,
            action=action,
            at=override.at,
            alert_id=override.alert_id,
        )


def _check_weight(weight: float) -> None:
    if not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT:
        raise WeightRefused(
            400, "bad_weight", f"weight must be a number from 0 to {MAX_WEIGHT:g}, got {weight}"
        )


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON or not reason.isprintable():
        raise WeightRefused(
            400, "bad_reason", f"reason must be printable text of 1 to {MAX_REASON} characters"
        )
    return reason


def _event(change: Change) -> VariantWeightEvent:
    from flowops.events import VariantWeightEvent

    return VariantWeightEvent(
        route=change.route,
        variant=change.variant,
        model=change.model,
        version=change.version,
        old_weight=change.old,
        new_weight=change.new,
        configured_weight=change.configured,
        action=change.action,
        by=change.by,
        reason=change.reason,
        alert_id=change.alert_id,
        changed_at=change.at,
    )
