"""infra/: Prometheus rules and scrape config, Alertmanager, Grafana dashboards.

The central check: every metric a rule or a dashboard names is one the code exports,
with the labels it selects on. The exported names are not listed here: they come from the
metrics classes of the gateway, the stream worker and the monitor agent, exercised once
so that each family has samples (and thus its label names), and their exposition parsed
back. PromQL is parsed roughly (names matching ``flowops_*`` or holding a ``:``, the
selectors' matchers, the ``by``/``on`` label lists), which is enough to catch a renamed
metric or label. ``tests/integration/test_infra_prometheus.py`` runs the real
``promtool`` and Prometheus on the same files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from flowops.config import Settings
from flowops.drift import MonitorStats
from flowops.gateway.config import GatewaySettings
from flowops.gateway.metrics import GatewayMetrics
from flowops.gateway.upstreams import Pool, UpstreamEvent
from flowops.monitor.checks import CheckResult
from flowops.monitor.config import MonitorSettings
from flowops.monitor.metrics import MonitorMetrics
from streams.metrics import StatsDelta, StreamMetrics

INFRA = Path(__file__).resolve().parents[2] / "infra"
PROMETHEUS = INFRA / "prometheus"
GRAFANA = INFRA / "grafana"
DASHBOARD_UIDS = {
    "drift.json": "flowops-drift",
    "gateway.json": "flowops-gateway",
    "health.json": "flowops-health",
}
MONITOR_PORT = int(MonitorSettings().listen.rpartition(":")[2])  # monitor.listen's default
# labels every scraped series gets: Prometheus' job and instance, the target's service
TARGET_LABELS = frozenset({"job", "instance", "service"})
PROMETHEUS_METRICS = {"up": frozenset()}  # written by Prometheus itself for every target
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


# -- what the code exports ------------------------------------------------------------


@dataclass
class _Publisher:
    queue_depth: int = 3
    sent: int = 10
    dropped: int = 1


def gateway_exposition() -> bytes:
    metrics = GatewayMetrics()
    metrics.request("iris", 200, "http://127.0.0.1:9001", 0.004)
    metrics.retry("iris", "connect_error")
    metrics.auth_failure("iris", "401")
    metrics.rate_limited("iris")
    metrics.shadow("iris", "2xx")
    metrics.upstream_event(UpstreamEvent("iris", "http://127.0.0.1:9001", "ejected"))
    weights = [("credit", "champion", 9.0), ("credit", "challenger", 0.0)]
    metrics.watch([Pool("iris", ["http://127.0.0.1:9001"])], _Publisher(), lambda: weights)
    return metrics.render()


def worker_exposition() -> bytes:
    metrics = StreamMetrics()
    metrics.events(5)
    metrics.rejected("bad_json")
    metrics.unparsable("credit", 2)
    metrics.requests("credit", 10, rejected=3)
    metrics.late("credit", 1)
    metrics.alert("credit", "psi")
    delta = StatsDelta(MonitorStats())
    stats = MonitorStats(
        windows_closed=1,
        excluded={"age": 1},
        last_psi={"age": 0.3},
        last_ks_pvalue={"age": 0.01},
    )
    metrics.monitor("credit", stats, delta)
    metrics.lag("flowops.traffic", 0, 12)
    metrics.partitions("flowops.traffic", 3)
    metrics.checkpoint(0.02)
    return metrics.render()


def monitor_exposition() -> bytes:
    metrics = MonitorMetrics(commit="0123456789ab")
    result = CheckResult("kafka.lag", "127.0.0.1:9092", False, 0.01, "behind", {"lag_total": 5.0})
    metrics.round([result])
    metrics.firing([("kafka.lag", "127.0.0.1:9092")])
    return metrics.render()


def exported_series(exposition: bytes) -> dict[str, frozenset[str]]:
    """Series name -> label names, as Prometheus stores them after a scrape."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for suffix in SUFFIXES.get(family.type, ("",)):
            found.setdefault(family.name + suffix, set())
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in found.items()}


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    series: dict[str, frozenset[str]] = {}
    for exposition in (gateway_exposition(), worker_exposition(), monitor_exposition()):
        series |= exported_series(exposition)
    return series


# -- what infra/ uses -------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """One PromQL expression of a rule or a dashboard, and the labels its text shows."""

    where: str
    expr: str
    shown: frozenset[str] = frozenset()  # labels in a legend or an annotation


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rule_files() -> list[Path]:
    return sorted((PROMETHEUS / "rules").glob("*.yml"))


def rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                yield path, rule


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in GRAFANA.glob("dashboards/*.json")}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions() -> list[Expression]:
    found = []
    for path, rule in rules():
        name = rule.get("alert") or rule["record"]
        text = " ".join(rule.get("annotations", {}).values())
        shown = frozenset(re.findall(r"\$labels\.(\w+)", text))
        found.append(Expression(f"{path.name}:{name}", rule["expr"], shown))
    for file, dashboard in sorted(dashboards().items()):
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                legend = target.get("legendFormat", "")
                shown = frozenset(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
                where = f"{file}:{panel['title']}:{target['refId']}"
                found.append(Expression(where, target["expr"], shown))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                query = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["definition"])
                assert query, variable["definition"]
                shown = frozenset({query.group(2)})
                found.append(Expression(f"{file}:${variable['name']}", query.group(1), shown))
    return found


# -- rough PromQL -----------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME = re.compile(r"(?<![\w:$.])[a-zA-Z_:][\w:]*")
_SELECTOR = re.compile(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: FlowOps metrics, recording rules, ``up``."""
    bare = _STRING.sub('""', expr)
    names = {name for name in _NAME.findall(bare) if name not in _KEYWORDS}
    return {n for n in names if n.startswith("flowops_") or ":" in n or n in PROMETHEUS_METRICS}


def selectors(expr: str) -> Iterator[tuple[str, str, str, str]]:
    """(metric, label, operator, value) for every matcher of every selector."""
    for metric, matchers in _SELECTOR.findall(expr):
        for label, op, value in _MATCHER.findall(matchers):
            yield metric, label, op, value


def grouping_labels(expr: str) -> set[str]:
    bare = _STRING.sub('""', expr)
    return {label.strip() for group in _GROUPING.findall(bare) for label in group.split(",")} - {""}


def test_the_rough_parser_reads_names_matchers_and_groupings() -> None:
    expr = (
        'sum by (route, le) (rate(flowops_gateway_request_duration_seconds_bucket{route=~"$r",'
        ' status="flowops_not_a_metric"}[$__rate_interval])) / on (route) group_left'
        ' route:flowops_gateway_requests:rate5m and up{job="flowops-gateway"}'
    )
    assert metric_names(expr) == {
        "flowops_gateway_request_duration_seconds_bucket",
        "route:flowops_gateway_requests:rate5m",
        "up",
    }
    assert list(selectors(expr)) == [
        ("flowops_gateway_request_duration_seconds_bucket", "route", "=~", "$r"),
        ("flowops_gateway_request_duration_seconds_bucket", "status", "=", "flowops_not_a_metric"),
        ("up", "job", "=", "flowops-gateway"),
    ]
    assert grouping_labels(expr) == {"route", "le"}


# -- the files --------------------------------------------------------------------------


def test_every_file_parses() -> None:
    yamls = sorted(INFRA.glob("**/*.yml"))
    jsons = sorted(INFRA.glob("**/*.json"))
    assert len(yamls) >= 6
    assert {path.name for path in jsons} == set(DASHBOARD_UIDS)
    for path in yamls:
        assert isinstance(load_yaml(path), dict), path
    for path in jsons:
        assert isinstance(json.loads(path.read_text()), dict), path


@pytest.mark.parametrize("expression", expressions(), ids=lambda e: e.where)
def test_every_metric_used_is_exported_by_the_code(
    expression: Expression, exported: dict[str, frozenset[str]]
) -> None:
    names = metric_names(expression.expr)
    assert names, f"no metric found in {expression.expr!r}"
    raw = {name for name in names if ":" not in name and name not in PROMETHEUS_METRICS}
    assert raw <= exported.keys(), f"not exported: {sorted(raw - exported.keys())}"
    recorded = {name for name in names if ":" in name}
    assert recorded <= recording_rules(), f"no such recording rule: {sorted(recorded)}"


@pytest.mark.parametrize("expression", expressions(), ids=lambda e: e.where)
def test_every_label_used_is_one_the_metrics_carry(
    expression: Expression, exported: dict[str, frozenset[str]]
) -> None:
    known = {**exported, **PROMETHEUS_METRICS}
    names = metric_names(expression.expr)
    if any(name not in known for name in names):
        return  # a recording rule's labels are its own grouping; unknown names fail above
    for metric, label, _, _ in selectors(expression.expr):
        assert label in known[metric] | TARGET_LABELS, f"{metric} has no label {label}"
    carried = set(TARGET_LABELS).union(*(known[name] for name in names))
    used = grouping_labels(expression.expr) | expression.shown
    assert used <= carried, f"labels no metric here carries: {sorted(used - carried)}"


@pytest.mark.parametrize(
    ("expr", "shown", "error"),
    [
        ("rate(flowops_gateway_requests[5m])", (), "not exported"),
        ("foo:flowops_gateway_requests:rate5m > 1", (), "no such recording rule"),
        ('flowops_gateway_requests_total{model="x"}', (), "has no label model"),
        ("sum by (model) (flowops_gateway_requests_total)", (), "no metric here carries"),
        ("sum by (route) (flowops_gateway_requests_total)", ("feature",), "no metric here"),
    ],
)
def test_the_checks_catch_a_renamed_metric_or_label(
    expr: str, shown: tuple[str, ...], error: str, exported: dict[str, frozenset[str]]
) -> None:
    expression = Expression("bad", expr, frozenset(shown))
    with pytest.raises(AssertionError, match=error):
        check_expression(expression, exported)


def check_expression(expression: Expression, exported: dict[str, frozenset[str]]) -> None:
    test_every_metric_used_is_exported_by_the_code(expression, exported)
    test_every_label_used_is_one_the_metrics_carry(expression, exported)


def recording_rules() -> set[str]:
    return {rule["record"] for _, rule in rules() if "record" in rule}


def test_every_metric_the_code_exports_is_on_a_dashboard(
    exported: dict[str, frozenset[str]],
) -> None:
    on_dashboards = [e for e in expressions() if ".json:" in e.where]
    used = set().union(*(metric_names(e.expr) for e in on_dashboards))
    assert {family(name) for name in exported} - {family(name) for name in used} == set()


def family(series: str) -> str:
    return re.sub(r"_(total|created|bucket|sum|count)$", "", series)


def test_every_job_selected_is_a_scrape_job() -> None:
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]}
    for expression in expressions():
        for _, label, op, value in selectors(expression.expr):
            if label == "job":
                assert op in {"=", "=~"}, expression.where
                matched = {job for job in jobs if re.fullmatch(value, job)}
                assert matched if op == "=~" else value in jobs, expression.where


# -- Prometheus -------------------------------------------------------------------------


def test_prometheus_scrapes_every_service_on_its_default_port() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    targets = {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "flowops-streams": [f"127.0.0.1:{Settings().streams.metrics_port}"],
        "flowops-gateway": [GatewaySettings().listen],
        "flowops-monitor": [f"127.0.0.1:{MONITOR_PORT}"],
    }
    services = {
        job["job_name"]: job["static_configs"][0]["labels"]["service"]
        for job in config["scrape_configs"]
    }
    assert services == {job: job.removeprefix("flowops-") for job in services}
    assert config["rule_files"] == ["rules/*.yml"]
    assert rule_files(), "no rule files"
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["127.0.0.1:9093"]


def test_alerting_rules_are_named_once_with_severity_and_summary() -> None:
    alerts = [rule for _, rule in rules() if "alert" in rule]
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names))
    for rule in alerts:
        assert rule["alert"].startswith("FlowOps"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_rules_cover_what_operators_are_paged_for() -> None:
    by_name = {rule["alert"]: rule for _, rule in rules() if "alert" in rule}
    probe = by_name["FlowOpsProbeFailing"]
    assert (probe["expr"].strip(), probe["for"]) == ("flowops_probe_success == 0", "1m")
    used = set().union(*(metric_names(rule["expr"]) for rule in by_name.values()))
    assert {
        "flowops_drift_alerts_total",
        "flowops_stream_consumer_lag",
        "flowops_stream_rejected_total",
        "route:flowops_gateway_requests_5xx:ratio_rate5m",
        "flowops_gateway_upstream_available",
        "flowops_gateway_breaker_state",
        "flowops_gateway_publish_dropped_total",
        "route:flowops_gateway_request_duration_seconds:p99_5m",
        "flowops_probe_success",
        "flowops_probe_value",
    } <= used
    values = {v for rule in by_name.values() for _, label, _, v in selectors(rule["expr"])}
    assert {"dvc.status", "not_in_remote", "kafka.lag", "lag_total"} <= values


# -- Alertmanager -----------------------------------------------------------------------


def test_alertmanager_routes_to_a_loopback_webhook() -> None:
    config = load_yaml(INFRA / "alertmanager" / "alertmanager.yml")
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}

    def routed(route: dict[str, Any]) -> Iterator[str]:
        yield route["receiver"]
        for child in route.get("routes", []):
            yield from routed(child)

    assert set(routed(config["route"])) <= receivers.keys()
    assert "service" in config["route"]["group_by"]
    urls = [hook["url"] for r in receivers.values() for hook in r.get("webhook_configs", [])]
    assert urls
    assert all(url.startswith("http://127.0.0.1:") for url in urls)
    alerts = {rule["alert"] for _, rule in rules() if "alert" in rule}
    for inhibit in config.get("inhibit_rules", []):
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            name = re.fullmatch(r'alertname=~?"(.*)"', matcher)
            assert name, matcher
            assert {a for a in alerts if re.fullmatch(name.group(1), a)}, matcher


# -- Grafana ----------------------------------------------------------------------------


def test_dashboards_have_fixed_unique_uids() -> None:
    found = dashboards()
    assert {file: d["uid"] for file, d in found.items()} == DASHBOARD_UIDS
    for dashboard in found.values():
        assert dashboard["id"] is None  # Grafana gives ids; a fixed one collides
        assert "flowops" in dashboard["tags"]


@pytest.mark.parametrize("file", sorted(DASHBOARD_UIDS))
def test_every_query_goes_through_the_datasource_variable(file: str) -> None:
    dashboard = dashboards()[file]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    selected = {"type": "prometheus", "uid": "${datasource}"}
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == selected, variable["name"]
    ids = []
    for panel in panels(dashboard):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == selected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == selected, panel["title"]
    assert len(ids) == len(set(ids))


def test_datasource_provisioning_points_at_prometheus() -> None:
    config = load_yaml(GRAFANA / "provisioning" / "datasources" / "flowops.yml")
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["access"] == "proxy"
    assert source["url"] == "http://127.0.0.1:9090"
    assert source["isDefault"] is True
    scrape = load_yaml(PROMETHEUS / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    config = load_yaml(GRAFANA / "provisioning" / "dashboards" / "flowops.yml")
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "FlowOps"
    assert Path(provider["options"]["path"]).is_absolute()
