"""Alerts from check results: rules, a pure state machine, and a sender to Alertmanager
and to webhooks.

A *rule* (:class:`AlertRuleSettings`) matches checks and targets by glob patterns and
says when a failing check becomes an alert:

* it *fires* once the check failed ``for_probes`` probes in a row and, when
  ``for_seconds`` is set, the first of those failures is at least that old (both must
  hold);
* it *resolves* once the check passed ``resolve_after`` probes in a row and, when
  ``keep_firing_for`` is set, the first of those passes is at least that old. Both damp
  flapping: a check that passes once between failures does not resolve and fire again.

:class:`AlertEvaluator` is that state machine, without I/O or a clock of its own: feed it
each round's :class:`~flowops.monitor.checks.CheckResult` with the time, and it answers
the alerts that changed state (firing or resolved). :class:`AlertSender` posts alerts to
Alertmanager's API (``POST /api/v2/alerts``) and to generic webhooks, in the JSON
Alertmanager itself sends to webhooks (``"version": "4"``), so any tool that reads
Alertmanager's webhooks reads FlowOps' too. It deduplicates: an alert goes to a receiver
again only when its state changed or, while it fires, every ``resend_interval`` (an
Alertmanager forgets a firing alert at its ``endsAt``, which is set to four resend
intervals ahead). Failures are retried a bounded number of times, then logged and
counted, and tried again at the next call; they are never raised.

The agent's round::

    changed = evaluator.evaluate(results, now)
    await sender.send([*changed, *evaluator.firing()], now)

>>> from flowops.monitor.checks import CheckResult
>>> rule = AlertRuleSettings(for_probes=2, resolve_after=1)
>>> evaluator = AlertEvaluator(AlertSettings(rules=[rule]))
>>> down = CheckResult("mlflow.health", "http://mlflow:5000", False, 0.01, "refused")
>>> evaluator.evaluate([down], now=100.0)
[]
>>> [alert.status for alert in evaluator.evaluate([down], now=130.0)]
['firing']
>>> up = CheckResult("mlflow.health", "http://mlflow:5000", True, 0.01, "OK")
>>> alert, = evaluator.evaluate([up], now=160.0)
>>> alert.status, alert.starts_at, alert.ends_at, alert.labels["alertname"]
('resolved', 100.0, 160.0, 'FlowOpsCheckFailing')
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from yarl import URL

from flowops.monitor.checks import CheckResult

__all__ = [
    "Alert",
    "AlertEvaluator",
    "AlertRuleSettings",
    "AlertSender",
    "AlertSenderStats",
    "AlertSettings",
    "WebhookSettings",
    "fingerprint",
    "webhook_payload",
]

log = logging.getLogger("flowops.monitor")

AlertStatus = Literal["firing", "resolved"]
_Sleep = Callable[[float], Awaitable[Any]]
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = ("alertname", "check", "target", "severity")
_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager's webhooks put in a firing endsAt
_TTL_RESENDS = 4  # a firing alert's endsAt: this many resend intervals ahead (as Prometheus)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME.match(name):
            raise ValueError(f"label name {name!r} is not [a-zA-Z_][a-zA-Z0-9_]*")
        if name in _RESERVED:
            raise ValueError(f"label {name!r} is set by FlowOps; use another name")
    return labels


class AlertRuleSettings(BaseModel):
    """When failing checks become an alert (one item of ``monitor.alerts.rules``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "FlowOpsCheckFailing",
        pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
        description="the alert's alertname; unique among the rules",
    )
    checks: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="glob patterns of the checks it watches (mlflow.*, kafka.lag)",
    )
    targets: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="glob patterns of the targets it watches (URLs, paths, bootstraps)",
    )
    for_probes: int = Field(
        3, ge=1, le=10_000, description="fire after this many failed probes in a row"
    )
    for_seconds: float = Field(
        0.0,
        ge=0,
        le=30 * 86_400,
        description="and only once the first of them is this many seconds old (0: no wait)",
    )
    resolve_after: int = Field(
        2, ge=1, le=10_000, description="resolve after this many passed probes in a row"
    )
    keep_firing_for: float = Field(
        0.0,
        ge=0,
        le=30 * 86_400,
        description="and only once the first of them is this many seconds old (0: no wait)",
    )
    severity: str = Field("critical", min_length=1, description="the alert's severity label")
    labels: dict[str, str] = Field(
        default_factory=dict, description="more labels of the alert (team, env)"
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="more annotations (runbook_url, dashboard)"
    )

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels)

    def matches(self, result: CheckResult) -> bool:
        """Whether this rule watches ``result``'s check on its target."""
        return any(fnmatch.fnmatchcase(result.check, p) for p in self.checks) and any(
            fnmatch.fnmatchcase(result.target, p) for p in self.targets
        )


class WebhookSettings(BaseModel):
    """A generic webhook: gets Alertmanager's webhook JSON (``version`` ``"4"``)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", description="where alerts are POSTed")
    headers: dict[str, str] = Field(
        default_factory=dict, description="sent with every POST (Authorization); never logged"
    )


class AlertSettings(BaseModel):
    """The monitor's alerts (``monitor.alerts``): rules, receivers, resends, timeouts."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: no alerts are evaluated or sent")
    rules: list[AlertRuleSettings] = Field(
        default_factory=lambda: [AlertRuleSettings()],
        description="every rule that matches a check evaluates it; default: one for all",
    )
    alertmanager: list[str] = Field(
        default_factory=list,
        description="Alertmanager base URLs (http://127.0.0.1:9093); /api/v2/alerts is added",
    )
    webhooks: list[WebhookSettings] = Field(
        default_factory=list, description="generic webhooks, in Alertmanager's webhook format"
    )
    resend_interval: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="seconds between two sends of a firing alert; its endsAt is 4 of them ahead",
    )
    timeout: float = Field(5.0, gt=0, le=600, description="seconds one POST may take")
    retries: int = Field(2, ge=0, le=10, description="tries after a failed POST, in one send")
    retry_backoff: float = Field(
        0.5, ge=0, le=60, description="seconds before the first retry; doubles"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="labels on every alert (cluster, env)"
    )
    generator_url: str | None = Field(
        None, description="the alerts' generatorURL (a dashboard, the monitor's page)"
    )

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels)

    @field_validator("alertmanager")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"expected an http(s) URL, got {url!r}")
        return urls

    @model_validator(mode="after")
    def _unique_rules(self) -> Self:
        names = [rule.name for rule in self.rules]
        doubles = sorted({name for name in names if names.count(name) > 1})
        if doubles:
            raise ValueError(f"rule names must be unique: {', '.join(doubles)}")
        return self


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (FNV-1a 64 over sorted pairs), in hex.

    >>> fingerprint({"alertname": "Down"})
    '6accfd3d0992a914'
    """
    value = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in (*part.encode(), 0xFF):
                value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def _rfc3339(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of one rule on one check of one target, firing or resolved.

    ``starts_at`` is the first failed probe of the streak that fired it, ``ends_at`` the
    time it resolved (``None`` while it fires); both are Unix seconds.
    """

    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None = None

    @property
    def fingerprint(self) -> str:
        """Alertmanager's identity of the alert: a hash of its labels."""
        return fingerprint(self.labels)

    def alertmanager_json(
        self, now: float, ttl: float, generator_url: str | None
    ) -> dict[str, Any]:
        """The alert as ``POST /api/v2/alerts`` takes it; a firing alert ends ``ttl`` from now."""
        body: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": _rfc3339(self.starts_at),
            "endsAt": _rfc3339(now + ttl if self.ends_at is None else self.ends_at),
        }
        if generator_url:
            body["generatorURL"] = generator_url
        return body

    def webhook_json(self, generator_url: str | None) -> dict[str, Any]:
        """The alert as Alertmanager's webhooks carry it."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": _rfc3339(self.starts_at),
            "endsAt": _ZERO_TIME if self.ends_at is None else _rfc3339(self.ends_at),
            "generatorURL": generator_url or "",
            "fingerprint": self.fingerprint,
        }


# -- the state machine -------------------------------------------------------------------


@dataclass(slots=True)
class _Track:
    """What the evaluator remembers of one (rule, check, target)."""

    failures: int = 0
    failing_since: float = 0.0
    passes: int = 0
    passing_since: float = 0.0
    firing: Alert | None = None


class AlertEvaluator:
    """Rules applied to check results, round after round; see the module docstring.

    Deterministic: the same results at the same times give the same alerts. A check
    every rule ignores costs nothing; a check several rules match gives one alert per rule.
    """

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        self._rules = settings.rules if settings.enabled else []
        self._tracks: dict[tuple[str, str, str], _Track] = {}

    def evaluate(self, results: Iterable[CheckResult], now: float) -> list[Alert]:
        """Record a round's results, taken at ``now`` (Unix seconds); return the alerts
        that started firing or resolved, in the order of the results and rules."""
        changed: list[Alert] = []
        for result in results:
            for rule in self._rules:
                if rule.matches(result):
                    alert = self._step(rule, result, now)
                    if alert is not None:
                        changed.append(alert)
        return changed

    def firing(self) -> list[Alert]:
        """The alerts firing now, with the latest failure's detail."""
        return [track.firing for track in self._tracks.values() if track.firing is not None]

    def _step(self, rule: AlertRuleSettings, result: CheckResult, now: float) -> Alert | None:
        key = (rule.name, result.check, result.target)
        track = self._tracks.get(key)
        if track is None:
            if result.success:
                return None  # never failed: nothing to remember
            track = self._tracks[key] = _Track()
        if result.success:
            return self._passed(rule, track, now)
        return self._failed(rule, track, result, now)

    def _failed(
        self, rule: AlertRuleSettings, track: _Track, result: CheckResult, now: float
    ) -> Alert | None:
        track.passes = 0
        if track.failures == 0:
            track.failing_since = now
        track.failures += 1
        if track.firing is not None:  # still firing: keep the detail current
            annotations = self._annotations(rule, result, track.failures)
            track.firing = dataclasses.replace(track.firing, annotations=annotations)
            return None
        if track.failures < rule.for_probes or now - track.failing_since < rule.for_seconds:
            return None
        track.firing = Alert(
            "firing",
            self._labels(rule, result),
            self._annotations(rule, result, track.failures),
            starts_at=track.failing_since,
        )
        return track.firing

    def _passed(self, rule: AlertRuleSettings, track: _Track, now: float) -> Alert | None:
        track.failures = 0
        if track.firing is None:
            return None
        if track.passes == 0:
            track.passing_since = now
        track.passes += 1
        if track.passes < rule.resolve_after or now - track.passing_since < rule.keep_firing_for:
            return None
        resolved = dataclasses.replace(track.firing, status="resolved", ends_at=now)
        track.firing, track.passes = None, 0
        return resolved

    def _labels(self, rule: AlertRuleSettings, result: CheckResult) -> dict[str, str]:
        return {
            **self.settings.labels,
            **rule.labels,
            "alertname": rule.name,
            "check": result.check,
            "target": result.target,
            "severity": rule.severity,
        }

    @staticmethod
    def _annotations(rule: AlertRuleSettings, result: CheckResult, failures: int) -> dict[str, str]:
        summary = f"{result.check} is failing on {result.target}"
        description = f"{result.detail} ({failures} failed probes in a row)"
        return {"summary": summary, "description": description, **rule.annotations}


# -- the sender --------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertSenderStats:
    """The sender's counters at one moment, for ``/metrics``."""

    sent: int
    """Alerts a receiver accepted (one alert sent to two receivers counts twice)."""
    failed: int
    """POSTs that failed after every retry (tried again at the next send)."""
    rejected: int
    """POSTs a receiver refused with a 4xx status (not tried again until a resend)."""
    pending: int
    """Alerts whose last state has not reached a receiver yet (counted per receiver)."""
    failed_by_receiver: Mapping[str, int] = field(default_factory=dict)
    """``failed`` by receiver (its URL without credentials)."""


class _RejectedError(Exception):
    """A receiver answered 4xx: the payload, not the network, is at fault."""


@dataclass(slots=True)
class _Receiver:
    """One Alertmanager or webhook, and what it was last told of each alert."""

    kind: Literal["alertmanager", "webhook"]
    url: str
    headers: Mapping[str, str]
    latest: dict[str, Alert] = field(default_factory=dict)
    told: dict[str, tuple[AlertStatus, float]] = field(default_factory=dict)
    failed: int = 0

    @property
    def name(self) -> str:
        return str(URL(self.url).with_user(None))

    def due(self, now: float, resend_interval: float) -> list[Alert]:
        return [
            alert
            for key, alert in self.latest.items()
            if self._due(alert, self.told.get(key), now, resend_interval)
        ]

    @staticmethod
    def _due(
        alert: Alert, told: tuple[AlertStatus, float] | None, now: float, resend_interval: float
    ) -> bool:
        if told is None or told[0] != alert.status:
            return True  # a new state
        return alert.status == "firing" and now - told[1] >= resend_interval

    def pending(self) -> int:
        """Alerts whose latest state this receiver has not been told."""
        return sum(
            key not in self.told or self.told[key][0] != alert.status
            for key, alert in self.latest.items()
        )

    def delivered(self, alerts: Sequence[Alert], now: float) -> None:
        for alert in alerts:
            key = alert.fingerprint
            if alert.status == "resolved":
                self.told.pop(key, None)
                if self.latest.get(key) is alert:
                    del self.latest[key]
            else:
                self.told[key] = (alert.status, now)


class AlertSender:
    """Posts alerts to Alertmanagers and webhooks; see the module docstring.

    ``session`` is the agent's aiohttp session (the sender does not close it); ``sleep``
    waits between retries (tests pass a fake).
    """

    def __init__(
        self,
        settings: AlertSettings,
        session: aiohttp.ClientSession,
        *,
        sleep: _Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._session = session
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._receivers = [
            _Receiver("alertmanager", url.rstrip("/") + "/api/v2/alerts", {})
            for url in settings.alertmanager
        ] + [_Receiver("webhook", hook.url, hook.headers) for hook in settings.webhooks]
        self.sent = 0
        self.failed = 0
        self.rejected = 0

    async def send(self, alerts: Iterable[Alert], now: float) -> None:
        """Tell every receiver what changed, and resend firing alerts that are due.

        ``alerts`` are this round's alerts: the evaluator's changes and its firing
        alerts (the latest of one fingerprint wins). Call it every round, with or without
        alerts: resends and failed deliveries go out then. Never raises for a receiver's
        fault; takes at most about ``(retries + 1) * timeout`` plus the backoffs.
        """
        alerts = list(alerts) if self.settings.enabled else []
        async with self._lock:
            for receiver in self._receivers:
                for alert in alerts:
                    receiver.latest[alert.fingerprint] = alert
            await asyncio.gather(*(self._notify(receiver, now) for receiver in self._receivers))

    def stats(self) -> AlertSenderStats:
        """The counters now."""
        pending = sum(receiver.pending() for receiver in self._receivers)
        return AlertSenderStats(
            sent=self.sent,
            failed=self.failed,
            rejected=self.rejected,
            pending=pending,
            failed_by_receiver={r.name: r.failed for r in self._receivers},
        )

    async def _notify(self, receiver: _Receiver, now: float) -> None:
        due = receiver.due(now, self.settings.resend_interval)
        if not due:
            return
        try:
            await self._post_with_retries(receiver, self._payload(receiver, due, now))
        except _RejectedError as exc:
            self.rejected += 1
            log.error("alerts: %s refused %d alerts: %s", receiver.name, len(due), exc)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.failed += 1
            receiver.failed += 1
            log.warning(
                "alerts: %s did not take %d alerts (%s); trying again at the next round",
                receiver.name,
                len(due),
                str(exc) or type(exc).__name__,
            )
            return
        else:
            self.sent += len(due)
        receiver.delivered(due, now)

    def _payload(self, receiver: _Receiver, alerts: Sequence[Alert], now: float) -> Any:
        settings = self.settings
        if receiver.kind == "alertmanager":
            ttl = _TTL_RESENDS * settings.resend_interval
            return [alert.alertmanager_json(now, ttl, settings.generator_url) for alert in alerts]
        return webhook_payload(alerts, receiver.name, settings.generator_url)

    async def _post_with_retries(self, receiver: _Receiver, payload: Any) -> None:
        backoff = self.settings.retry_backoff
        for attempt in range(self.settings.retries + 1):
            try:
                await self._post(receiver, payload)
                return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if attempt == self.settings.retries:
                    raise
                log.debug("alerts: %s: %s; retrying in %g s", receiver.name, exc, backoff)
            await self._sleep(backoff)
            backoff *= 2

    async def _post(self, receiver: _Receiver, payload: Any) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with self._session.post(
            receiver.url, json=payload, headers=dict(receiver.headers), timeout=timeout
        ) as response:
            if response.status < 300:
                return
            text = (await response.text(errors="replace"))[:300].strip()
            if 400 <= response.status < 500 and response.status != 429:
                raise _RejectedError(f"HTTP {response.status}: {text}")
            raise aiohttp.ClientResponseError(
                response.request_info, (), status=response.status, message=text
            )


def webhook_payload(
    alerts: Sequence[Alert], receiver: str, generator_url: str | None = None
) -> dict[str, Any]:
    """Alertmanager's webhook JSON (version 4) for ``alerts``, as one group."""
    common_labels = _common(alert.labels for alert in alerts)
    group_labels = {k: v for k, v in common_labels.items() if k == "alertname"}
    firing = any(alert.status == "firing" for alert in alerts)
    return {
        "version": "4",
        "groupKey": "{}:{" + ",".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}",
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common(alert.annotations for alert in alerts),
        "externalURL": generator_url or "",
        "alerts": [alert.webhook_json(generator_url) for alert in alerts],
    }


def _common(mappings: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every mapping has."""
    found: dict[str, str] | None = None
    for mapping in mappings:
        if found is None:
            found = dict(mapping)
        else:
            found = {k: v for k, v in found.items() if mapping.get(k) == v}
    return found or {}
