"""The balancing policies by name: what :class:`~flowops.gateway.upstreams.Pool` asks for
the balancer of its route's settings."""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from flowops.gateway.policies.balancing.base import (
    Balancer,
    BalancingPolicy,
    BalancingSettings,
    Maker,
)
from flowops.gateway.policies.balancing.ewma import ewma
from flowops.gateway.policies.balancing.least_request import least_request
from flowops.gateway.policies.balancing.round_robin import round_robin
from flowops.gateway.policies.balancing.weighted import weighted

__all__ = ["MAKERS", "balancer"]

MAKERS: Final[Mapping[BalancingPolicy, Maker]] = MappingProxyType(
    {
        "round_robin": round_robin,
        "weighted": weighted,
        "least_request": least_request,
        "ewma": ewma,
    }
)
"""Each policy's name and the function that makes its balancer."""


def balancer(settings: BalancingSettings, rng: random.Random) -> Balancer:
    """The balancer of ``settings.policy``, drawing from ``rng`` where it draws."""
    return MAKERS[settings.policy](settings, rng)
