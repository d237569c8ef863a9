"""flowops.ops.manifests: each kustomize feature the renderer supports, on small trees,
and the errors for what it does not."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowops.errors import ConfigError
from flowops.ops.kustomize import strategic_merge
from flowops.ops.manifests import (
    default_root,
    find,
    images_for,
    manifest_key,
    render,
    to_yaml,
)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: flowops-gateway
          args: [gateway]
          env:
            - {name: A, value: "1"}
        - name: sidecar
          image: busybox:1.36
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def tree(tmp_path: Path, overlay: str, **extra: str) -> Path:
    """A base with a Deployment and a Service, and overlays/dev with ``overlay``; ``extra``
    files are named with ``__`` for ``/`` and ``_yaml`` for ``.yaml``."""
    files = {
        "base/kustomization.yaml": "resources: [web.yaml]\n",
        "base/web.yaml": DEPLOYMENT + "---\n" + SERVICE,
        "overlays/dev/kustomization.yaml": overlay,
    }
    return write(tmp_path, {**files, **{_path(k): v for k, v in extra.items()}})


def _path(name: str) -> str:
    return name.replace("__", "/").removesuffix("_yaml") + ".yaml"


def containers(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = find(manifests, "Deployment", "web")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def config_error(root: Path, env: str = "dev", **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        render(env, root=root, **kwargs)
    return str(caught.value)


# --- resources ---------------------------------------------------------------------


def test_resources_gather_files_and_folders_in_stable_order(tmp_path: Path) -> None:
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"
    root = tree(tmp_path, "resources: [../../base, ns.yaml]\n", overlays__dev__ns_yaml=namespace)
    manifests = render("dev", root=root)
    assert [manifest_key(m) for m in manifests] == [
        ("Namespace", "", "x"),
        ("Service", "", "web"),
        ("Deployment", "", "web"),
    ]
    assert render("dev", root=root) == manifests  # the files are not changed by a render


def test_an_unknown_overlay_names_those_that_exist(tmp_path: Path) -> None:
    root = tree(tmp_path, "resources: [../../base]\n")
    message = config_error(root, "qa")
    assert message.startswith("config: deploy.env: no overlay 'qa'")
    assert message.endswith("(there are: dev)")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: [1", "not valid YAML"),
        ("- 1\n", "each YAML document must be a mapping"),
        ("kind: Service\nmetadata: {name: x}\n", "a resource without apiVersion"),
        ("apiVersion: v1\nkind: Service\nmetadata: {}\n", "a Service without metadata.name"),
    ],
)
def test_a_bad_resource_file_is_named(tmp_path: Path, text: str, reason: str) -> None:
    root = tree(tmp_path, "resources: [bad.yaml]\n", overlays__dev__bad_yaml=text)
    message = config_error(root)
    assert "overlays/dev/bad.yaml" in message
    assert reason in message


def test_a_missing_resource_and_a_duplicate_are_errors(tmp_path: Path) -> None:
    root = tree(tmp_path, "resources: [../../base, gone.yaml]\n")
    assert "resource 'gone.yaml' not found" in config_error(root)
    write(
        root, {"overlays/dev/kustomization.yaml": "resources: [../../base, ../../base/web.yaml]\n"}
    )
    assert "Deployment/web defined twice" in config_error(root)


@pytest.mark.parametrize(
    ("overlay", "reason"),
    [
        ("configMapGenerator: []\n", "unsupported field 'configMapGenerator'"),
        ("commonLabels: {a: b}\n", "commonLabels rewrites selectors"),
        ("labels: [{pairs: {a: b}, includeSelectors: true}]\n", "includeSelectors is not"),
        ("patches: [{patch: 'x', target: {kind: Service}}]\n", "only '- path: file.yaml'"),
        ("replicas: [{name: web}]\n", "replicas: expected"),
        ("replicas: [{name: nope, count: 2}]\n", "no Deployment, StatefulSet or Rollout 'nope'"),
        ("images: [{name: x, newTag: 1, tagSuffix: y}]\n", "images: expected"),
        ("namespace: ''\n", "namespace: expected a name"),
        ("resources: ../../base\n", "resources: expected a list"),
        ("kind: Component\n", "kind 'Component' where a Kustomization was expected"),
    ],
)
def test_unsupported_kustomize_is_refused_by_name(
    tmp_path: Path, overlay: str, reason: str
) -> None:
    root = tree(tmp_path, "resources: [../../base]\n" + overlay)
    message = config_error(root)
    assert "overlays/dev/kustomization.yaml" in message
    assert reason in message


# --- patches -----------------------------------------------------------------------


def test_a_patch_merges_maps_and_containers_by_name(tmp_path: Path) -> None:
    patch = """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: null
          template:
            spec:
              containers:
                - name: web
                  args: [gateway, --verbose]
                  env:
                    - {name: B, value: "2"}
                - name: extra
                  image: extra:1
        """
    root = tree(
        tmp_path,
        "resources: [../../base]\npatches: [{path: p.yaml}]\n",
        overlays__dev__p_yaml=patch,
    )
    manifests = render("dev", root=root)
    deployment = find(manifests, "Deployment", "web")
    assert "replicas" not in deployment["spec"]
    assert list(containers(manifests)) == ["web", "extra", "sidecar"]  # kubectl's order
    web = containers(manifests)["web"]
    assert web["args"] == ["gateway", "--verbose"]  # a list of scalars is replaced
    assert web["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    assert web["image"] == "flowops-gateway"


def test_patch_delete_removes_a_resource_or_a_list_item(tmp_path: Path) -> None:
    patch = """\
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        $patch: delete
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          template:
            spec:
              containers:
                - {name: sidecar, $patch: delete}
        """
    root = tree(
        tmp_path,
        "resources: [../../base]\npatches: [{path: p.yaml}]\n",
        overlays__dev__p_yaml=patch,
    )
    manifests = render("dev", root=root)
    assert [m["kind"] for m in manifests] == ["Deployment"]
    assert list(containers(manifests)) == ["web"]


def test_a_patch_without_its_target_is_an_error(tmp_path: Path) -> None:
    patch = "apiVersion: v1\nkind: Service\nmetadata: {name: nope}\nspec: {}\n"
    root = tree(
        tmp_path,
        "resources: [../../base]\npatches: [{path: p.yaml}]\n",
        overlays__dev__p_yaml=patch,
    )
    message = config_error(root)
    assert "overlays/dev/p.yaml" in message
    assert "patch target Service/nope not found" in message


def test_strategic_merge_leaves_its_inputs_alone() -> None:
    target = {"spec": {"containers": [{"name": "a", "image": "x"}]}}
    patch = {"spec": {"containers": [{"name": "a", "image": "y"}]}}
    merged = strategic_merge(target, patch)
    assert merged == {"spec": {"containers": [{"name": "a", "image": "y"}]}}
    assert target["spec"]["containers"][0]["image"] == "x"
    assert strategic_merge([1, 2], [3]) == [3]
    assert strategic_merge({"a": [{"x": 1}]}, {"a": [{"x": 2}]}) == {"a": [{"x": 2}]}


# --- components --------------------------------------------------------------------


def test_a_component_adds_resources_and_patches_the_parents(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        "resources: [../../base]\ncomponents: [../../components/extra]\n",
        components__extra__kustomization_yaml=(
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
            "resources: [cm.yaml]\npatches: [{path: svc.yaml}]\n"
        ),
        components__extra__cm_yaml="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        components__extra__svc_yaml=(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: NodePort}\n"
        ),
    )
    manifests = render("dev", root=root)
    assert find(manifests, "ConfigMap", "c")
    assert find(manifests, "Service", "web")["spec"]["type"] == "NodePort"
    write(
        root,
        {"overlays/dev/kustomization.yaml": "resources: [../../base, ../../components/extra]\n"},
    )
    assert "kind 'Component' where a Kustomization was expected" in config_error(root)


# --- replicas, images, labels, namespace ---------------------------------------------


def test_replicas_set_the_count(tmp_path: Path) -> None:
    root = tree(tmp_path, "resources: [../../base]\nreplicas: [{name: web, count: 4}]\n")
    assert find(render("dev", root=root), "Deployment", "web")["spec"]["replicas"] == 4


@pytest.mark.parametrize(
    ("entry", "image"),
    [
        ("{name: flowops-gateway, newTag: '1.2'}", "flowops-gateway:1.2"),
        ("{name: flowops-gateway, newName: reg.io/fo/gw}", "reg.io/fo/gw"),
        ("{name: flowops-gateway, newName: reg.io/gw, newTag: v2}", "reg.io/gw:v2"),
        ("{name: flowops-gateway, digest: 'sha256:abcd'}", "flowops-gateway@sha256:abcd"),
    ],
)
def test_images_replace_name_tag_or_digest(tmp_path: Path, entry: str, image: str) -> None:
    root = tree(tmp_path, f"resources: [../../base]\nimages: [{entry}]\n")
    found = containers(render("dev", root=root))
    assert found["web"]["image"] == image
    assert found["sidecar"]["image"] == "busybox:1.36"


def test_render_images_match_a_service_or_an_image_name_and_win(tmp_path: Path) -> None:
    overlay = "resources: [../../base]\nimages: [{name: flowops-gateway, newTag: dev}]\n"
    root = tree(tmp_path, overlay)
    by_service = render("dev", {"gateway": "reg.io/flowops-gateway:0.4.0-abc1234"}, root=root)
    assert containers(by_service)["web"]["image"] == "reg.io/flowops-gateway:0.4.0-abc1234"
    renamed = "images: [{name: flowops-gateway, newName: reg.io/team/flowops-gateway}]\n"
    write(root, {"overlays/dev/kustomization.yaml": "resources: [../../base]\n" + renamed})
    moved = render("dev", {"gateway": "reg.io/flowops-gateway:0.4.0-abc1234"}, root=root)
    assert containers(moved)["web"]["image"] == "reg.io/flowops-gateway:0.4.0-abc1234"
    by_image = render("dev", {"busybox": "mirror/busybox:1.37"}, root=root)
    assert containers(by_image)["sidecar"]["image"] == "mirror/busybox:1.37"
    message = config_error(root, images={"gatewy": "x"})
    assert message == "config: images: no container runs image 'gatewy'"


def test_labels_go_on_metadata_and_templates_never_selectors(tmp_path: Path) -> None:
    overlay = "resources: [../../base]\nlabels: [{pairs: {env: dev}, includeTemplates: true}]\n"
    manifests = render("dev", root=tree(tmp_path, overlay))
    deployment = find(manifests, "Deployment", "web")
    assert deployment["metadata"]["labels"] == {"app": "web", "env": "dev"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web", "env": "dev"}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert find(manifests, "Service", "web")["spec"]["selector"] == {"app": "web"}


def test_labels_without_templates_leave_pods_alone(tmp_path: Path) -> None:
    overlay = "resources: [../../base]\nlabels: [{pairs: {env: dev}}]\n"
    deployment = find(render("dev", root=tree(tmp_path, overlay)), "Deployment", "web")
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web"}


def test_namespace_goes_on_namespaced_resources_and_renames_the_namespace(tmp_path: Path) -> None:
    extra = (
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: placeholder}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n"
    )
    overlay = "resources: [../../base, extra.yaml]\nnamespace: team-a\n"
    manifests = render("dev", root=tree(tmp_path, overlay, overlays__dev__extra_yaml=extra))
    assert sorted(manifest_key(m) for m in manifests) == [
        ("ClusterRole", "", "r"),
        ("Deployment", "team-a", "web"),
        ("Namespace", "", "team-a"),
        ("Service", "team-a", "web"),
    ]


# --- output and helpers --------------------------------------------------------------


def test_to_yaml_reads_back_without_aliases(tmp_path: Path) -> None:
    anchored = DEPLOYMENT.replace("args: [gateway]", "args: &a [gateway]").replace(
        "image: busybox:1.36", "image: busybox:1.36\n          args: *a"
    )
    root = tree(tmp_path, "resources: [../../base]\n", base__web_yaml=anchored)
    manifests = render("dev", root=root)
    manifests.append({"apiVersion": "v1", "kind": "ConfigMap", "data": {"f.yaml": "a: 1\nb: 2\n"}})
    text = to_yaml(manifests)
    assert "&" not in text
    assert "*" not in text
    assert "f.yaml: |\n" in text
    assert list(yaml.safe_load_all(text)) == manifests


def test_images_for_names_every_service() -> None:
    assert images_for("0.4.0-abc1234", registry="reg.io/team/") == {
        "gateway": "reg.io/team/flowops-gateway:0.4.0-abc1234",
        "worker": "reg.io/team/flowops-worker:0.4.0-abc1234",
        "monitor": "reg.io/team/flowops-monitor:0.4.0-abc1234",
    }


def test_default_root_is_the_working_directorys_then_the_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    checkout = default_root()
    assert checkout.is_absolute()
    assert (checkout / "overlays/dev/kustomization.yaml").is_file()
    (tmp_path / "infra/k8s").mkdir(parents=True)
    assert default_root() == Path("infra/k8s")


def test_find_says_what_is_missing() -> None:
    with pytest.raises(KeyError, match="Service/x"):
        find([], "Service", "x")
