"""The agent's rounds with fake probes: every probe at once, a hanging or broken probe a
failed check of its kind, listeners told in order and their failures contained, and the
metrics page replaced by each round."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from flowops.monitor.agent import Agent, Round, run_probes
from flowops.monitor.checks import TIMEOUT_GRACE, CheckResult
from flowops.monitor.metrics import MonitorMetrics

pytestmark = pytest.mark.asyncio


@dataclass
class FakeProbe:
    kind: str
    target: str
    timeout: float = 1.0
    success: bool = True
    hang: bool = False
    crash: bool = False
    runs: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> Sequence[CheckResult]:
        self.runs += 1
        self.started.set()
        if self.hang:
            await asyncio.sleep(3600)
        if self.crash:
            raise RuntimeError("a bug in the probe")
        detail = "OK" if self.success else "connection refused: is it running?"
        return [CheckResult(f"{self.kind}.ready", self.target, self.success, 0.001, detail)]


@dataclass
class Recorder:
    rounds: list[Round] = field(default_factory=list)
    fail: bool = False

    async def on_round(self, round_: Round) -> None:
        self.rounds.append(round_)
        if self.fail:
            raise RuntimeError("the receiver is broken")


async def test_probes_run_at_once_and_keep_their_order() -> None:
    gate = asyncio.Event()

    @dataclass
    class Waiting(FakeProbe):
        async def run(self) -> Sequence[CheckResult]:
            await gate.wait()  # only the other probe's start lets this one finish
            return await super().run()

    first, second = Waiting("a", "t1"), FakeProbe("b", "t2")

    async def open_gate() -> None:
        await second.started.wait()
        gate.set()

    results, _ = await asyncio.gather(run_probes([first, second]), open_gate())
    assert [(r.check, r.target) for r in results] == [("a.ready", "t1"), ("b.ready", "t2")]


async def test_a_hanging_probe_is_a_failed_check_of_its_kind() -> None:
    hanging = FakeProbe("kafka", "127.0.0.1:9092", timeout=0.05, hang=True)
    (result,) = await run_probes([hanging])
    assert (result.check, result.target, result.success) == ("kafka", "127.0.0.1:9092", False)
    assert result.detail == f"no answer within {0.05 + TIMEOUT_GRACE:g} s"


async def test_a_broken_probe_is_a_failed_check_naming_the_error() -> None:
    broken = FakeProbe("dvc", "/srv/repo", crash=True)
    (result,) = await run_probes([broken])
    assert not result.success
    assert result.detail == "the probe failed: RuntimeError: a bug in the probe"


async def test_a_round_tells_the_metrics_and_every_listener_even_after_one_fails() -> None:
    metrics = MonitorMetrics(commit="test")
    broken, recorder = Recorder(fail=True), Recorder()
    probes = [FakeProbe("mlflow", "http://m"), FakeProbe("model_server", "http://s", success=False)]
    agent = Agent(probes, interval=10, metrics=metrics, listeners=[broken, recorder])

    done = await agent.round()

    assert not done.healthy
    assert broken.rounds == recorder.rounds == [done]
    assert agent.last is done
    text = metrics.render().decode()
    assert 'flowops_probe_success{check="mlflow.ready",target="http://m"} 1.0' in text
    assert 'flowops_probe_success{check="model_server.ready",target="http://s"} 0.0' in text
    assert "flowops_probe_rounds_total 1.0" in text
    assert 'flowops_build_info{commit="test",version=' in text
    assert done.as_json()["checks"][1] == {
        "check": "model_server.ready",
        "target": "http://s",
        "success": False,
        "duration_seconds": 0.001,
        "detail": "connection refused: is it running?",
    }


async def test_run_repeats_rounds_until_stopped() -> None:
    probe = FakeProbe("service", "http://g/readyz")
    agent = Agent([probe], interval=0.01)
    stop = asyncio.Event()
    seen: list[Round] = []

    async def on_round(round_: Round) -> None:
        seen.append(round_)
        if len(seen) == 3:
            stop.set()

    await asyncio.wait_for(agent.run(stop, on_round), timeout=30)
    assert (len(seen), probe.runs) == (3, 3)


async def test_firing_alerts_are_a_gauge_per_check() -> None:
    metrics = MonitorMetrics(commit="test")
    metrics.firing([("dvc.status", "/srv/repo"), ("dvc.status", "/srv/repo")])
    text = metrics.render().decode()
    assert text.count('flowops_alerts_firing{check="dvc.status",target="/srv/repo"} 1.0') == 1
    metrics.firing([])
    assert "flowops_alerts_firing{" not in metrics.render().decode()
