"""The shipped overlays of infra/k8s, rendered and checked offline (no cluster runs here):
Kubernetes objects deserialised into kubernetes-asyncio's models without losing a field,
custom resources checked by shape, selectors matched to pods, containers' images,
probes, resources and security contexts, and the embedded flowops.yaml validated by the
settings models of FlowOps itself."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes_asyncio.client import ApiClient

from flowops.cli import cli
from flowops.config import Settings, load_settings
from flowops.events.topics import TOPICS
from flowops.gateway.config import gateway_settings
from flowops.monitor.config import monitor_settings
from flowops.ops.manifests import ENVIRONMENTS, find, images_for, render

Manifest = Mapping[str, Any]

ROOT = Path(__file__).resolve().parents[3] / "infra" / "k8s"
IMAGES = images_for("9.9.9-test", registry="registry.test/flowops")
BUILT_IN_GROUPS = {"", "apps", "autoscaling", "policy", "networking.k8s.io"}
CUSTOM = {
    ("external-secrets.io/v1beta1", "ExternalSecret"),
    ("external-secrets.io/v1beta1", "SecretStore"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("argoproj.io/v1alpha1", "Rollout"),
}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
# the peer every policy names for Prometheus (network-policies.yaml's header)
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def rendered(env: str) -> list[dict[str, Any]]:
    return render(env, IMAGES, root=ROOT)


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def name(manifest: Manifest) -> str:
    return str(manifest["metadata"]["name"])


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for manifest in of_kind(manifests, "Deployment"):
        yield name(manifest), manifest["spec"]["template"]["spec"]


def pod_labels(manifests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The pods' labels of each workload: Deployments, and Rollouts by their workloadRef."""
    labels = {
        name(m): m["spec"]["template"]["metadata"]["labels"]
        for m in of_kind(manifests, "Deployment")
    }
    for rollout in of_kind(manifests, "Rollout"):
        labels[f"rollout/{name(rollout)}"] = labels[rollout["spec"]["workloadRef"]["name"]]
    return labels


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) against a set of labels."""
    if not selector.keys() <= {"matchLabels", "matchExpressions"}:
        selector = {"matchLabels": selector}  # a Service's plain selector
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        value, operator = labels.get(expression["key"]), expression["operator"]
        ok = {
            "In": value in expression.get("values", []),
            "NotIn": value not in expression.get("values", []),
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[operator]
        if not ok:
            return False
    return True


def selected(selector: Mapping[str, Any], manifests: list[dict[str, Any]]) -> list[str]:
    return [w for w, labels in pod_labels(manifests).items() if matches(selector, labels)]


def monitored_service(monitor: Manifest, manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The one Service a ServiceMonitor selects by its labels."""
    (service,) = [
        s
        for s in of_kind(manifests, "Service")
        if matches(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    return service


def container_ports(manifests: list[dict[str, Any]], workload: str) -> dict[str, int]:
    """A Deployment's named container ports."""
    spec = find(manifests, "Deployment", workload)["spec"]["template"]["spec"]
    return {p["name"]: p["containerPort"] for c in spec["containers"] for p in c["ports"]}


class _Response:
    """What ApiClient.deserialize reads: a body of JSON."""

    def __init__(self, body: Manifest) -> None:
        self.data = json.dumps(body)


def model_name(manifest: Manifest) -> str:
    """``apps/v1`` ``Deployment`` -> ``V1Deployment``, as kubernetes-asyncio names it."""
    version = str(manifest["apiVersion"]).rpartition("/")[2]
    return version.capitalize() + str(manifest["kind"])


def round_trip(api: ApiClient, manifest: Manifest) -> Any:
    return api.sanitize_for_serialization(
        api.deserialize(_Response(manifest), model_name(manifest))
    )


# --- Kubernetes objects ------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("env", ENVIRONMENTS)
async def test_built_in_objects_deserialise_without_losing_a_field(env: str) -> None:
    manifests = rendered(env)
    built_in = [m for m in manifests if m["apiVersion"].rpartition("/")[0] in BUILT_IN_GROUPS]
    async with ApiClient() as api:
        for manifest in built_in:
            assert round_trip(api, manifest) == manifest, (
                model_name(manifest) + " " + name(manifest)
            )
    kinds = {m["kind"] for m in built_in}
    assert kinds >= {"Namespace", "ConfigMap", "ServiceAccount", "Service", "Deployment"}
    assert kinds >= {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"}


@pytest.mark.asyncio
async def test_the_round_trip_catches_a_misspelt_field() -> None:
    deployment = dict(find(rendered("dev"), "Deployment", "flowops-gateway"))
    deployment["spec"] = {**deployment["spec"], "replica": 3}
    async with ApiClient() as api:
        assert "replica" not in round_trip(api, deployment)["spec"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_resource_is_a_known_kind_in_its_namespace(env: str) -> None:
    manifests = rendered(env)
    for manifest in manifests:
        group = manifest["apiVersion"].rpartition("/")[0]
        assert group in BUILT_IN_GROUPS or (manifest["apiVersion"], manifest["kind"]) in CUSTOM
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == f"flowops-{env}"
        labels = manifest["metadata"]["labels"]
        assert labels["flowops/environment"] == env
        assert labels["app.kubernetes.io/part-of"] == "flowops"
    assert [name(n) for n in of_kind(manifests, "Namespace")] == [f"flowops-{env}"]


# --- selectors ---------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_selector_matches_a_workloads_pods(env: str) -> None:
    manifests = rendered(env)
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert matches(deployment["spec"]["selector"], labels), name(deployment)
    for rollout in of_kind(manifests, "Rollout"):
        assert selected(rollout["spec"]["selector"], manifests) == [
            rollout["spec"]["workloadRef"]["name"],
            f"rollout/{name(rollout)}",
        ]
    for kind in ("Service", "PodDisruptionBudget"):
        for manifest in of_kind(manifests, kind):
            assert len(selected(manifest["spec"]["selector"], manifests)) >= 1, name(manifest)
    for policy in of_kind(manifests, "NetworkPolicy"):
        assert selected(policy["spec"]["podSelector"], manifests), name(policy)
    for monitor in of_kind(manifests, "ServiceMonitor"):
        port_names = {p["name"] for p in monitored_service(monitor, manifests)["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names, name(monitor)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_services_reach_a_container_port(env: str) -> None:
    manifests = rendered(env)
    for service in of_kind(manifests, "Service"):
        (workload,) = [w for w in selected(service["spec"]["selector"], manifests) if "/" not in w]
        ports = container_ports(manifests, workload)
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, name(service)
            assert port["port"] == ports[port["targetPort"]]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_autoscaler_scales_the_gateway(env: str) -> None:
    manifests = rendered(env)
    hpa = find(manifests, "HorizontalPodAutoscaler", "flowops-gateway")
    target = hpa["spec"]["scaleTargetRef"]
    kind = "Rollout" if env != "dev" else "Deployment"
    assert (target["kind"], target["name"]) == (kind, "flowops-gateway")
    assert target["apiVersion"] == find(manifests, kind, "flowops-gateway")["apiVersion"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    gateway = find(manifests, "Deployment", "flowops-gateway")
    assert "replicas" not in gateway["spec"], "the HPA owns the gateway's replicas"


# --- containers ----------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_container_runs_a_built_image_and_a_real_command(env: str) -> None:
    services = {}
    for workload, spec in pod_specs(rendered(env)):
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["image"] in IMAGES.values(), workload
            services[container["image"]] = container
            assert container["command"] == ["flowops"]
            result = CliRunner().invoke(cli, [*container["args"], "--help"])
            assert result.exit_code == 0, result.output
    assert sorted(services) == sorted(IMAGES.values())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlays_pin_their_images(env: str) -> None:
    for workload, spec in pod_specs(render(env, root=ROOT)):
        image = spec["containers"][0]["image"]
        assert image.startswith(
            f"{'' if env == 'dev' else 'registry.example.com/flowops/'}flowops-"
        )
        assert ":" in image.rpartition("/")[2], f"{workload}: {image} has no tag"


def _quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value.removesuffix(unit)) * factor
    return float(value)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_containers_have_probes_resources_and_a_locked_down_context(env: str) -> None:
    for workload, spec in pod_specs(rendered(env)):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert (pod["runAsUser"], pod["runAsGroup"]) == (10001, 10001)
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            assert {"livenessProbe", "readinessProbe"} <= container.keys(), workload
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = _quantity(resources["requests"][resource])
                assert 0 < request <= _quantity(resources["limits"][resource]), workload
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] == 10001
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_probes_ask_a_named_port_of_their_container_over_http(env: str) -> None:
    """httpGet on a declared port: no exec probe starts a process in the pod each period."""
    for workload, spec in pod_specs(rendered(env)):
        for container in spec["containers"]:
            ports = {p["name"] for p in container["ports"]}
            for kind in PROBES:
                if kind in container:
                    probe = container[kind]
                    assert {"exec", "tcpSocket", "grpc"}.isdisjoint(probe), (workload, kind)
                    assert probe["httpGet"]["port"] in ports, (workload, kind)
                    assert probe["httpGet"]["path"].startswith("/"), (workload, kind)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_volumes_and_env_refer_to_what_the_render_makes(env: str) -> None:
    manifests = rendered(env)
    config_maps = {name(m) for m in of_kind(manifests, "ConfigMap")}
    secrets = {m["spec"]["target"]["name"] for m in of_kind(manifests, "ExternalSecret")}
    for workload, spec in pod_specs(manifests):
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            for mount in container["volumeMounts"]:
                volume = volumes[mount["name"]]
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in config_maps, workload
                if "secret" in volume:
                    assert volume["secret"]["secretName"] in secrets, workload
            for source in container["envFrom"]:
                assert source["configMapRef"]["name"] in config_maps
        assert spec["serviceAccountName"] in {name(m) for m in of_kind(manifests, "ServiceAccount")}


# --- the settings each container reads ---------------------------------------------------


def settings_of(
    manifests: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """flowops.yaml of flowops-config with flowops-env's variables, as a container loads it."""
    path = tmp_path / "flowops.yaml"
    path.write_text(find(manifests, "ConfigMap", "flowops-config")["data"]["flowops.yaml"])
    for key, value in find(manifests, "ConfigMap", "flowops-env")["data"].items():
        monkeypatch.setenv(key, value)
    (container,) = find(manifests, "Deployment", "flowops-worker")["spec"]["template"]["spec"][
        "containers"
    ]
    for variable in container["env"]:
        if "secretKeyRef" in variable.get("valueFrom", {}):
            monkeypatch.setenv(variable["name"], "from-the-secret")
    return load_settings(path)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_embedded_config_is_valid_flowops_settings(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered(env)
    for workload, spec in pod_specs(manifests):
        (container,) = spec["containers"]
        variables = {v["name"]: v.get("value") for v in container["env"]}
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
        assert variables["FLOWOPS_CONFIG"] == mount["mountPath"], workload
    settings = settings_of(manifests, tmp_path, monkeypatch)
    gateway, monitor = gateway_settings(settings), monitor_settings(settings)
    ports = {
        w: {p["containerPort"] for c in s["containers"] for p in c.get("ports", [])}
        for w, s in pod_specs(manifests)
    }
    assert ports["flowops-gateway"] == {int(gateway.listen.rpartition(":")[2])}
    assert ports["flowops-monitor"] == {int(monitor.listen.rpartition(":")[2])}
    assert ports["flowops-worker"] == {settings.streams.metrics_port}
    assert settings.streams.metrics_host == "0.0.0.0", "the kubelet and Prometheus reach it"
    worker = find(manifests, "Deployment", "flowops-worker")["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    for kind in PROBES:
        assert container[kind]["httpGet"] == {"path": "/metrics", "port": "metrics"}, kind


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_gateways_key_files_are_mounted_from_its_secrets(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered(env)
    auth = gateway_settings(settings_of(manifests, tmp_path, monkeypatch)).auth
    assert auth is not None
    assert auth.jwt is not None
    spec = find(manifests, "Deployment", "flowops-gateway")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    keys = {
        m["spec"]["target"]["name"]: {d["secretKey"] for d in m["spec"]["data"]}
        for m in of_kind(manifests, "ExternalSecret")
    }
    for path in (auth.api_keys_file, auth.jwt.public_key_file):
        assert path is not None
        (mount,) = [
            m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == str(path.parent)
        ]
        assert path.name in keys[volumes[mount["name"]]["secret"]["secretName"]]


# --- custom resources -----------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_external_secrets_read_the_namespaces_store(env: str) -> None:
    manifests = rendered(env)
    stores = {name(m) for m in of_kind(manifests, "SecretStore")}
    assert bool(stores) == (env == "dev"), "dev ships a fake store; others use the cluster's"
    names = set()
    for secret in of_kind(manifests, "ExternalSecret"):
        spec = secret["spec"]
        assert spec["secretStoreRef"] == {"kind": "SecretStore", "name": "flowops"}
        assert spec["target"]["name"] == name(secret)
        assert spec["data"]
        for item in spec["data"]:
            assert item["secretKey"]
            assert item["remoteRef"]["key"].startswith("flowops/")
        names.add(name(secret))
    assert names >= {"flowops-gateway-api-keys", "flowops-gateway-jwt"}
    assert ("flowops-kafka-credentials" in names) == (env == "prod")
    for store in of_kind(manifests, "SecretStore"):
        fake = {d["key"] for d in store["spec"]["provider"]["fake"]["data"]}
        remote = {
            i["remoteRef"]["key"]
            for s in of_kind(manifests, "ExternalSecret")
            for i in s["spec"]["data"]
        }
        assert remote <= fake


@pytest.mark.parametrize("env", ["dev", "staging"])
def test_strimzi_runs_kraft_with_flowops_topics(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered(env)
    (kafka,) = of_kind(manifests, "Kafka")
    (pool,) = of_kind(manifests, "KafkaNodePool")
    annotations = kafka["metadata"]["annotations"]
    assert annotations == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name(kafka)
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    settings = settings_of(manifests, tmp_path, monkeypatch)
    bootstrap = f"{name(kafka)}-kafka-bootstrap:{listener['port']}"
    assert settings.kafka.bootstrap == bootstrap
    brokers = pool["spec"]["replicas"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == brokers == settings.kafka.replication
    assert config["min.insync.replicas"] == max(1, brokers - 1)
    topics = {t["spec"]["topicName"]: t for t in of_kind(manifests, "KafkaTopic")}
    assert sorted(topics) == sorted(spec.name for spec in TOPICS)
    for spec in TOPICS:
        topic = topics[spec.name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == name(kafka)
        assert topic["spec"]["partitions"] == settings.kafka.partitions
        assert topic["spec"]["replicas"] == brokers
        assert spec.configs.items() <= topic["spec"]["config"].items()


def test_prod_reaches_kafka_outside_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered("prod")
    assert not of_kind(manifests, "Kafka")
    settings = settings_of(manifests, tmp_path, monkeypatch)
    policy = find(manifests, "NetworkPolicy", "flowops-kafka")
    (rule,) = policy["spec"]["egress"]
    ports = {server.rpartition(":")[2] for server in settings.kafka.bootstrap.split(",")}
    assert {str(p["port"]) for p in rule["ports"]} == ports
    assert "ipBlock" in rule["to"][0]


def test_prod_reads_the_kafka_credentials_secret_in_every_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered("prod")
    secret = find(manifests, "ExternalSecret", "flowops-kafka-credentials")["spec"]["target"]
    kafka = settings_of(manifests, tmp_path, monkeypatch).kafka
    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl_password_file is not None
    for workload, spec in pod_specs(manifests):
        (volume,) = [
            v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == secret["name"]
        ]
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert kafka.sasl_password_file.parent == Path(mount["mountPath"]), workload
        (user,) = [v for v in container["env"] if v["name"] == "FLOWOPS_KAFKA__SASL_USERNAME"]
        ref = user["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret["name"], "username"), workload


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_gateway_is_released_by_an_argo_canary(env: str) -> None:
    manifests = rendered(env)
    rollout = find(manifests, "Rollout", "flowops-gateway")
    spec = rollout["spec"]
    assert spec["workloadRef"]["kind"] == "Deployment"
    assert find(manifests, "Deployment", spec["workloadRef"]["name"])
    assert "template" not in spec, "the pod template lives in the Deployment"
    weights = [s["setWeight"] for s in spec["strategy"]["canary"]["steps"] if "setWeight" in s]
    assert weights == sorted(weights)
    assert 0 < weights[0] < 100


def test_dev_has_no_canary() -> None:
    assert not of_kind(rendered("dev"), "Rollout")


def prometheus_jobs() -> dict[str, str]:
    """infra/prometheus/prometheus.yml's jobs and the ``service`` label of each."""
    config = yaml.safe_load((ROOT.parent / "prometheus/prometheus.yml").read_text())
    return {
        job["job_name"]: label
        for job in config["scrape_configs"]
        for label in {c["labels"]["service"] for c in job["static_configs"]}
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_service_monitors_scrape_every_prometheus_job(env: str) -> None:
    """Without a jobLabel the job is the Service's name: the jobs and ``service`` labels
    are those of infra/prometheus/prometheus.yml, which its rules select on."""
    rules = "".join(p.read_text() for p in (ROOT.parent / "prometheus/rules").glob("*.yml"))
    manifests = rendered(env)
    jobs = {}
    for monitor in of_kind(manifests, "ServiceMonitor"):
        assert "jobLabel" not in monitor["spec"], name(monitor)
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "service"
        job = name(monitored_service(monitor, manifests))
        assert job == name(monitor), "a ServiceMonitor is named after its job"
        jobs[job] = relabel["replacement"]
    assert jobs == prometheus_jobs()
    for job in jobs:
        assert f'job="{job}"' in rules


# --- network policies ---------------------------------------------------------------------


def policies_for(manifests: list[dict[str, Any]], workload: str) -> list[dict[str, Any]]:
    labels = pod_labels(manifests)[workload]
    return [
        p for p in of_kind(manifests, "NetworkPolicy") if matches(p["spec"]["podSelector"], labels)
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_network_policies_allow_only_the_architectures_flows(env: str) -> None:
    manifests = rendered(env)
    for workload in ("flowops-gateway", "flowops-worker", "flowops-monitor"):
        policies = policies_for(manifests, workload)
        assert "flowops-default-deny" in {name(p) for p in policies}
        assert {"flowops-dns", "flowops-kafka"} <= {name(p) for p in policies}
    worker = policies_for(manifests, "flowops-worker")
    (worker_in,) = [r for p in worker for r in p["spec"].get("ingress", [])]
    assert worker_in["from"] == [PROMETHEUS], "nothing but Prometheus calls a worker"
    assert worker_in["ports"] == [{"protocol": "TCP", "port": 6066}]
    assert {name(p) for p in worker if p["spec"].get("egress")} == {"flowops-dns", "flowops-kafka"}
    (gateway_in,) = [
        r for p in policies_for(manifests, "flowops-gateway") for r in p["spec"].get("ingress", [])
    ]
    assert "from" not in gateway_in, "clients come from anywhere"
    assert gateway_in["ports"] == [{"protocol": "TCP", "port": 8080}]
    (monitor_in,) = [
        r for p in policies_for(manifests, "flowops-monitor") for r in p["spec"].get("ingress", [])
    ]
    assert monitor_in["from"] == [PROMETHEUS]
    assert monitor_in["ports"] == [{"protocol": "TCP", "port": 9108}]
    for policy in of_kind(manifests, "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            for peer in rule["to"]:
                if set(peer) == {"podSelector"}:  # a pod of this namespace: FlowOps or Kafka
                    local = selected(peer["podSelector"], manifests)
                    strimzi = peer["podSelector"]["matchLabels"].get("strimzi.io/cluster")
                    assert local or [k for k in of_kind(manifests, "Kafka") if name(k) == strimzi]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_prometheus_may_reach_every_port_it_scrapes(env: str) -> None:
    manifests = rendered(env)
    for monitor in of_kind(manifests, "ServiceMonitor"):
        service = monitored_service(monitor, manifests)
        (workload,) = [w for w in selected(service["spec"]["selector"], manifests) if "/" not in w]
        target = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
        ingress = [
            r for p in policies_for(manifests, workload) for r in p["spec"].get("ingress", [])
        ]
        for endpoint in monitor["spec"]["endpoints"]:
            port = container_ports(manifests, workload)[target[endpoint["port"]]]
            allowed = [
                r
                for r in ingress
                if {"protocol": "TCP", "port": port} in r["ports"]
                and ("from" not in r or PROMETHEUS in r["from"])
            ]
            assert allowed, f"{name(monitor)}: no policy lets Prometheus reach {workload}:{port}"


# --- the overlays differ sensibly ----------------------------------------------------------


def test_environments_grow_from_dev_to_prod() -> None:
    renders = [rendered(env) for env in ENVIRONMENTS]
    hpas = [find(m, "HorizontalPodAutoscaler", "flowops-gateway")["spec"] for m in renders]
    assert [h["minReplicas"] for h in hpas] == sorted({h["minReplicas"] for h in hpas})
    assert [h["maxReplicas"] for h in hpas] == sorted({h["maxReplicas"] for h in hpas})
    workers = [find(m, "Deployment", "flowops-worker")["spec"]["replicas"] for m in renders]
    assert workers == sorted(set(workers))
    requests = [
        _quantity(
            find(m, "Deployment", "flowops-gateway")["spec"]["template"]["spec"]["containers"][0][
                "resources"
            ]["requests"]["cpu"]
        )
        for m in renders
    ]
    assert requests == sorted(set(requests))
    assert not [
        p for p in of_kind(renders[0], "PodDisruptionBudget") if name(p) == "flowops-gateway"
    ]
    prod_pdb = find(renders[2], "PodDisruptionBudget", "flowops-gateway")["spec"]
    assert prod_pdb["minAvailable"] < hpas[2]["minReplicas"], "a drain can always proceed"
