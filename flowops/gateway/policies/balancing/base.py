"""What every balancing policy shares: its settings (``routes[].balancing``) and the one
protocol a policy implements, :class:`Balancer`.

A policy is a module of this package with a function that makes its balancer from the
settings (and the pool's random source); :mod:`flowops.gateway.policies.balancing` maps
the policies' names to those functions.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from flowops.gateway.upstreams import Upstream

__all__ = ["Balancer", "BalancingPolicy", "BalancingSettings", "Maker"]

BalancingPolicy: TypeAlias = Literal["round_robin", "weighted", "least_request", "ewma"]


class BalancingSettings(BaseModel):
    """How a route spreads requests over its upstreams (``routes[].balancing``).

    A bare policy name is accepted: ``balancing: least_request``.
    """

    model_config = ConfigDict(extra="forbid")

    policy: BalancingPolicy = Field("round_robin", description="how the next upstream is chosen")
    ewma_decay: float = Field(
        10.0, gt=0, le=3600, description="seconds: time constant of the `ewma` latency average"
    )

    @model_validator(mode="before")
    @classmethod
    def _policy_alone(cls, value: Any) -> Any:
        return {"policy": value} if isinstance(value, str) else value


class Balancer(Protocol):
    """Chooses one of a pool's available upstreams (never an empty sequence) at ``now``
    (the loop's clock, in seconds)."""

    def choose(self, candidates: Sequence[Upstream], now: float) -> Upstream: ...


Maker: TypeAlias = Callable[[BalancingSettings, random.Random], Balancer]
"""What a policy's module offers: its balancer, made from the route's settings."""
