"""``ewma``: peak-EWMA, as Finagle and Linkerd do it.

Each upstream's latency is a moving average that jumps up at once to a slower response
and decays with time constant ``ewma_decay`` otherwise (and towards 0 while no response
comes, so a slow upstream gets tried again); its cost is that latency times
``outstanding + 1`` (:meth:`~flowops.gateway.upstreams.Upstream.load`), and two random
choices (drawn in proportion to weight: weights only break ties here) pick the cheaper.
An upstream never measured costs nothing while idle and a large penalty while busy: it
gets one request, then its measurement.
"""

from __future__ import annotations

import random

from flowops.gateway.policies.balancing.base import BalancingSettings
from flowops.gateway.policies.balancing.two_choices import TwoChoices

__all__ = ["ewma"]


def ewma(settings: BalancingSettings, rng: random.Random) -> TwoChoices:
    """The policy's balancer: two choices scored by each upstream's load at ``now``."""
    decay = settings.ewma_decay
    return TwoChoices(rng, lambda u, now: u.load(now, decay))
