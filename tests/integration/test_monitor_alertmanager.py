"""The monitor's alerts against a real Alertmanager (Debian's ``prometheus-alertmanager``).

Each test starts its own Alertmanager on a free port of 127.0.0.1, with a config and a
storage directory in ``tmp_path`` and no cluster gossip (``--cluster.listen-address=``),
and stops it by its pid. Its one route sends every group to a webhook of the test's own
aiohttp server (``group_wait`` and ``group_interval`` short), so the test sees what
Alertmanager made of FlowOps' alerts twice: through ``GET /api/v2/alerts`` and through
Alertmanager's own notifications. The same server is FlowOps' generic webhook.

Times given to the evaluator are the wall clock's, as the agent's are: Alertmanager
compares ``endsAt`` with its own clock. Waits are bounded polls; nothing is timed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from helpers import until

from flowops.broker import free_port
from flowops.monitor.alerts import (
    AlertEvaluator,
    AlertRuleSettings,
    AlertSender,
    AlertSettings,
    WebhookSettings,
)
from flowops.monitor.checks import CheckResult

pytestmark = [pytest.mark.integration]

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
START_TIMEOUT = 30.0  # it answers /-/ready in about a second
CONFIG = """\
route:
  receiver: test
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: {hook}
        send_resolved: true
"""


class Hooks:
    """The test's webhook server: what FlowOps (``/flowops``) and Alertmanager
    (``/alertmanager``) posted, with their headers, by name (``flowops``)."""

    def __init__(self) -> None:
        self.posts: dict[str, list[tuple[Any, dict[str, str]]]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.setdefault(request.match_info["name"], []).append((body, dict(request.headers)))
        return web.Response(status=200)

    def bodies(self, path: str) -> list[Any]:
        return [body for body, _ in self.posts.get(path, [])]


class Alertmanager:
    """One ``prometheus-alertmanager`` process, stopped by its pid."""

    def __init__(self, workdir: Path, hook: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "alertmanager.log"
        config = workdir / "alertmanager.yml"
        config.write_text(CONFIG.format(hook=hook))
        binary = shutil.which("prometheus-alertmanager") or ALERTMANAGER_BIN
        if not Path(binary).exists():
            raise RuntimeError(
                "prometheus-alertmanager not found: apt-get install prometheus-alertmanager"
            )
        self.command = [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"alertmanager not ready in {START_TIMEOUT} s:\n{self.log.read_text()}"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest_asyncio.fixture
async def hooks() -> AsyncIterator[tuple[Hooks, str]]:
    """The webhook server and its base URL (ending in a slash)."""
    found = Hooks()
    app = web.Application()
    app.router.add_post("/{name}", found.handle)
    async with TestServer(app, host="127.0.0.1", port=free_port()) as server:
        yield found, str(server.make_url("/"))


@pytest.fixture
def alertmanager(tmp_path: Path, hooks: tuple[Hooks, str]) -> Iterator[Alertmanager]:
    manager = Alertmanager(tmp_path, f"{hooks[1]}alertmanager")
    try:
        manager.start()
        yield manager
    finally:
        manager.stop()


def check(target: str, ok: bool, detail: str) -> CheckResult:
    return CheckResult("serving.ready", target, ok, 0.05, detail)


@pytest.mark.asyncio
async def test_firing_and_resolved_alerts_reach_alertmanager_and_webhooks(
    alertmanager: Alertmanager, hooks: tuple[Hooks, str]
) -> None:
    received, base = hooks
    settings = AlertSettings(
        rules=[AlertRuleSettings(name="ModelServerDown", for_probes=2, resolve_after=1)],
        alertmanager=[alertmanager.url],
        webhooks=[WebhookSettings(url=f"{base}flowops", headers={"Authorization": "Bearer t"})],
        labels={"env": "test"},
        generator_url="http://monitor.test/",
    )
    evaluator = AlertEvaluator(settings)
    a, b = "http://model-a:8000", "http://model-b:8000"

    async with aiohttp.ClientSession() as session:
        sender = AlertSender(settings, session)

        async def round_(results: list[CheckResult]) -> None:
            now = time.time()
            changed = evaluator.evaluate(results, now)
            await sender.send([*changed, *evaluator.firing()], now)

        async def active() -> dict[str, Any]:
            async with session.get(f"{alertmanager.url}/api/v2/alerts") as answer:
                assert answer.status == 200
                alerts = await answer.json()
            return {alert["labels"]["target"]: alert for alert in alerts}

        await round_([check(a, False, "refused"), check(b, False, "HTTP 503")])
        assert await active() == {}  # one failure: not yet
        await round_([check(a, False, "refused"), check(b, False, "HTTP 503")])
        firing = await until(lambda: _both(active), "both alerts active in Alertmanager")
        assert firing[a]["status"]["state"] == "active"
        assert firing[a]["labels"] == {
            "alertname": "ModelServerDown",
            "check": "serving.ready",
            "target": a,
            "severity": "critical",
            "env": "test",
        }
        assert firing[b]["annotations"]["description"] == "HTTP 503 (2 failed probes in a row)"
        assert firing[a]["generatorURL"] == "http://monitor.test/"
        (ours,) = [x for x in evaluator.firing() if x.labels["target"] == a]
        assert firing[a]["fingerprint"] == ours.fingerprint

        await until(seen(received, a, "firing"), "Alertmanager's own webhook: a firing")

        await round_([check(a, True, "OK"), check(b, False, "HTTP 503")])  # a recovers
        still = await until(lambda: _only_b(active, a), "a resolved, b still active")
        assert list(still) == [b]
        assert sender.stats().failed == 0

    webhook = received.bodies("flowops")
    assert [body["status"] for body in webhook] == ["firing", "resolved"]
    assert all(headers["Authorization"] == "Bearer t" for _, headers in received.posts["flowops"])
    assert webhook[0]["version"] == "4"
    assert sorted(x["labels"]["target"] for x in webhook[0]["alerts"]) == [a, b]
    ((resolved,),) = [body["alerts"] for body in webhook[1:]]
    assert (resolved["labels"]["target"], resolved["status"]) == (a, "resolved")

    await until(seen(received, a, "resolved"), "Alertmanager's own webhook: a resolved")
    notice = received.bodies("alertmanager")[0]
    assert (notice["version"], notice["groupLabels"]) == ("4", {"alertname": "ModelServerDown"})


def seen(received: Hooks, target: str, status: str) -> Callable[[], Any]:
    """Whether Alertmanager's notifications held ``target``'s alert in ``status``."""

    async def look() -> bool:
        return any(
            alert["labels"]["target"] == target and alert["status"] == status
            for body in received.bodies("alertmanager")
            for alert in body["alerts"]
        )

    return look


async def _both(active: Callable[[], Any]) -> dict[str, Any] | None:
    found: dict[str, Any] = await active()
    return found if len(found) == 2 else None


async def _only_b(active: Callable[[], Any], a: str) -> dict[str, Any] | None:
    found: dict[str, Any] = await active()
    return found if a not in found else None


@pytest.mark.asyncio
async def test_an_alertmanager_that_was_down_gets_the_alert_at_the_next_round(
    tmp_path: Path, hooks: tuple[Hooks, str]
) -> None:
    manager = Alertmanager(tmp_path, f"{hooks[1]}alertmanager")
    settings = AlertSettings(
        rules=[AlertRuleSettings(for_probes=1)],
        alertmanager=[manager.url],
        retries=1,
        retry_backoff=0.01,
        timeout=2,
    )
    evaluator = AlertEvaluator(settings)
    try:
        async with aiohttp.ClientSession() as session:
            sender = AlertSender(settings, session)
            now = time.time()
            changed = evaluator.evaluate([check("http://m:1", False, "refused")], now)
            await sender.send(changed, now)  # refused: counted, not raised
            assert (sender.stats().failed, sender.stats().pending) == (1, 1)

            await asyncio.to_thread(manager.start)
            await sender.send(evaluator.firing(), time.time())
            assert (sender.stats().sent, sender.stats().pending) == (1, 0)
            async with session.get(f"{manager.url}/api/v2/alerts") as answer:
                (alert,) = await answer.json()
            assert alert["labels"]["target"] == "http://m:1"
    finally:
        manager.stop()
