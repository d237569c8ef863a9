"""The gateway's own events (``flowops.gateway.events``): a variant's weight changed.

Each change of an A/B split's weights, by an operator through ``/admin/routes`` or by the
variant policy acting on an alert (:mod:`flowops.gateway.weights`), is one
:class:`VariantWeightEvent`, so that whoever follows the alerts can follow what the
gateway did about them:

>>> event = VariantWeightEvent(route="credit", variant="challenger", model="credit",
...     version="2", old_weight=1.0, new_weight=0.0, configured_weight=1.0,
...     action="policy", by="policy", reason="alert a1", alert_id="a1", changed_at=5.0)
>>> VariantWeightEvent.from_json(event.to_json()) == event
True
>>> event.TOPIC, event.kafka_key(), event.event_id()
('flowops.gateway.events', b'credit', 'credit/challenger/5.0')
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from flowops.events.headers import EventTypes
from flowops.events.schemas import Event
from flowops.events.topics import Topics

__all__ = ["VariantWeightEvent"]

_Name = Annotated[str, Field(min_length=1)]
_Weight = Annotated[float, Field(ge=0)]


class VariantWeightEvent(Event):
    """A variant of a route got a new weight: who, why, from what to what.

    Keyed by route, so a route's changes stay in order on one partition.
    """

    TOPIC: ClassVar[str] = Topics.GATEWAY
    EVENT_TYPE: ClassVar[str] = EventTypes.VARIANT_WEIGHT
    NAME: ClassVar[str] = "variant weight"

    route: _Name
    variant: _Name
    model: _Name = Field(description="the model name the route's traffic events carry")
    version: str = Field(description="the model version the variant serves")
    old_weight: _Weight
    new_weight: _Weight
    configured_weight: _Weight = Field(description="the weight the settings give it")
    action: Literal["set", "restore", "policy"] = Field(
        description="set or restore: an operator through /admin/routes; policy: an alert"
    )
    by: _Name = Field(description="the admin identity (key:<name>, jwt:<subject>) or policy")
    reason: str = Field(description="why, in the operator's words or naming the alert")
    alert_id: str | None = Field(None, description="the alert the policy acted on")
    changed_at: float

    def kafka_key(self) -> bytes:
        return self.route.encode()

    def event_id(self) -> str:
        return f"{self.route}/{self.variant}/{self.changed_at!r}"
