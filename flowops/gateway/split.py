"""A/B splits and shadow traffic: which model version answers a request, and which
only listens.

A route with ``variants`` instead of ``upstreams`` splits its traffic by weight between
model versions, each with its own upstreams; the variant that answered is recorded in
the request's traffic events (``variant``, and its ``version``) and told to the client
in ``X-FlowOps-Variant``. With ``sticky`` set, a caller (see
:mod:`~flowops.gateway.callers`) always gets the same variant while the weights stay
the same; without it each request is drawn afresh. A ``shadow`` gets a copy of (a share
of) the requests after the client has its answer: its response is recorded as traffic
(variant ``shadow``) and never reaches the client, and its failures never touch them::

    routes:
      - name: credit
        prefix: /models/credit
        variants:
          - {name: champion, version: "1", weight: 90, upstreams: [http://127.0.0.1:9001]}
          - {name: challenger, version: "2", weight: 10, upstreams: [http://127.0.0.1:9002]}
        sticky: header:X-User-ID
        shadow: {version: "3", upstreams: [http://127.0.0.1:9003]}

>>> split = Split([("a", 90.0), ("b", 10.0)])
>>> split.choose(0.5), split.choose(0.95)
('a', 'b')
>>> split.point("credit", "h:0123") == split.point("credit", "h:0123")
True
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from itertools import accumulate
from typing import Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from flowops.gateway.upstreams import UpstreamSettings

__all__ = ["SHADOW", "ShadowSettings", "Split", "VariantSettings"]

SHADOW: Final = "shadow"
"""The ``variant`` of a shadow's traffic events."""

_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_SCALE: Final = float(2**64)

_T = TypeVar("_T")


class VariantSettings(BaseModel):
    """One side of an A/B split (``routes[].variants[]``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="the variant, in traffic events and metrics")
    version: str | None = Field(
        None, min_length=1, description="model version in its traffic events; default: name"
    )
    weight: float = Field(gt=0, le=1e6, description="its share: weight / sum of weights")
    upstreams: list[UpstreamSettings] = Field(min_length=1, description="its model servers")

    @property
    def model_version(self) -> str:
        """The version its traffic events carry."""
        return self.version or self.name


class ShadowSettings(BaseModel):
    """A candidate that gets copies of the requests (``routes[].shadow``)."""

    model_config = ConfigDict(extra="forbid")

    upstreams: list[UpstreamSettings] = Field(min_length=1, description="its model servers")
    version: str = Field(SHADOW, min_length=1, description="model version in its events")
    percent: float = Field(100.0, gt=0, le=100, description="share of requests copied")
    timeout: float = Field(10.0, gt=0, le=600, description="seconds a copy may take")
    max_in_flight: int = Field(
        64, ge=1, le=100_000, description="copies under way at once; more are skipped, counted"
    )


class Split(Generic[_T]):
    """Weighted choice between ``(item, weight)`` pairs by a point in [0, 1).

    A weight may be 0 (a variant set aside at run time, :mod:`~flowops.gateway.weights`):
    that item is never chosen; at least one weight must be above 0.

    >>> Split([("a", 0.0), ("b", 1.0), ("c", 0.0)]).choose(0.9999999999999999)
    'b'
    """

    def __init__(self, weighted: Sequence[tuple[_T, float]]) -> None:
        if not weighted:
            raise ValueError("a split needs at least one variant")
        self.items = [item for item, _ in weighted]
        self.weights = [weight for _, weight in weighted]
        total = sum(self.weights)
        if not total > 0:
            raise ValueError("a split needs a variant with a weight above 0")
        self._bounds = [bound / total for bound in accumulate(self.weights)]
        self._last = max(i for i, weight in enumerate(self.weights) if weight > 0)

    def choose(self, point: float) -> _T:
        """The item whose share of [0, 1) holds ``point``."""
        for item, bound in zip(self.items, self._bounds, strict=True):
            if point < bound:
                return item
        return self.items[self._last]  # float dust at the top end

    def weighted(self) -> list[_T]:
        """The items that may be chosen (weight above 0)."""
        return [item for item, weight in zip(self.items, self.weights, strict=True) if weight > 0]

    @staticmethod
    def point(route: str, caller: str | None) -> float:
        """A caller's fixed point in [0, 1) on a route (a random one without a caller).

        A hash of the route and the caller: the same caller lands on the same variant
        on every replica and after restarts, and callers spread evenly.
        """
        if caller is None:
            return random.random()
        digest = hashlib.blake2b(f"{route}\0{caller}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / _SCALE
