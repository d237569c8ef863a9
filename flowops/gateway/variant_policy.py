"""The variant policy (``routes[].variant_policy``, off unless set): an alert on the
model version a variant serves sets that variant's weight to 0.

One worker of the gateway (worker 0, or the only one) reads ``flowops.drift.alerts`` with
:func:`~flowops.watch.tail_alerts`, as ``flowops drift watch`` does: no consumer group,
from the end, every partition, so every replica of the gateway sees every alert and acts
on its own weights. Why a worker and not a process of its own: the supervisor has no
event loop and stays a plain fork-and-wait loop, a worker has one with the Kafka settings
at hand, and the change goes through the same :class:`~flowops.gateway.weights.VariantWeights`
as the admin API, onto the board every worker reads; if that worker dies, the supervisor
stops the gateway anyway. Why only one: N workers acting on each alert would make N
changes (and N events) of the same weight.

An alert acts on a route's variant when all hold (:func:`matches`):

* the route has ``variant_policy``, the alert's ``model`` is the route's model and its
  ``version`` the variant's model version;
* its kind is among ``alerts``: ``performance`` (``feature: "performance"``),
  ``error_rate`` (``test: "error_rate"``) or ``drift`` (any other: a feature or the
  prediction); its ``test`` among ``tests`` when that is given; its severity at least
  ``min_severity``;

and then, under the board's lock (:meth:`VariantPolicy.act`), the variant still has a
weight, it is not the last variant with one (that one is kept, and the log says so), and
no operator changed it after the alert was detected (an operator who restored a variant
decided after that alert: an old alert read again does not undo it; a newer one does).
The same alert twice changes nothing: it is dropped by its ``alert_id``, and its variant
has no weight left to take anyway.

>>> from flowops.events import DriftAlert
>>> alert = DriftAlert(alert_id="a1", model="credit", version="2", feature="age",
...     test="ks", statistic=0.31, pvalue=0.0004, threshold=0.05, window_start=0.0,
...     window_end=60.0, window_index=0, n_reference=1000, n_current=500,
...     severity="critical", reference="profile", detected_at=61.5)
>>> alert_kind(alert), matches(VariantPolicySettings(), alert)
('drift', True)
>>> matches(VariantPolicySettings(alerts=["performance"]), alert)
False
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowops.errors import FlowOpsError
from flowops.gateway.weights import Change, Overrides, VariantWeights, WeightRefused

if TYPE_CHECKING:
    from flowops.config import KafkaSettings
    from flowops.events import DriftAlert

__all__ = [
    "POLICY",
    "AlertWatcher",
    "VariantPolicy",
    "VariantPolicySettings",
    "alert_kind",
    "matches",
]

log = logging.getLogger("flowops.gateway")

POLICY: Final = "policy"
"""Who a policy change is by, in the log, the event and ``/admin/routes``."""
AlertKind = Literal["drift", "performance", "error_rate"]
_SEVERITY: Final = {"warning": 0, "critical": 1}
_BACKOFF: Final = 1.0
_BACKOFF_MAX: Final = 30.0


def _default_alerts() -> list[AlertKind]:
    return ["drift", "performance"]


class VariantPolicySettings(BaseModel):
    """``routes[].variant_policy``: which alerts set a variant's weight to 0."""

    model_config = ConfigDict(extra="forbid")

    alerts: list[AlertKind] = Field(
        default_factory=_default_alerts,
        min_length=1,
        description="kinds of alert acted on: drift (features, prediction), performance, "
        "error_rate",
    )
    tests: list[str] = Field(
        default_factory=list,
        description="only alerts of these tests (ks, psi, accuracy, ...); empty: any",
    )
    min_severity: Literal["warning", "critical"] = Field(
        "critical", description="the least severity acted on"
    )


def alert_kind(alert: DriftAlert) -> AlertKind:
    """``performance``, ``error_rate`` or ``drift`` (any other feature, the prediction)."""
    if alert.feature == "performance":
        return "performance"
    if alert.test == "error_rate":
        return "error_rate"
    return "drift"


def matches(policy: VariantPolicySettings, alert: DriftAlert) -> bool:
    """Whether ``policy`` acts on alerts like ``alert`` (its kind, test and severity)."""
    return (
        alert_kind(alert) in policy.alerts
        and (not policy.tests or alert.test in policy.tests)
        and _SEVERITY[alert.severity] >= _SEVERITY[policy.min_severity]
    )


class VariantPolicy:
    """Acts on alerts through ``weights``; :attr:`state` is what ``/admin/routes`` shows."""

    def __init__(self, weights: VariantWeights) -> None:
        self.weights = weights
        self.state: dict[str, Any] = {"state": "starting"}

    def act(self, alert: DriftAlert) -> list[Change]:
        """Set aside every variant ``alert`` names under a route's policy; the changes."""
        changes = []
        for route in self.weights.routes():
            policy = route.variant_policy
            if policy is None or route.model_name != alert.model or not matches(policy, alert):
                continue
            for variant in route.variants:
                if variant.model_version == alert.version:
                    change = self._set_aside(route.name, variant.name, alert)
                    if change is not None:
                        changes.append(change)
        return changes

    def _set_aside(self, route: str, variant: str, alert: DriftAlert) -> Change | None:
        reason = (
            f"alert {alert.alert_id}: {alert.severity} {alert.test} on {alert.feature} "
            f"of {alert.model} version {alert.version}"
        )
        try:
            return self.weights.set(
                route,
                variant,
                0.0,
                by=POLICY,
                reason=reason,
                action="policy",
                alert_id=alert.alert_id,
                guard=lambda overrides: _still_due(overrides, route, variant, alert),
            )
        except WeightRefused as refused:
            level = logging.WARNING if refused.code == "no_weight_left" else logging.INFO
            log.log(level, "variant policy: route %s variant %s kept: %s", route, variant, refused)
            return None


def _still_due(overrides: Overrides, route: str, variant: str, alert: DriftAlert) -> None:
    """Raise WeightRefused when the variant is to be left as it is (read under the lock)."""
    last = overrides.get(route, {}).get(variant)
    if last is not None and last.by != POLICY and last.at >= alert.detected_at:
        raise WeightRefused(
            409, "operator_later", f"{last.by} changed it after alert {alert.alert_id}"
        )
    if last is not None and last.weight == 0:
        raise WeightRefused(409, "already_zero", f"its weight is 0 already ({last.by})")


class AlertWatcher:
    """The task that reads the alerts for a :class:`VariantPolicy`, reconnecting after a
    failure (1 s, doubling to 30 s); :meth:`start` and :meth:`stop` it."""

    def __init__(
        self,
        kafka: KafkaSettings,
        policy: VariantPolicy,
        *,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        from flowops.watch import AlertFilter

        self.kafka = kafka
        self.policy = policy
        self._filter = AlertFilter()  # one for the watcher's life: duplicates across reconnects
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="flowops-variant-policy")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = _BACKOFF
        while True:
            if self.policy.state.get("state") == "watching":
                backoff = _BACKOFF  # it had worked: the next failure starts afresh
            try:
                await self._watch()
            except Exception as exc:  # the broker, or a bug: said, and the watch goes on
                if self.policy.state.get("state") != "waiting":
                    bug = not isinstance(exc, FlowOpsError | OSError)
                    log.warning(
                        "variant policy: cannot read the alerts (%s); retrying", exc, exc_info=bug
                    )
                self.policy.state = {"state": "waiting", "reason": str(exc), "since": time.time()}
            await self._sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _watch(self) -> None:
        from contextlib import aclosing

        from flowops.events import Topics
        from flowops.watch import tail_alerts

        def ready(partitions: list[int]) -> None:
            self.policy.state = {
                "state": "watching",
                "topic": Topics.ALERTS,
                "partitions": partitions,
                "since": time.time(),
            }
            log.info("variant policy: watching %s (%d partitions)", Topics.ALERTS, len(partitions))

        alerts = tail_alerts(self.kafka, self._filter, on_ready=ready, on_skip=log.warning)
        async with aclosing(alerts):
            async for alert in alerts:
                self.policy.act(alert)
