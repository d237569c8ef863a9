"""docker-compose.kafka.yml, checked by reading it (no Docker engine runs here): what it
mounts exists, ports are published on the host's loopback only, the services that share
one network namespace do not collide on a port, and the ports agree with the config files
of infra/ that Prometheus, Alertmanager and Grafana are provisioned from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from flowops.cli import cli
from flowops.config import Settings, load_settings
from flowops.gateway.config import gateway_settings
from flowops.monitor.config import monitor_settings

REPO = Path(__file__).resolve().parents[2]
FLOWOPS = ("gateway", "worker", "monitor")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.kafka.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


@pytest.fixture
def settings(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in ("FLOWOPS_CONFIG", "FLOWOPS_KAFKA__BOOTSTRAP", "FLOWOPS_LOG_LEVEL"):
        monkeypatch.delenv(key, raising=False)
    return load_settings(_host_path(services["gateway"], "/etc/flowops/flowops.yaml"))


def _host_path(service: dict[str, Any], target: str) -> Path:
    """The file of the repository that ``service`` mounts at ``target``."""
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return REPO / source
    raise AssertionError(f"nothing mounted at {target}")


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_every_bind_mount_is_a_path_of_the_repository_read_only(
    services: dict[str, Any],
) -> None:
    mounts = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, _, rest = volume.partition(":")
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source}"
                assert rest.endswith(":ro"), f"{name}: {volume}"
                mounts += 1
    assert mounts >= 7


def test_ports_are_published_on_loopback_by_the_namespace_holder_only(
    services: dict[str, Any],
) -> None:
    published = services["network"]["ports"]
    assert all(port.startswith("127.0.0.1:") for port in published)
    for name, service in services.items():
        if name != "network":
            assert "ports" not in service, name
            assert service["network_mode"] == "service:network", name
    host_ports = {int(port.split(":")[1]) for port in published}
    assert host_ports == {9092, 8080, 9108, 9090, 9093, 3000}


def test_kafka_is_one_kraft_broker_advertised_where_flowops_looks(
    services: dict[str, Any], settings: Settings
) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not [key for key in env if "ZOOKEEPER" in key]
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert (
        env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@{listeners['CONTROLLER']}"
    )
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{settings.kafka.bootstrap}"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == settings.kafka.replication == 1
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_services_sharing_the_namespace_listen_on_distinct_ports(
    services: dict[str, Any], settings: Settings
) -> None:
    env = services["kafka"]["environment"]
    listening = [_port(item) for item in env["KAFKA_LISTENERS"].split(",")]
    for name in ("prometheus", "alertmanager"):
        flags = [f for f in services[name]["command"] if f.startswith("--web.listen-address=")]
        listening.append(_port(flags[0]))
    listening.append(int(services["grafana"]["environment"]["GF_SERVER_HTTP_PORT"]))
    listening += [
        _port(gateway_settings(settings).listen),
        _port(monitor_settings(settings).listen),
        settings.streams.metrics_port,
        int(services["model"]["command"][-1]),
    ]
    assert len(listening) == len(set(listening)) == 9


def test_flowops_services_are_built_from_the_containerfiles_and_wait_for_kafka(
    services: dict[str, Any],
) -> None:
    for name in FLOWOPS:
        service = services[name]
        assert service["build"] == {
            "context": ".",
            "dockerfile": f"infra/containerfiles/{name}.Containerfile",
        }
        assert service["image"] == f"flowops-{name}:dev"
        assert service["depends_on"]["kafka"] == {"condition": "service_healthy"}
        assert service["entrypoint"] == ["flowops"]
        result = CliRunner().invoke(cli, [*service["command"], "--help"])
        assert result.exit_code == 0, result.output
        assert service["environment"]["FLOWOPS_CONFIG"] == "/etc/flowops/flowops.yaml"
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
    assert services["model"]["build"] == services["gateway"]["build"]


def test_the_config_agrees_with_the_published_ports_and_prometheus_targets(
    services: dict[str, Any], settings: Settings
) -> None:
    gateway, monitor = gateway_settings(settings), monitor_settings(settings)
    published = {int(port.split(":")[2]) for port in services["network"]["ports"]}
    assert {_port(gateway.listen), _port(monitor.listen)} <= published
    prometheus = _yaml(_host_path(services["prometheus"], "/etc/prometheus") / "prometheus.yml")
    targets = {
        job["job_name"]: _port(job["static_configs"][0]["targets"][0])
        for job in prometheus["scrape_configs"]
    }
    assert targets == {
        "flowops-streams": settings.streams.metrics_port,
        "flowops-gateway": _port(gateway.listen),
        "flowops-monitor": _port(monitor.listen),
    }
    (alertmanagers,) = prometheus["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert monitor.alerts.alertmanager == ["http://127.0.0.1:9093"]
    (route,) = gateway.routes
    (upstream,) = route.upstreams
    assert upstream.url == f"http://127.0.0.1:{services['model']['command'][-1]}"


def test_grafana_is_provisioned_where_its_files_say(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    (provider,) = _yaml(provisioning / "dashboards" / "flowops.yml")["providers"]
    dashboards = _host_path(grafana, provider["options"]["path"])
    assert sorted(p.name for p in dashboards.glob("*.json")) == [
        "drift.json",
        "gateway.json",
        "health.json",
    ]
    (source,) = _yaml(provisioning / "datasources" / "flowops.yml")["datasources"]
    assert _port(source["url"]) == 9090
    alertmanager = _host_path(services["alertmanager"], "/etc/alertmanager")
    assert (alertmanager / "alertmanager.yml").is_file()
