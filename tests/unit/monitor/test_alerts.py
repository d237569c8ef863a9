"""Alert rules, the evaluator (a fake clock: the times passed in), and the sender against
an in-process aiohttp server that records what it is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from flowops.monitor.alerts import (
    Alert,
    AlertEvaluator,
    AlertRuleSettings,
    AlertSender,
    AlertSettings,
    WebhookSettings,
    fingerprint,
    webhook_payload,
)
from flowops.monitor.checks import CheckResult

MLFLOW = "http://mlflow:5000"


def result(ok: bool, check: str = "mlflow.health", target: str = MLFLOW, detail: str = "") -> Any:
    return CheckResult(check, target, ok, 0.01, detail or ("OK" if ok else "refused"))


def evaluator(**rule: Any) -> AlertEvaluator:
    return AlertEvaluator(AlertSettings(rules=[AlertRuleSettings(**rule)]))


def run(ev: AlertEvaluator, pattern: str, start: float = 0.0, step: float = 10.0) -> list[str]:
    """Feed ``pattern`` (x: failed, o: passed), one probe every ``step`` seconds; answer
    what changed at each probe: ``F`` fired, ``R`` resolved, ``.`` nothing."""
    marks = []
    for i, mark in enumerate(pattern):
        changed = ev.evaluate([result(mark == "o")], start + i * step)
        marks.append("".join("F" if a.status == "firing" else "R" for a in changed) or ".")
    return marks


# -- settings ------------------------------------------------------------------------


def test_the_default_is_one_rule_for_every_check() -> None:
    settings = AlertSettings()
    (rule,) = settings.rules
    assert (rule.name, rule.checks, rule.targets) == ("FlowOpsCheckFailing", ["*"], ["*"])
    assert (rule.for_probes, rule.for_seconds, rule.resolve_after, rule.keep_firing_for) == (
        3,
        0.0,
        2,
        0.0,
    )
    assert (settings.resend_interval, settings.timeout, settings.retries) == (60.0, 5.0, 2)
    assert settings.alertmanager == []
    assert settings.webhooks == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": [{"name": "A"}, {"name": "A"}]}, "rule names must be unique: A"),
        ({"rules": [{"labels": {"target": "x"}}]}, "label 'target' is set by FlowOps"),
        ({"labels": {"bad-name": "x"}}, "label name 'bad-name'"),
        ({"alertmanager": ["127.0.0.1:9093"]}, "expected an http(s) URL"),
        ({"webhooks": [{"url": "ftp://x"}]}, "should match pattern"),
        ({"rules": [{"for_probes": 0}]}, "greater than or equal to 1"),
        ({"rules": [{"name": "has space"}]}, "should match pattern"),
        ({"resend": 5}, "Extra inputs are not permitted"),
        ({"rules": [{"for": 5}]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AlertSettings.model_validate(data)


# -- the evaluator ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "pattern", "expected"),
    [
        ({"for_probes": 3, "resolve_after": 1}, "xxxxoo", "..F.R."),
        ({"for_probes": 3, "resolve_after": 1}, "xxoxxoxxxo", "........FR"),
        ({"for_probes": 1, "resolve_after": 1}, "xoxo", "FRFR"),
        # flapping damped: one pass between failures does not resolve
        ({"for_probes": 1, "resolve_after": 2}, "xoxoxooo", "F.....R."),
        # for_seconds: 3 probes 10 s apart are 20 s old at the third
        ({"for_probes": 1, "for_seconds": 25}, "xxxxoo", "...F.R"),
        ({"for_probes": 3, "for_seconds": 5}, "xxxx", "..F."),
        # keep_firing_for: the first pass is 0 s old, the next 10 s, the next 20 s
        ({"for_probes": 1, "resolve_after": 1, "keep_firing_for": 15}, "xooo", "F..R"),
        ({"for_probes": 1, "resolve_after": 1, "keep_firing_for": 15}, "xoxoooo", "F....R."),
        ({}, "oooo", "...."),
    ],
)
def test_rules_fire_and_resolve_as_configured(
    rule: dict[str, Any], pattern: str, expected: str
) -> None:
    assert "".join(run(evaluator(**rule), pattern)) == expected


def test_an_alert_starts_at_its_first_failure_and_ends_when_it_resolves() -> None:
    ev = evaluator(for_probes=2, resolve_after=1)
    assert ev.evaluate([result(False, detail="refused")], 100.0) == []
    (fired,) = ev.evaluate([result(False, detail="timed out")], 130.0)
    assert (fired.status, fired.starts_at, fired.ends_at) == ("firing", 100.0, None)
    assert fired.labels == {
        "alertname": "FlowOpsCheckFailing",
        "check": "mlflow.health",
        "target": MLFLOW,
        "severity": "critical",
    }
    assert fired.annotations == {
        "summary": f"mlflow.health is failing on {MLFLOW}",
        "description": "timed out (2 failed probes in a row)",
    }
    ev.evaluate([result(False, detail="HTTP 503")], 160.0)
    (still,) = ev.firing()
    assert still.annotations["description"] == "HTTP 503 (3 failed probes in a row)"
    assert still.fingerprint == fired.fingerprint
    (resolved,) = ev.evaluate([result(True)], 190.0)
    assert (resolved.status, resolved.starts_at, resolved.ends_at) == ("resolved", 100.0, 190.0)
    assert resolved.annotations == still.annotations  # the last failure's, as Prometheus
    assert ev.firing() == []


def test_rules_match_checks_and_targets_by_glob_and_each_gives_its_own_alert() -> None:
    settings = AlertSettings(
        labels={"env": "prod"},
        rules=[
            AlertRuleSettings(name="MlflowDown", checks=["mlflow.*"], for_probes=1),
            AlertRuleSettings(
                name="ProdDown",
                targets=["http://prod-*"],
                for_probes=2,
                severity="page",
                labels={"team": "ml", "env": "prod-eu"},
                annotations={"runbook_url": "https://runbooks/x"},
            ),
        ],
    )
    ev = AlertEvaluator(settings)
    round_ = [
        result(False, "mlflow.health", "http://prod-mlflow"),
        result(False, "kafka.metadata", "k:9092"),
        result(False, "serving.ready", "http://prod-model"),
    ]
    first = ev.evaluate(round_, 0.0)
    assert [(a.labels["alertname"], a.labels["target"]) for a in first] == [
        ("MlflowDown", "http://prod-mlflow")
    ]
    second = ev.evaluate(round_, 10.0)
    assert [(a.labels["alertname"], a.labels["target"]) for a in second] == [
        ("ProdDown", "http://prod-mlflow"),
        ("ProdDown", "http://prod-model"),
    ]
    assert second[1].labels == {
        "env": "prod-eu",
        "team": "ml",
        "alertname": "ProdDown",
        "check": "serving.ready",
        "target": "http://prod-model",
        "severity": "page",
    }
    assert second[1].annotations["runbook_url"] == "https://runbooks/x"
    assert first[0].labels["env"] == "prod"


def test_the_same_rounds_give_the_same_alerts() -> None:
    pattern = "xxxoxxxxooxoooxxx"
    assert run(evaluator(), pattern) == run(evaluator(), pattern)


def test_disabled_alerts_never_fire() -> None:
    ev = AlertEvaluator(AlertSettings(enabled=False, rules=[AlertRuleSettings(for_probes=1)]))
    assert ev.evaluate([result(False)], 0.0) == []


def test_fingerprints_are_alertmanagers() -> None:
    # values read back from Alertmanager 0.25's GET /api/v2/alerts
    assert fingerprint({"alertname": "Down"}) == "6accfd3d0992a914"
    labels = {"alertname": "X", "target": "http://a:1/x", "check": "mlflow.health"}
    assert fingerprint(labels | {"severity": "critical"}) == "7d08afe5c86f5f71"


# -- the sender ------------------------------------------------------------------------


@dataclass
class Receiver:
    """An aiohttp app that records POSTs and answers the statuses queued in ``answers``."""

    posts: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((request.path, await request.json(), dict(request.headers)))
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text="nope" if status >= 300 else "")

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body, _ in self.posts if p == path]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest_asyncio.fixture
async def base(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/"))


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def sender(
    session: aiohttp.ClientSession, sleeps: Sleeps, base: str, **settings: Any
) -> AlertSender:
    options: dict[str, Any] = {"alertmanager": [base], "retry_backoff": 0.5} | settings
    return AlertSender(AlertSettings(**options), session, sleep=sleeps)


def alert(
    status: Literal["firing", "resolved"] = "firing",
    target: str = MLFLOW,
    ends_at: float | None = None,
) -> Alert:
    labels = {"alertname": "Down", "check": "mlflow.health", "target": target, "severity": "x"}
    annotations = {"summary": "down", "description": "refused"}
    return Alert(status, labels, annotations, 1_700_000_000.0, ends_at)


AM = "/api/v2/alerts"
T0 = 1_700_000_100.0


@pytest.mark.asyncio
async def test_alertmanager_gets_its_v2_json(
    session: aiohttp.ClientSession, sleeps: Sleeps, base: str, receiver: Receiver
) -> None:
    send = sender(session, sleeps, base, generator_url="http://monitor:9000/")
    await send.send([alert()], T0)
    await send.send([alert("resolved", ends_at=T0 + 30)], T0 + 30)
    firing, resolved = receiver.bodies(AM)
    assert firing == [
        {
            "labels": dict(alert().labels),
            "annotations": {"summary": "down", "description": "refused"},
            "startsAt": "2023-11-14T22:13:20.000Z",
            "endsAt": "2023-11-14T22:19:00.000Z",  # T0 + 4 resend intervals
            "generatorURL": "http://monitor:9000/",
        }
    ]
    assert resolved[0]["endsAt"] == "2023-11-14T22:15:30.000Z"
    assert send.stats().sent == 2


@pytest.mark.asyncio
async def test_alerts_are_sent_again_only_on_a_change_or_after_the_resend_interval(
    session: aiohttp.ClientSession, sleeps: Sleeps, base: str, receiver: Receiver
) -> None:
    send = sender(session, sleeps, base, resend_interval=60)
    firing = alert()
    for moment in (0, 10, 30, 59):
        await send.send([firing], T0 + moment)
    assert len(receiver.posts) == 1
    await send.send([], T0 + 60)  # remembered: resent without being passed again
    await send.send([firing], T0 + 70)
    assert len(receiver.posts) == 2
    await send.send([alert("resolved", ends_at=T0 + 80)], T0 + 80)
    await send.send([], T0 + 200)
    bodies = receiver.bodies(AM)
    assert len(bodies) == 3
    assert bodies[2][0]["endsAt"] == "2023-11-14T22:16:20.000Z"


@pytest.mark.asyncio
async def test_webhooks_get_alertmanagers_webhook_json_with_their_headers(
    session: aiohttp.ClientSession, sleeps: Sleeps, base: str, receiver: Receiver
) -> None:
    hook = WebhookSettings(url=f"{base}hooks/a", headers={"Authorization": "Bearer s3cret"})
    send = sender(session, sleeps, base, alertmanager=[], webhooks=[hook])
    other = alert(target="http://other")
    await send.send([alert(), other], T0)
    ((path, body, headers),) = receiver.posts
    assert (path, headers["Authorization"]) == ("/hooks/a", "Bearer s3cret")
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "Down"}
    assert body["commonLabels"] == {"alertname": "Down", "check": "mlflow.health", "severity": "x"}
    assert body["commonAnnotations"] == {"summary": "down", "description": "refused"}
    assert body["alerts"][1] == {
        "status": "firing",
        "labels": dict(other.labels),
        "annotations": dict(other.annotations),
        "startsAt": "2023-11-14T22:13:20.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": other.fingerprint,
    }


def test_a_resolved_webhook_group_is_resolved() -> None:
    body = webhook_payload([alert("resolved", ends_at=T0)], "hook")
    assert (body["status"], body["alerts"][0]["endsAt"]) == ("resolved", "2023-11-14T22:15:00.000Z")


@pytest.mark.asyncio
async def test_a_failing_receiver_is_retried_then_counted_and_tried_at_the_next_send(
    session: aiohttp.ClientSession, sleeps: Sleeps, base: str, receiver: Receiver
) -> None:
    send = sender(session, sleeps, base, retries=2)
    receiver.answers = [503, 500, 502]
    await send.send([alert()], T0)  # does not raise
    assert (len(receiver.posts), sleeps.waits) == (3, [0.5, 1.0])
    stats = send.stats()
    assert (stats.sent, stats.failed, stats.pending) == (0, 1, 1)
    assert stats.failed_by_receiver == {f"{base}api/v2/alerts": 1}
    await send.send([], T0 + 10)  # not due for a resend, but never delivered
    assert len(receiver.posts) == 4
    assert (send.stats().sent, send.stats().pending) == (1, 0)


@pytest.mark.asyncio
async def test_a_refusal_is_not_retried(
    session: aiohttp.ClientSession, sleeps: Sleeps, base: str, receiver: Receiver
) -> None:
    send = sender(session, sleeps, base)
    receiver.answers = [400]
    await send.send([alert()], T0)
    await send.send([alert()], T0 + 10)
    assert len(receiver.posts) == 1
    assert (send.stats().rejected, send.stats().failed) == (1, 0)


@pytest.mark.asyncio
async def test_an_unreachable_receiver_costs_bounded_tries(
    session: aiohttp.ClientSession, sleeps: Sleeps, unused_tcp_port: int
) -> None:
    send = sender(session, sleeps, f"http://127.0.0.1:{unused_tcp_port}", retries=1, timeout=2)
    await send.send([alert()], T0)
    assert sleeps.waits == [0.5]
    assert send.stats().failed == 1


@pytest.mark.asyncio
async def test_every_receiver_gets_the_alerts(
    session: aiohttp.ClientSession, sleeps: Sleeps, base: str, receiver: Receiver
) -> None:
    send = sender(
        session,
        sleeps,
        base,
        alertmanager=[base, f"{base}second/"],
        webhooks=[WebhookSettings(url=f"{base}hook")],
    )
    await send.send([alert()], T0)
    assert sorted(path for path, _, _ in receiver.posts) == [AM, "/hook", "/second/api/v2/alerts"]
    assert send.stats().sent == 3
