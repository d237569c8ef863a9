"""``weighted``: smooth weighted round robin, as nginx does it.

Every pick adds each upstream's weight to its running score
(:attr:`~flowops.gateway.upstreams.Upstream.current_weight`), takes the highest score and
subtracts the total weight from it. Weights 5, 1, 1 give ``a a b a c a a``, never
``a a a a a b c``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowops.gateway.policies.balancing.base import BalancingSettings

if TYPE_CHECKING:
    from flowops.gateway.upstreams import Upstream

__all__ = ["SmoothWeighted", "weighted"]


class SmoothWeighted:
    """nginx's smooth weighted round robin (ngx_http_upstream_get_peer)."""

    def choose(self, candidates: Sequence[Upstream], now: float) -> Upstream:
        total = 0
        best = candidates[0]
        for upstream in candidates:
            upstream.current_weight += upstream.weight
            total += upstream.weight
            if upstream.current_weight > best.current_weight:
                best = upstream
        best.current_weight -= total
        return best


def weighted(settings: BalancingSettings, rng: random.Random) -> SmoothWeighted:
    """The policy's balancer (the scores live on the upstreams)."""
    return SmoothWeighted()
