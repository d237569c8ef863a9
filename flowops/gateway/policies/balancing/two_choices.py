"""The power of two random choices, which ``least_request`` and ``ewma`` share with a
score each: nearly as good as scanning every upstream, and it does not send a burst to
the one upstream that happens to look idlest."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowops.gateway.upstreams import Upstream

__all__ = ["TwoChoices"]


class TwoChoices:
    """Two distinct candidates drawn in proportion to weight; the lower score wins.

    On a tie the first drawn wins, so idle upstreams (``least_request``) or unmeasured
    ones (``ewma``) get traffic in proportion to their weights.
    """

    def __init__(self, rng: random.Random, score: Callable[[Upstream, float], float]) -> None:
        self._rng = rng
        self._score = score

    def choose(self, candidates: Sequence[Upstream], now: float) -> Upstream:
        total = sum(u.weight for u in candidates)
        a = self._draw(candidates, total, None)
        b = self._draw(candidates, total - a.weight, a)
        return b if self._score(b, now) < self._score(a, now) else a

    def _draw(self, candidates: Sequence[Upstream], total: int, skip: Upstream | None) -> Upstream:
        point = self._rng.random() * total
        drawn = candidates[0]
        for upstream in candidates:
            if upstream is skip:
                continue
            drawn = upstream
            point -= upstream.weight
            if point < 0:
                break
        return drawn
