"""``least_request``: of two upstreams drawn in proportion to their weights, the one with
fewer requests in flight per unit of weight (the first drawn on a tie)."""

from __future__ import annotations

import random

from flowops.gateway.policies.balancing.base import BalancingSettings
from flowops.gateway.policies.balancing.two_choices import TwoChoices

__all__ = ["least_request"]


def least_request(settings: BalancingSettings, rng: random.Random) -> TwoChoices:
    """The policy's balancer: two choices scored by requests in flight per weight."""
    return TwoChoices(rng, lambda u, _now: u.outstanding / u.weight)
