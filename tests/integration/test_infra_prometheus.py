"""infra/ with Debian's Prometheus and Alertmanager: the real tools read the real files.

``promtool`` checks the rules and the scrape config, ``amtool`` the Alertmanager config
(Debian packages ``prometheus`` and ``prometheus-alertmanager``). Then one run of the
whole path: a real ``prometheus`` with the scrape config of ``infra/prometheus`` (targets
moved to free loopback ports, intervals of 1 s) scrapes a real FlowOps gateway in front of
a model server, and the stream worker's and monitor agent's metrics classes served as
their ``/metrics``; it loads every rule of ``infra/prometheus/rules``, evaluates them
without error, and fires ``FlowOpsProbeFailing`` for a failing probe into a real
``prometheus-alertmanager`` configured from ``infra/alertmanager``, which posts it to a
webhook served by the test. Every dashboard query is run against that Prometheus too.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml
from aiohttp import web
from gateway_servers import model_servers, running_gateway

from flowops.broker import free_port
from flowops.monitor.checks import CheckResult
from flowops.monitor.metrics import MonitorMetrics
from streams.metrics import StreamMetrics

pytestmark = [pytest.mark.integration]

INFRA = Path(__file__).resolve().parents[2] / "infra"
RULES = sorted((INFRA / "prometheus" / "rules").glob("*.yml"))
DEBIAN = {  # command: the Debian package that ships it
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}
WAIT = 30.0  # seconds for a state to be reached; measured: 2 to 5 s
REQUESTS = 5
FAILING = CheckResult("kafka.lag", "127.0.0.1:9092", False, 0.01, "behind", {"lag_total": 20000.0})
T = TypeVar("T")


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: apt-get install -y {DEBIAN[name]}"
    return found


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_promtool_checks_every_rule_file() -> None:
    out = run(tool("promtool"), "check", "rules", *map(str, RULES))
    counts = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", out)]
    expected = [
        sum(len(group["rules"]) for group in yaml.safe_load(path.read_text())["groups"])
        for path in RULES
    ]
    assert counts == expected


def test_promtool_checks_the_scrape_config_and_the_rules_it_loads() -> None:
    out = run(tool("promtool"), "check", "config", str(INFRA / "prometheus" / "prometheus.yml"))
    assert f"SUCCESS: {len(RULES)} rule files found" in out


MONITOR = {"job": "flowops-monitor", "instance": "127.0.0.1:9108", "service": "monitor"}
GATEWAY = {"job": "flowops-gateway", "instance": "127.0.0.1:8080", "service": "gateway"}
DVC = {"check": "dvc.status", "target": "/srv/repo", **MONITOR}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inside = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{inside}}}", "values": values}


def expect(alert: str, labels: dict[str, str], summary: str) -> dict[str, Any]:
    rule = next(r for _, r in all_rules() if r.get("alert") == alert)
    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {"summary": summary, "description": rule["annotations"]["description"]},
    }


def all_rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path, rule


def test_promtool_fires_the_alerts_on_the_conditions_they_name(tmp_path: Path) -> None:
    """``promtool test rules``: input series minute by minute, the alerts expected."""
    five_xx = [
        series(
            "flowops_gateway_requests_total",
            {"route": "iris", "status": "200", **GATEWAY},
            "0+90x20",
        ),
        series(
            "flowops_gateway_requests_total",
            {"route": "iris", "status": "502", **GATEWAY},
            "0+10x20",
        ),
        # too little traffic to page for: 3 requests a minute, all failing
        series(
            "flowops_gateway_requests_total",
            {"route": "rare", "status": "503", **GATEWAY},
            "0+3x20",
        ),
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": [series("flowops_probe_success", DVC, "1 0 0 0 0")],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "FlowOpsProbeFailing", "exp_alerts": []},
                {
                    "eval_time": "3m",
                    "alertname": "FlowOpsProbeFailing",
                    "exp_alerts": [
                        expect("FlowOpsProbeFailing", DVC, "dvc.status fails for /srv/repo")
                    ],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series("flowops_probe_value", {"name": "not_in_remote", **DVC}, "2x40")
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "FlowOpsDVCDataNotInRemote", "exp_alerts": []},
                {
                    "eval_time": "35m",
                    "alertname": "FlowOpsDVCDataNotInRemote",
                    "exp_alerts": [
                        expect(
                            "FlowOpsDVCDataNotInRemote",
                            {"name": "not_in_remote", **DVC},
                            "/srv/repo: 2 DVC-tracked files are not in the remote",
                        )
                    ],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": five_xx,
            "alert_rule_test": [
                {
                    "eval_time": "15m",
                    "alertname": "FlowOpsGateway5xxRatio",
                    "exp_alerts": [
                        expect(
                            "FlowOpsGateway5xxRatio",
                            {"route": "iris", "service": "gateway"},
                            "Route iris: 10% of requests answer 5xx",
                        )
                    ],
                },
            ],
        },
    ]
    config = tmp_path / "rules-test.yml"
    config.write_text(
        yaml.safe_dump(
            {"rule_files": [str(p) for p in RULES], "evaluation_interval": "1m", "tests": tests}
        )
    )
    out = run(tool("promtool"), "test", "rules", str(config))
    assert "SUCCESS" in out


def test_amtool_checks_the_alertmanager_config() -> None:
    out = run(tool("amtool"), "check-config", str(INFRA / "alertmanager" / "alertmanager.yml"))
    assert "SUCCESS" in out


# -- one run of the whole path ----------------------------------------------------------


@pytest.mark.asyncio
async def test_prometheus_scrapes_flowops_and_alerts_through_alertmanager(
    tmp_path: Path,
) -> None:
    received: list[dict[str, Any]] = []
    async with (
        model_servers(1) as servers,
        running_gateway(
            {"routes": [iris(servers[0].url)], "publish": {"enabled": False}}
        ) as gateway,
        served_metrics() as (worker, monitor),
        webhook(received) as hook,
        aiohttp.ClientSession() as session,
    ):
        for _ in range(REQUESTS):
            async with session.post(f"{gateway}/models/iris/invocations", json=[1, 2]) as r:
                assert r.status == 200
        am_port, prom_port = free_port(), free_port()
        alertmanager_config = write_alertmanager_config(tmp_path, hook)
        prometheus_config = write_prometheus_config(
            tmp_path,
            targets={
                "flowops-gateway": gateway.removeprefix("http://"),
                "flowops-streams": worker,
                "flowops-monitor": monitor,
            },
            alertmanager=f"127.0.0.1:{am_port}",
        )
        with (
            process(
                tmp_path / "alertmanager.log",
                tool("prometheus-alertmanager"),
                f"--config.file={alertmanager_config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # no gossip port: one Alertmanager
            ) as am_log,
            process(
                tmp_path / "prometheus.log",
                tool("prometheus"),
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ) as prom_log,
        ):
            api = Api(session, f"http://127.0.0.1:{prom_port}", [prom_log, am_log])
            await api.until("every target is up", all_targets_up)
            await check_scraped_values(api)
            await check_rules_loaded_and_evaluated(api)
            await check_dashboard_queries(api)

            async def posted(_: Api) -> dict[str, Any] | None:
                return probe_alert(received)

            alert = await api.until("Alertmanager posts FlowOpsProbeFailing", posted)
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "FlowOpsProbeFailing",
        "check": "kafka.lag",
        "target": "127.0.0.1:9092",
        "severity": "warning",
        "service": "monitor",
        "job": "flowops-monitor",
        "instance": monitor,
    }
    assert alert["annotations"]["summary"] == "kafka.lag fails for 127.0.0.1:9092"


async def check_scraped_values(api: Api) -> None:
    queries = {
        'flowops_gateway_requests_total{route="iris", status="200", service="gateway"}': REQUESTS,
        'flowops_stream_events_total{service="streams"}': REQUESTS,
        'flowops_probe_success{check="kafka.lag", service="monitor"}': 0,
        'flowops_probe_value{check="kafka.lag", name="lag_total"}': 20000,
    }
    for query, expected in queries.items():

        async def scraped(api: Api, query: str = query) -> list[dict[str, Any]]:
            return await api.query(query)

        result = await api.until(f"{query} is scraped", scraped)
        assert [float(series["value"][1]) for series in result] == [expected], query


async def check_rules_loaded_and_evaluated(api: Api) -> None:
    expected = {
        group["name"]: [rule.get("alert") or rule["record"] for rule in group["rules"]]
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
    }

    async def evaluated(api: Api) -> list[dict[str, Any]] | None:
        groups = (await api.get("/api/v1/rules"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if all(rule["health"] == "ok" for rule in rules) else None

    groups = await api.until("every rule is evaluated without error", evaluated)
    assert {g["name"]: [r["name"] for r in g["rules"]] for g in groups} == expected


async def check_dashboard_queries(api: Api) -> None:
    """Every dashboard query parses and runs (Grafana's variables given plain values)."""
    for path in sorted((INFRA / "grafana" / "dashboards").glob("*.json")):
        for expr in dashboard_queries(json.loads(path.read_text())):
            await api.query(grafana_to_promql(expr))  # raises on a 400 (bad_data)


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
            assert found, variable["definition"]
            yield found.group(1)


def grafana_to_promql(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def iris(upstream: str) -> dict[str, Any]:
    return {"name": "iris", "prefix": "/models/iris", "upstreams": [upstream]}


async def all_targets_up(api: Api) -> list[dict[str, Any]] | None:
    active = (await api.get("/api/v1/targets"))["activeTargets"]
    return active if len(active) == 3 and all(t["health"] == "up" for t in active) else None


def probe_alert(received: list[dict[str, Any]]) -> dict[str, Any] | None:
    for payload in received:
        for alert in payload["alerts"]:
            if alert["labels"]["alertname"] == "FlowOpsProbeFailing":
                assert payload["receiver"] == "flowops-webhook"
                return alert
    return None


# -- helpers ----------------------------------------------------------------------------


class Api:
    """Prometheus' HTTP API, polled while the test's loop keeps serving the targets."""

    def __init__(self, session: aiohttp.ClientSession, base: str, logs: list[Path]) -> None:
        self.session, self.base, self.logs = session, base, logs

    async def get(self, path: str, **params: str) -> Any:
        async with self.session.get(self.base + path, params=params) as response:
            body = await response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self.get("/api/v1/query", query=promql))["result"]
        return result

    async def until(self, what: str, check: Callable[[Api], Awaitable[T | None]]) -> T:
        """Poll ``check`` until it answers something (an empty answer is no answer)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while loop.time() < deadline:
            try:
                found = await check(self)
            except (aiohttp.ClientError, AssertionError):
                found = None  # not started yet, or a state still settling
            if found:
                return found
            await asyncio.sleep(0.25)
        tails = "\n".join(f"{log.name}:\n{tail(log)}" for log in self.logs)
        raise AssertionError(f"not reached in {WAIT} s: {what}\n{tails}")


@asynccontextmanager
async def served_metrics() -> AsyncIterator[tuple[str, str]]:
    """``/metrics`` of a stream worker and of a monitor agent, from their metrics classes."""
    worker = StreamMetrics()
    worker.events(REQUESTS)
    monitor = MonitorMetrics(commit="0123456789ab")
    monitor.round([FAILING])
    runners = []
    addresses = []
    for metrics in (worker, monitor):
        app = web.Application()

        app.router.add_get("/metrics", metrics_page(metrics.render))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        addresses.append(f"127.0.0.1:{port}")
    try:
        yield addresses[0], addresses[1]
    finally:
        for runner in runners:
            await runner.cleanup()


def metrics_page(render: Callable[[], bytes]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def page(_: web.Request) -> web.Response:
        return web.Response(body=render(), content_type="text/plain")

    return page


@asynccontextmanager
async def webhook(received: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A webhook receiver on loopback keeping what Alertmanager posts; yields its URL."""

    async def alerts(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/alerts", alerts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/alerts"
    finally:
        await runner.cleanup()


def write_prometheus_config(tmp_path: Path, targets: dict[str, str], alertmanager: str) -> Path:
    """infra/prometheus/prometheus.yml with these targets, 1 s intervals, absolute rule
    paths, and FlowOpsProbeFailing without its ``for`` so that it fires at once."""
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s"}
    config["global"]["evaluation_interval"] = "1s"
    for job in config["scrape_configs"]:
        (group,) = job["static_configs"]
        group["targets"] = [targets[job["job_name"]]]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in RULES:
        groups = yaml.safe_load(path.read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "FlowOpsProbeFailing":
                    del rule["for"]
        (rules / path.name).write_text(yaml.safe_dump(groups))
    config["rule_files"] = [str(rules / "*.yml")]
    written = tmp_path / "prometheus.yml"
    written.write_text(yaml.safe_dump(config))
    return written


def write_alertmanager_config(tmp_path: Path, hook: str) -> Path:
    """infra/alertmanager/alertmanager.yml posting to ``hook``, without waiting to group."""
    config = yaml.safe_load((INFRA / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for webhook_config in receiver.get("webhook_configs", []):
            webhook_config["url"] = hook
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        route["group_wait"] = "0s"
    written = tmp_path / "alertmanager.yml"
    written.write_text(yaml.safe_dump(config))
    return written


@contextmanager
def process(log: Path, *command: str) -> Iterator[Path]:
    """Run ``command`` with its output in ``log``; SIGTERM by pid afterwards (SIGKILL if
    it lingers)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
