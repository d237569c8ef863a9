"""``round_robin``: each available upstream in turn."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowops.gateway.policies.balancing.base import BalancingSettings

if TYPE_CHECKING:
    from flowops.gateway.upstreams import Upstream

__all__ = ["RoundRobin", "round_robin"]


class RoundRobin:
    """The next candidate each time (the candidates are the available upstreams, so
    the turn skips those left out)."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Upstream], now: float) -> Upstream:
        chosen = candidates[self._next % len(candidates)]
        self._next += 1
        return chosen


def round_robin(settings: BalancingSettings, rng: random.Random) -> RoundRobin:
    """The policy's balancer (it needs neither argument)."""
    return RoundRobin()
